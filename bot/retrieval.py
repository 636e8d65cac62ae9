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
from index.fusion import collapse_copies
from index.lexical import top_k
from index.query import QueryIntent, parse_query

log = logging.getLogger(__name__)

MODES = ("hybrid", "bm25", "dense")
POOL = 100  # candidates taken from each retriever
FILTERED_POOL = 2000  # a date or outlet filter needs a deeper pool to find enough that fit
# Hybrid score = cosine + LEXICAL_WEIGHT * BM25 / best BM25 of the question. Tuned on dev-qa.jsonl over the seed,
# gum-news and reuters-dev (0.05-0.15 all beat both retrievers alone on Recall@3 and MRR; see docs/measurements.md).
LEXICAL_WEIGHT = 0.1
FOCUS_BONUS = 0.05  # a follow-up prefers the article the conversation is about (cosine units)
RECENCY_BONUS = 0.1  # for "latest": how much the newest candidate gains over the oldest
TIE_BONUS = 0.005  # among equally good passages prefer the newer


@dataclass
class Candidate:
    passage_id: int
    article_id: int
    published: datetime | None
    score: float  # the fused, re-ranked score (comparable within one question only)
    dense: float  # cosine between question and passage
    lexical: float  # BM25 score
    copies: list["Candidate"] = field(default_factory=list)  # the same passage in other articles
    passage: Passage | None = None  # read from the database only for what is shown
    article: Article | None = None


@dataclass
class Retrieval:
    intent: QueryIntent
    query_vector: np.ndarray
    candidates: list[Candidate]
    newest: datetime | None = None  # the newest article's date when the question was asked


class Retriever:
    def __init__(self, corpus: Corpus):
        self.corpus = corpus
        self.store = corpus.store

    @property
    def catalog(self):
        return self.corpus.catalog

    def retrieve(self, question: str, k: int, exclude: set[int] | frozenset[int] = frozenset(),
                 focus_article: int | None = None, mode: str = "hybrid", now: datetime | None = None) -> Retrieval:
        """Up to `k` candidates, best first, with the copies of each folded into it."""
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r}; expected one of {MODES}")
        newest = self.catalog.newest()
        intent = parse_query(question, self.catalog.sources(), self.corpus_now(now, newest))
        text = intent.text or question
        query_vector = self.corpus.embed_query(text)
        pool = (FILTERED_POOL if intent.has_filters else POOL) + len(exclude)
        dense: dict[int, float] = {}
        lexical: dict[int, float] = {}
        lexical_scores = None
        if mode in ("hybrid", "dense"):
            dense = dict(self.corpus.dense_search(query_vector, pool))
        if mode in ("hybrid", "bm25"):
            bm25 = self.corpus.lexical  # once: a feed ingest may swap in a rebuilt index meanwhile
            lexical_scores = bm25.scores(text)
            lexical = dict(top_k(bm25.passage_ids, lexical_scores, pool))
        focus_ids = self._focus_passages(focus_article) if focus_article is not None else []
        ids = (set(dense) | set(lexical) | set(focus_ids)) - set(exclude)
        missing = [i for i in ids if i not in dense]
        if missing:  # every candidate gets its cosine, from the vectors in memory
            dense.update(zip(missing, (self.corpus.index.vectors(missing) @ query_vector).tolist()))
        if lexical_scores is not None and len(lexical_scores):
            for passage_id in focus_ids:
                position = bm25.position_of(passage_id)
                if position is not None:
                    lexical.setdefault(passage_id, float(lexical_scores[position]))
        best_lexical = max(lexical.values(), default=0.0) or 1.0
        if mode == "dense":
            fused = {i: dense[i] for i in ids}
        elif mode == "bm25":
            fused = {i: lexical.get(i, 0.0) / best_lexical for i in ids if lexical.get(i, 0.0) > 0 or i in focus_ids}
        else:
            fused = {i: dense[i] + LEXICAL_WEIGHT * lexical.get(i, 0.0) / best_lexical for i in ids}
        ranked = sorted(fused.items(), key=lambda pair: -pair[1])

        wanted = max(3 * k, 30)
        candidates = self._select(ranked, intent, wanted, dense, lexical)
        self._rerank(candidates, intent, focus_article)
        shown = self._fold_copies(candidates)[:k]
        self._read(shown)
        return Retrieval(intent, query_vector, shown, newest)

    @staticmethod
    def corpus_now(now: datetime | None, newest: datetime | None) -> datetime:
        """"Today" and "this week" are read against the newest article when the corpus is older than
        the clock (an archive), and against the clock for a live corpus."""
        now = now or datetime.now(timezone.utc)
        return min(now, newest) if newest is not None else now

    def _focus_passages(self, article_id: int) -> list[int]:
        """The article in focus is always a candidate: follow-ups like "what did the company say?" are
        about it even when the whole corpus has closer matches elsewhere."""
        return [p.id for p in self.store.article_passages(article_id)]

    def _select(self, fused: list[tuple[int, float]], intent: QueryIntent, wanted: int, dense: dict[int, float],
                lexical: dict[int, float]) -> list[Candidate]:
        """The best `wanted` candidates in fused order that fit the question's date and outlet (in memory)."""
        candidates: list[Candidate] = []
        for passage_id, score in fused:
            article_id = self.catalog.article_of(passage_id)
            facts = self.catalog.facts(article_id) if article_id is not None else None
            if facts is None or not intent.accepts(facts.published, facts.source):
                continue
            candidates.append(Candidate(passage_id, article_id, facts.published, score, dense.get(passage_id, 0.0),
                                        lexical.get(passage_id, 0.0)))
            if len(candidates) >= wanted:
                break
        return candidates

    def _read(self, shown: list[Candidate]) -> None:
        """Read the shown passages and the articles of them and their copies: the only SQL of a question."""
        passages = self.store.passages_by_id(c.passage_id for c in shown)
        everyone = shown + [copy for c in shown for copy in c.copies]
        articles = self.store.articles_by_id(c.article_id for c in everyone)
        for candidate in everyone:
            candidate.article = articles.get(candidate.article_id)
        for candidate in shown:
            candidate.passage = passages.get(candidate.passage_id)
        shown[:] = [c for c in shown if c.passage is not None and c.article is not None]

    @staticmethod
    def _rerank(candidates: list[Candidate], intent: QueryIntent, focus_article: int | None) -> None:
        dates = [c.published for c in candidates]
        known = [d.timestamp() for d in dates if d is not None]
        oldest, newest = (min(known), max(known)) if known else (0.0, 0.0)
        span = (newest - oldest) or 1.0
        for candidate, published in zip(candidates, dates):
            freshness = (published.timestamp() - oldest) / span if published is not None else 0.0
            if focus_article is not None and candidate.article_id == focus_article:
                candidate.score += FOCUS_BONUS
            candidate.score += (RECENCY_BONUS if intent.prefer_recent else TIE_BONUS) * freshness
        candidates.sort(key=lambda c: -c.score)

    def _fold_copies(self, candidates: list[Candidate]) -> list[Candidate]:
        """The same wire paragraph in several papers is shown once, "also carried by" the others."""
        by_id = {c.passage_id: c for c in candidates}
        ids = list(by_id)
        vectors = dict(zip(ids, self.corpus.index.vectors(ids)))
        groups = collapse_copies(ids, vectors, None, {c.passage_id: c.article_id for c in candidates})
        folded = []
        for kept, copies in groups:
            candidate = by_id[kept]
            candidate.copies = [by_id[c] for c in copies]
            folded.append(candidate)
        return folded
