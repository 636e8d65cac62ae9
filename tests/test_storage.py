"""The store on SQLite and on PostgreSQL alike: what each database would otherwise do differently (timestamps and
time zones, 64-bit chat ids, bytes, long free text, case, booleans, upserts), and the compare-and-set and claim
primitives that let several processes share one database."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from bot.storage import (Article, Claim, DigestDelivery, DigestEdition, Feed, FeedEntry, Passage, Store, Subscriber,
                         bytes_to_matrix, vector_to_bytes)

UTC = timezone.utc
BIG_CHAT = -1_001_234_567_890_123  # a supergroup id: needs 64 bits
NOW = datetime(2024, 3, 30, 6, 30, tzinfo=UTC)


@pytest.fixture
def store(database_url, tmp_path: Path) -> Store:
    opened = Store(database_url or f"sqlite:///{tmp_path / 'store.db'}")
    yield opened
    opened.engine.dispose()


def article(key: str, published: datetime | None, source: str = "Wire", **extra) -> Article:
    return Article(article_key=key, title=f"Title {key}", text=f"Text of {key}.", content_hash=key,
                   published=published, source=source, **extra)


def test_timestamps_come_back_aware_in_utc_whatever_went_in(store):
    berlin = datetime(2024, 3, 31, 7, 30, tzinfo=ZoneInfo("Europe/Berlin"))  # 05:30 UTC, summer time
    naive = datetime(2024, 3, 31, 4, 0)  # taken to be UTC
    store.save_article(article("berlin", berlin), [])
    store.save_article(article("naive", naive), [])
    store.save_article(article("none", None), [])
    stored = {a.article_key: a for a in store.latest_articles(10)}
    assert stored["berlin"].published == datetime(2024, 3, 31, 5, 30, tzinfo=UTC)
    assert stored["berlin"].published.tzinfo is not None and stored["berlin"].published.utcoffset() == timedelta(0)
    assert stored["naive"].published == datetime(2024, 3, 31, 4, 0, tzinfo=UTC)
    assert stored["none"].published is None and stored["none"].ingested_at.tzinfo is not None
    assert store.newest_published() == datetime(2024, 3, 31, 5, 30, tzinfo=UTC)  # max() over timestamps
    ((source, count, newest),) = store.source_summary()
    assert (source, count, newest) == ("Wire", 3, datetime(2024, 3, 31, 5, 30, tzinfo=UTC))
    # a window given in another zone selects by the instant, not by the digits
    since = datetime(2024, 3, 31, 6, 0, tzinfo=ZoneInfo("Europe/Berlin"))  # 04:00 UTC
    until = datetime(2024, 3, 31, 8, 0, tzinfo=ZoneInfo("Europe/Berlin"))  # 06:00 UTC
    keys = [row[1] for row in store.digest_articles(since, until, 10)]
    assert keys == ["Title berlin"]


def test_telegram_ids_beyond_32_bits_bytes_and_long_free_text_are_kept_exactly(store):
    vectors = np.random.default_rng(3).normal(size=(2, 384)).astype(np.float32)
    vectors[0, :4] = 0.0  # zero bytes inside the blob
    long_author = "Correspondent " * 150  # 2,100 characters: more than any VARCHAR the schema used to have
    store.save_article(article("id:Ünïcode", NOW, source="S" * 1000, author=long_author, dateline="D" * 600,
                               external_id="x" * 900),
                       [Passage(position=i, text=f"Passage {i} — “quoted”.", start=0, end=10,
                                speakers_json=json.dumps([{"name": "Zoë", "description": "a trader"}]),
                                embedding=vector_to_bytes(vectors[i])) for i in range(2)])
    (stored,) = store.latest_articles(1)
    assert stored.author == long_author and len(stored.source) == 1000 and len(stored.external_id) == 900
    assert store.find_article("id:Ünïcode") is not None
    assert store.find_article("id:ünïcode") is None, "keys are case-sensitive on every database"
    passages = store.article_passages(stored.id)
    assert passages[0].speakers[0].name == "Zoë" and passages[1].text == "Passage 1 — “quoted”."
    ids, blobs = next(store.iter_embeddings())
    assert all(isinstance(b, bytes) for b in blobs)
    assert np.array_equal(bytes_to_matrix(blobs, 384), vectors)

    subscriber = store.save_subscriber(Subscriber(chat_id=BIG_CHAT, next_due_at=NOW, next_due_date="2024-03-30"))
    assert store.subscriber(BIG_CHAT).id == subscriber.id
    edition = store.add_edition(DigestEdition(topic_key="", since=NOW - timedelta(days=1), until=NOW,
                                              payload_json="{}"))
    store.plan_deliveries([DigestDelivery(subscriber_id=subscriber.id, chat_id=BIG_CHAT, local_date="2024-03-30",
                                          slot_at=NOW, edition_id=edition.id)], {})
    (delivery,) = store.deliveries_with_status(["pending"])
    assert delivery.chat_id == BIG_CHAT and delivery.slot_at == NOW
    feed = store.add_feed(Feed(url="https://example.org/rss", notify_chat_id=BIG_CHAT, last_modified="L" * 500))
    assert store.feed(feed.id).notify_chat_id == BIG_CHAT


def test_booleans_are_counted_and_upserts_do_not_collide(store):
    feed = store.add_feed(Feed(url="https://example.org/rss"))
    store.record_feed_entries([
        FeedEntry(feed_id=feed.id, entry_key="a", article_key="k1", full_text=True),
        FeedEntry(feed_id=feed.id, entry_key="b", article_key="k2", full_text=False),
        FeedEntry(feed_id=feed.id, entry_key="c", article_key=None, full_text=False),
    ])
    assert store.feed_entry_counts() == {feed.id: (2, 1)}
    store.set_meta("snapshot", "1")
    store.set_meta("snapshot", "2")
    assert store.get_meta("snapshot") == "2"


def test_conversations_are_compare_and_set_and_topics_grow_without_losing_passages(store):
    assert store.save_conversation("tg:1", {"query": "a"}, None)
    assert not store.save_conversation("tg:1", {"query": "b"}, None), "a second first write loses"
    row = store.load_conversation("tg:1")
    assert (row.version, json.loads(row.state_json)) == (1, {"query": "a"})
    assert store.save_conversation("tg:1", {"query": "c"}, 1)
    assert not store.save_conversation("tg:1", {"query": "stale"}, 1), "written meanwhile: the stale save loses"
    assert json.loads(store.load_conversation("tg:1").state_json) == {"query": "c"}

    topic = store.create_topic("tg:1", "q", [1, 2])
    workers = [threading.Thread(target=store.extend_topic, args=(topic.id, [10 * n + 1, 10 * n + 2]))
               for n in range(1, 9)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    shown = store.topic(topic.id).shown
    assert sorted(shown) == sorted([1, 2] + [10 * n + k for n in range(1, 9) for k in (1, 2)])
    assert len(shown) == len(set(shown))


def _due_subscribers(store: Store, count: int) -> None:
    for chat in range(count):
        store.save_subscriber(Subscriber(chat_id=1000 + chat, next_due_at=NOW - timedelta(minutes=1),
                                         next_due_date="2024-03-30"))


def test_claims_are_exclusive_until_the_holder_is_gone(store):
    _due_subscribers(store, 10)
    first = Claim.new("replica-a", 60)
    second = Claim.new("replica-b", 60)
    taken = store.claim_due_subscribers(NOW, first, limit=6)
    rest = store.claim_due_subscribers(NOW, second, limit=100)
    assert len(taken) == 6 and len(rest) == 4
    assert not {s.id for s in taken} & {s.id for s in rest}
    assert store.claim_due_subscribers(NOW, Claim.new("replica-c", 60)) == [], "everything is held"

    restarted = Claim.new("replica-a", 60)  # the same replica after a restart takes back its own at once
    assert {s.id for s in store.claim_due_subscribers(NOW, restarted)} == {s.id for s in taken}

    short = Claim("replica-b/gone", "replica-b", timedelta(seconds=-1))  # a holder whose lease has run out
    store.release_subscribers(second.owner)
    assert len(store.claim_due_subscribers(NOW, short)) == 4
    assert len(store.claim_due_subscribers(NOW, Claim.new("replica-d", 60))) == 4, "an expired claim is free"

    edition = store.add_edition(DigestEdition(topic_key="", since=NOW, until=NOW, payload_json="{}"))
    subscriber = taken[0]
    store.plan_deliveries([DigestDelivery(subscriber_id=subscriber.id, chat_id=subscriber.chat_id,
                                          local_date="2024-03-30", slot_at=NOW, edition_id=edition.id)], {})
    (delivery,) = store.claim_deliveries(NOW, first)
    assert store.update_delivery(delivery.id, expect=["pending"], owner=second.owner, status="sending") is None
    assert store.update_delivery(delivery.id, expect=["pending"], owner=first.owner, status="sending") is not None
    assert store.update_delivery(delivery.id, expect=["pending"], owner=first.owner, status="sent") is None


def test_replicas_claiming_at_once_take_every_delivery_exactly_once(store):
    _due_subscribers(store, 120)
    edition = store.add_edition(DigestEdition(topic_key="", since=NOW, until=NOW, payload_json="{}"))
    rows = store.due_subscribers(NOW)
    added = store.plan_deliveries([DigestDelivery(subscriber_id=s.id, chat_id=s.chat_id, local_date="2024-03-30",
                                                  slot_at=NOW, edition_id=edition.id) for s in rows], {})
    assert added == 120
    assert store.plan_deliveries([DigestDelivery(subscriber_id=rows[0].id, chat_id=rows[0].chat_id,
                                                 local_date="2024-03-30", slot_at=NOW, edition_id=edition.id)],
                                 {}) == 0, "the (subscriber, local date) key keeps it to one"
    got: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def replica(name: str) -> None:
        claim = Claim.new(name, 60)
        mine = got.setdefault(name, [])
        try:
            while batch := store.claim_deliveries(NOW, claim, limit=3):
                mine.extend(d.id for d in batch)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=replica, args=(f"replica-{n}",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    claimed = [i for ids in got.values() for i in ids]
    assert len(claimed) == 120 and len(set(claimed)) == 120
    assert sum(1 for ids in got.values() if ids) >= 2, "the work was shared"
