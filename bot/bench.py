"""`briefbot bench`: speed and size, each figure beside a baseline measured in the same process.

The corpus comes from ../shared/data/reuters-dev. Embedding 100k passages takes most of an hour on two
cores, so the large corpora are built from a base of really embedded passages repeated with light
perturbation (text: a marker in front; vector: the base vector plus small noise, renormalised) and written
straight to the database — retrieval cost depends on the counts and the vectors' spread, not on reading
every story.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import faiss
import numpy as np
from sqlalchemy import insert

from bot.app import Briefbot
from bot.settings import Settings
from bot.storage import Article, Passage, bytes_to_matrix, utcnow, vector_to_bytes
from index.chunker import chunk_article, split_sentences
from index.sentence_vectors import encode_passages
from index.sentence_vectors import from_bytes as sentences_from_bytes
from index.sentence_vectors import to_bytes as sentences_to_bytes
from index.vectors import one_omp_thread
from index.parsers import parse_path

log = logging.getLogger(__name__)

QUESTIONS = [
    "why did coffee prices fall?", "what did the fed chairman say about interest rates?",
    "how much did the company earn in the first quarter?", "who is bidding for the oil company?",
    "why are farmers worried about the wheat harvest?", "what happened to the dollar against the yen?",
    "did opec agree to cut output?", "what did the bank of japan do?", "why did shares of the airline drop?",
    "how many tonnes of sugar will china import?", "who said the merger would be blocked?",
    "what is the outlook for copper?", "why did the union call a strike?", "what did reagan say about trade?",
]


@dataclass
class Base:
    """Really embedded passages the synthetic corpora are made from."""

    articles: list[dict]
    texts: list[str]
    article_of: list[int]  # index into articles
    vectors: np.ndarray
    sentences: list[bytes | None]  # each passage's stored sentence vectors (index/sentence_vectors.py)


def reuters_articles(shared: Path, limit: int) -> list:
    path = shared / "reuters-dev" / "articles.jsonl"
    found = []
    for item in parse_path(path):
        if hasattr(item, "text"):
            found.append(item)
            if len(found) >= limit:
                break
    return found


def percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50_ms": round(pick(0.5) * 1000, 2), "p95_ms": round(pick(0.95) * 1000, 2),
            "p99_ms": round(pick(0.99) * 1000, 2)}


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def measure_ingest(shared: Path, encoder, reference, articles: int) -> tuple[dict, Base]:
    """End-to-end ingest (parse, split, speakers, embed, store, index) with the shipped encoder vs the bare
    reference encoder (plain sentence-transformers fp32) on the same passages."""
    parsed = reuters_articles(shared, articles)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "sample.jsonl"
        with source.open("w", encoding="utf-8") as handle:
            for article in parsed:
                handle.write(json.dumps({"id": article.external_id, "title": article.title, "text": article.text,
                                         "source": article.source, "published": article.published.isoformat()
                                         if article.published else None}) + "\n")
        app = Briefbot.open(Settings(BRIEFBOT_DATA_DIR=Path(tmp) / "data", DATABASE_URL=None), encoder=encoder)
        start = time.perf_counter()
        report = app.corpus.ingest_paths([source])
        pipeline = time.perf_counter() - start
        texts, article_of = [], []
        for number, article in enumerate(parsed):
            for chunk in chunk_article(article.text):
                texts.append(chunk.text)
                article_of.append(number)
        start = time.perf_counter()
        reference.encode(texts)
        bare = time.perf_counter() - start
        vectors, sentences = encode_passages(encoder, texts, [split_sentences(text) for text in texts])
        app.corpus.store.engine.dispose()
    result = {
        "passages": report.passages, "pipeline_passages_per_s": round(report.passages / pipeline, 1),
        "bare_reference_encoder_passages_per_s": round(len(texts) / bare, 1),
        "ratio_to_bare_reference": round((report.passages / pipeline) / (len(texts) / bare), 2),
    }
    base_articles = [{"title": a.title, "source": a.source, "published": a.published} for a in parsed]
    return result, Base(base_articles, texts, article_of, vectors,
                        [sentences_to_bytes(s) for s in sentences])


def build_corpus(data_dir: Path, base: Base, passages: int, encoder) -> Briefbot:
    """A corpus of `passages` passages made from the base (copies perturbed), written with bulk inserts."""
    # Its own SQLite file, whatever DATABASE_URL says: the bulk insert below gives explicit ids, and a benchmark
    # must never write into the bot's real database.
    settings = Settings(BRIEFBOT_DATA_DIR=data_dir, DATABASE_URL=None)
    app = Briefbot.open(settings, encoder=encoder, sync_index=False)
    rng = np.random.default_rng(7)
    copies = -(-passages // len(base.texts))
    start_date = datetime(1987, 1, 1, tzinfo=timezone.utc)
    article_id = written = 0
    # One copy of the base at a time, so a million passages never sit in memory as rows.
    for copy in range(copies):
        article_rows, passage_rows = [], []
        ids_for_base: dict[int, int] = {}
        for number, article in enumerate(base.articles):
            article_id += 1
            ids_for_base[number] = article_id
            published = (article["published"] or start_date) + timedelta(days=copy)
            article_rows.append({"id": article_id, "article_key": f"bench:{article_id}", "title": article["title"],
                                 "source": article["source"], "published": published, "text": "",
                                 "content_hash": str(article_id), "ingested_at": utcnow()})
        noise = rng.normal(scale=0.015, size=base.vectors.shape).astype(np.float32) if copy else 0.0
        vectors = base.vectors + noise
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        for number, (text, owner) in enumerate(zip(base.texts, base.article_of)):
            if written >= passages:
                break
            written += 1
            marked = text if copy == 0 else f"[{copy}] {text}"  # a prefix keeps the sentences as they were
            passage_rows.append({"article_id": ids_for_base[owner], "position": number, "text": marked, "start": 0,
                                 "end": len(marked), "speakers_json": "[]", "embedding": vector_to_bytes(vectors[number]),
                                 "sentence_vectors": base.sentences[number]})
        # The last copy may be cut short: an article without passages would still be "newest" and leave the
        # digest benchmark's window empty.
        used = {row["article_id"] for row in passage_rows}
        with app.corpus.store.engine.begin() as connection:
            connection.execute(insert(Article), [row for row in article_rows if row["id"] in used])
            connection.execute(insert(Passage), passage_rows)
    app.corpus.reindex()
    app.corpus.catalog.invalidate()
    return app


def stored_vectors(app: Briefbot) -> tuple[list[int], np.ndarray]:
    ids: list[int] = []
    blobs: list[bytes] = []
    for batch_ids, batch_blobs in app.corpus.store.iter_embeddings(None):
        for passage_id, blob in zip(batch_ids, batch_blobs):
            if blob is not None:
                ids.append(passage_id)
                blobs.append(blob)
    return ids, bytes_to_matrix(blobs, app.corpus.index.dim)


def measure_answers(app: Briefbot, reference, rounds: int) -> dict:
    """Service-level answer latency (question -> rendered Telegram HTML) vs encode + FAISS Flat search alone."""
    from handlers.render import reply_messages
    from bot.service import Reply

    ids, vectors = stored_vectors(app)  # as stored, not as the index keeps them (IVF-SQ8 keeps 8-bit codes)
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    for question in QUESTIONS[:3]:  # warm caches (catalog, tokenizer) as a running bot has them
        app.service.ask(question)
        reference.encode([question])
    # Each side in a block of its own: torch's OpenMP threads spin after every call and would slow whatever runs
    # next on two cores. The baseline searches with one OpenMP thread too, as the bot does: a team of two costs
    # more than a single query's search (index/vectors.py), and a handicapped baseline would flatter the ratio.
    service_times, baseline_times = [], []
    for round_ in range(rounds):
        for question in QUESTIONS:
            start = time.perf_counter()
            answer = app.service.ask(question)
            reply_messages(Reply("answer" if answer.answered else "declined", "", answer))
            service_times.append(time.perf_counter() - start)
    for round_ in range(rounds):
        for question in QUESTIONS:
            start = time.perf_counter()
            with one_omp_thread():
                flat.search(reference.encode([question]), 10)
            baseline_times.append(time.perf_counter() - start)
    service, baseline = percentiles(service_times), percentiles(baseline_times)
    index_path = app.corpus.index_path
    stages = measure_stages(app, rounds)
    recall = recall_at_10(app, flat, ids, vectors)
    return {
        "passages": len(app.corpus.index), "index_kind": app.corpus.index.kind,
        "service": service, "baseline_encode_plus_flat": baseline,
        "p50_ratio_to_baseline": round(service["p50_ms"] / baseline["p50_ms"], 2) if baseline["p50_ms"] else None,
        "stages_p50_ms": stages, "recall_at_10_vs_flat": recall,
        "index_bytes_per_passage": round(index_path.stat().st_size / max(1, len(app.corpus.index)), 1),
        "peak_rss_mb": peak_rss_mb(),
    }


# Linux carries the parent's peak RSS into a child's ru_maxrss across fork+exec, so the measured process is
# started by this small launcher and its rusage read there (the launcher's own peak is a few MB).
_LAUNCHER = """
import resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)
print(code, time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _run_measured(command: list[str], env: dict, stdin: str = "") -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one fresh process."""
    done = subprocess.run([sys.executable, "-c", _LAUNCHER, *command], env=env, input=stdin, capture_output=True,
                          text=True)
    code, seconds, peak_kb = done.stdout.split()
    if done.returncode or int(code):
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    return float(seconds), round(int(peak_kb) / 1024, 1)


def recall_at_10(app: Briefbot, flat, ids: list[int], vectors: np.ndarray, queries: int = 300) -> float:
    """Share of exact search's top 10 that the served index also finds, over the benchmark questions and a fixed
    sample of stored passages' vectors used as queries. A served passage counts when its exact cosine reaches
    the exact 10th best (less 1e-5): wire copies share identical vectors, and which of two equals is "the" 10th
    is arbitrary (the tie rule of ann-benchmarks)."""
    rng = np.random.default_rng(3)
    sample = vectors[rng.choice(len(vectors), size=min(queries, len(vectors)), replace=False)]
    asked = np.vstack([app.corpus.encoder.encode(QUESTIONS), sample]).astype(np.float32)
    row_of = {passage_id: row for row, passage_id in enumerate(ids)}
    with one_omp_thread():
        exact_scores, exact_rows = flat.search(asked, 10)
    found = total = 0
    for query, scores, rows in zip(asked, exact_scores, exact_rows):
        wanted = int((rows >= 0).sum())
        if not wanted:
            continue
        tenth = float(scores[wanted - 1]) - 1e-5
        served = [passage_id for passage_id, _ in app.corpus.index.search(query, wanted)]
        found += sum(1 for passage_id in served if float(vectors[row_of[passage_id]] @ query) >= tenth)
        total += wanted
    return round(found / max(1, total), 3)


def measure_stages(app: Briefbot, rounds: int) -> dict:
    """Where an answer's time goes: the question's vector, the vector search, the bold sentence of the shown
    passages (p50 of each alone; the rest is BM25, fusion, the database and rendering)."""
    from index.highlight import best_sentence_spans

    timings: dict[str, list[float]] = {"encode_question": [], "vector_search": [], "bold_sentence": []}
    shown = {}
    for question in QUESTIONS:
        ids = [r.passage_id for r in app.service.ask(question).results]
        stored = app.corpus.store.passages_by_id(ids)
        shown[question] = ([stored[i].text for i in ids],
                           [sentences_from_bytes(stored[i].sentence_vectors, app.corpus.index.dim) for i in ids])
    for _ in range(rounds):
        for question in QUESTIONS:
            start = time.perf_counter()
            vector = app.corpus.embed_query(question)
            timings["encode_question"].append(time.perf_counter() - start)
            start = time.perf_counter()
            app.corpus.index.search(vector, 100)
            timings["vector_search"].append(time.perf_counter() - start)
            start = time.perf_counter()
            texts, sentences = shown[question]
            best_sentence_spans(question, vector, texts, app.corpus.highlight_encoder, sentences)
            timings["bold_sentence"].append(time.perf_counter() - start)
    return {name: round(statistics.median(values) * 1000, 2) for name, values in timings.items()}


def measure_cold_start(data_dir: Path, models_dir: Path) -> dict:
    """A fresh process answering one question, vs a fresh process that only loads the model and encodes; and
    the peak RSS of a fresh process serving every benchmark question (`briefbot chat`, the terminal bot).

    The exported ONNX model is shared from `models_dir`: a restart finds it cached, and exporting it is a
    one-off of installation, not of start-up."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "BRIEFBOT_DATA_DIR": str(data_dir),
           "BRIEFBOT_MODELS_DIR": str(models_dir)}
    env.pop("DATABASE_URL", None)  # the benchmark corpus is the SQLite file in data_dir
    briefbot, _ = _run_measured([sys.executable, "-m", "bot.cli", "ask", "--json", QUESTIONS[0]], env)
    script = ("from index.embeddings import SentenceTransformerEncoder as E; E().encode(['why did coffee fall?'])")
    baseline, _ = _run_measured([sys.executable, "-c", script], env)
    _, serving_rss = _run_measured([sys.executable, "-m", "bot.cli", "chat"], env,
                                   stdin="\n".join(QUESTIONS + ["more"] * 3) + "\n")
    return {"first_answer_s": round(briefbot, 2), "baseline_model_load_and_encode_s": round(baseline, 2),
            "ratio": round(briefbot / baseline, 2), "serving_peak_rss_mb": serving_rss}


def measure_digests(app: Briefbot, subscribers: int, topic_sets: int) -> dict:
    from bot import digest_eval

    now = digest_eval.default_now(app.corpus.store)
    result = digest_eval.benchmark(app.digests, subscribers, topic_sets, now, baseline_sample=20)
    if not result["stories_in_editions"]:
        raise RuntimeError(f"the digest benchmark composed only empty editions (window ending {now}): it timed nothing")
    return result


def run(shared: Path, encoder, reference, sizes: list[int], ingest_articles: int, rounds: int, subscribers: int,
        topic_sets: int, models_dir: Path) -> dict:
    """Every measurement; `reference` is plain sentence-transformers fp32, the baseline of each."""
    report: dict = {"encoder": encoder.name, "reference": reference.name}
    report["ingest"], base = measure_ingest(shared, encoder, reference, ingest_articles)
    report["answers"] = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            data_dir = Path(tmp) / f"corpus-{size}"
            app = build_corpus(data_dir, base, size, encoder)
            answers = measure_answers(app, reference, rounds)
            answers["fresh_process"] = measure_cold_start(data_dir, models_dir)
            report["answers"].append(answers)
            if size == sizes[0]:
                report["digests"] = measure_digests(app, subscribers, topic_sets)
            app.corpus.store.engine.dispose()
    return report


def render(report: dict) -> str:
    lines = [f"encoder: {report['encoder']} (baseline: {report['reference']})"]
    ingest = report["ingest"]
    lines.append(f"ingest: {ingest['pipeline_passages_per_s']} passages/s end to end vs "
                 f"{ingest['bare_reference_encoder_passages_per_s']} bare reference encoder "
                 f"({ingest['ratio_to_bare_reference']}x), {ingest['passages']} passages")
    for row in report["answers"]:
        s, b = row["service"], row["baseline_encode_plus_flat"]
        lines.append(f"answers @ {row['passages']:,} passages ({row['index_kind']}): p50/p95/p99 "
                     f"{s['p50_ms']}/{s['p95_ms']}/{s['p99_ms']} ms vs encode+Flat {b['p50_ms']}/{b['p95_ms']}/"
                     f"{b['p99_ms']} ms ({row['p50_ratio_to_baseline']}x at p50); index "
                     f"{row['index_bytes_per_passage']} B/passage; recall@10 vs Flat {row['recall_at_10_vs_flat']}")
        stages = row.get("stages_p50_ms")
        if stages:
            lines.append("  p50 of the parts: " + ", ".join(f"{name.replace('_', ' ')} {value} ms"
                                                         for name, value in stages.items()))
        cold = row["fresh_process"]
        lines.append(f"  fresh process: first answer in {cold['first_answer_s']} s vs model load + encode "
                     f"{cold['baseline_model_load_and_encode_s']} s ({cold['ratio']}x); serving peak RSS "
                     f"{cold['serving_peak_rss_mb']} MB")
    digests = report.get("digests")
    if digests:
        lines.append(f"digests: {digests['subscribers']:,} subscribers over {digests['topic_sets']} topic sets in "
                     f"{digests['grouped_seconds']} s vs {digests['baseline_seconds_extrapolated']} s composing per "
                     f"subscriber ({digests['speedup']}x); {digests['editions']} editions holding "
                     f"{digests['stories_in_editions']} stories")
    return "\n".join(lines)
