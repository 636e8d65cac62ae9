"""The database: the source of truth for articles, passages (with their embeddings) and conversations.

SQLite in the data directory by default, any SQLAlchemy URL (PostgreSQL) through DATABASE_URL.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
from sqlalchemy import (BigInteger, Column, DateTime, Integer, LargeBinary, Text, UniqueConstraint, and_, case, event,
                        or_, update)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, Session, SQLModel, create_engine, delete, func, select

from bot import schema
from index.types import Speaker

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timestamps come back as aware UTC on every database, so code never compares naive with aware values.

    PostgreSQL stores `timestamptz`; SQLite keeps naive UTC text as before (its format sorts and compares
    correctly as text). A naive value given to the database is taken to be UTC already.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        value = _utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Article(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    article_key: str = Field(index=True, unique=True, max_length=512)  # external id, url or title+source
    external_id: str | None = Field(default=None, sa_column=Column(Text))
    title: str = Field(sa_column=Column(Text, nullable=False))
    # free text from outside (files, feeds): unbounded, so PostgreSQL never refuses what SQLite would keep
    source: str | None = Field(default=None, sa_column=Column(Text))
    author: str | None = Field(default=None, sa_column=Column(Text))
    dateline: str | None = Field(default=None, sa_column=Column(Text))
    published: datetime | None = Field(default=None, index=True, sa_type=UTCDateTime)
    url: str | None = Field(default=None, sa_column=Column(Text))
    text: str = Field(sa_column=Column(Text, nullable=False))  # cleaned text; passage spans point into it
    content_hash: str = Field(index=True, max_length=64)
    ingested_at: datetime = Field(default_factory=utcnow, index=True, sa_type=UTCDateTime)


class Passage(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("article_id", "position"),)

    id: int | None = Field(default=None, primary_key=True)
    article_id: int = Field(foreign_key="article.id", index=True)
    position: int
    text: str = Field(sa_column=Column(Text, nullable=False))
    start: int
    end: int
    speakers_json: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    embedding: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    # float16 rows, one per sentence, pooled from the passage's own encoder pass (index/sentence_vectors.py)
    sentence_vectors: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))

    @property
    def speakers(self) -> list[Speaker]:
        return [Speaker(**item) for item in json.loads(self.speakers_json or "[]")]


class Conversation(SQLModel, table=True):
    """One chat's state. `version` goes up with every write, so a replica saving a state read before another
    replica's write finds out (compare-and-set) instead of silently undoing it."""

    chat_id: str = Field(primary_key=True, max_length=64)
    state_json: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    version: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0, server_default="0"))


class Topic(SQLModel, table=True):
    """One question a chat asked and the passages shown for it, so "More" works after a restart."""

    id: int | None = Field(default=None, primary_key=True)
    chat_id: str = Field(index=True, max_length=64)
    query: str = Field(sa_column=Column(Text, nullable=False))
    shown_json: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)

    @property
    def shown(self) -> list[int]:
        return [int(i) for i in json.loads(self.shown_json or "[]")]


class Meta(SQLModel, table=True):
    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(sa_column=Column(Text, nullable=False))


CAS_ATTEMPTS = 20


def _insert(session: Session, model: type[SQLModel]):
    """INSERT with ON CONFLICT for the database in use (both SQLite and PostgreSQL have it)."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - guarded by make_engine's users
        raise NotImplementedError(f"Briefbot runs on SQLite or PostgreSQL, not {name}")
    return insert(model)


def make_engine(url: str) -> Engine:
    """Create the engine; SQLite gets WAL and a busy timeout so readers and one writer get along."""
    if url.startswith("sqlite:///"):
        _create_private(Path(url.removeprefix("sqlite:///").split("?", 1)[0]))
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # pragma: no cover - trivial
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    if url.startswith("postgresql"):
        # Sessions in UTC, so anything that reads timestamps as text (psql, logs) sees what the bot sees.
        return create_engine(url, pool_pre_ping=True, connect_args={"options": "-c timezone=UTC"})
    return create_engine(url, pool_pre_ping=True)


def _create_private(path: Path) -> None:
    """A new SQLite file is created 0600 (its -wal and -shm files take its mode): it holds every chat's questions,
    and the directory around it may be one the operator made readable. An existing file is left as it is."""
    if str(path) in ("", ":memory:") or path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass  # another process made it meanwhile


def vector_to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def bytes_to_matrix(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dim)


class Store:
    """Data access for the briefing service. Methods open short sessions; objects come back detached."""

    def __init__(self, url: str, migrate: bool = True):
        """Open the database and bring its schema to head (the Alembic migrations in bot/migrations)."""
        self.url = url
        self.engine = make_engine(url)
        if migrate:
            schema.upgrade(self.engine)

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # --- articles and passages -------------------------------------------------------------
    def find_article(self, article_key: str) -> Article | None:
        with self.session() as session:
            return session.exec(select(Article).where(Article.article_key == article_key)).first()

    def save_article(self, article: Article, passages: list[Passage], replace_id: int | None = None) -> list[int]:
        """Store an article with its passages in one transaction; returns the ids of passages removed.

        With `replace_id` the old version's passages are deleted and the article row updated in place,
        so a changed article never shows old and new passages side by side.
        """
        with self.session() as session:
            removed: list[int] = []
            if replace_id is not None:
                removed = list(session.exec(select(Passage.id).where(Passage.article_id == replace_id)))
                session.exec(delete(Passage).where(Passage.article_id == replace_id))
                existing = session.get(Article, replace_id)
                for name, value in article.model_dump(exclude={"id", "ingested_at"}).items():
                    setattr(existing, name, value)
                existing.ingested_at = utcnow()
                article = existing
            session.add(article)
            session.flush()
            for passage in passages:
                passage.article_id = article.id
                session.add(passage)
            session.commit()
            return removed

    def article(self, article_id: int) -> Article | None:
        with self.session() as session:
            return session.get(Article, article_id)

    def articles_by_id(self, ids: Iterable[int]) -> dict[int, Article]:
        ids = list(set(ids))
        if not ids:
            return {}
        with self.session() as session:
            return {a.id: a for a in session.exec(select(Article).where(Article.id.in_(ids)))}

    def passages_by_id(self, ids: Iterable[int]) -> dict[int, Passage]:
        ids = list(set(ids))
        if not ids:
            return {}
        with self.session() as session:
            rows = session.exec(select(Passage).where(Passage.id.in_(ids)).execution_options(yield_per=1000))
            return {p.id: p for p in rows}

    def passage_at(self, article_id: int, position: int) -> Passage | None:
        with self.session() as session:
            return session.exec(
                select(Passage).where(Passage.article_id == article_id, Passage.position == position)
            ).first()

    def article_passages(self, article_id: int) -> list[Passage]:
        with self.session() as session:
            return list(session.exec(select(Passage).where(Passage.article_id == article_id).order_by(Passage.position)))

    def passage_ids(self) -> set[int]:
        return set(self.int_columns("SELECT id FROM passage").tolist())

    def int_columns(self, sql: str) -> np.ndarray:
        """A query's integer columns as one flat array, read through the driver's cursor: at a million rows the
        ORM's row objects took twice as long, and start-up reads these whole (the catalog, the index check)."""
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            cursor.execute(sql)
            rows = cursor.fetchall()
            return np.array(rows, dtype=np.int64).reshape(-1) if rows else np.zeros(0, dtype=np.int64)
        finally:
            connection.close()

    def iter_embeddings(self, ids: Iterable[int] | None = None, batch: int = 5000) -> Iterator[tuple[list[int], list[bytes | None]]]:
        """Stored embeddings in batches, for rebuilding the index without the encoder."""
        wanted = sorted(ids) if ids is not None else None
        with self.session() as session:
            if wanted is None:
                last = 0
                while True:
                    rows = session.exec(
                        select(Passage.id, Passage.embedding).where(Passage.id > last).order_by(Passage.id).limit(batch)
                    ).all()
                    if not rows:
                        return
                    yield [r[0] for r in rows], [r[1] for r in rows]
                    last = rows[-1][0]
            else:
                for offset in range(0, len(wanted), batch):
                    part = wanted[offset : offset + batch]
                    rows = session.exec(select(Passage.id, Passage.embedding).where(Passage.id.in_(part))).all()
                    yield [r[0] for r in rows], [r[1] for r in rows]

    def passage_texts(self) -> tuple[list[int], list[str]]:
        """Every passage's id and text, in id order, for building the lexical index."""
        ids: list[int] = []
        texts: list[str] = []
        with self.session() as session:
            for passage_id, text in session.exec(select(Passage.id, Passage.text).order_by(Passage.id)):
                ids.append(passage_id)
                texts.append(text)
        return ids, texts

    def passages_missing_embeddings(self, limit: int = 1000) -> list[Passage]:
        with self.session() as session:
            return list(session.exec(select(Passage).where(Passage.embedding.is_(None)).limit(limit)))

    def passages_without_sentence_vectors(self, limit: int = 512) -> list[Passage]:
        with self.session() as session:
            return list(session.exec(select(Passage).where(Passage.sentence_vectors.is_(None))
                                     .order_by(Passage.id).limit(limit)))

    def set_sentence_vectors(self, sentences: dict[int, bytes]) -> None:
        with self.session() as session:
            for passage_id, blob in sentences.items():
                session.exec(update(Passage).where(Passage.id == passage_id).values(sentence_vectors=blob))
            session.commit()

    def set_embeddings(self, vectors: dict[int, bytes], sentences: dict[int, bytes | None] | None = None) -> None:
        with self.session() as session:
            for passage_id, blob in vectors.items():
                passage = session.get(Passage, passage_id)
                if passage is not None:
                    passage.embedding = blob
                    if sentences is not None:
                        passage.sentence_vectors = sentences.get(passage_id)
                    session.add(passage)
            session.commit()

    def counts(self) -> tuple[int, int]:
        with self.session() as session:
            articles = session.exec(select(func.count()).select_from(Article)).one()
            passages = session.exec(select(func.count()).select_from(Passage)).one()
            return int(articles), int(passages)

    def newest_published(self) -> datetime | None:
        """The publication date of the newest article: the corpus's own "now"."""
        with self.session() as session:
            value = session.exec(select(func.max(Article.published))).one()
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value

    def latest_articles(self, limit: int = 5) -> list[Article]:
        with self.session() as session:
            order = (func.coalesce(Article.published, Article.ingested_at).desc(), Article.id.desc())
            return list(session.exec(select(Article).order_by(*order).limit(limit)))

    def source_summary(self) -> list[tuple[str, int, datetime | None]]:
        """Outlets with their article counts and newest publication date."""
        with self.session() as session:
            rows = session.exec(
                select(Article.source, func.count(), func.max(Article.published)).group_by(Article.source)
            ).all()
            return sorted(((s or "unknown", int(n), d) for s, n, d in rows), key=lambda r: -r[1])

    # --- small key/value facts ----------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        with self.session() as session:
            row = session.get(Meta, key)
            return row.value if row else None

    def set_meta(self, key: str, value: str) -> None:
        """Insert or replace in one statement, so two processes setting the same key never collide."""
        with self.session() as session:
            statement = _insert(session, Meta).values(key=key, value=value)
            session.execute(statement.on_conflict_do_update(index_elements=["key"], set_={"value": value}))
            session.commit()

    # --- topics (questions asked, for "More") -------------------------------------------------------
    def create_topic(self, chat_id: str, query: str, shown: list[int]) -> Topic:
        with self.session() as session:
            topic = Topic(chat_id=chat_id, query=query, shown_json=json.dumps(shown))
            session.add(topic)
            session.commit()
            return topic

    def topic(self, topic_id: int) -> Topic | None:
        with self.session() as session:
            return session.get(Topic, topic_id)

    def extend_topic(self, topic_id: int, shown: list[int]) -> None:
        """Add passages to what a topic has shown. Compare-and-set on the stored list, so two replicas
        answering "More" at once both get their passages recorded."""
        for _ in range(CAS_ATTEMPTS):
            with self.session() as session:
                current = session.exec(select(Topic.shown_json).where(Topic.id == topic_id)).first()
                if current is None:
                    return
                known = [int(i) for i in json.loads(current or "[]")]
                wanted = json.dumps(known + [i for i in dict.fromkeys(shown) if i not in known])
                if wanted == current:
                    return
                result = session.execute(
                    update(Topic).where(Topic.id == topic_id, Topic.shown_json == current).values(shown_json=wanted)
                    .execution_options(synchronize_session=False)
                )
                session.commit()
                if result.rowcount == 1:
                    return
        raise RuntimeError(f"topic {topic_id}: shown passages kept changing under {CAS_ATTEMPTS} attempts")

    # --- conversations -----------------------------------------------------------------------
    def load_conversation(self, chat_id: str) -> Conversation | None:
        with self.session() as session:
            return session.get(Conversation, chat_id)

    def save_conversation(self, chat_id: str, state: dict, expected_version: int | None) -> bool:
        """Write a chat's state only if it is still the version it was read at (None: there was no row).

        False when another process wrote the chat in between: the caller runs its turn again on the newer
        state rather than overwrite it (bot/service.py).
        """
        values = {"state_json": json.dumps(state), "updated_at": utcnow()}
        with self.session() as session:
            if expected_version is None:
                statement = (_insert(session, Conversation).values(chat_id=chat_id, version=1, **values)
                             .on_conflict_do_nothing(index_elements=["chat_id"]))
            else:
                statement = (update(Conversation)
                             .where(Conversation.chat_id == chat_id, Conversation.version == expected_version)
                             .values(version=expected_version + 1, **values))
            saved = len(session.execute(statement.returning(Conversation.chat_id)).all()) == 1
            session.commit()
            return saved

    # --- daily digests (tables at the end of this module) ------------------------------------------------
    def digest_articles(self, since: datetime, until: datetime, limit: int) -> list[tuple]:
        """Articles that arrived in (since, until], newest first, as (id, title, source, author, dateline,
        published, url, ingested_at) rows.

        "Arrived" is the publication time, or the ingestion time for articles without one; an article
        ingested in the window but published up to a day before it (a late feed) counts too.
        """
        since, until = _utc(since), _utc(until)
        when = func.coalesce(Article.published, Article.ingested_at)
        late = (Article.ingested_at > since) & (Article.ingested_at <= until) & (Article.published > since - timedelta(days=1))
        with self.session() as session:
            rows = session.exec(
                select(Article.id, Article.title, Article.source, Article.author, Article.dateline, Article.published,
                       Article.url, Article.ingested_at)
                .where(((when > since) & (when <= until)) | late)
                .order_by(when.desc(), Article.id.desc())
                .limit(limit)
            ).all()
            return [tuple(r) for r in rows]

    def digest_passages(self, article_ids: Iterable[int]) -> list[tuple]:
        """(id, article_id, position, text, speakers_json, embedding) of the articles' passages, in article order."""
        ids = sorted(set(article_ids))
        rows: list[tuple] = []
        with self.session() as session:
            for offset in range(0, len(ids), 500):
                part = ids[offset : offset + 500]
                rows.extend(tuple(r) for r in session.exec(
                    select(Passage.id, Passage.article_id, Passage.position, Passage.text, Passage.speakers_json,
                           Passage.embedding).where(Passage.article_id.in_(part))
                ).all())
        rows.sort(key=lambda r: (r[1], r[2]))
        return rows

    def subscriber(self, chat_id: int) -> "Subscriber | None":
        with self.session() as session:
            return session.exec(select(Subscriber).where(Subscriber.chat_id == chat_id)).first()

    def subscriber_by_id(self, subscriber_id: int) -> "Subscriber | None":
        with self.session() as session:
            return session.get(Subscriber, subscriber_id)

    def save_subscriber(self, subscriber: "Subscriber", fields: Iterable[str] | None = None) -> "Subscriber":
        """Insert a subscriber, or write only `fields` of an existing one (so a settings change made at the
        moment the fan-out moves the schedule on never puts an older schedule back).

        Two replicas inserting the same new chat at once: the second finds the first's row and updates it.
        """
        subscriber.updated_at = utcnow()
        names = [n for n in (fields if fields is not None else type(subscriber).model_fields) if n != "id"]
        with self.session() as session:
            stored = session.get(Subscriber, subscriber.id) if subscriber.id is not None else None
            if stored is None:
                try:
                    with session.begin_nested():
                        session.add(subscriber)
                    stored = subscriber
                except IntegrityError:
                    stored = session.exec(select(Subscriber).where(Subscriber.chat_id == subscriber.chat_id)).one()
                    for name in names + ["updated_at"]:
                        setattr(stored, name, getattr(subscriber, name))
            else:
                for name in names + ["updated_at"]:
                    setattr(stored, name, getattr(subscriber, name))
            session.add(stored)
            session.commit()
            session.refresh(stored)
            return stored

    def list_subscribers(self, subscribed_only: bool = False) -> list["Subscriber"]:
        with self.session() as session:
            query = select(Subscriber).order_by(Subscriber.id)
            if subscribed_only:
                query = query.where(Subscriber.subscribed == True)  # noqa: E712 - SQL expression
            return list(session.exec(query))

    @staticmethod
    def _due(now: datetime):
        return and_(
            Subscriber.subscribed == True,  # noqa: E712 - SQL expression
            Subscriber.paused_reason.is_(None),
            Subscriber.next_due_at.is_not(None),
            Subscriber.next_due_at <= _utc(now),
        )

    def due_subscribers(self, now: datetime, limit: int = 100_000) -> list["Subscriber"]:
        """Subscribed, not paused, and their next slot has come: the question the fan-out asks every minute."""
        with self.session() as session:
            return list(session.exec(
                select(Subscriber).where(self._due(now)).order_by(Subscriber.next_due_at, Subscriber.id).limit(limit)
            ))

    def claim_due_subscribers(self, now: datetime, claim: "Claim", limit: int = 500) -> list["Subscriber"]:
        """Take up to `limit` due subscribers that no live process holds, for this one to compose.

        One conditional UPDATE: on PostgreSQL its candidates are picked FOR UPDATE SKIP LOCKED, so replicas
        claiming at the same moment take different rows instead of queueing on the same ones; on SQLite the
        statement runs alone under the database's write lock. A claim whose holder stopped renewing it (dead)
        is free again once it has run out.
        """
        free = claim.free(Subscriber.claimed_by, Subscriber.claimed_until)
        candidates = (select(Subscriber.id).where(self._due(now), free)
                      .order_by(Subscriber.next_due_at, Subscriber.id).limit(limit).with_for_update(skip_locked=True))
        with self.session() as session:
            ids = session.execute(
                update(Subscriber).where(Subscriber.id.in_(candidates))
                .values(claimed_by=claim.owner, claimed_until=claim.until())
                .returning(Subscriber.id).execution_options(synchronize_session=False)
            ).scalars().all()
            session.commit()
            if not ids:
                return []
            return list(session.exec(
                select(Subscriber).where(Subscriber.id.in_(ids), Subscriber.claimed_by == claim.owner)
                .order_by(Subscriber.next_due_at, Subscriber.id)
            ))

    def set_schedules(self, schedules: dict[int, tuple[datetime | None, str | None]]) -> None:
        """Move subscribers' next slots (subscriber id -> (next_due_at, next_due_date)) in one transaction."""
        with self.session() as session:
            for subscriber_id, (due_at, due_date) in schedules.items():
                row = session.get(Subscriber, subscriber_id)
                if row is not None:
                    row.next_due_at, row.next_due_date = (_utc(due_at) if due_at else None), due_date
                    session.add(row)
            session.commit()

    def add_edition(self, edition: "DigestEdition") -> "DigestEdition":
        with self.session() as session:
            session.add(edition)
            session.commit()
            session.refresh(edition)
            return edition

    def edition(self, edition_id: int) -> "DigestEdition | None":
        with self.session() as session:
            return session.get(DigestEdition, edition_id)

    def plan_deliveries(self, deliveries: list["DigestDelivery"],
                        schedules: dict[int, tuple[datetime | None, str | None]], owner: str | None = None) -> int:
        """Record the day's deliveries and move the subscribers' schedules on, in one transaction.

        A (subscriber, local date) that already has a delivery keeps it (INSERT ... ON CONFLICT DO NOTHING on
        that unique key): that is the exactly-once key. With `owner`, only subscribers this process still
        holds are touched, and their claims are released; one whose claim passed to another process (this one
        looked dead) is left to that process. Returns how many new deliveries were recorded.
        """
        with self.session() as session:
            held: set[int] | None = None
            if owner is not None:
                held = set(session.exec(select(Subscriber.id).where(Subscriber.claimed_by == owner)))
            added = 0
            for delivery in deliveries:
                if held is not None and delivery.subscriber_id not in held:
                    continue
                statement = (_insert(session, DigestDelivery).values(**delivery.model_dump(exclude={"id"}))
                             .on_conflict_do_nothing(index_elements=["subscriber_id", "local_date"]))
                added += len(session.execute(statement.returning(DigestDelivery.id)).all())
            for subscriber_id, (due_at, due_date) in schedules.items():
                if held is not None and subscriber_id not in held:
                    continue
                statement = update(Subscriber).where(Subscriber.id == subscriber_id)
                if owner is not None:
                    statement = statement.where(Subscriber.claimed_by == owner)
                session.execute(statement.values(next_due_at=_utc(due_at) if due_at else None, next_due_date=due_date,
                                                 claimed_by=None, claimed_until=None)
                                .execution_options(synchronize_session=False))
            if owner is not None:
                self._release_subscribers(session, owner)
            session.commit()
            return added

    def release_subscribers(self, owner: str) -> int:
        """Give up this process's claims on subscribers (composition failed or the process is stopping)."""
        with self.session() as session:
            count = self._release_subscribers(session, owner)
            session.commit()
            return count

    @staticmethod
    def _release_subscribers(session: Session, owner: str) -> int:
        return session.execute(
            update(Subscriber).where(Subscriber.claimed_by == owner).values(claimed_by=None, claimed_until=None)
            .execution_options(synchronize_session=False)
        ).rowcount

    def has_delivery(self, subscriber_id: int, local_date: str) -> bool:
        with self.session() as session:
            return session.exec(select(DigestDelivery.id).where(
                DigestDelivery.subscriber_id == subscriber_id, DigestDelivery.local_date == local_date)).first() is not None

    def delivery(self, delivery_id: int) -> "DigestDelivery | None":
        with self.session() as session:
            return session.get(DigestDelivery, delivery_id)

    @staticmethod
    def _sendable(now: datetime):
        return or_(DigestDelivery.status == "pending",
                   and_(DigestDelivery.status == "retry", DigestDelivery.next_attempt_at <= _utc(now)))

    def sendable_deliveries(self, now: datetime, limit: int = 500) -> list["DigestDelivery"]:
        """Pending deliveries, and retries whose time has come, oldest first."""
        with self.session() as session:
            return list(session.exec(
                select(DigestDelivery).where(self._sendable(now))
                .order_by(DigestDelivery.slot_at, DigestDelivery.id).limit(limit)
            ))

    def claim_deliveries(self, now: datetime, claim: "Claim", limit: int = 1) -> list["DigestDelivery"]:
        """Take up to `limit` sendable deliveries (pending, or retries whose time has come) that no live process
        holds; the same conditional UPDATE (FOR UPDATE SKIP LOCKED on PostgreSQL) as claim_due_subscribers.
        Only the holder may then write the row (update_delivery's `owner`), so two replicas never both send it.
        """
        free = claim.free(DigestDelivery.run_id, DigestDelivery.lease_until)
        candidates = (select(DigestDelivery.id).where(self._sendable(now), free)
                      .order_by(DigestDelivery.slot_at, DigestDelivery.id).limit(limit)
                      .with_for_update(skip_locked=True))
        with self.session() as session:
            ids = session.execute(
                update(DigestDelivery).where(DigestDelivery.id.in_(candidates))
                .values(run_id=claim.owner, lease_until=claim.until())
                .returning(DigestDelivery.id).execution_options(synchronize_session=False)
            ).scalars().all()
            session.commit()
            if not ids:
                return []
            return list(session.exec(
                select(DigestDelivery).where(DigestDelivery.id.in_(ids), DigestDelivery.run_id == claim.owner)
                .order_by(DigestDelivery.slot_at, DigestDelivery.id)
            ))

    def interrupted_deliveries(self, claim: "Claim") -> list["DigestDelivery"]:
        """Deliveries left "sending" by a process that is gone: its lease ran out, or it was an earlier run of
        this same replica (restarted). One of its messages may have reached Telegram."""
        with self.session() as session:
            return list(session.exec(select(DigestDelivery).where(
                DigestDelivery.status == "sending", claim.free(DigestDelivery.run_id, DigestDelivery.lease_until),
                or_(DigestDelivery.run_id.is_(None), DigestDelivery.run_id != claim.owner),
            ).order_by(DigestDelivery.id)))

    def renew_leases(self, claim: "Claim") -> int:
        """Extend every claim this process holds (its heartbeat); returns how many rows it renewed.

        Rows another transaction has locked right now are skipped (SKIP LOCKED): that transaction is this
        process moving them on anyway, and a heartbeat that waited for it could deadlock with it.
        """
        until = claim.until()
        held_deliveries = (select(DigestDelivery.id)
                           .where(DigestDelivery.run_id == claim.owner,
                                  DigestDelivery.status.in_(["pending", "sending", "retry"]),
                                  DigestDelivery.lease_until.is_not(None))
                           .with_for_update(skip_locked=True))
        held_subscribers = (select(Subscriber.id).where(Subscriber.claimed_by == claim.owner)
                            .with_for_update(skip_locked=True))
        with self.session() as session:
            count = session.execute(
                update(DigestDelivery).where(DigestDelivery.id.in_(held_deliveries)).values(lease_until=until)
                .execution_options(synchronize_session=False)
            ).rowcount
            count += session.execute(
                update(Subscriber).where(Subscriber.id.in_(held_subscribers)).values(claimed_until=until)
                .execution_options(synchronize_session=False)
            ).rowcount
            session.commit()
            return count

    def release_deliveries(self, owner: str) -> int:
        """Hand back claimed deliveries this process has not started sending (it is stopping)."""
        with self.session() as session:
            count = session.execute(
                update(DigestDelivery).where(DigestDelivery.run_id == owner,
                                             DigestDelivery.status.in_(["pending", "retry"]))
                .values(run_id=None, lease_until=None).execution_options(synchronize_session=False)
            ).rowcount
            session.commit()
            return count

    def deliveries_with_status(self, statuses: Iterable[str]) -> list["DigestDelivery"]:
        with self.session() as session:
            return list(session.exec(select(DigestDelivery).where(DigestDelivery.status.in_(list(statuses)))))

    def recent_deliveries(self, subscriber_id: int | None = None, limit: int = 20) -> list["DigestDelivery"]:
        with self.session() as session:
            query = select(DigestDelivery).order_by(DigestDelivery.id.desc()).limit(limit)
            if subscriber_id is not None:
                query = query.where(DigestDelivery.subscriber_id == subscriber_id)
            return list(session.exec(query))

    def delivery_status_counts(self) -> dict[str, int]:
        with self.session() as session:
            rows = session.exec(select(DigestDelivery.status, func.count()).group_by(DigestDelivery.status)).all()
            return {str(s): int(n) for s, n in rows}

    @staticmethod
    def _delivery_change(delivery_id: int, expect: Iterable[str] | None, owner: str | None, changes: dict):
        statement = update(DigestDelivery).where(DigestDelivery.id == delivery_id)
        if expect is not None:
            statement = statement.where(DigestDelivery.status.in_(list(expect)))
        if owner is not None:
            statement = statement.where(DigestDelivery.run_id == owner)
        values = {name: _utc(value) if isinstance(value, datetime) else value for name, value in changes.items()}
        return statement.values(**values).execution_options(synchronize_session=False)

    def update_delivery(self, delivery_id: int, expect: Iterable[str] | None = None, owner: str | None = None,
                        **changes) -> "DigestDelivery | None":
        """Compare-and-set: change a delivery's fields only if its status is one of `expect` and, given `owner`,
        that process holds it. One conditional UPDATE, so of two processes trying, one wins. None otherwise."""
        with self.session() as session:
            result = session.execute(self._delivery_change(delivery_id, expect, owner, changes))
            session.commit()
            if result.rowcount != 1:
                return None
            return session.get(DigestDelivery, delivery_id)

    def finish_delivery(self, delivery_id: int, last_digest_at: datetime, expect: Iterable[str] | None = None,
                        owner: str | None = None, **changes) -> "DigestDelivery | None":
        """Mark a delivery sent (compare-and-set as update_delivery) and remember its slot as the subscriber's
        last digest, in one transaction; the later of two slots wins whatever order they arrive in."""
        last = _utc(last_digest_at)
        with self.session() as session:
            if changes and session.execute(self._delivery_change(delivery_id, expect, owner, changes)).rowcount != 1:
                session.rollback()
                return None
            subscriber_id = select(DigestDelivery.subscriber_id).where(DigestDelivery.id == delivery_id)
            session.execute(
                update(Subscriber)
                .where(Subscriber.id == subscriber_id.scalar_subquery(),
                       or_(Subscriber.last_digest_at.is_(None), Subscriber.last_digest_at < last))
                .values(last_digest_at=last).execution_options(synchronize_session=False)
            )
            session.commit()
            return session.get(DigestDelivery, delivery_id)

    # --- feeds (tables at the end of this module) ------------------------------------------------------------
    def feed(self, feed_id: int) -> "Feed | None":
        with self.session() as session:
            return session.get(Feed, feed_id)

    def feed_by_url(self, url: str) -> "Feed | None":
        with self.session() as session:
            return session.exec(select(Feed).where(Feed.url == url)).first()

    def list_feeds(self) -> list["Feed"]:
        with self.session() as session:
            return list(session.exec(select(Feed).order_by(Feed.id)))

    def add_feed(self, feed: "Feed") -> "Feed":
        with self.session() as session:
            session.add(feed)
            session.commit()
            session.refresh(feed)
            return feed

    def update_feed(self, feed_id: int, **changes) -> "Feed | None":
        """Write only the named columns (a poll never puts back an interval changed meanwhile)."""
        with self.session() as session:
            row = session.get(Feed, feed_id)
            if row is None:
                return None
            for name, value in changes.items():
                setattr(row, name, _utc(value) if isinstance(value, datetime) else value)
            session.add(row)
            session.commit()
            session.refresh(row)
            return row

    def delete_feed(self, feed_id: int) -> bool:
        """Forget a feed and which of its entries were read; the articles stay in the corpus."""
        with self.session() as session:
            row = session.get(Feed, feed_id)
            if row is None:
                return False
            session.exec(delete(FeedEntry).where(FeedEntry.feed_id == feed_id))
            session.delete(row)
            session.commit()
            return True

    def due_feeds(self, now: datetime, limit: int = 1000) -> list["Feed"]:
        """Feeds whose next poll has come, the longest waiting first (down feeds too: they may come back)."""
        with self.session() as session:
            return list(session.exec(
                select(Feed).where(Feed.next_poll_at <= _utc(now)).order_by(Feed.next_poll_at, Feed.id).limit(limit)
            ))

    def feed_entries(self, feed_id: int, keys: Iterable[str]) -> dict[str, "FeedEntry"]:
        """The entries of a feed already seen, by entry key."""
        keys = list(set(keys))
        found: dict[str, FeedEntry] = {}
        with self.session() as session:
            for offset in range(0, len(keys), 500):
                part = keys[offset : offset + 500]
                for row in session.exec(select(FeedEntry).where(FeedEntry.feed_id == feed_id,
                                                                FeedEntry.entry_key.in_(part))):
                    found[row.entry_key] = row
        return found

    def record_feed_entries(self, entries: list["FeedEntry"]) -> None:
        """Insert new entries and update seen ones (matched by feed and entry key), in one transaction."""
        if not entries:
            return
        with self.session() as session:
            for entry in entries:
                row = session.exec(select(FeedEntry).where(FeedEntry.feed_id == entry.feed_id,
                                                           FeedEntry.entry_key == entry.entry_key)).first()
                if row is None:
                    session.add(FeedEntry(**entry.model_dump(exclude={"id"})))
                    continue
                for name in ("url", "article_key", "full_text", "attempts", "last_attempt_at", "last_error"):
                    setattr(row, name, getattr(entry, name))
                session.add(row)
            session.commit()

    def feed_entry_counts(self) -> dict[int, tuple[int, int]]:
        """Per feed: (entries stored as articles, of which with the page's full text)."""
        with self.session() as session:
            rows = session.exec(
                select(FeedEntry.feed_id, func.count(), func.sum(case((FeedEntry.full_text, 1), else_=0)))
                .where(FeedEntry.article_key.is_not(None)).group_by(FeedEntry.feed_id)
            ).all()
        return {int(f): (int(n), int(full or 0)) for f, n, full in rows}

    def feed_entries_pending(self, feed_id: int, max_attempts: int) -> list["FeedEntry"]:
        """A feed's entries stored from the feed's summary whose page may still be tried again."""
        with self.session() as session:
            return list(session.exec(select(FeedEntry).where(
                FeedEntry.feed_id == feed_id, FeedEntry.full_text == False,  # noqa: E712 - SQL expression
                FeedEntry.attempts < max_attempts, FeedEntry.url.is_not(None),
            ).order_by(FeedEntry.id)))


# --- daily digests: subscribers, the digests composed for them, and one delivery record per local day ---------
class Subscriber(SQLModel, table=True):
    """A chat that receives a daily digest. Its schedule lives here, never only in memory.

    `next_due_at` (UTC) and `next_due_date` (the subscriber's local date of that slot) are recomputed
    whenever the time, time zone or subscription changes and after each digest, so "who is due" is one
    indexed query that survives restarts.
    """

    id: int | None = Field(default=None, primary_key=True)
    chat_id: int = Field(sa_column=Column(BigInteger, nullable=False, unique=True, index=True))
    subscribed: bool = Field(default=True, index=True)
    paused_reason: str | None = Field(default=None, max_length=64)  # "blocked": Telegram said 403
    topics_json: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    digest_time: str = Field(default="08:00", max_length=5)  # HH:MM, the subscriber's wall clock
    timezone: str = Field(default="UTC", max_length=64)
    next_due_at: datetime | None = Field(default=None, index=True, sa_type=UTCDateTime)
    next_due_date: str | None = Field(default=None, max_length=10)
    last_digest_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # the last digest's slot: next from there
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # Which process is composing this subscriber's digest, and until when that claim holds (renewed while alive).
    claimed_by: str | None = Field(default=None, max_length=64)
    claimed_until: datetime | None = Field(default=None, sa_type=UTCDateTime)

    @property
    def topics(self) -> list[str]:
        return [str(t) for t in json.loads(self.topics_json or "[]")]


class DigestEdition(SQLModel, table=True):
    """One composed digest (stories as JSON), shared by every subscriber with the same topics and window."""

    id: int | None = Field(default=None, primary_key=True)
    topic_key: str = Field(sa_column=Column(Text, nullable=False))
    since: datetime = Field(sa_type=UTCDateTime)
    until: datetime = Field(sa_type=UTCDateTime)
    payload_json: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class DigestDelivery(SQLModel, table=True):
    """The one digest of a subscriber's local day; the unique key is what makes it exactly one.

    status: pending (composed, not sent) -> sending (a part is in flight) -> sent; or retry (a failure
    Telegram certainly did not act on; tried again later), failed (given up, with the error), paused
    (the chat blocked the bot), cancelled (unsubscribed first), expired (the local day ended first).

    `run_id` and `lease_until` say which process holds the row (see Claim): only the holder may move it on.
    """

    __table_args__ = (UniqueConstraint("subscriber_id", "local_date"),)

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(foreign_key="subscriber.id", index=True)
    chat_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    local_date: str = Field(max_length=10)
    slot_at: datetime = Field(sa_type=UTCDateTime)
    edition_id: int = Field(foreign_key="digestedition.id")
    status: str = Field(default="pending", max_length=16, index=True)
    parts_sent: int = 0
    parts_total: int | None = None
    message_ids_json: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    uncertain: bool = False  # a part was in flight when the bot died or the connection broke: assumed delivered
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    run_id: str | None = Field(default=None, max_length=64)  # the process that holds it (claimed, or sending)
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime)  # that hold, renewed while it lives
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


@dataclass(frozen=True)
class Claim:
    """Which process holds a row of the digest fan-out (a subscriber being composed, a delivery being sent) and
    for how long: what lets several replicas share one database.

    `owner` is this process's run id, "<replica>/<random>". Another process's row is free once its lease has run
    out (holders renew their leases while they live, so that means the holder is gone); a row held by an earlier
    run of this same replica (a restart) is free at once. Safety never rests on the lease: every write to a held
    row is a compare-and-set on its holder, so a holder that lost its row only finds out, it cannot undo anything.
    """

    owner: str
    replica: str
    lease: timedelta

    @classmethod
    def new(cls, replica: str, lease_seconds: float) -> "Claim":
        return cls(f"{replica}/{uuid.uuid4().hex[:16]}", replica, timedelta(seconds=lease_seconds))

    def until(self) -> datetime:
        """Leases run on the wall clock (never a test's fake clock): every replica must agree on them."""
        return utcnow() + self.lease

    def free(self, holder, until):
        """SQL: the row is held by nobody alive (see the class)."""
        predecessor = and_(holder.startswith(self.replica + "/", autoescape=True), holder != self.owner)
        return or_(until.is_(None), until < utcnow(), predecessor)


def _utc(value: datetime) -> datetime:
    """Timestamps are bound as aware UTC (naive values are taken to be UTC already)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


# --- feeds: what the bot polls, and which entries it has read -------------------------------------------------
class Feed(SQLModel, table=True):
    """An RSS or Atom feed the bot polls. Its schedule lives here, so a restart picks up where it was.

    `next_poll_at` is the one indexed question "who is due"; after a failure it moves out exponentially
    (see bot/feeds.py) and `failing_since` remembers when the failures began: `status` becomes "down" only
    once they have lasted a day, and "ok" again on the first success.
    """

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    title: str | None = Field(default=None, sa_column=Column(Text))
    interval_minutes: int = 30
    etag: str | None = Field(default=None, sa_column=Column(Text))
    last_modified: str | None = Field(default=None, sa_column=Column(Text))  # a server's header, any length
    last_polled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_success_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    next_poll_at: datetime = Field(default_factory=utcnow, index=True, sa_type=UTCDateTime)
    consecutive_failures: int = 0
    failing_since: datetime | None = Field(default=None, sa_type=UTCDateTime)
    status: str = Field(default="ok", max_length=16)  # ok | down
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    notify_chat_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))  # told after 1st poll
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class FeedEntry(SQLModel, table=True):
    """One entry of a feed the bot has dealt with, so a changed feed costs only its new entries' pages.

    `full_text` is False while only the feed's summary is stored (the page failed); such an entry's page is
    tried again on later polls, a few times.
    """

    __table_args__ = (UniqueConstraint("feed_id", "entry_key"),)

    id: int | None = Field(default=None, primary_key=True)
    feed_id: int = Field(foreign_key="feed.id", index=True)
    entry_key: str = Field(max_length=512)  # the entry's id (guid), or its normalised link
    url: str | None = Field(default=None, sa_column=Column(Text))  # normalised link
    article_key: str | None = Field(default=None, max_length=512)  # the stored article, None if nothing was
    full_text: bool = False
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    first_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
