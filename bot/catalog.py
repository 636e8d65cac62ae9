"""What retrieval needs to know about every passage, kept in memory: its article, that article's date and
outlet. Filtering "from Reuters" or "in March" and ranking by recency then cost no SQL; only the passages
finally shown are read from the database.

Rebuilt from the database when ingestion has changed it (one scan of two narrow columns).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
from sqlmodel import select

from bot.storage import Article, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArticleFacts:
    published: datetime | None
    source: str | None


class PassageCatalog:
    def __init__(self, store: Store):
        self.store = store
        self._lock = threading.Lock()
        self._stale = True
        self._passage_ids = np.zeros(0, dtype=np.int64)
        self._article_ids = np.zeros(0, dtype=np.int64)
        self._articles: dict[int, ArticleFacts] = {}
        self._sources: list[str] = []
        self._newest: datetime | None = None

    def invalidate(self) -> None:
        """Called after the database changed; the next question reloads."""
        self._stale = True

    def load(self) -> "PassageCatalog":
        """Read it now rather than on the first question: a snapshot is swapped in ready to answer."""
        self._refresh()
        return self

    def _refresh(self) -> None:
        if not self._stale:
            return
        with self._lock:
            if not self._stale:
                return
            pairs = self.store.int_columns("SELECT id, article_id FROM passage ORDER BY id").reshape(-1, 2)
            with self.store.session() as session:
                facts = session.exec(select(Article.id, Article.published, Article.source)).all()
            self._passage_ids = np.ascontiguousarray(pairs[:, 0])
            self._article_ids = np.ascontiguousarray(pairs[:, 1])
            self._articles = {a: ArticleFacts(_aware(published), source) for a, published, source in facts}
            self._sources = sorted({f.source for f in self._articles.values() if f.source})
            dates = [f.published for f in self._articles.values() if f.published is not None]
            self._newest = max(dates) if dates else None
            self._stale = False
            log.debug("catalog: %d passages, %d articles", len(pairs), len(facts))

    def article_of(self, passage_id: int) -> int | None:
        self._refresh()
        position = int(np.searchsorted(self._passage_ids, passage_id))
        if position < len(self._passage_ids) and self._passage_ids[position] == passage_id:
            return int(self._article_ids[position])
        return None

    def facts(self, article_id: int) -> ArticleFacts | None:
        self._refresh()
        return self._articles.get(article_id)

    def sources(self) -> list[str]:
        self._refresh()
        return self._sources

    def newest(self) -> datetime | None:
        self._refresh()
        return self._newest


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value
