"""Daily digest subscriptions: settings, the schedule (zoneinfo, DST), and one delivery record per local day.

Knows nothing of Telegram. The database is the source of truth: each subscriber row carries its next slot
(`next_due_at`, UTC, and `next_due_date`, the subscriber's local date), so "who is due" is one query that a
restarted bot asks again, and a `DigestDelivery` row keyed by (subscriber, local date) is created in the
same transaction that moves the schedule on. Sending walks each row through pending -> sending -> sent;
the row says what to do after a crash:

* pending: nothing left the process -> send it.
* sending: one message was handed to Telegram and the process died before hearing back -> it is assumed
  delivered (`uncertain` is set and logged) and never sent again; any later parts are sent.
* retry: Telegram certainly did not act on it (429, 5xx, connection refused) -> sent again with backoff,
  then `failed` with the error after BRIEFBOT_DIGEST_MAX_ATTEMPTS.

So nobody gets a second copy, and the only way to miss a digest is a crash in the instant between
writing "sending" and the request leaving the machine (see docs/digests.md).

Several processes (replicas) may run this on one database: subscribers to compose for and deliveries to send
are claimed row by row, and only the holder of a delivery may move it on (storage.Claim, docs/database.md).
"""

from __future__ import annotations

import difflib
import json
import logging
import re
import threading
import time as _time
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Protocol, Sequence
from zoneinfo import ZoneInfo, available_timezones

import numpy as np

from bot.corpus import Corpus
from bot.digest import DEFAULT_WINDOW, BadTopics, Digest, DigestComposer, StoryPool, normalise_topics, topic_key
from bot.settings import Settings
from bot.storage import Claim, DigestDelivery, DigestEdition, Subscriber

log = logging.getLogger(__name__)

MAX_LOOKBACK = timedelta(hours=72)  # a longer gap since the last digest (paused, unsubscribed) starts afresh
COMMON_TIMEZONES = [
    "UTC", "Europe/London", "Europe/Berlin", "Europe/Moscow", "America/New_York", "America/Chicago",
    "America/Los_Angeles", "America/Sao_Paulo", "Africa/Lagos", "Asia/Dubai", "Asia/Kolkata", "Asia/Shanghai",
    "Asia/Tokyo", "Australia/Sydney",
]
_ALIASES = {"utc": "UTC", "gmt": "UTC", "z": "UTC", "zulu": "UTC", "universal": "UTC"}
RETRY_BACKOFF_MINUTES = (1, 2, 5, 15, 30, 60)
SCHEDULE = ("next_due_at", "next_due_date")


# --- time -------------------------------------------------------------------------------------------------------
class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class FakeClock:
    """A clock the tests set and advance; nothing sleeps for real hours."""

    def __init__(self, start: datetime):
        self._now = _utc(start)

    def now(self) -> datetime:
        return self._now

    def set(self, value: datetime) -> None:
        self._now = _utc(value)

    def advance(self, **delta: float) -> datetime:
        self._now += timedelta(**delta)
        return self._now


class ShiftedClock:
    """Starts at a given instant and then runs at normal speed (BRIEFBOT_FAKE_NOW, for demos and kill tests)."""

    def __init__(self, start: datetime):
        self._start = _utc(start)
        self._t0 = _time.monotonic()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=_time.monotonic() - self._t0)


def clock_from_settings(settings: Settings) -> Clock:
    if settings.fake_now:
        return ShiftedClock(datetime.fromisoformat(settings.fake_now))
    return SystemClock()


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


# --- settings a user types --------------------------------------------------------------------------------------
class BadSetting(ValueError):
    """A time, time zone or topic that can't be used; the text is safe to show the user."""

    def __init__(self, message: str, suggestions: Sequence[str] = ()):
        super().__init__(message)
        self.suggestions = list(suggestions)


def parse_time(text: str) -> str:
    """"7:30", "07:30", "0730", "7.30" or "7" -> "07:30" (24-hour clock)."""
    raw = (text or "").strip().lower()
    match = re.fullmatch(r"(\d{1,2})(?:[:.h]?(\d{2}))?", raw)
    if not match:
        raise BadSetting(f"“{raw[:20]}” isn't a time I understand. Use the 24-hour clock, for example /time 07:30")
    hour, minute = int(match.group(1)), int(match.group(2) or 0)
    if hour > 23 or minute > 59:
        raise BadSetting(f"{raw} isn't a time of day. Use HH:MM between 00:00 and 23:59, for example /time 07:30")
    return f"{hour:02d}:{minute:02d}"


def _zones() -> dict[str, str]:
    return {name.lower(): name for name in available_timezones()}


def resolve_timezone(text: str) -> str:
    """An IANA name ("Europe/Berlin"), case-insensitively, or a city ("berlin", "new york") that names one zone.

    Raises BadSetting with the closest names as suggestions.
    """
    raw = " ".join((text or "").split())
    if not raw:
        raise BadSetting("Which time zone? For example /timezone Europe/Berlin", COMMON_TIMEZONES[:6])
    key = raw.lower().replace(" ", "_")
    zones = _zones()
    if key in _ALIASES:
        return _ALIASES[key]
    if key in zones:
        return zones[key]
    cities: dict[str, list[str]] = {}
    for lower, name in zones.items():
        cities.setdefault(lower.rsplit("/", 1)[-1], []).append(name)
    if key in cities and len(cities[key]) == 1:
        return cities[key][0]
    suggestions = list(dict.fromkeys(
        [zones[m] for m in difflib.get_close_matches(key, zones, n=5, cutoff=0.6)]
        + [n for m in difflib.get_close_matches(key.rsplit("/", 1)[-1], cities, n=5, cutoff=0.7) for n in cities[m]]
        + cities.get(key, [])
    ))[:5]
    shown = raw if len(raw) <= 40 else raw[:40] + "…"
    if suggestions:
        raise BadSetting(f"I don't know the time zone “{shown}”. Did you mean one of these?", suggestions)
    raise BadSetting(f"I don't know the time zone “{shown}”. Use a name like Europe/Berlin or America/New_York.",
                     COMMON_TIMEZONES[:6])


# --- the schedule -----------------------------------------------------------------------------------------------
def slot_at(local_date: date, hhmm: str, zone: str) -> datetime:
    """The UTC instant of HH:MM on a local date. A time skipped by a DST change runs an hour later that day;
    a time that happens twice (autumn) is the first one."""
    hour, minute = (int(x) for x in hhmm.split(":"))
    return datetime.combine(local_date, time(hour, minute), tzinfo=ZoneInfo(zone)).astimezone(timezone.utc)


def local_date_of(instant: datetime, zone: str) -> date:
    return _utc(instant).astimezone(ZoneInfo(zone)).date()


def first_slot(hhmm: str, zone: str, not_before: datetime) -> tuple[date, datetime]:
    """The earliest slot at or after `not_before`."""
    not_before = _utc(not_before)
    start = local_date_of(not_before, zone)
    for offset in range(-1, 3):
        day = start + timedelta(days=offset)
        at = slot_at(day, hhmm, zone)
        if at >= not_before:
            return day, at
    raise AssertionError("unreachable: a day always has the slot")


# --- what the handlers and the CLI show ---------------------------------------------------------------------------
@dataclass
class SubscriptionView:
    chat_id: int
    subscribed: bool
    paused: bool
    topics: list[str]
    digest_time: str
    timezone: str
    next_digest: datetime | None  # in the subscriber's time zone
    last_digest: datetime | None
    recent: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "chat_id": self.chat_id, "subscribed": self.subscribed, "paused": self.paused, "topics": self.topics,
            "time": self.digest_time, "timezone": self.timezone,
            "next_digest": self.next_digest.isoformat() if self.next_digest else None,
            "last_digest": self.last_digest.isoformat() if self.last_digest else None, "recent": self.recent,
        }


@dataclass
class Sendable:
    """A delivery ready to go, with the digest it carries."""

    delivery_id: int
    chat_id: int
    subscriber_id: int
    timezone: str
    edition_id: int
    digest: Digest
    parts_sent: int
    attempts: int


# --- the service ----------------------------------------------------------------------------------------------------
class DigestService:
    """Everything a subscriber can do, the schedule, composition and the delivery records."""

    def __init__(self, corpus: Corpus, settings: Settings, clock: Clock | None = None):
        self.corpus = corpus
        self.store = corpus.store
        self.settings = settings
        self.clock = clock or clock_from_settings(settings)
        self.composer = DigestComposer(self.store, settings, lambda: corpus.encoder, corpus.index.dim)
        # This process's hold on subscribers and deliveries, so replicas on one database share the fan-out.
        self.claim = Claim.new(settings.replica_name, settings.digest_lease_seconds)
        self.run_id = self.claim.owner
        self._editions: dict[int, Digest] = {}
        self._editions_lock = threading.Lock()

    # subscriber settings ------------------------------------------------------------------------------------------
    def _subscriber(self, chat_id: int, create: bool = True) -> Subscriber | None:
        row = self.store.subscriber(chat_id)
        if row is None and create:
            row = Subscriber(chat_id=chat_id, subscribed=False, digest_time=parse_time(self.settings.digest_time),
                             timezone=resolve_timezone(self.settings.digest_timezone))
        return row

    def _reschedule(self, row: Subscriber) -> Subscriber:
        """Point the row at its next slot from now, skipping a local day that already had its digest."""
        if not row.subscribed or row.paused_reason:
            row.next_due_at, row.next_due_date = None, None
            return row
        day, at = first_slot(row.digest_time, row.timezone, self.clock.now())
        if row.id is not None and self.store.has_delivery(row.id, day.isoformat()):
            day = day + timedelta(days=1)
            at = slot_at(day, row.digest_time, row.timezone)
        row.next_due_at, row.next_due_date = at, day.isoformat()
        return row

    def view(self, chat_id: int) -> SubscriptionView:
        row = self._subscriber(chat_id)
        recent = []
        if row.id is not None:
            recent = [{"date": d.local_date, "status": d.status, "uncertain": d.uncertain, "error": d.last_error}
                      for d in self.store.recent_deliveries(row.id, limit=5)]
        zone = ZoneInfo(row.timezone)
        return SubscriptionView(
            chat_id=chat_id, subscribed=row.subscribed, paused=bool(row.paused_reason), topics=row.topics,
            digest_time=row.digest_time, timezone=row.timezone,
            next_digest=_utc(row.next_due_at).astimezone(zone) if row.next_due_at else None,
            last_digest=_utc(row.last_digest_at).astimezone(zone) if row.last_digest_at else None, recent=recent,
        )

    def subscribe(self, chat_id: int, topics: Sequence[str] | str = ()) -> SubscriptionView:
        """Subscribe (or re-subscribe) a chat; topics given are added to the ones it follows."""
        row = self._subscriber(chat_id)
        try:
            new_topics = normalise_topics(topics, row.topics, self.settings.digest_max_topics)
        except BadTopics as exc:
            raise BadSetting(str(exc)) from None
        row.topics_json = json.dumps(new_topics)
        row.subscribed, row.paused_reason = True, None
        row = self.store.save_subscriber(row, ("topics_json", "subscribed", "paused_reason"))
        self.store.save_subscriber(self._reschedule(row), SCHEDULE)
        return self.view(chat_id)

    def unsubscribe(self, chat_id: int) -> bool:
        """Stop the daily digest; settings are kept for a later /subscribe. False if it wasn't subscribed."""
        row = self._subscriber(chat_id, create=False)
        if row is None or not row.subscribed:
            return False
        row.subscribed = False
        self.store.save_subscriber(self._reschedule(row), ("subscribed", *SCHEDULE))
        return True

    def set_time(self, chat_id: int, text: str) -> SubscriptionView:
        row = self._subscriber(chat_id)
        row.digest_time = parse_time(text)
        row = self.store.save_subscriber(row, ("digest_time",))
        self.store.save_subscriber(self._reschedule(row), SCHEDULE)
        return self.view(chat_id)

    def set_timezone(self, chat_id: int, text: str) -> SubscriptionView:
        row = self._subscriber(chat_id)
        row.timezone = resolve_timezone(text)
        row = self.store.save_subscriber(row, ("timezone",))
        self.store.save_subscriber(self._reschedule(row), SCHEDULE)
        return self.view(chat_id)

    def add_topics(self, chat_id: int, topics: Sequence[str] | str) -> SubscriptionView:
        row = self._subscriber(chat_id)
        try:
            row.topics_json = json.dumps(normalise_topics(topics, row.topics, self.settings.digest_max_topics))
        except BadTopics as exc:
            raise BadSetting(str(exc)) from None
        self.store.save_subscriber(row, ("topics_json",))
        return self.view(chat_id)

    def remove_topics(self, chat_id: int, items: Sequence[str] | str) -> tuple[SubscriptionView, list[str]]:
        """Remove topics by text or by their number in /topics; returns the view and what was not found."""
        row = self._subscriber(chat_id)
        topics = row.topics
        wanted = normalise_topics(items, limit=10_000) if isinstance(items, str) else list(items)
        missing = []
        for item in wanted:
            if item.isdigit() and 1 <= int(item) <= len(row.topics):
                target = row.topics[int(item) - 1]
            else:
                target = next((t for t in topics if t.lower() == item.lower()), None)
            if target is None or target not in topics:
                missing.append(item)
            else:
                topics.remove(target)
        row.topics_json = json.dumps(topics)
        self.store.save_subscriber(row, ("topics_json",))
        return self.view(chat_id), missing

    def clear_topics(self, chat_id: int) -> SubscriptionView:
        row = self._subscriber(chat_id)
        row.topics_json = "[]"
        self.store.save_subscriber(row, ("topics_json",))
        return self.view(chat_id)

    def pause_blocked(self, chat_id: int) -> bool:
        """The chat blocked the bot (403 or my_chat_member): no more sends until it comes back."""
        row = self._subscriber(chat_id, create=False)
        if row is None or row.paused_reason == "blocked":
            return False
        row.paused_reason = "blocked"
        self.store.save_subscriber(self._reschedule(row), ("paused_reason", *SCHEDULE))
        log.info("digest subscription of chat %s paused: the bot was blocked", chat_id)
        return True

    def resume(self, chat_id: int) -> bool:
        """The chat is reachable again (unblocked, or it wrote /start): the schedule picks up from now."""
        row = self._subscriber(chat_id, create=False)
        if row is None or row.paused_reason is None:
            return False
        row.paused_reason = None
        self.store.save_subscriber(self._reschedule(row), ("paused_reason", *SCHEDULE))
        log.info("digest subscription of chat %s resumed", chat_id)
        return row.subscribed

    # composing ---------------------------------------------------------------------------------------------------
    def since_for(self, row: Subscriber | None, now: datetime) -> datetime:
        """Stories since the last digest, or the last 24 hours (also after a long pause)."""
        last = _utc(row.last_digest_at) if row is not None and row.last_digest_at else None
        if last is not None and now - MAX_LOOKBACK <= last < now:
            return last
        return now - DEFAULT_WINDOW

    def preview(self, topics: Sequence[str] | str = (), now: datetime | None = None,
                since: datetime | None = None, chat_id: int | None = None) -> Digest:
        """What a subscriber would receive now (`briefbot digest`, and /digest): nothing is recorded."""
        now = _utc(now) if now else self.clock.now()
        row = self.store.subscriber(chat_id) if chat_id is not None else None
        if isinstance(topics, str):
            topics = normalise_topics(topics, limit=10_000)
        topics = list(topics) or (row.topics if row else [])
        since = _utc(since) if since else self.since_for(row, now)
        since, until = self.composer.window(now, since)
        pool = self.composer.pool(since, until)
        return self.composer.compose(pool, topics, self.composer.embed_topics(topics), since)

    # the fan-out, step by step (each called from a worker thread) ---------------------------------------------------
    def recover_interrupted(self) -> dict[str, int]:
        """What a process that is gone left half-done (a crash, a kill, a replica that died): a part that was
        in flight is assumed delivered and never sent again; the rest of that digest is sent as usual.

        Asked on every fan-out run, not only at start-up, because with replicas the process that is gone may be
        another one; its rows count as abandoned once its lease has run out (see storage.Claim).
        """
        counts = {"uncertain": 0}
        for row in self.store.interrupted_deliveries(self.claim):
            parts_sent = row.parts_sent + 1
            done = row.parts_total is not None and parts_sent >= row.parts_total
            taken = self.store.update_delivery(
                row.id, expect=["sending"], owner=row.run_id, parts_sent=parts_sent, uncertain=True,
                status="sent" if done else "pending", run_id=None, lease_until=None,
                last_error="the bot stopped while this message was in flight; assumed delivered",
                **({"sent_at": self.clock.now()} if done else {}),
            )
            if taken is None:
                continue  # its holder moved it on after all, or another process recovered it first
            if done:
                until = self._edition_until(row.edition_id)
                if until:
                    self.store.finish_delivery(row.id, until)
            counts["uncertain"] += 1
            log.warning("digest for chat %s (%s) was in flight when %s stopped: assumed delivered, not resent",
                        row.chat_id, row.local_date, row.run_id or "the bot")
        return counts

    def _edition_until(self, edition_id: int) -> datetime | None:
        edition = self.store.edition(edition_id)
        until = json.loads(edition.payload_json)["until"] if edition else None
        return datetime.fromisoformat(until) if until else None

    def prepare_due(self, now: datetime | None = None) -> int:
        """Record today's delivery for every subscriber whose slot has come, composing once per topic set.

        Returns how many deliveries were recorded. The schedule moves on in the same transaction.
        """
        now = _utc(now) if now else self.clock.now()
        due = self.store.claim_due_subscribers(now, self.claim)
        if not due:
            return 0
        try:
            return self._plan(due, now)
        except BaseException:
            self.store.release_subscribers(self.claim.owner)  # let another process (or the next run) have them
            raise

    def _plan(self, due: list[Subscriber], now: datetime) -> int:
        groups: dict[tuple[str, datetime], list[tuple[Subscriber, date]]] = {}
        schedules: dict[int, tuple[datetime | None, str | None]] = {}
        for row in due:
            today = local_date_of(now, row.timezone)
            day = date.fromisoformat(row.next_due_date) if row.next_due_date else today
            if day < today:  # the bot was down over the local midnight: that day is gone, today may still be due
                log.warning("chat %s missed its digest of %s (the bot was not running); today's comes instead",
                            row.chat_id, day)
                day = today
                if slot_at(day, row.digest_time, row.timezone) > now:
                    schedules[row.id] = (slot_at(day, row.digest_time, row.timezone), day.isoformat())
                    continue
            elif day > today:  # the zone's rules moved the slot: point it at the right one
                schedules[row.id] = self._reschedule(row).next_due_at, row.next_due_date
                continue
            nxt = day + timedelta(days=1)
            schedules[row.id] = (slot_at(nxt, row.digest_time, row.timezone), nxt.isoformat())
            key = (topic_key(row.topics), self.since_for(row, now))
            groups.setdefault(key, []).append((row, day))
        deliveries: list[DigestDelivery] = []
        digests = self.compose_groups({key: members[0][0].topics for key, members in groups.items()}, now)
        for (key, since), members in groups.items():
            edition = self.store.add_edition(DigestEdition(topic_key=key, since=since, until=now,
                                                           payload_json=json.dumps(digests[key, since].to_json())))
            for row, day in members:
                deliveries.append(DigestDelivery(
                    subscriber_id=row.id, chat_id=row.chat_id, local_date=day.isoformat(),
                    slot_at=slot_at(day, row.digest_time, row.timezone), edition_id=edition.id))
        added = self.store.plan_deliveries(deliveries, schedules, owner=self.claim.owner)
        if added:
            log.info("%d digest(s) due: %d edition(s) composed for %d topic set(s)", added, len(groups),
                     len({k for k, _ in groups}))
        return added

    def claim_sendable(self, now: datetime | None = None, limit: int = 1) -> list[Sendable]:
        """Claim up to `limit` deliveries to send now (no other live process holds them; see storage.Claim).
        One left over from an earlier local day is expired, not sent late."""
        now = _utc(now) if now else self.clock.now()
        owner = self.claim.owner
        result: list[Sendable] = []
        for row in self.store.claim_deliveries(now, self.claim, limit):
            subscriber = self.store.subscriber_by_id(row.subscriber_id)
            if subscriber is None or not subscriber.subscribed:
                self.store.update_delivery(row.id, expect=["pending", "retry"], owner=owner, status="cancelled",
                                           lease_until=None)
                continue
            if subscriber.paused_reason:
                self.store.update_delivery(row.id, expect=["pending", "retry"], owner=owner, status="paused",
                                           last_error=f"subscription paused: {subscriber.paused_reason}",
                                           lease_until=None)
                continue
            if local_date_of(now, subscriber.timezone).isoformat() > row.local_date:
                self.store.update_delivery(row.id, expect=["pending", "retry"], owner=owner, status="expired",
                                           last_error="the local day ended before it could be sent", lease_until=None)
                log.warning("digest for chat %s of %s expired unsent", row.chat_id, row.local_date)
                continue
            result.append(Sendable(row.id, row.chat_id, row.subscriber_id, subscriber.timezone, row.edition_id,
                                   self._digest(row.edition_id), row.parts_sent, row.attempts))
        return result

    def _digest(self, edition_id: int) -> Digest:
        """Editions are shared by many deliveries: each is read and parsed once per process."""
        with self._editions_lock:
            digest = self._editions.get(edition_id)
        if digest is None:
            digest = Digest.from_json(json.loads(self.store.edition(edition_id).payload_json))
            with self._editions_lock:
                if len(self._editions) > 512:
                    self._editions.clear()
                self._editions[edition_id] = digest
        return digest

    def renew_claims(self) -> int:
        """The heartbeat: extend this process's leases, so others know it is alive. Returns rows held."""
        return self.store.renew_leases(self.claim)

    def release_claims(self) -> None:
        """Hand back whatever this process claimed but has not started sending (it is stopping)."""
        released = self.store.release_deliveries(self.claim.owner) + self.store.release_subscribers(self.claim.owner)
        if released:
            log.info("handed back %d claimed digest row(s)", released)

    def mark_sending(self, delivery_id: int, part: int, parts_total: int) -> bool:
        """Written just before a part goes to Telegram; False if the delivery is no longer ours to send."""
        row = self.store.update_delivery(delivery_id, expect=["pending", "retry", "sending"], owner=self.claim.owner,
                                         status="sending", parts_sent=part, parts_total=parts_total,
                                         lease_until=self.claim.until())
        return row is not None

    def mark_part_sent(self, delivery_id: int, part: int, message_id: int | None) -> bool:
        """A part arrived. False if the delivery was taken over meanwhile (this process looked dead): then the
        part is already counted as delivered by whoever took it, and this process must not go on with it."""
        owner = self.claim.owner
        row = self.store.delivery(delivery_id)
        if row is None or row.run_id != owner:
            return False
        ids = json.loads(row.message_ids_json or "[]") + ([message_id] if message_id is not None else [])
        done = row.parts_total is not None and part + 1 >= row.parts_total
        if done:
            finished = self.store.finish_delivery(
                delivery_id, self._edition_until(row.edition_id), expect=["sending"], owner=owner, status="sent",
                parts_sent=part + 1, message_ids_json=json.dumps(ids), sent_at=self.clock.now(), lease_until=None)
            return finished is not None
        moved = self.store.update_delivery(delivery_id, expect=["sending"], owner=owner, status="pending",
                                           parts_sent=part + 1, message_ids_json=json.dumps(ids),
                                           lease_until=self.claim.until())
        return moved is not None

    def mark_uncertain(self, delivery_id: int, part: int, error: str) -> bool:
        """The connection broke after the request left: Telegram may have sent it, so it is not sent again."""
        row = self.store.update_delivery(delivery_id, owner=self.claim.owner, uncertain=True, last_error=error)
        log.warning("digest part %d for chat %s: %s; assumed delivered", part, row.chat_id if row else "?", error)
        return row is not None and self.mark_part_sent(delivery_id, part, None)

    def mark_retry(self, delivery_id: int, error: str) -> str:
        """A failure Telegram did not act on: try again later with backoff, or give up (recorded) after the last.
        The delivery is let go, so whichever process is running when the retry is due sends it."""
        owner = self.claim.owner
        row = self.store.delivery(delivery_id)
        if row is None or row.run_id != owner:
            return "lost"
        attempts = row.attempts + 1
        if attempts >= self.settings.digest_max_attempts:
            self.store.update_delivery(delivery_id, owner=owner, status="failed", attempts=attempts, last_error=error,
                                       run_id=None, lease_until=None)
            log.error("digest for chat %s of %s failed after %d attempts: %s", row.chat_id, row.local_date,
                      attempts, error)
            return "failed"
        wait = RETRY_BACKOFF_MINUTES[min(attempts - 1, len(RETRY_BACKOFF_MINUTES) - 1)]
        self.store.update_delivery(delivery_id, owner=owner, status="retry", attempts=attempts, last_error=error,
                                   next_attempt_at=self.clock.now() + timedelta(minutes=wait), run_id=None,
                                   lease_until=None)
        log.warning("digest for chat %s: %s; retry %d in %d min", row.chat_id, error, attempts, wait)
        return "retry"

    def mark_failed(self, delivery_id: int, error: str) -> None:
        """Telegram refused the request itself (400): repeating it cannot help. Recorded, and logged."""
        row = self.store.update_delivery(delivery_id, owner=self.claim.owner, status="failed", last_error=error,
                                         run_id=None, lease_until=None)
        log.error("digest for chat %s refused by Telegram: %s", row.chat_id if row else "?", error)

    def mark_blocked(self, delivery_id: int, error: str) -> None:
        row = self.store.update_delivery(delivery_id, owner=self.claim.owner, status="paused", last_error=error,
                                         run_id=None, lease_until=None)
        if row is not None:
            self.pause_blocked(row.chat_id)

    # for the CLI and the benchmark -----------------------------------------------------------------------------------
    def subscriptions(self) -> list[SubscriptionView]:
        return [self.view(row.chat_id) for row in self.store.list_subscribers()]

    def compose_groups(self, groups: dict[tuple[str, datetime], list[str]],
                       now: datetime) -> dict[tuple[str, datetime], Digest]:
        """One digest per (topic set, since): one story pool per window, every distinct topic embedded once."""
        pools: dict[datetime, StoryPool] = {}
        all_topics = sorted({t for topics in groups.values() for t in topics})
        vectors = dict(zip(all_topics, self.composer.embed_topics(all_topics))) if all_topics else {}
        digests = {}
        for (key, since), topics in groups.items():
            if since not in pools:
                pools[since] = self.composer.pool(*self.composer.window(now, since))
            matrix = np.vstack([vectors[t] for t in topics]) if topics else None
            digests[key, since] = self.composer.compose(pools[since], topics, matrix, since)
        return digests

    def group_and_compose(self, subscribers: Sequence[tuple[int, list[str]]], now: datetime,
                          since: datetime | None = None) -> dict[int, Digest]:
        """(chat id, topics) -> the digest each would get, composing once per distinct topic set (benchmark)."""
        since = self.composer.window(now, since)[0]
        groups = {(topic_key(topics), since): topics for _, topics in subscribers}
        digests = self.compose_groups(groups, now)
        return {chat_id: digests[topic_key(topics), since] for chat_id, topics in subscribers}
