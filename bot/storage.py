"""The database: the source of truth for articles, passages (with their embeddings) and conversations.

SQLite in the data directory by default, any SQLAlchemy URL (PostgreSQL) through DATABASE_URL.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
from sqlalchemy import Column, LargeBinary, Text, UniqueConstraint, event
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
