"""`briefbot bench` stays runnable and reports each figure beside its baseline (a small run; the real one is in
docs/speed.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_reports_every_measurement_beside_its_baseline(shared_data, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TELEGRAM_BOT_TOKEN")}
    env["HF_HUB_OFFLINE"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "bench", "--json", "--shared", str(shared_data), "--data-dir",
         str(tmp_path / "data"), "--sizes", "1500", "--ingest-articles", "20", "--rounds", "1", "--subscribers",
         "300", "--topic-sets", "6"],
        capture_output=True, text=True, timeout=600, cwd=REPO, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    ingest = report["ingest"]
    assert ingest["passages"] > 50 and ingest["ratio_to_bare_reference"] > 0
    (answers,) = report["answers"]
    assert answers["passages"] == 1500 and answers["index_kind"] == "flat"
    assert 0 < answers["service"]["p50_ms"] <= answers["service"]["p99_ms"]
    assert answers["recall_at_10_vs_flat"] == 1.0, "Flat is exact"
    assert answers["p50_ratio_to_baseline"] > 0 and set(answers["stages_p50_ms"]) == {
        "encode_question", "vector_search", "bold_sentence"}
    fresh = answers["fresh_process"]
    # A fresh process's own peak, not the benchmark's (which holds two models and the corpus it built).
    assert 50 < fresh["serving_peak_rss_mb"] < answers["peak_rss_mb"]
    assert fresh["first_answer_s"] > 0 and fresh["baseline_model_load_and_encode_s"] > 0
    digests = report["digests"]
    assert digests["subscribers"] == 300 and digests["editions"] == 6 and digests["stories_in_editions"] > 0
