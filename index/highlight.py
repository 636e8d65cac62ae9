"""Which sentence of a passage best answers the question — the part shown in bold.

All sentences of all shown passages are embedded in one batch (a handful of short texts), then each
passage's sentence closest to the question wins, with a small bonus for shared content words so an
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
    question: str, question_vector: np.ndarray, passages: Sequence[str], encoder: Encoder
) -> list[tuple[int, int]]:
    """For each passage, the (start, end) span of its sentence that best answers `question`."""
    spans_per_passage = [split_sentences(text) or [(0, len(text))] for text in passages]
    multi = [i for i, spans in enumerate(spans_per_passage) if len(spans) > 1]
    result = [spans[0] for spans in spans_per_passage]
    if not multi:
        return result
    sentences = [passages[i][s:e] for i in multi for s, e in spans_per_passage[i]]
    vectors = encoder.encode(sentences)
    question_words = content_words(question)
    offset = 0
    for i in multi:
        spans = spans_per_passage[i]
        scores = vectors[offset : offset + len(spans)] @ question_vector
        if question_words:
            overlap = np.array([len(question_words & content_words(passages[i][s:e])) for s, e in spans])
            scores = scores + 0.05 * overlap
        result[i] = spans[int(np.argmax(scores))]
        offset += len(spans)
    return result
