"""Shared fixtures: the real encoder (loaded once), a fresh data directory per test, the shared data folder,
and the databases: every test that opens the application runs once on SQLite and once on PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SEED = SHARED_DATA / "seed"
BACKENDS = ("sqlite", "postgresql")


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


# --- databases ----------------------------------------------------------------------------------------------------
class PostgresServer:
    """A PostgreSQL server for the tests: a fresh database per test, copied from a template (CREATE DATABASE ...
    TEMPLATE), and dropped afterwards."""

    def __init__(self, admin_url: str):
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url
        from sqlalchemy.pool import NullPool

        self.admin_url = make_url(admin_url)
        self.engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        self._empty: str | None = None

    def url(self, name: str) -> str:
        return self.admin_url.set(database=name).render_as_string(hide_password=False)

    def _execute(self, sql: str) -> None:
        from sqlalchemy import text

        with self.engine.connect() as connection:
            connection.execute(text(sql))

    def create(self, template: str | None = None) -> str:
        name = f"briefbot_test_{uuid.uuid4().hex[:12]}"
        self._execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return name

    def drop(self, name: str) -> None:
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def empty_template(self) -> str:
        """A database at the newest migration, made once: copying it is quicker than migrating each time."""
        if self._empty is None:
            from bot.storage import Store

            name = self.create()
            Store(self.url(name)).engine.dispose()
            self._empty = name
        return self._empty

    def fresh(self, template: str | None = None) -> str:
        """A new database's name: a copy of `template`, or empty at head."""
        return self.create(template or self.empty_template())


@pytest.fixture(scope="session")
def postgres(tmp_path_factory) -> Iterator[PostgresServer | str]:
    """The PostgreSQL server for the run: BRIEFBOT_TEST_POSTGRES_URL (CI starts one, see .ci/run), or a
    throwaway cluster started here when PostgreSQL is installed (scripts/test-postgres.sh). Without either,
    the reason it is missing (a string)."""
    url = os.environ.get("BRIEFBOT_TEST_POSTGRES_URL")
    cluster = None
    if not url:
        if os.environ.get("BRIEFBOT_TEST_POSTGRES", "").lower() in ("0", "off", "no", "false"):
            yield "BRIEFBOT_TEST_POSTGRES=off"
            return
        started = subprocess.run(["bash", str(REPO / "scripts" / "test-postgres.sh"), "start", "--owner",
                                  str(os.getpid())],
                                 capture_output=True, text=True, timeout=120)
        found = dict(line.split("=", 1) for line in started.stdout.splitlines() if "=" in line)
        if started.returncode != 0 or "BRIEFBOT_TEST_POSTGRES_URL" not in found:
            yield ("no PostgreSQL server: set BRIEFBOT_TEST_POSTGRES_URL, or install PostgreSQL "
                   f"(scripts/test-postgres.sh said: {started.stderr.strip()[-300:] or started.returncode})")
            return
        url, cluster = found["BRIEFBOT_TEST_POSTGRES_URL"], found["BRIEFBOT_PG_DIR"]
    server = PostgresServer(url)
    try:
        server._execute("SELECT 1")
        yield server
    finally:
        server.engine.dispose()
        if cluster:
            subprocess.run(["bash", str(REPO / "scripts" / "test-postgres.sh"), "stop", cluster], timeout=120)


def _server(postgres: PostgresServer | str) -> PostgresServer:
    """The server, or skip (fail in CI, where PostgreSQL must be tested) with the reason it is missing."""
    if isinstance(postgres, PostgresServer):
        return postgres
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the PostgreSQL variants: {postgres}")
    pytest.skip(postgres)


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request) -> str:
    """Which database the test runs on (session-scoped, so the run does every SQLite test, then PostgreSQL's)."""
    return request.param


@pytest.fixture
def database_url(backend, postgres) -> Iterator[str | None]:
    """None on SQLite (the file in the test's data directory); a fresh PostgreSQL database's URL otherwise."""
    if backend == "sqlite":
        yield None
        return
    server = _server(postgres)
    name = server.fresh()
    yield server.url(name)
    server.drop(name)


@dataclass
class DataCopy:
    """A data directory and, on PostgreSQL, its own database: what one test may change freely."""

    data_dir: Path
    database_url: str | None

    def settings(self, **values):
        from bot.settings import Settings

        return Settings(BRIEFBOT_DATA_DIR=self.data_dir, DATABASE_URL=self.database_url, **values)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for a `briefbot` child process on this copy."""
        dropped = ("DATABASE_URL", "TELEGRAM_BOT_TOKEN", "BRIEFBOT_FAKE_NOW")
        env = {k: v for k, v in os.environ.items() if k not in dropped}
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        env.update(HF_HUB_OFFLINE="1", **extra)
        return env


def _ingested(root: Path, database_url: str | None, paths: list[Path], expected: int, encoder) -> Path:
    """A data directory (and database) with `paths` ingested; its engine closed, so PostgreSQL can copy it."""
    from bot.app import Briefbot
    from bot.settings import Settings

    data_dir = root / "data"
    app = Briefbot.open(Settings(BRIEFBOT_DATA_DIR=data_dir, DATABASE_URL=database_url), encoder=encoder)
    report = app.corpus.ingest_paths(paths)
    assert report.added == expected, report.summary()
    app.corpus.store.engine.dispose()
    return data_dir


def _copy(backend: str, request, sqlite_dir: Path, pg_fixture: str, target: Path) -> Iterator[DataCopy]:
    """Copy a prepared corpus for one test: the data directory, and on PostgreSQL its template database."""
    if backend == "sqlite":
        shutil.copytree(sqlite_dir, target)
        yield DataCopy(target, None)
        return
    server = _server(request.getfixturevalue("postgres"))
    source_dir, template = request.getfixturevalue(pg_fixture)
    shutil.copytree(source_dir, target)
    name = server.fresh(template)
    yield DataCopy(target, server.url(name))
    server.drop(name)


@pytest.fixture
def settings(database_url, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from bot.settings import Settings

    for name in ("DATABASE_URL", "TELEGRAM_BOT_TOKEN", "WEBHOOK_URL", "TELEGRAM_API_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env from the developer's checkout
    return Settings(BRIEFBOT_DATA_DIR=tmp_path / "data", DATABASE_URL=database_url)


@pytest.fixture
def make_app(settings, encoder):
    """Open (or re-open, as after a restart) the application on the test's data directory."""
    from bot.app import Briefbot

    opened: list[Briefbot] = []

    def _open(**overrides) -> Briefbot:
        for key, value in overrides.items():
            setattr(settings, key, value)
        app = Briefbot.open(settings, encoder=encoder)
        opened.append(app)
        return app

    yield _open
    for app in opened:
        app.corpus.store.engine.dispose()


@pytest.fixture(scope="session")
def seeded_dir(tmp_path_factory, shared_data, encoder) -> Path:
    """A data directory (SQLite) with the seed article and gum-news ingested, shared read-only by many tests."""
    return _ingested(tmp_path_factory.mktemp("seeded"), None, [shared_data / "seed", shared_data / "gum-news"], 25,
                     encoder)


@pytest.fixture(scope="session")
def seeded_pg(tmp_path_factory, shared_data, encoder, postgres) -> tuple[Path, str]:
    """The same on PostgreSQL: (data directory, template database), made on first use."""
    server = _server(postgres)
    name = server.fresh()
    data_dir = _ingested(tmp_path_factory.mktemp("seeded-pg"), server.url(name),
                         [shared_data / "seed", shared_data / "gum-news"], 25, encoder)
    return data_dir, name


@pytest.fixture
def seeded_copy(backend, request, seeded_dir, tmp_path) -> Iterator[DataCopy]:
    """The seeded corpus copied for one test, on the test's database."""
    yield from _copy(backend, request, seeded_dir, "seeded_pg", tmp_path / "data")


@pytest.fixture
def seeded_app(seeded_copy, encoder, monkeypatch):
    """The seeded corpus, copied so a test may talk to it (conversations write) without touching others."""
    from bot.app import Briefbot

    for name in ("DATABASE_URL", "TELEGRAM_BOT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    app = Briefbot.open(seeded_copy.settings(), encoder=encoder)
    yield app
    app.corpus.store.engine.dispose()


# --- daily digests ---------------------------------------------------------------------------------------------
REUTERS_DAY = "1987-03-01"  # 38 wire stories, among them two copies of "MANILA SAID TO OFFER DEBT BONDS TO BANKS"


@pytest.fixture(scope="session")
def reuters_day_dir(tmp_path_factory, reuters_day_file, encoder) -> Path:
    """reuters-dev's articles of one day in March 1987 (a few hundred passages), ingested once (SQLite), read-only."""
    return _ingested(tmp_path_factory.mktemp("reuters-day"), None, [reuters_day_file], 38, encoder)


@pytest.fixture(scope="session")
def reuters_day_file(tmp_path_factory, shared_data) -> Path:
    """reuters-dev's articles of REUTERS_DAY, as a JSONL file."""
    import json

    day_file = tmp_path_factory.mktemp("reuters-day-file") / "articles.jsonl"
    with (shared_data / "reuters-dev" / "articles.jsonl").open(encoding="utf-8") as source, \
            day_file.open("w", encoding="utf-8") as target:
        for line in source:
            if REUTERS_DAY in line and (json.loads(line).get("published") or "").startswith(REUTERS_DAY):
                target.write(line)
    return day_file


@pytest.fixture(scope="session")
def reuters_pg(tmp_path_factory, reuters_day_file, encoder, postgres) -> tuple[Path, str]:
    """The one-day Reuters corpus on PostgreSQL: (data directory, template database), made on first use."""
    server = _server(postgres)
    name = server.fresh()
    return _ingested(tmp_path_factory.mktemp("reuters-pg"), server.url(name), [reuters_day_file], 38, encoder), name


@pytest.fixture
def reuters_copy(backend, request, reuters_day_dir, tmp_path) -> Iterator[DataCopy]:
    """The one-day Reuters corpus copied for one test, on the test's database."""
    yield from _copy(backend, request, reuters_day_dir, "reuters_pg", tmp_path / "data")


@pytest.fixture
def reuters_app(reuters_copy, encoder, monkeypatch, tmp_path):
    """The one-day Reuters corpus, copied so a test may subscribe and deliver without touching others."""
    from bot.app import Briefbot

    for name in ("DATABASE_URL", "TELEGRAM_BOT_TOKEN", "BRIEFBOT_FAKE_NOW"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    app = Briefbot.open(reuters_copy.settings(), encoder=encoder)
    yield app
    app.corpus.store.engine.dispose()
