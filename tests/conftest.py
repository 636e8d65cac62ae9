"""Shared fixtures: the real encoder (loaded once), a fresh data directory per test, the shared data folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SEED = SHARED_DATA / "seed"


@pytest.fixture(scope="session", autouse=True)
def onnx_models_dir(tmp_path_factory) -> Iterator[Path]:
    """One ONNX export (~20 s) for every data directory of the run, CLI child processes included."""
    path = tmp_path_factory.mktemp("onnx-models")
    previous = os.environ.get("BRIEFBOT_MODELS_DIR")
    os.environ["BRIEFBOT_MODELS_DIR"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("BRIEFBOT_MODELS_DIR", None)
    else:
        os.environ["BRIEFBOT_MODELS_DIR"] = previous


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not beside the checkout")
    return SHARED_DATA


@pytest.fixture(scope="session")
def encoder():
    """The packaged all-MiniLM-L6-v2, loaded offline once for the whole run."""
    from index.embeddings import SentenceTransformerEncoder

    return SentenceTransformerEncoder()


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from bot.settings import Settings

    for name in ("DATABASE_URL", "TELEGRAM_BOT_TOKEN", "WEBHOOK_URL", "TELEGRAM_API_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env from the developer's checkout
    return Settings(BRIEFBOT_DATA_DIR=tmp_path / "data")


@pytest.fixture
def make_app(settings, encoder):
    """Open (or re-open, as after a restart) the application on the test's data directory."""
    from bot.app import Briefbot

    def _open(**overrides) -> Briefbot:
        for key, value in overrides.items():
            setattr(settings, key, value)
        return Briefbot.open(settings, encoder=encoder)

    return _open


@pytest.fixture(scope="session")
def seeded_dir(tmp_path_factory, shared_data, encoder) -> Path:
    """A data directory with the seed article and gum-news ingested, shared read-only by many tests."""
    from bot.app import Briefbot
    from bot.settings import Settings

    data_dir = tmp_path_factory.mktemp("seeded") / "data"
    app = Briefbot.open(Settings(BRIEFBOT_DATA_DIR=data_dir, DATABASE_URL=None), encoder=encoder)
    report = app.corpus.ingest_paths([shared_data / "seed", shared_data / "gum-news"])
    assert report.added == 25, report.summary()
    app.corpus.store.engine.dispose()
    return data_dir


@pytest.fixture
def seeded_app(seeded_dir, encoder, monkeypatch, tmp_path):
    """The seeded corpus, copied so a test may talk to it (conversations write) without touching others."""
    import shutil

    from bot.app import Briefbot
    from bot.settings import Settings

    for name in ("DATABASE_URL", "TELEGRAM_BOT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    target = tmp_path / "data"
    shutil.copytree(seeded_dir, target)
    return Briefbot.open(Settings(BRIEFBOT_DATA_DIR=target), encoder=encoder)


# --- daily digests ---------------------------------------------------------------------------------------------
REUTERS_DAY = "1987-03-01"  # 38 wire stories, among them two copies of "MANILA SAID TO OFFER DEBT BONDS TO BANKS"


@pytest.fixture(scope="session")
def reuters_day_dir(tmp_path_factory, shared_data, encoder) -> Path:
    """reuters-dev's articles of one day in March 1987 (a few hundred passages), ingested once, read-only."""
    import json

    from bot.app import Briefbot
    from bot.settings import Settings

    root = tmp_path_factory.mktemp("reuters-day")
    day_file = root / "articles.jsonl"
    with (shared_data / "reuters-dev" / "articles.jsonl").open(encoding="utf-8") as source, \
            day_file.open("w", encoding="utf-8") as target:
        for line in source:
            if REUTERS_DAY in line and (json.loads(line).get("published") or "").startswith(REUTERS_DAY):
                target.write(line)
    data_dir = root / "data"
    app = Briefbot.open(Settings(BRIEFBOT_DATA_DIR=data_dir, DATABASE_URL=None), encoder=encoder)
    report = app.corpus.ingest_paths([day_file])
    assert report.added == 38, report.summary()
    app.corpus.store.engine.dispose()
    return data_dir


@pytest.fixture
def reuters_app(reuters_day_dir, encoder, monkeypatch, tmp_path):
    """The one-day Reuters corpus, copied so a test may subscribe and deliver without touching others."""
    import shutil

    from bot.app import Briefbot
    from bot.settings import Settings

    for name in ("DATABASE_URL", "TELEGRAM_BOT_TOKEN", "BRIEFBOT_FAKE_NOW"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "data"
    shutil.copytree(reuters_day_dir, target)
    return Briefbot.open(Settings(BRIEFBOT_DATA_DIR=target), encoder=encoder)
