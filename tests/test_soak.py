"""Load in CI: a short run of scripts/soak.py (20 users for 20 s against a real `briefbot run` process).

The full figures (100 users for 2 minutes, a 10-minute memory soak) are in docs/reliability.md.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "soak.py"
USERS, SECONDS = 20, 20
RSS_GROWTH_MB = 64  # warmed up, the bot's memory must stay flat; allocator noise is a few MB


def load_soak():
    if "briefbot_soak" not in sys.modules:
        spec = importlib.util.spec_from_file_location("briefbot_soak", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules["briefbot_soak"] = module  # its dataclasses look their module up while being made
        spec.loader.exec_module(module)
    return sys.modules["briefbot_soak"]


async def test_twenty_users_for_twenty_seconds_lose_and_cross_nothing_and_memory_stays_flat(tmp_path, monkeypatch):
    for name in ("DATABASE_URL", "TELEGRAM_BOT_TOKEN", "WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    soak = load_soak()
    pairs = soak.prepare(tmp_path / "data", None)
    report = await soak.soak(USERS, SECONDS, tmp_path / "data", pairs, tmp_path / "bot.log")
    print("\n" + report.summary())
    assert report.ok, (report.summary(), (tmp_path / "bot.log").read_text()[-3000:])
    assert report.lost == report.crossed == report.duplicated == report.wrong == 0
    assert report.answered == report.questions >= USERS * 5, report.summary()
    assert report.rss_end_mb - report.rss_start_mb < RSS_GROWTH_MB, report.rss_samples_mb
    assert report.p99_seconds < 30, report.summary()


def test_the_soak_script_refuses_nonsense_arguments():
    soak = load_soak()
    with pytest.raises(SystemExit):
        soak.main(["--users", "0"])
