"""Measurements for digests: ROUGE of the key sentences against human summaries, and the composition benchmark.

ROUGE-1/2/L F1 as in Lin (2004): lower-cased alphanumeric tokens, no stemming, no stop-word removal; with
several human summaries per article the scores are averaged over them, then over articles.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

from bot.digest import _is_sentence, key_sentences, topic_key
from bot.storage import bytes_to_matrix
from index.chunker import split_sentences

_TOKEN = re.compile(r"[a-z0-9]+")
_SUMMARY_TAG = re.compile(r"^\(\w+\)\s*")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _f1(overlap: int, candidate: int, reference: int) -> float:
    if not overlap or not candidate or not reference:
        return 0.0
    precision, recall = overlap / candidate, overlap / reference
    return 2 * precision * recall / (precision + recall)


def rouge_n(candidate: list[str], reference: list[str], n: int) -> float:
    grams = lambda seq: Counter(tuple(seq[i : i + n]) for i in range(len(seq) - n + 1))  # noqa: E731
    c, r = grams(candidate), grams(reference)
    return _f1(sum((c & r).values()), sum(c.values()), sum(r.values()))


def _lcs(a: list[str], b: list[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(candidate: list[str], reference: list[str]) -> float:
    return _f1(_lcs(candidate, reference), len(candidate), len(reference))


def rouge(candidate: str, references: Sequence[str]) -> dict[str, float]:
    """ROUGE-1/2/L F1 of one text against the mean over its references."""
    cand = tokens(candidate)
    scores = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    refs = [tokens(_SUMMARY_TAG.sub("", r)) for r in references if r and r.strip()]
    for ref in refs:
        scores["rouge1"] += rouge_n(cand, ref, 1) / len(refs)
        scores["rouge2"] += rouge_n(cand, ref, 2) / len(refs)
        scores["rougeL"] += rouge_l(cand, ref) / len(refs)
    return scores


@dataclass
class RougeReport:
    articles: int
    systems: dict[str, dict[str, float]]
    mean_sentences: float
    paired: dict[str, list[int]]  # per metric: articles where key sentences beat / tie / lose to the baseline

    def to_json(self) -> dict:
        return {"articles": self.articles, "mean_sentences_chosen": round(self.mean_sentences, 3),
                "systems": {k: {m: round(v, 4) for m, v in s.items()} for k, s in self.systems.items()},
                "vs_lead_same_count": {m: dict(zip(("better", "equal", "worse"), v)) for m, v in self.paired.items()}}

    def table(self) -> str:
        lines = [f"{'system':34s} ROUGE-1  ROUGE-2  ROUGE-L", "-" * 61]
        for name, s in self.systems.items():
            lines.append(f"{name:34s} {s['rouge1']:.4f}   {s['rouge2']:.4f}   {s['rougeL']:.4f}")
        lines.append(f"({self.articles} articles; key sentences chosen per article: {self.mean_sentences:.2f} on average)")
        lines.append("key sentences vs lead, same count, article by article (better/equal/worse): " + ", ".join(
            f"{name} {b}/{e}/{w}" for name, (b, e, w) in self.paired.items()))
        return "\n".join(lines)


def evaluate_key_sentences(store, items: list[dict], max_sentences: int = 2) -> RougeReport:
    """Key sentences of each article with `summaries` (stored, with embeddings) against those summaries.

    Baselines: the article's first sentences, as many as the key sentences chosen ("lead, same count"),
    and the first one and two. Sentences are the chunker's, after the same filter (no date lines).
    """
    systems: dict[str, list[dict[str, float]]] = {"key sentences (digest)": [], "lead, same count (baseline)": [],
                                                   "lead-1": [], "lead-2": []}
    counts = []
    for item in items:
        summaries = item.get("summaries") or []
        article = store.find_article(f"id:{item['id']}") if item.get("id") else None
        if not summaries or article is None:
            continue
        passages = [p for p in store.article_passages(article.id) if p.embedding is not None]
        if not passages:
            continue
        texts = [p.text for p in passages]
        chosen = key_sentences(texts, bytes_to_matrix([p.embedding for p in passages], len(passages[0].embedding) // 4),
                               [p.position for p in passages], max_sentences=max_sentences)
        ours = " ".join(texts[i][s:e] for i, (s, e) in chosen)
        lead = [t[s:e] for t in texts for s, e in split_sentences(t) if _is_sentence(t[s:e])]
        counts.append(len(chosen))
        systems["key sentences (digest)"].append(rouge(ours, summaries))
        systems["lead, same count (baseline)"].append(rouge(" ".join(lead[: len(chosen)]), summaries))
        systems["lead-1"].append(rouge(" ".join(lead[:1]), summaries))
        systems["lead-2"].append(rouge(" ".join(lead[:2]), summaries))
    n = len(counts)
    metrics = ("rouge1", "rouge2", "rougeL")
    means = {name: {m: (sum(s[m] for s in scores) / n if n else 0.0) for m in metrics}
             for name, scores in systems.items()}
    paired = {}
    for m in metrics:
        pairs = list(zip(systems["key sentences (digest)"], systems["lead, same count (baseline)"]))
        paired[m] = [sum(1 for a, b in pairs if a[m] > b[m] + 1e-9), sum(1 for a, b in pairs if abs(a[m] - b[m]) <= 1e-9),
                     sum(1 for a, b in pairs if a[m] < b[m] - 1e-9)]
    return RougeReport(n, means, sum(counts) / n if n else 0.0, paired)


# --- the composition benchmark ----------------------------------------------------------------------------------
TOPIC_POOL = [
    "oil prices", "coffee", "iran", "iraq war", "debt talks", "interest rates", "the dollar", "japan trade",
    "gold", "computers", "banks", "takeover bids", "strikes", "grain exports", "sugar", "opec", "brazil debt",
    "stock markets", "inflation", "budget deficit", "steel", "airlines", "shipping", "cocoa", "copper",
    "mergers", "earnings", "china", "soviet union", "europe farm policy", "gulf", "philippines", "tax cuts",
    "natural gas", "telecommunications", "insurance", "bonds", "currency markets", "wheat", "rubber",
    "elections", "reagan", "tin", "fishing", "car makers", "chemicals", "mining", "housing", "retail sales",
    "unemployment",
]


def topic_sets(count: int, seed: int = 7) -> list[list[str]]:
    """`count` distinct topic sets: the empty set (everything) and 1-3 topics drawn from TOPIC_POOL."""
    possible = 1 + sum(math.comb(len(TOPIC_POOL), k) for k in (1, 2, 3))
    if count > possible:
        raise ValueError(f"at most {possible:,} distinct topic sets can be drawn from {len(TOPIC_POOL)} topics")
    rng = random.Random(seed)
    sets: list[list[str]] = [[]]
    seen = {topic_key([])}
    while len(sets) < count:
        chosen = rng.sample(TOPIC_POOL, rng.randint(1, 3))
        if topic_key(chosen) not in seen:
            seen.add(topic_key(chosen))
            sets.append(chosen)
    return sets


def benchmark(service, subscribers: int, sets: int, now: datetime, baseline_sample: int) -> dict:
    """Compose for `subscribers` chats over `sets` topic sets once per set, beside composing per subscriber."""
    topics = topic_sets(sets)
    chats = [(chat_id, topics[chat_id % len(topics)]) for chat_id in range(subscribers)]
    service.composer.embed_topics(["warm-up"])  # loading the model is not composing
    start = time.perf_counter()
    digests = service.group_and_compose(chats, now)
    grouped = time.perf_counter() - start
    editions = len({id(d) for d in digests.values()})

    sample = chats[: max(1, min(baseline_sample, subscribers))]
    start = time.perf_counter()
    for _, chat_topics in sample:  # what a naive fan-out does: everything again for every subscriber
        since, until = service.composer.window(now)
        pool = service.composer.pool(since, until)
        service.composer.compose(pool, chat_topics, service.composer.embed_topics(chat_topics), since)
    per_subscriber = (time.perf_counter() - start) / len(sample)
    stories = sum(len(d.stories) for d in {id(d): d for d in digests.values()}.values())
    return {
        "subscribers": subscribers, "topic_sets": len(topics), "editions": editions, "stories_in_editions": stories,
        "grouped_seconds": round(grouped, 3), "baseline_sample": len(sample),
        "baseline_seconds_per_subscriber": round(per_subscriber, 4),
        "baseline_seconds_extrapolated": round(per_subscriber * subscribers, 1),
        "speedup": round(per_subscriber * subscribers / grouped, 1) if grouped else None,
    }


def default_now(store) -> datetime:
    """A minute after the newest article, so a benchmark or preview on an old corpus has a full window."""
    newest = store.latest_articles(1)
    if newest and newest[0].published:
        value = newest[0].published
        value = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return value + timedelta(minutes=1)
    return datetime.now(timezone.utc)


def read_items(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
