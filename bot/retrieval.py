"""Hybrid retrieval over the corpus: BM25 and dense rankings fused, narrowed by date and outlet,
wire copies folded together, and the evidence the answerability rule needs.

The service asks for passages; this module decides which. `mode` runs the same pipeline with only one
retriever, so `briefbot eval --baseline` compares like with like.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from bot.corpus import Corpus
from bot.storage import Article, Passage
from index.fusion import collapse_copies, reciprocal_rank_fusion
from index.query import QueryIntent, parse_query

log = logging.getLogger(__name__)

MODES = ("hybrid", "bm25", "dense")
POOL = 100  # candidates taken from each retriever
FILTERED_POOL = 2000  # a date or outlet filter needs a deeper pool to find enough that fit
LEXICAL_WEIGHT = 1.0
DENSE_WEIGHT = 1.0
FOCUS_WEIGHT = 0.5  # the article in focus is searched too, its ranking fused with this weight
FOCUS_BONUS = 0.1  # and its passages get this much (in units of the best fused score)
RECENCY_BONUS = 0.25  # for "latest": how much the newest candidate gains over the oldest
TIE_BONUS = 0.01  # among equally good passages prefer the newer


@dataclass
class Candidate:
    passage: Passage
    article: Article
    score: float  # the fused, re-ranked score (comparable within one question only)
    dense: float  # cosine between question and passage
    lexical: float  # BM25 score
    copies: list["Candidate"] = field(default_factory=list)  # the same passage in other articles


@dataclass
class Retrieval:
    intent: QueryIntent
    query_vector: np.ndarray
    candidates: list[Candidate]


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


class Retriever:
    def __init__(self, corpus: Corpus):
        self.corpus = corpus
        self.store = corpus.store

    def known_sources(self) -> list[str]:
        return [source for source, _count, _newest in self.store.source_summary() if source != "unknown"]

    def retrieve(self, question: str, k: int, exclude: set[int] | frozenset[int] = frozenset(),
                 focus_article: int | None = None, mode: str = "hybrid", now: datetime | None = None) -> Retrieval:
        """Up to `k` candidates, best first, with the copies of each folded into it."""
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r}; expected one of {MODES}")
        intent = parse_query(question, self.known_sources(), now)
        text = intent.text or question
        query_vector = self.corpus.embed_query(text)
        pool = (FILTERED_POOL if intent.has_filters else POOL) + len(exclude)
        rankings, weights = [], []
        if mode in ("hybrid", "bm25"):
            rankings.append(self.corpus.lexical_search(text, pool))
            weights.append(LEXICAL_WEIGHT)
        if mode in ("hybrid", "dense"):
            rankings.append(self.corpus.dense_search(query_vector, pool))
            weights.append(DENSE_WEIGHT)
        if focus_article is not None:
            rankings.append(self._focus_ranking(focus_article, query_vector))
            weights.append(FOCUS_WEIGHT)
        fused = [(i, s) for i, s in reciprocal_rank_fusion(rankings, weights) if i not in exclude]
        lexical_scores = dict(rankings[0]) if mode in ("hybrid", "bm25") else {}

        wanted = max(3 * k, 30)
        candidates = self._load(fused, intent, wanted, query_vector, lexical_scores)
        self._rerank(candidates, intent, focus_article)
        return Retrieval(intent, query_vector, self._fold_copies(candidates)[:k])

    def _focus_ranking(self, article_id: int, query_vector: np.ndarray) -> list[tuple[int, float]]:
        """The focus article's own passages by closeness to the question: follow-ups like "what did the
        company say?" are about it even when the whole corpus has closer matches elsewhere."""
        scored = [
            (p.id, float(np.frombuffer(p.embedding, dtype=np.float32) @ query_vector))
            for p in self.store.article_passages(article_id) if p.embedding
        ]
        return sorted(scored, key=lambda pair: -pair[1])

    def _load(self, fused: list[tuple[int, float]], intent: QueryIntent, wanted: int, query_vector: np.ndarray,
              lexical_scores: dict[int, float]) -> list[Candidate]:
        """Fetch passages in fused order, keeping those that fit the question's date and outlet."""
        top = fused[0][1] if fused else 1.0
        candidates: list[Candidate] = []
        batch = wanted if not intent.has_filters else 200
        for offset in range(0, len(fused), batch):
            part = fused[offset : offset + batch]
            passages = self.store.passages_by_id(i for i, _ in part)
            articles = self.store.articles_by_id(p.article_id for p in passages.values())
            for passage_id, score in part:
                passage = passages.get(passage_id)
                if passage is None:
                    continue
                article = articles[passage.article_id]
                if not intent.accepts(_aware(article.published), article.source):
                    continue
                vector = np.frombuffer(passage.embedding, dtype=np.float32) if passage.embedding else None
                dense = float(vector @ query_vector) if vector is not None else 0.0
                candidates.append(Candidate(passage, article, score / top, dense, lexical_scores.get(passage_id, 0.0)))
            if len(candidates) >= wanted:
                break
        return candidates[:wanted]

    @staticmethod
    def _rerank(candidates: list[Candidate], intent: QueryIntent, focus_article: int | None) -> None:
        dates = [_aware(c.article.published) for c in candidates]
        known = [d.timestamp() for d in dates if d is not None]
        oldest, newest = (min(known), max(known)) if known else (0.0, 0.0)
        span = (newest - oldest) or 1.0
        for candidate, published in zip(candidates, dates):
            freshness = (published.timestamp() - oldest) / span if published is not None else 0.0
            if focus_article is not None and candidate.article.id == focus_article:
                candidate.score += FOCUS_BONUS
            candidate.score += (RECENCY_BONUS if intent.prefer_recent else TIE_BONUS) * freshness
        candidates.sort(key=lambda c: -c.score)

    @staticmethod
    def _fold_copies(candidates: list[Candidate]) -> list[Candidate]:
        """The same wire paragraph in several papers is shown once, "also carried by" the others."""
        by_id = {c.passage.id: c for c in candidates}
        vectors = {c.passage.id: np.frombuffer(c.passage.embedding, dtype=np.float32)
                   for c in candidates if c.passage.embedding}
        groups = collapse_copies(
            [c.passage.id for c in candidates], vectors, {c.passage.id: c.passage.text for c in candidates},
            {c.passage.id: c.article.id for c in candidates},
        )
        folded = []
        for kept, copies in groups:
            candidate = by_id[kept]
            candidate.copies = [by_id[c] for c in copies]
            folded.append(candidate)
        return folded
