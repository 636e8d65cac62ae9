"""Lexical retrieval: BM25 (bm25s) over passage texts, so names, numbers and tickers match exactly.

Like the FAISS index it is derived data, rebuilt from the database's passages whenever it is missing,
damaged or out of date; it is saved as one file, written to a temporary name and renamed into place.
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Sequence

import bm25s
import numpy as np
import Stemmer

from index.atomic import write_atomically

log = logging.getLogger(__name__)
logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG

# Numbers keep their inner separators ("5.93", "1,750", "1980-88"); words keep inner hyphens and dots
# of abbreviations ("al-adl", "u.s") but lose possessives ("iran's" -> "iran").
_TOKEN = re.compile(r"\d+(?:[.,:/-]\d+)*|[^\W\d_]+(?:[.'’-][^\W\d_]+)*", re.UNICODE)
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below between
    both but by can could did do does doing down during each few for from further had has have having he her here
    hers herself him himself his how i if in into is it its itself just me more most my myself no nor not now of
    off on once only or other our ours ourselves out over own same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up very was we were what
    when where which while who whom why will with would you your yours yourself yourselves said says tell told
    me us also say saying""".split()
)


class LexicalCorrupt(Exception):
    """The saved lexical index can't be read; rebuild it."""


class Tokenizer:
    """Lower-cased, stop-worded, Snowball-stemmed tokens; the same for passages and questions."""

    def __init__(self) -> None:
        self._stemmer = Stemmer.Stemmer("english")

    def __call__(self, text: str) -> list[str]:
        words = []
        for match in _TOKEN.finditer(text.lower()):
            word = match.group(0)
            if word.endswith(("'s", "’s")):
                word = word[:-2]
            if word in STOPWORDS or (len(word) < 2 and not word.isdigit()):
                continue
            words.append(word)
        return self._stemmer.stemWords(words)


class LexicalIndex:
    """BM25 scores of every passage for a question, keyed by passage id."""

    def __init__(self, ids: np.ndarray | None = None, retriever: bm25s.BM25 | None = None):
        self.tokenize = Tokenizer()
        self._ids = ids if ids is not None else np.zeros(0, dtype=np.int64)
        self._retriever = retriever
        self._positions: dict[int, int] = {int(i): n for n, i in enumerate(self._ids)}

    @classmethod
    def build(cls, ids: Sequence[int], texts: Sequence[str]) -> "LexicalIndex":
        index = cls()
        if not ids:
            return index
        tokens = [index.tokenize(t) or ["<empty>"] for t in texts]
        retriever = bm25s.BM25()
        retriever.index(tokens, show_progress=False)
        return cls(np.asarray(ids, dtype=np.int64), retriever)

    def __len__(self) -> int:
        return int(len(self._ids))

    def ids(self) -> set[int]:
        return set(self._positions)

    def position_of(self, passage_id: int) -> int | None:
        return self._positions.get(passage_id)

    @property
    def passage_ids(self) -> np.ndarray:
        return self._ids

    def known_terms(self, question: str) -> tuple[list[str], list[str]]:
        """The question's terms the corpus has, and those it has never seen."""
        vocab = self._retriever.vocab_dict if self._retriever is not None else {}
        terms = self.tokenize(question)
        return [t for t in terms if t in vocab], [t for t in terms if t not in vocab]

    def scores(self, question: str) -> np.ndarray:
        """BM25 score of every passage (in `passage_ids` order) for the question."""
        if self._retriever is None:
            return np.zeros(0, dtype=np.float32)
        known, _unknown = self.known_terms(question)
        if not known:
            return np.zeros(len(self._ids), dtype=np.float32)
        return np.asarray(self._retriever.get_scores(known), dtype=np.float32)

    def search(self, question: str, k: int) -> list[tuple[int, float]]:
        scores = self.scores(question)
        return top_k(self._ids, scores, k)

    def idf(self, term: str) -> float:
        """Rarity of a tokenized term; a term the corpus has never seen is as rare as can be."""
        return math.log(1 + len(self) / (1 + self.document_frequency(term)))

    def coverage(self, question: str, text: str) -> float:
        """Share of the question's meaning (IDF-weighted terms) that appears in `text`: a passage that
        answers usually names what the question names."""
        terms = set(self.tokenize(question))
        if not terms:
            return 0.0
        present = set(self.tokenize(text))
        weights = {t: self.idf(t) for t in terms}
        total = sum(weights.values())
        return sum(w for t, w in weights.items() if t in present) / total if total else 0.0

    def document_frequency(self, term: str) -> int:
        """How many passages contain a (tokenized) term — rare terms carry the question's meaning."""
        if self._retriever is None or term not in self._retriever.vocab_dict:
            return 0
        column = self._retriever.vocab_dict[term]
        indptr = self._retriever.scores["indptr"]
        return int(indptr[column + 1] - indptr[column])

    # --- persistence -----------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """One .npz file (ids, the sparse score matrix, vocabulary, parameters), replaced atomically."""
        arrays = {"ids": self._ids}
        meta = {}
        if self._retriever is not None:
            scores = self._retriever.scores
            arrays.update(data=scores["data"], indices=scores["indices"], indptr=scores["indptr"])
            if getattr(self._retriever, "nonoccurrence_array", None) is not None:
                arrays["nonoccurrence"] = self._retriever.nonoccurrence_array
            meta = {"num_docs": int(scores["num_docs"]), "vocab": self._retriever.vocab_dict,
                    "params": {"k1": self._retriever.k1, "b": self._retriever.b, "delta": self._retriever.delta,
                               "method": self._retriever.method, "idf_method": self._retriever.idf_method}}
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
        write_atomically(path, lambda handle: np.savez(handle, **arrays))

    @classmethod
    def load(cls, path: Path) -> "LexicalIndex":
        try:
            with np.load(path, allow_pickle=False) as saved:
                ids = saved["ids"].astype(np.int64)
                meta = json.loads(saved["meta"].tobytes().decode("utf-8"))
                if not meta:
                    return cls(ids, None)
                retriever = bm25s.BM25(**meta["params"])
                retriever.scores = {"data": saved["data"], "indices": saved["indices"], "indptr": saved["indptr"],
                                    "num_docs": meta["num_docs"]}
                retriever.vocab_dict = meta["vocab"]
                retriever.nonoccurrence_array = saved["nonoccurrence"] if "nonoccurrence" in saved else None
                return cls(ids, retriever)
        except Exception as exc:  # zip, json or key errors all mean the same: rebuild
            raise LexicalCorrupt(f"{path}: {exc}") from exc


def top_k(ids: np.ndarray, scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The `k` best (id, score) pairs with a positive score, best first."""
    if len(scores) == 0 or k <= 0:
        return []
    k = min(k, len(scores))
    best = np.argpartition(-scores, k - 1)[:k]
    best = best[np.argsort(-scores[best], kind="stable")]
    return [(int(ids[i]), float(scores[i])) for i in best if scores[i] > 0]
