"""Combining lexical and dense rankings into one list, and folding wire copies into one result."""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

RRF_K = 60


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[tuple[int, float]]], weights: Sequence[float] | None = None, k: int = RRF_K
) -> list[tuple[int, float]]:
    """Fuse ranked (id, score) lists by reciprocal rank: robust to the two scores' different scales."""
    weights = weights or [1.0] * len(rankings)
    fused: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, (item, _score) in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + weight / (k + rank)
    return sorted(fused.items(), key=lambda pair: -pair[1])


_NON_WORD = re.compile(r"\W+")


def text_key(text: str) -> str:
    """Passages equal but for case, spacing and punctuation are the same text."""
    return _NON_WORD.sub(" ", text.lower()).strip()


def collapse_copies(
    candidates: Sequence[int], vectors: dict[int, np.ndarray], texts: dict[int, str] | None, articles: dict[int, int],
    threshold: float = 0.95,
) -> list[tuple[int, list[int]]]:
    """Keep the first of each group of near-identical passages from different articles (same text when
    `texts` are given, or embeddings at least `threshold` alike).

    Returns (kept passage, [its copies]) in the candidates' order. Passages of the same article are never
    merged: an article that repeats itself is its own business.
    """
    kept: list[tuple[int, list[int]]] = []
    for candidate in candidates:
        key = text_key(texts[candidate]) if texts else None
        vector = vectors.get(candidate)
        for passage, copies in kept:
            if articles[passage] == articles[candidate]:
                continue
            same_text = key is not None and text_key(texts[passage]) == key
            close = vector is not None and passage in vectors and float(vectors[passage] @ vector) >= threshold
            if same_text or close:
                copies.append(candidate)
                break
        else:
            kept.append((candidate, []))
    return kept
