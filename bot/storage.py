"""The database: the source of truth for articles, passages (with their embeddings) and conversations.

SQLite in the data directory by default, any SQLAlchemy URL (PostgreSQL) through DATABASE_URL.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
from sqlalchemy import BigInteger, Column, LargeBinary, Text, UniqueConstraint, event
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, create_engine, delete, func, select

from index.types import Speaker

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Article(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    article_key: str = Field(index=True, unique=True, max_length=512)  # external id, url or title+source
    external_id: str | None = Field(default=None, max_length=256)
    title: str = Field(sa_column=Column(Text, nullable=False))
    source: str | None = Field(default=None, max_length=256)
    author: str | None = Field(default=None, max_length=512)
    dateline: str | None = Field(default=None, max_length=256)
    published: datetime | None = Field(default=None, index=True)
    url: str | None = Field(default=None, sa_column=Column(Text))
    text: str = Field(sa_column=Column(Text, nullable=False))  # cleaned text; passage spans point into it
    content_hash: str = Field(index=True, max_length=64)
    ingested_at: datetime = Field(default_factory=utcnow, index=True)


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

    @property
    def speakers(self) -> list[Speaker]:
        return [Speaker(**item) for item in json.loads(self.speakers_json or "[]")]


class Conversation(SQLModel, table=True):
    chat_id: str = Field(primary_key=True, max_length=64)
    state_json: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    updated_at: datetime = Field(default_factory=utcnow)


class Topic(SQLModel, table=True):
    """One question a chat asked and the passages shown for it, so "More" works after a restart."""

    id: int | None = Field(default=None, primary_key=True)
    chat_id: str = Field(index=True, max_length=64)
    query: str = Field(sa_column=Column(Text, nullable=False))
    shown_json: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def shown(self) -> list[int]:
        return [int(i) for i in json.loads(self.shown_json or "[]")]


class Meta(SQLModel, table=True):
    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(sa_column=Column(Text, nullable=False))


def make_engine(url: str) -> Engine:
    """Create the engine; SQLite gets WAL and a busy timeout so readers and one writer get along."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # pragma: no cover - trivial
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def vector_to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def bytes_to_matrix(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dim)


class Store:
    """Data access for the briefing service. Methods open short sessions; objects come back detached."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        SQLModel.metadata.create_all(self.engine)

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
        with self.session() as session:
            return set(session.exec(select(Passage.id)))

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

    def set_embeddings(self, vectors: dict[int, bytes]) -> None:
        with self.session() as session:
            for passage_id, blob in vectors.items():
                passage = session.get(Passage, passage_id)
                if passage is not None:
                    passage.embedding = blob
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
        with self.session() as session:
            row = session.get(Meta, key) or Meta(key=key, value=value)
            row.value = value
            session.add(row)
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
        with self.session() as session:
            topic = session.get(Topic, topic_id)
            if topic is None:
                return
            known = topic.shown
            topic.shown_json = json.dumps(known + [i for i in shown if i not in known])
            session.add(topic)
            session.commit()

    # --- conversations -----------------------------------------------------------------------
    def load_conversation(self, chat_id: str) -> Conversation | None:
        with self.session() as session:
            return session.get(Conversation, chat_id)

    def save_conversation(self, chat_id: str, state: dict) -> None:
        with self.session() as session:
            row = session.get(Conversation, chat_id) or Conversation(chat_id=chat_id)
            row.state_json = json.dumps(state)
            row.updated_at = utcnow()
            session.add(row)
            session.commit()

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
        moment the fan-out moves the schedule on never puts an older schedule back)."""
        subscriber.updated_at = utcnow()
        with self.session() as session:
            stored = session.get(Subscriber, subscriber.id) if subscriber.id is not None else None
            if stored is None:
                session.add(subscriber)
                stored = subscriber
            else:
                for name in list(fields if fields is not None else type(subscriber).model_fields) + ["updated_at"]:
                    if name != "id":
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

    def due_subscribers(self, now: datetime, limit: int = 100_000) -> list["Subscriber"]:
        """Subscribed, not paused, and their next slot has come: the question the fan-out asks every minute."""
        with self.session() as session:
            return list(session.exec(
                select(Subscriber).where(
                    Subscriber.subscribed == True,  # noqa: E712
                    Subscriber.paused_reason.is_(None),
                    Subscriber.next_due_at.is_not(None),
                    Subscriber.next_due_at <= _utc(now),
                ).order_by(Subscriber.next_due_at, Subscriber.id).limit(limit)
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
                        schedules: dict[int, tuple[datetime | None, str | None]]) -> int:
        """Record the day's deliveries and move the subscribers' schedules on, in one transaction.

        A (subscriber, local date) that already has a delivery keeps it: that is the exactly-once key.
        Returns how many new deliveries were recorded.
        """
        wanted = {(d.subscriber_id, d.local_date) for d in deliveries}
        with self.session() as session:
            existing: set[tuple[int, str]] = set()
            ids = sorted({s for s, _ in wanted})
            for offset in range(0, len(ids), 500):
                rows = session.exec(select(DigestDelivery.subscriber_id, DigestDelivery.local_date).where(
                    DigestDelivery.subscriber_id.in_(ids[offset : offset + 500]))).all()
                existing.update((r[0], r[1]) for r in rows if (r[0], r[1]) in wanted)
            added = 0
            for delivery in deliveries:
                key = (delivery.subscriber_id, delivery.local_date)
                if key in existing:
                    continue
                existing.add(key)
                session.add(delivery)
                added += 1
            for subscriber_id, (due_at, due_date) in schedules.items():
                row = session.get(Subscriber, subscriber_id)
                if row is not None:
                    row.next_due_at, row.next_due_date = (_utc(due_at) if due_at else None), due_date
                    session.add(row)
            session.commit()
            return added

    def has_delivery(self, subscriber_id: int, local_date: str) -> bool:
        with self.session() as session:
            return session.exec(select(DigestDelivery.id).where(
                DigestDelivery.subscriber_id == subscriber_id, DigestDelivery.local_date == local_date)).first() is not None

    def delivery(self, delivery_id: int) -> "DigestDelivery | None":
        with self.session() as session:
            return session.get(DigestDelivery, delivery_id)

    def sendable_deliveries(self, now: datetime, limit: int = 500) -> list["DigestDelivery"]:
        """Pending deliveries, and retries whose time has come, oldest first."""
        now = _utc(now)
        with self.session() as session:
            return list(session.exec(
                select(DigestDelivery).where(
                    (DigestDelivery.status == "pending")
                    | ((DigestDelivery.status == "retry") & (DigestDelivery.next_attempt_at <= now))
                ).order_by(DigestDelivery.slot_at, DigestDelivery.id).limit(limit)
            ))

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

    def update_delivery(self, delivery_id: int, expect: Iterable[str] | None = None,
                        **changes) -> "DigestDelivery | None":
        """Change a delivery's fields, only if its status is one of `expect` (compare-and-set); None otherwise."""
        with self.session() as session:
            row = session.get(DigestDelivery, delivery_id)
            if row is None or (expect is not None and row.status not in set(expect)):
                return None
            for name, value in changes.items():
                setattr(row, name, _utc(value) if isinstance(value, datetime) else value)
            session.add(row)
            session.commit()
            session.refresh(row)
            return row

    def finish_delivery(self, delivery_id: int, last_digest_at: datetime, **changes) -> "DigestDelivery | None":
        """Mark a delivery sent and remember its slot as the subscriber's last digest, in one transaction."""
        with self.session() as session:
            row = session.get(DigestDelivery, delivery_id)
            if row is None:
                return None
            for name, value in changes.items():
                setattr(row, name, _utc(value) if isinstance(value, datetime) else value)
            session.add(row)
            subscriber = session.get(Subscriber, row.subscriber_id)
            if subscriber is not None:
                last = _utc(last_digest_at)
                if subscriber.last_digest_at is None or subscriber.last_digest_at < last:
                    subscriber.last_digest_at = last
                    session.add(subscriber)
            session.commit()
            session.refresh(row)
            return row

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
                select(FeedEntry.feed_id, func.count(), func.sum(FeedEntry.full_text))
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
    next_due_at: datetime | None = Field(default=None, index=True)
    next_due_date: str | None = Field(default=None, max_length=10)
    last_digest_at: datetime | None = None  # slot of the last digest sent: the next one starts there
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def topics(self) -> list[str]:
        return [str(t) for t in json.loads(self.topics_json or "[]")]


class DigestEdition(SQLModel, table=True):
    """One composed digest (stories as JSON), shared by every subscriber with the same topics and window."""

    id: int | None = Field(default=None, primary_key=True)
    topic_key: str = Field(sa_column=Column(Text, nullable=False))
    since: datetime
    until: datetime
    payload_json: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class DigestDelivery(SQLModel, table=True):
    """The one digest of a subscriber's local day; the unique key is what makes it exactly one.

    status: pending (composed, not sent) -> sending (a part is in flight) -> sent; or retry (a failure
    Telegram certainly did not act on; tried again later), failed (given up, with the error), paused
    (the chat blocked the bot), cancelled (unsubscribed first), expired (the local day ended first).
    """

    __table_args__ = (UniqueConstraint("subscriber_id", "local_date"),)

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(foreign_key="subscriber.id", index=True)
    chat_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    local_date: str = Field(max_length=10)
    slot_at: datetime
    edition_id: int = Field(foreign_key="digestedition.id")
    status: str = Field(default="pending", max_length=16, index=True)
    parts_sent: int = 0
    parts_total: int | None = None
    message_ids_json: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    attempts: int = 0
    next_attempt_at: datetime | None = None
    uncertain: bool = False  # a part was in flight when the bot died or the connection broke: assumed delivered
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    run_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None


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
    last_modified: str | None = Field(default=None, max_length=128)
    last_polled_at: datetime | None = None
    last_success_at: datetime | None = None
    next_poll_at: datetime = Field(default_factory=utcnow, index=True)
    consecutive_failures: int = 0
    failing_since: datetime | None = None
    status: str = Field(default="ok", max_length=16)  # ok | down
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    notify_chat_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))  # told after 1st poll
    created_at: datetime = Field(default_factory=utcnow)


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
    first_seen_at: datetime = Field(default_factory=utcnow)
    last_attempt_at: datetime | None = None
