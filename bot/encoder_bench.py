"""`briefbot encoders`: the ONNX variants against sentence-transformers fp32, in one process, on real passages.

It measures what decides `BRIEFBOT_ENCODER=auto`: speed (passages/s with length-sorted batches, one
question's latency) and quality (cosine to the reference; Recall@3 on dev-qa's answerable questions over
a dense FAISS Flat index of the passages of their articles plus distractors, scored by the README's rule).
A variant passes when its mean cosine is >= 0.98 and its Recall@3 is within 1 point of the reference's.

Timing is interleaved (chunk by chunk, encoders in rotating order) so a busy neighbour on a shared machine
slows every encoder alike instead of whichever happened to run at that moment.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from bot.evaluation import contains_answer, read_jsonl
from index.chunker import chunk_article
from index.embeddings import AUTO_ORDER, MIN_MEAN_COSINE, Encoder
from index.parsers import ParseFailure, parse_path

log = logging.getLogger(__name__)

MAX_RECALL_DROP = 0.01  # "within 1 point of Recall@3"
K = 3
OVERLAP_K = 10


@dataclass
class BenchCorpus:
    """Passages (referenced articles first, then distractors) and the answerable questions."""

    passages: list[str]
    referenced_passages: int
    questions: list[dict]
    all_questions: list[str]


@dataclass
class EncoderResult:
    key: str
    name: str
    load_seconds: float
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    vectors: np.ndarray | None = None
    question_vectors: np.ndarray | None = None


def load_corpus(shared_data: Path, qa_file: Path, total_passages: int, max_words: int, seed: int = 7) -> BenchCorpus:
    """The articles dev-qa refers to, cut as ingestion cuts them, plus random distractor articles."""
    items = read_jsonl(qa_file)
    answerable = [q for q in items if q.get("answer") and q.get("article_id") and q.get("type") != "unanswerable"]
    wanted = {q["article_id"] for q in answerable}
    articles: dict[str, str] = {}
    for folder in ("seed", "gum-news", "reuters-dev"):
        for path in sorted((shared_data / folder).iterdir()):
            if path.name.lower().startswith(("license", "readme")):
                continue
            for parsed in parse_path(path):
                if isinstance(parsed, ParseFailure):
                    continue
                key = "seed" if folder == "seed" else (parsed.external_id or parsed.origin)
                articles[key] = parsed.text
    missing = wanted - articles.keys()
    if missing:
        log.warning("%d article(s) named by the questions are not in the data: %s", len(missing), sorted(missing)[:5])

    def cut(text: str) -> list[str]:
        return [c.text for c in chunk_article(text, max_words=max_words)]

    passages = [p for key in sorted(wanted & articles.keys()) for p in cut(articles[key])]
    referenced = len(passages)
    others = sorted(articles.keys() - wanted)
    random.Random(seed).shuffle(others)
    for key in others:
        if len(passages) >= total_passages:
            break
        passages.extend(cut(articles[key]))
    return BenchCorpus(passages[: max(total_passages, referenced)], referenced,
                       [q for q in answerable if q["article_id"] in articles], [q["question"] for q in items])


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def measure(encoders: dict[str, Callable[[], Encoder]], corpus: BenchCorpus, chunk: int = 256,
            rounds: int = 5, trials: int = 5, distractors: int = 3000, reference: str = "torch") -> dict:
    """Load each encoder, embed everything with each (interleaved), then compare with `reference`.

    Retrieval runs `trials` times, each over the questions' own passages plus a different random draw
    of `distractors` passages from the rest: with 64 questions one question is 1.6 points of Recall@3,
    so a single draw decides the bar by luck; the bar is applied to the hits pooled over all draws.
    """
    import faiss

    loaded: dict[str, Encoder] = {}
    results: dict[str, EncoderResult] = {}
    for key, factory in encoders.items():
        started = time.perf_counter()
        encoder = factory()
        loaded[key] = encoder
        results[key] = EncoderResult(key, encoder.name, time.perf_counter() - started)
        encoder.encode(corpus.passages[: chunk // 4] or ["warm-up"])  # first-call allocations out of the timing
        encoder.encode(["warm up on a question?"])
    keys = list(loaded)

    order = list(range(len(corpus.passages)))
    random.Random(11).shuffle(order)  # chunks of mixed lengths, like an ingest batch; each encoder sorts within
    parts: dict[str, list] = {key: [] for key in keys}
    for n, start in enumerate(range(0, len(order), chunk)):
        rows = order[start : start + chunk]
        texts = [corpus.passages[i] for i in rows]
        for key in keys[n % len(keys):] + keys[: n % len(keys)]:
            t0 = time.perf_counter()
            vectors = loaded[key].encode(texts)
            results[key].seconds += time.perf_counter() - t0
            parts[key].append((rows, vectors))
        log.info("embedded %d/%d passages with each encoder", min(start + chunk, len(order)), len(order))
    for key in keys:
        out = np.empty((len(corpus.passages), loaded[key].dim), dtype=np.float32)
        for rows, vectors in parts[key]:
            out[rows] = vectors
        results[key].vectors = out

    for r in range(rounds):  # blocks per encoder: one's spinning thread pool must not time the next one's call
        for key in keys[r % len(keys):] + keys[: r % len(keys)]:
            for question in corpus.all_questions:
                t0 = time.perf_counter()
                loaded[key].encode([question])
                results[key].latencies_ms.append((time.perf_counter() - t0) * 1000)
    for key in keys:
        results[key].question_vectors = loaded[key].encode([q["question"] for q in corpus.questions])

    pool = range(corpus.referenced_passages, len(corpus.passages))
    draw = min(distractors, len(pool))
    draws = [list(range(corpus.referenced_passages)) + sorted(random.Random(100 + t).sample(pool, draw))
             for t in range(max(1, trials))]
    retrieved = {key: [_retrieve(faiss, results[key], corpus, rows) for rows in draws] for key in keys}

    base = results[reference]
    n_q = len(corpus.questions)
    base_hits = [h for h, _ in retrieved[reference]]
    base_recall = sum(base_hits) / (n_q * len(draws))
    report = {"passages": len(corpus.passages), "referenced_passages": corpus.referenced_passages,
              "questions": n_q, "latency_questions": len(corpus.all_questions) * rounds, "chunk": chunk,
              "trials": len(draws), "index_passages": len(draws[0]), "reference": reference, "encoders": {}}
    for key in keys:
        res = results[key]
        hits = [h for h, _ in retrieved[key]]
        recall = sum(hits) / (n_q * len(draws))
        cos = (res.vectors * base.vectors).sum(1)
        qcos = (res.question_vectors * base.question_vectors).sum(1)
        overlap = float(np.mean([len(set(a) & set(b)) / OVERLAP_K
                                 for (_, tops), (_, base_tops) in zip(retrieved[key], retrieved[reference])
                                 for a, b in zip(tops, base_tops)]))
        entry = {
            "name": res.name, "load_seconds": round(res.load_seconds, 2),
            "passages_per_second": round(len(corpus.passages) / res.seconds, 1),
            "speedup": round(base.seconds / res.seconds, 2),
            "question_ms_p50": round(_percentile(res.latencies_ms, 50), 2),
            "question_ms_p99": round(_percentile(res.latencies_ms, 99), 2),
            "cosine_min": round(float(cos.min()), 4), "cosine_mean": round(float(cos.mean()), 4),
            "question_cosine_min": round(float(qcos.min()), 4),
            f"recall@{K}": round(recall, 4), "hits_per_trial": hits,
            "recall_ratio": round(recall / base_recall, 3) if base_recall else None,
            "worst_trial_points": round(min((h - b) / n_q for h, b in zip(hits, base_hits)) * 100, 2),
            f"top{OVERLAP_K}_overlap": round(overlap, 3),
        }
        entry["passes"] = bool(entry["cosine_mean"] >= MIN_MEAN_COSINE and recall >= base_recall - MAX_RECALL_DROP - 1e-9)
        report["encoders"][key] = entry
    passing = [k for k in keys if k != reference and report["encoders"][k]["passes"]]
    report["fastest_passing"] = max(passing, key=lambda k: report["encoders"][k]["passages_per_second"], default=reference)
    report["auto_order"] = list(AUTO_ORDER)
    return report


def _retrieve(faiss, result: EncoderResult, corpus: BenchCorpus, rows: list[int]) -> tuple[int, list[list[int]]]:
    """Hits at rank <= K, and each question's top passages (for overlap), over a Flat index of `rows`."""
    index = faiss.IndexFlatIP(result.vectors.shape[1])
    index.add(result.vectors[rows])
    _, found = index.search(result.question_vectors, OVERLAP_K)
    tops = [[rows[i] for i in row if i >= 0] for row in found]
    hits = sum(any(contains_answer(corpus.passages[i], q["answer"]) for i in top[:K])
               for q, top in zip(corpus.questions, tops))
    return hits, tops


def format_table(report: dict) -> str:
    """The report as the plain-text table docs/encoders.md carries."""
    n_q, trials = report["questions"], report["trials"]
    lines = [
        f"{report['passages']} passages embedded ({report['referenced_passages']} from the questions' articles); "
        f"{report['latency_questions']} single-question encodes; Recall@3 over {n_q} answerable dev-qa questions x "
        f"{trials} indexes of {report['index_passages']} passages (their articles + a random draw of distractors)",
        "",
        f"{'encoder':<10} {'load s':>6} {'pass/s':>7} {'speed':>6} {'q p50 ms':>8} {'q p99 ms':>8} {'cos min':>7} "
        f"{'cos mean':>8} {'R@3':>6} {'ratio':>6} {'worst':>6} {'top10':>6}  hits per index  bar",
    ]
    for key, e in report["encoders"].items():
        bar = "reference" if key == report["reference"] else ("pass" if e["passes"] else "FAIL")
        lines.append(
            f"{key:<10} {e['load_seconds']:>6.2f} {e['passages_per_second']:>7.1f} {e['speedup']:>5.2f}x "
            f"{e['question_ms_p50']:>8.2f} {e['question_ms_p99']:>8.2f} {e['cosine_min']:>7.4f} {e['cosine_mean']:>8.4f} "
            f"{e['recall@3']:>6.3f} {e['recall_ratio']:>6.3f} {e['worst_trial_points']:>+6.1f} {e['top10_overlap']:>6.3f}  "
            f"{' '.join(str(h) for h in e['hits_per_trial']):<14}  {bar}")
    lines += ["", "speed: vs torch in this run; worst: Recall@3 points vs torch on the worst index; top10: share of "
              "torch's top-10 passages also in this encoder's top-10",
              f"bar: mean cosine >= {MIN_MEAN_COSINE} and Recall@3 (pooled over the indexes) within "
              f"{MAX_RECALL_DROP * 100:.0f} point of {report['reference']}",
              f"fastest variant passing this check: {report['fastest_passing']}"]
    built_in = report["auto_order"][0] if report["auto_order"] else report["reference"]
    if report["fastest_passing"] != built_in:
        lines.append(f"auto tries {built_in} first (index/embeddings.py AUTO_ORDER): the default must also hold "
                     "Recall@3 in the full-corpus hybrid eval; docs/encoders.md has both measurements")
    else:
        lines.append(f"auto tries {built_in} first (index/embeddings.py AUTO_ORDER), as this check says")
    return "\n".join(lines)
