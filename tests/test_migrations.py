"""Schema migrations (Alembic, bot/migrations) on SQLite and PostgreSQL: a database made by an older migration is
upgraded to head with its data intact, a database made before there were migrations is adopted, the models and
the migrations never disagree, and `briefbot migrate` shows and applies what is pending."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

from bot import cli, schema
from bot.storage import Article, Store, Subscriber, make_engine, vector_to_bytes
from tests.conftest import _server

UTC = timezone.utc
WHEN = datetime(2024, 3, 30, 6, 30, tzinfo=UTC)
CORE = {"article", "passage", "conversation", "topic", "meta"}
LATER = {"subscriber", "digestedition", "digestdelivery", "feed", "feedentry"}


@pytest.fixture
def url(backend, request, tmp_path: Path):
    """An empty database (not even at the first migration) on the test's backend."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrated.db'}"
        return
    server = _server(request.getfixturevalue("postgres"))
    name = server.create()
    yield server.url(name)
    server.drop(name)


@pytest.fixture
def engine(url):
    made = make_engine(url)
    yield made
    made.dispose()


def tables(engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def rows(engine, table: str) -> list[dict]:
    with engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(text(f'SELECT * FROM "{table}" ORDER BY 1'))]


def insert(engine, table: str, **values) -> None:
    names = ", ".join(f'"{n}"' for n in values)
    marks = ", ".join(f":{n}" for n in values)
    with engine.begin() as connection:
        connection.execute(text(f'INSERT INTO "{table}" ({names}) VALUES ({marks})'), values)


def test_the_models_and_the_migrations_describe_the_same_schema(engine):
    schema.upgrade(engine)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}),
                                SQLModel.metadata)
    assert diff == [], f"bot/storage.py and bot/migrations disagree; add a migration: {diff}"


def test_a_database_made_by_the_first_migration_is_upgraded_with_its_data_intact(engine, url):
    schema.upgrade(engine, "0001")
    assert schema.current_revision(engine) == "0001"
    assert tables(engine) == CORE, "the first migration is the core only; digests and feeds came later"
    blob = vector_to_bytes(np.linspace(-1, 1, 384, dtype=np.float32))
    insert(engine, "article", id=1, article_key="id:a1", title="Dock workers strike", source="Wire",
           author="A. Reporter", published=WHEN, text="Dock workers began a strike.", content_hash="h1",
           ingested_at=WHEN + timedelta(hours=1))
    insert(engine, "passage", id=1, article_id=1, position=0, text="Dock workers began a strike.", start=0, end=28,
           speakers_json='[{"name": "Ann Lee", "description": "a union leader"}]', embedding=blob)
    insert(engine, "conversation", chat_id="tg:7", state_json='{"query": "strike", "topic_id": 1}', updated_at=WHEN)
    insert(engine, "topic", id=1, chat_id="tg:7", query="strike", shown_json="[1]", created_at=WHEN)
    insert(engine, "meta", key="index", value="v1")
    before = {table: rows(engine, table) for table in CORE}

    store = Store(url)  # what every start-up does: upgrade to head
    assert schema.current_revision(store.engine) == schema.head_revision()
    assert tables(store.engine) == CORE | LATER
    for table in CORE:
        after = rows(store.engine, table)
        if table == "conversation":
            assert [r.pop("version") for r in after] == [0], "existing conversations start at version 0"
        if table == "passage":
            assert [r.pop("sentence_vectors") for r in after] == [None], "older passages have no sentence vectors"
        assert _comparable(after) == _comparable(before[table]), table
    passage = store.passages_by_id([1])[1]
    assert passage.embedding == blob and passage.speakers[0].name == "Ann Lee"
    assert store.article(1).published == WHEN
    assert store.save_conversation("tg:7", {"query": "strike again"}, 0), "the old row takes part in compare-and-set"
    store.save_subscriber(Subscriber(chat_id=7))  # the later tables work
    assert store.subscriber(7) is not None
    store.engine.dispose()


def test_a_database_before_the_replica_columns_keeps_its_digests_and_feeds(engine, url):
    schema.upgrade(engine, "0003")
    insert(engine, "subscriber", id=1, chat_id=-1_001_234_567_890, subscribed=True, topics_json='["oil"]',
           digest_time="07:30", timezone="Europe/Berlin", next_due_at=WHEN, next_due_date="2024-03-30",
           last_digest_at=WHEN - timedelta(days=1), created_at=WHEN, updated_at=WHEN)
    insert(engine, "digestedition", id=1, topic_key="oil", since=WHEN - timedelta(days=1), until=WHEN,
           payload_json='{"stories": []}', created_at=WHEN)
    insert(engine, "digestdelivery", id=1, subscriber_id=1, chat_id=-1_001_234_567_890, local_date="2024-03-29",
           slot_at=WHEN - timedelta(days=1), edition_id=1, status="sending", parts_sent=0, parts_total=1,
           message_ids_json="[]", attempts=0, uncertain=False, run_id="old-process", created_at=WHEN)
    insert(engine, "feed", id=1, url="https://example.org/rss", interval_minutes=30, next_poll_at=WHEN,
           consecutive_failures=0, status="ok", created_at=WHEN)
    insert(engine, "feedentry", id=1, feed_id=1, entry_key="guid-1", full_text=True, attempts=1, first_seen_at=WHEN)
    before = {table: _comparable(rows(engine, table)) for table in LATER}

    schema.upgrade(engine)
    assert schema.current_revision(engine) == schema.head_revision()
    for table in LATER:
        after = rows(engine, table)
        for row in after:
            for added in ("claimed_by", "claimed_until", "lease_until"):
                assert row.pop(added, None) is None
        assert _comparable(after) == before[table], table
    store = Store(str(engine.url.render_as_string(hide_password=False)))
    (subscriber,) = store.list_subscribers()
    assert subscriber.chat_id == -1_001_234_567_890 and subscriber.last_digest_at == WHEN - timedelta(days=1)
    (left,) = store.deliveries_with_status(["sending"])
    assert left.run_id == "old-process" and left.lease_until is None, "an old 'sending' row counts as abandoned"
    store.engine.dispose()


def test_a_database_made_before_migrations_is_adopted_without_losing_anything(engine, url):
    schema.upgrade(engine, "0003")
    insert(engine, "article", article_key="id:old", title="Old", text="Old text.", content_hash="h",
           published=WHEN, ingested_at=WHEN)
    insert(engine, "conversation", chat_id="tg:1", state_json="{}", updated_at=WHEN)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))  # as create_all left it
        if engine.dialect.name == "postgresql":  # create_all made naive timestamps and bounded text there
            connection.execute(text("ALTER TABLE article ALTER COLUMN published TYPE timestamp "
                                    "USING published AT TIME ZONE 'UTC'"))
            connection.execute(text("ALTER TABLE article ALTER COLUMN source TYPE varchar(256)"))
    assert schema.current_revision(engine) is None

    store = Store(url)
    assert schema.current_revision(store.engine) == schema.head_revision()
    old = store.find_article("id:old")
    assert old.published == WHEN and old.title == "Old"
    assert store.load_conversation("tg:1").version == 0
    store.save_article(Article(article_key="id:new", title="New", text="x", content_hash="n", source="S" * 400), [])
    assert len(store.find_article("id:new").source) == 400
    with store.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}),
                                SQLModel.metadata)
    assert diff == []
    store.engine.dispose()


def test_briefbot_migrate_shows_what_is_pending_prints_the_sql_and_applies_it(url, engine, monkeypatch, capsys,
                                                                                tmp_path):
    monkeypatch.setenv("DATABASE_URL", url)
    schema.upgrade(engine, "0002")

    def run(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        code = cli.main(["migrate", *args, "--data-dir", str(tmp_path / "data")])
        return code, capsys.readouterr().out

    code, out = run("current")
    assert code == 0 and "0002" in out and "pending" in out and "0003" in out and "0004" in out
    code, sql = run("--sql")
    assert code == 0 and "CREATE TABLE feed" in sql and "ADD COLUMN lease_until" in sql
    assert "CREATE TABLE article" not in sql, "only what is pending"
    assert schema.current_revision(engine) == "0002", "--sql changes nothing"
    code, out = run()
    assert code == 0 and schema.current_revision(engine) == schema.head_revision()
    code, out = run("current")
    assert code == 0 and "at head" in out


def _comparable(table_rows: list[dict]) -> list[dict]:
    """Rows with timestamps as UTC instants and booleans as bools, however the database hands them back."""
    def value(v):
        if isinstance(v, datetime):
            return (v if v.tzinfo else v.replace(tzinfo=UTC)).astimezone(UTC)
        if isinstance(v, str) and len(v) >= 19 and v[4] == "-" and v[10] == " ":  # SQLite's text timestamps
            try:
                return datetime.fromisoformat(v).replace(tzinfo=UTC)
            except ValueError:
                return v
        if isinstance(v, memoryview):
            return bytes(v)
        return v

    return [{k: value(v) for k, v in row.items()} for row in table_rows]


def test_head_is_the_newest_migration_file():
    versions = Path(schema.SCRIPT_LOCATION, "versions")
    names = sorted(p.name for p in versions.glob("[0-9]*.py"))
    assert names[-1].startswith(schema.head_revision())
