"""Which sentence of a passage best answers the question — the part shown in bold.

Each passage's sentence vectors come from ingestion (pooled from the passage's own encoder pass); a passage
stored without them has its sentences embedded here, all in one batch. Then each passage's sentence closest to
the question wins, with a small bonus for shared content words so an
exact name or number in the question pulls towards the sentence that has it.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from index.chunker import split_sentences
from index.embeddings import Encoder

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'\-]*")
_STOPWORDS = frozenset(
    "a an and are as at be but by did do does for from had has have he her his how i in is it its of on or "
    "she said that the their them they this to was were what when where which who why will with would you "
    "about after before than then there these those into over also".split()
)


def content_words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text) if w.lower() not in _STOPWORDS and len(w) > 1}


def best_sentence_spans(
    question: str, question_vector: np.ndarray, passages: Sequence[str], encoder: Encoder,
    stored: Sequence[np.ndarray | None] | None = None,
) -> list[tuple[int, int]]:
    """For each passage, the (start, end) span of its sentence that best answers `question`.

    `stored` are the passages' sentence vectors from ingestion (index/sentence_vectors.py), where they have
    them; only the other passages' sentences are encoded here."""
    spans_per_passage = [split_sentences(text) or [(0, len(text))] for text in passages]
    result = [spans[0] for spans in spans_per_passage]
    vectors_of: dict[int, np.ndarray] = {}
    missing = []
    for i, spans in enumerate(spans_per_passage):
        if len(spans) < 2:
            continue
        kept = stored[i] if stored is not None else None
        if kept is not None and len(kept) == len(spans):
            vectors_of[i] = kept
        else:
            missing.append(i)
    if missing:
        encoded = encoder.encode([passages[i][s:e] for i in missing for s, e in spans_per_passage[i]])
        offset = 0
        for i in missing:
            vectors_of[i] = encoded[offset : offset + len(spans_per_passage[i])]
            offset += len(spans_per_passage[i])
    question_words = content_words(question)
    for i, vectors in vectors_of.items():
        spans = spans_per_passage[i]
        scores = vectors @ question_vector
        if question_words:
            overlap = np.array([len(question_words & content_words(passages[i][s:e])) for s, e in spans])
            scores = scores + 0.05 * overlap
        result[i] = spans[int(np.argmax(scores))]
    return result
