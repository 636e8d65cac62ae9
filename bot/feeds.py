"""Feeds: the RSS and Atom sources the bot follows, polled on their own schedules, their new entries read in full.

A poll of one feed:

1. a conditional GET (If-None-Match / If-Modified-Since from the last answer): 304 means nothing new and costs
   nothing else;
2. feedparser reads RSS 2.0 / Atom (leniently: a feed that isn't well-formed XML still gives the entries it
   can; one that gives none fails with the parser's reason);
3. each entry not seen before (remembered per feed in FeedEntry) has its page fetched and the story extracted
   (index/pages.py); when the page can't be fetched or has no text, the feed's own summary stands in and the
   page is tried again on the next polls (304 or not), three attempts in all;
4. the articles go through the corpus's ingestion (keyed by the normalised URL, so one story under two links,
   or in two feeds, is stored once), then the feed's validators and schedule are saved.

Failures never stop other feeds: each has its reason logged and stored (`last_error`), and the feed's next
poll backs off (5 minutes, doubling, up to 6 hours or its own interval). A feed is "down" only after failing
for a whole day, and "ok" again on its first success. The schedule lives in the database, so restarts don't
matter and the CLI (`briefbot feeds poll`) and the bot share it.
"""

from __future__ import annotations

import io
import logging
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable
from urllib.parse import urljoin

from bot.corpus import Corpus, IngestReport, article_key
from bot.fetch import FEED, PAGE, Fetcher, FetchError, address_problem
from bot.settings import Settings
from bot.storage import Feed, FeedEntry
from bot.subscriptions import Clock, SystemClock
from index.pages import normalise_url, parse_page, summary_article
from index.parsers import ParseFailure
from index.types import ParsedArticle

log = logging.getLogger(__name__)

MIN_INTERVAL_MINUTES = 5
MAX_INTERVAL_MINUTES = 7 * 24 * 60
RETRY_AFTER_FAILURE = timedelta(minutes=5)
MAX_BACKOFF = timedelta(hours=6)
DOWN_AFTER = timedelta(days=1)
PAGE_ATTEMPTS = 3  # a page that failed is tried this many times in all, then the summary stays
INGEST_BATCH_PASSAGES = 16  # short encoder calls, so questions asked meanwhile don't wait long
MAX_URL_CHARS = 2000


class BadFeed(ValueError):
    """Input a person gave that can't be a feed (the message says why, politely)."""


class FeedExists(BadFeed):
    def __init__(self, feed: Feed):
        super().__init__(f"Already following that feed (#{feed.id}).")
        self.feed = feed


@dataclass
class PollOutcome:
    """What one feed's poll did, for logs, `briefbot feeds poll` and the admin who added it."""

    feed_id: int
    url: str
    title: str | None
    state: str  # "new" (entries read), "unchanged" (304 or nothing new), "failed"
    entries: int = 0  # new entries dealt with
    added: int = 0
    updated: int = 0
    from_summary: int = 0  # stored from the feed's summary because the page couldn't be read
    error: str | None = None
    status: str = "ok"
    next_poll_at: datetime | None = None
    notify_chat_id: int | None = None
    notes: list[str] = field(default_factory=list)  # entry-level problems (a page that failed, ...)

    @property
    def name(self) -> str:
        return self.title or self.url

    def line(self) -> str:
        if self.state == "failed":
            down = " — marked down (failing for a day)" if self.status == "down" else ""
            return f"#{self.feed_id} {self.name}: failed: {self.error}{down}"
        if self.state == "unchanged":
            return f"#{self.feed_id} {self.name}: nothing new"
        text = f"#{self.feed_id} {self.name}: {self.entries} new entr{'y' if self.entries == 1 else 'ies'}, " \
               f"{self.added} article(s) added, {self.updated} updated"
        if self.from_summary:
            text += f", {self.from_summary} from the feed's summary (page unreadable)"
        return text


@dataclass
class PollRun:
    outcomes: list[PollOutcome] = field(default_factory=list)
    report: IngestReport = field(default_factory=IngestReport)


@dataclass
class ImportResult:
    added: list[Feed] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    invalid: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Entry:
    key: str
    link: str
    title: str | None
    author: str | None
    published: datetime | None
    summary: str


def read_page(fetcher: Fetcher, url: str, **known) -> ParsedArticle | ParseFailure:
    """Fetch one article page safely and extract its story; what went wrong becomes a ParseFailure."""
    try:
        result = fetcher.fetch(url, kind=PAGE)
    except FetchError as exc:
        return ParseFailure(url, str(exc))
    return parse_page(result.content, result.url, **known)


def check_feed_url(url: str, allow_private: bool) -> str:
    """The normalised feed URL, or BadFeed saying what's wrong with it (literal private IPs included)."""
    url = (url or "").strip().strip("<>")
    if not url:
        raise BadFeed("Which feed? Give its address, like https://example.com/feed.xml")
    if len(url) > MAX_URL_CHARS:
        raise BadFeed("That address is too long to be a feed.")
    normalised = normalise_url(url)
    if not normalised.startswith(("http://", "https://")):
        raise BadFeed(f"“{url[:80]}” isn't a web address. Give the feed's full address, like "
                      "https://example.com/feed.xml")
    host = normalised.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
    if not allow_private:
        if host == "localhost" or host.endswith(".localhost"):
            raise BadFeed("That address is on this machine; feeds must be on the public web "
                          "(BRIEFBOT_ALLOW_PRIVATE_ADDRESSES is off).")
        try:
            problem = address_problem(host)
        except ValueError:
            problem = None  # a name, checked when it is resolved at each fetch
        if problem:
            raise BadFeed(f"{host} is {problem}; feeds must be on the public web "
                          "(BRIEFBOT_ALLOW_PRIVATE_ADDRESSES is off).")
    return normalised


def check_interval(minutes: int | None, default: int) -> int:
    if minutes is None:
        return default
    if not MIN_INTERVAL_MINUTES <= minutes <= MAX_INTERVAL_MINUTES:
        raise BadFeed(f"Poll every {MIN_INTERVAL_MINUTES} to {MAX_INTERVAL_MINUTES} minutes (a week), "
                      f"not {minutes}.")
    return minutes


def backoff(failures: int, interval_minutes: int) -> timedelta:
    """Wait before the next try after `failures` failures in a row: 5 min, 10, 20, ... up to 6 h (or the
    feed's own interval, if longer: a failing feed is never polled more often than a healthy one)."""
    cap = max(MAX_BACKOFF, timedelta(minutes=interval_minutes))
    return min(RETRY_AFTER_FAILURE * (2 ** max(0, failures - 1)), cap)


class FeedService:
    """Adding, listing, removing, importing, exporting and polling feeds, over one corpus."""

    def __init__(self, corpus: Corpus, settings: Settings, fetcher: Fetcher | None = None,
                 clock: Clock | None = None):
        self.corpus = corpus
        self.store = corpus.store
        self.settings = settings
        self.fetcher = fetcher or Fetcher.from_settings(settings)
        self.clock = clock or SystemClock()
        self.ingest_batch = INGEST_BATCH_PASSAGES
        self._polling = threading.Lock()  # one poll at a time in this process

    # --- managing feeds ---------------------------------------------------------------------------------------
    def add(self, url: str, every: int | None = None, notify_chat_id: int | None = None) -> Feed:
        """Follow a feed; its first poll is due at once. Raises BadFeed (FeedExists when already followed)."""
        normalised = check_feed_url(url, self.settings.allow_private_addresses)
        interval = check_interval(every, self.settings.feed_interval_minutes)
        existing = self.store.feed_by_url(normalised)
        if existing is not None:
            raise FeedExists(existing)
        feed = self.store.add_feed(Feed(url=normalised, interval_minutes=interval, next_poll_at=self.clock.now(),
                                        notify_chat_id=notify_chat_id))
        log.info("feed #%d added: %s (every %d min)", feed.id, feed.url, feed.interval_minutes)
        return feed

    def find(self, ref: str) -> Feed | None:
        """A feed by its number ("3" or "#3") or its address."""
        ref = (ref or "").strip()
        number = ref.lstrip("#")
        if number.isdigit():
            return self.store.feed(int(number))
        if not ref:
            return None
        return self.store.feed_by_url(normalise_url(ref)) or self.store.feed_by_url(ref)

    def remove(self, ref: str) -> Feed | None:
        """Stop following a feed (its articles stay). None when there is no such feed."""
        feed = self.find(ref)
        if feed is None or not self.store.delete_feed(feed.id):
            return None
        log.info("feed #%d removed: %s", feed.id, feed.url)
        return feed

    def feeds(self) -> list[tuple[Feed, int]]:
        """Every feed with the number of articles it has brought in."""
        counts = self.store.feed_entry_counts()
        return [(feed, counts.get(feed.id, (0, 0))[0]) for feed in self.store.list_feeds()]

    def import_opml(self, text: str | bytes) -> ImportResult:
        """Follow every feed (outline with an xmlUrl) of an OPML file, at the default interval."""
        try:
            root = ET.fromstring(text)
        except ET.ParseError as exc:
            raise BadFeed(f"not an OPML file: {exc}") from None
        if root.tag.lower() != "opml":
            raise BadFeed(f"not an OPML file: the document is <{root.tag}>, not <opml>")
        result = ImportResult()
        for outline in root.iter("outline"):
            url = outline.get("xmlUrl") or outline.get("xmlurl")
            if not url:
                continue
            try:
                feed = self.add(url)
            except FeedExists as exc:
                result.existing.append(exc.feed.url)
                continue
            except BadFeed as exc:
                result.invalid.append((url, str(exc)))
                continue
            title = outline.get("title") or outline.get("text")
            if title:
                feed = self.store.update_feed(feed.id, title=title.strip()[:300]) or feed
            result.added.append(feed)
        return result

    def export_opml(self) -> str:
        """Every feed as OPML 2.0, for another reader (or `feeds import` elsewhere)."""
        opml = ET.Element("opml", version="2.0")
        head = ET.SubElement(opml, "head")
        ET.SubElement(head, "title").text = "Briefbot feeds"
        ET.SubElement(head, "dateCreated").text = self.clock.now().strftime("%a, %d %b %Y %H:%M:%S GMT")
        body = ET.SubElement(opml, "body")
        for feed in self.store.list_feeds():
            name = feed.title or feed.url
            ET.SubElement(body, "outline", type="rss", text=name, title=name, xmlUrl=feed.url)
        ET.indent(opml)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(opml, encoding="unicode") + "\n"

    # --- polling ----------------------------------------------------------------------------------------------
    def poll_due(self, force: bool = False, keep_going: Callable[[], bool] = lambda: True) -> PollRun | None:
        """Poll every feed that is due (every feed with `force`); None when a poll is already running.

        Runs in a worker thread in the bot. Feeds are polled one by one, each feed's articles ingested in short
        batches; the index is saved and BM25 rebuilt once at the end.
        """
        if not self._polling.acquire(blocking=False):
            return None
        run = PollRun()
        try:
            now = self.clock.now()
            feeds = self.store.list_feeds() if force else self.store.due_feeds(now)
            for feed in feeds:
                if not keep_going():
                    break
                try:
                    outcome = self._poll(feed, run.report)
                except Exception as exc:  # noqa: BLE001 - one feed's surprise must not stop the others
                    log.exception("feed #%d %s: unexpected error while polling", feed.id, feed.url)
                    outcome = self._failed(feed, f"internal error: {type(exc).__name__}: {exc}")
                run.outcomes.append(outcome)
        finally:
            try:
                self.corpus.finish_ingest()
            finally:
                self._polling.release()
        return run

    def _poll(self, feed: Feed, report: IngestReport) -> PollOutcome:
        try:
            result = self.fetcher.fetch(feed.url, kind=FEED, etag=feed.etag, last_modified=feed.last_modified)
        except FetchError as exc:
            return self._failed(feed, str(exc))
        if result.not_modified:
            log.info("feed #%d %s: not modified (304)", feed.id, feed.url)
            outcome = PollOutcome(feed.id, feed.url, feed.title, "unchanged")
            self._retry_pages(feed, outcome, report)
            return self._succeeded(feed, outcome, result)
        parsed = self._parse_feed(feed, result.content, result)
        if isinstance(parsed, str):
            return self._failed(feed, parsed)
        title, entries, notes = parsed
        outcome = PollOutcome(feed.id, feed.url, title or feed.title, "unchanged", notes=notes)
        self._retry_pages(feed, outcome, report)
        self._read_entries(feed, outcome.name, entries, outcome, report)
        if outcome.entries or outcome.added or outcome.updated:
            outcome.state = "new"
        changes = {"title": title[:300]} if title and title != feed.title else {}
        return self._succeeded(feed, outcome, result, **changes)

    def _parse_feed(self, feed: Feed, content: bytes, result) -> tuple[str | None, list[_Entry], list[str]] | str:
        """(feed title, entries newest first as given, notes), or the reason it isn't a usable feed."""
        import feedparser

        headers = {"content-type": result.headers.get("content-type", ""), "content-location": result.url}
        # A stream, never bytes: feedparser opens bytes that look like a file name as a local file.
        parsed = feedparser.parse(io.BytesIO(content), response_headers=headers, sanitize_html=True,
                                  resolve_relative_uris=True)
        notes: list[str] = []
        entries: list[_Entry] = []
        for raw in parsed.entries[: self.settings.feed_max_entries]:
            entry = _entry(raw, result.url)
            if entry is None:
                notes.append(f"an entry without a link was skipped ({(raw.get('title') or 'untitled')[:60]})")
                continue
            entries.append(entry)
        problem = _bozo_reason(parsed)
        if problem and not entries:
            return f"not a readable feed: {problem}"
        if not parsed.entries and not parsed.version:
            return "no RSS or Atom feed found in the document"
        if problem:
            count = f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}"
            notes.append(f"feed is not well-formed ({problem}); read {count} leniently")
            log.warning("feed #%d %s: %s", feed.id, feed.url, notes[-1])
        for note in notes:
            if note.startswith("an entry without"):
                log.info("feed #%d %s: %s", feed.id, feed.url, note)
        title = " ".join((parsed.feed.get("title") or "").split()) or None
        return title, entries, notes

    def _read_entries(self, feed: Feed, feed_name: str, entries: list[_Entry], outcome: PollOutcome,
                      report: IngestReport) -> None:
        """Fetch and extract each new entry's page (or fall back to its summary), ingest, remember the entries."""
        seen = self.store.feed_entries(feed.id, [e.key for e in entries])
        now = self.clock.now()
        articles: list[ParsedArticle] = []
        records: list[FeedEntry] = []
        links: set[str] = set()
        for entry in entries:
            if entry.key in seen or entry.link in links or any(r.entry_key == entry.key for r in records):
                continue  # seen on an earlier poll, or twice in this one
            links.add(entry.link)
            outcome.entries += 1
            stored = self.store.find_article(f"url:{entry.link}"[:512])
            if stored is not None:  # the same story came in under this link from elsewhere
                records.append(FeedEntry(feed_id=feed.id, entry_key=entry.key, url=entry.link,
                                         article_key=stored.article_key, full_text=True, last_attempt_at=now))
                continue
            known = {"title": entry.title, "author": entry.author, "published": entry.published,
                     "source": feed_name if feed_name != feed.url else None}
            record = FeedEntry(feed_id=feed.id, entry_key=entry.key, url=entry.link, last_attempt_at=now, attempts=1)
            page = read_page(self.fetcher, entry.link, **known)
            if isinstance(page, ParsedArticle):
                articles.append(page)
                record.article_key, record.full_text = article_key(page), True
            else:
                record.last_error = page.reason
                note = f"page {entry.link} not read ({page.reason})"
                summary = summary_article(entry.summary, entry.link, **known)
                if isinstance(summary, ParsedArticle):
                    articles.append(summary)
                    record.article_key = article_key(summary)
                    outcome.from_summary += 1
                    note += "; stored the feed's summary instead"
                else:
                    note += f"; {summary.reason}"
                outcome.notes.append(note)
                log.warning("feed #%d %s: %s", feed.id, feed.url, note)
            records.append(record)
        self._ingest(articles, outcome, report)
        self.store.record_feed_entries(records)

    def _retry_pages(self, feed: Feed, outcome: PollOutcome, report: IngestReport) -> None:
        """Entries stored from the feed's summary get their page tried again, a few times in all (on every
        poll, 304 or not): the full story replaces the summary, under the summary's key."""
        pending = self.store.feed_entries_pending(feed.id, PAGE_ATTEMPTS)
        now = self.clock.now()
        articles: list[ParsedArticle] = []
        for record in pending:
            summary = self.store.find_article(record.article_key) if record.article_key else None
            known = {"title": summary.title, "author": summary.author, "published": _aware(summary.published),
                     "source": summary.source} if summary else {}
            page = read_page(self.fetcher, record.url, **known)
            record.attempts += 1
            record.last_attempt_at = now
            if isinstance(page, ParsedArticle):
                if summary is not None:
                    page.url = summary.url  # same key: the page replaces the summary instead of joining it
                articles.append(page)
                record.article_key, record.full_text, record.last_error = article_key(page), True, None
                outcome.notes.append(f"page {record.url} read on attempt {record.attempts}")
                log.info("feed #%d %s: %s", feed.id, feed.url, outcome.notes[-1])
            else:
                record.last_error = page.reason
                give_up = "; keeping the summary" if record.attempts >= PAGE_ATTEMPTS else ""
                log.info("feed #%d %s: page %s still not read (%s)%s", feed.id, feed.url, record.url, page.reason,
                         give_up)
        self._ingest(articles, outcome, report)
        self.store.record_feed_entries(pending)

    def _ingest(self, articles: list[ParsedArticle], outcome: PollOutcome, report: IngestReport) -> None:
        if not articles:
            return
        ingested = self.corpus.ingest_articles(articles, batch_passages=self.ingest_batch, finish=False)
        outcome.added += ingested.added
        outcome.updated += ingested.updated
        report.merge(ingested)
        for failure in ingested.failures:
            outcome.notes.append(f"{failure.origin}: {failure.reason}")

    # --- schedule -------------------------------------------------------------------------------------------------
    def _succeeded(self, feed: Feed, outcome: PollOutcome, result, **changes) -> PollOutcome:
        now = self.clock.now()
        next_poll = now + timedelta(minutes=feed.interval_minutes)
        if not result.not_modified:  # a 304 may omit the validators; the old ones still hold
            changes.update(etag=result.etag, last_modified=result.last_modified)
        if feed.status == "down" or feed.consecutive_failures:
            log.info("feed #%d %s: working again after %d failure(s)", feed.id, feed.url, feed.consecutive_failures)
        self.store.update_feed(feed.id, last_polled_at=now, last_success_at=now, next_poll_at=next_poll,
                               consecutive_failures=0, failing_since=None, status="ok", last_error=None, **changes)
        outcome.status, outcome.next_poll_at = "ok", next_poll
        outcome.notify_chat_id = feed.notify_chat_id
        if outcome.state == "new":
            log.info("%s", outcome.line())
        return outcome

    def _failed(self, feed: Feed, reason: str) -> PollOutcome:
        now = self.clock.now()
        failures = feed.consecutive_failures + 1
        since = _aware(feed.failing_since) or now
        status = "down" if now - since >= DOWN_AFTER else "ok"
        next_poll = now + backoff(failures, feed.interval_minutes)
        self.store.update_feed(feed.id, last_polled_at=now, next_poll_at=next_poll, consecutive_failures=failures,
                               failing_since=since, status=status, last_error=reason[:2000])
        if status == "down" and feed.status != "down":
            log.error("feed #%d %s is down: failing since %s (%d failures); last: %s",
                      feed.id, feed.url, since.isoformat(timespec="minutes"), failures, reason)
        else:
            log.warning("feed #%d %s: poll failed: %s (failure %d; next try %s)", feed.id, feed.url, reason,
                        failures, next_poll.isoformat(timespec="minutes"))
        return PollOutcome(feed.id, feed.url, feed.title, "failed", error=reason, status=status,
                           next_poll_at=next_poll, notify_chat_id=feed.notify_chat_id)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def _bozo_reason(parsed) -> str | None:
    if not parsed.get("bozo"):
        return None
    exc = parsed.get("bozo_exception")
    if exc is None:
        return "malformed"
    text = (exc.getMessage() if hasattr(exc, "getMessage") else str(exc)) or type(exc).__name__
    line = exc.getLineNumber() if hasattr(exc, "getLineNumber") else None
    if type(exc).__name__ == "SAXParseException":
        text = f"not well-formed XML: {text}" + (f" at line {line}" if line else "")
    elif "CharacterEncoding" in type(exc).__name__:
        text = f"character encoding problem: {text}"
    return text


def _entry(raw, base_url: str) -> _Entry | None:
    link = raw.get("link") or ""
    if not link:
        for candidate in raw.get("links") or []:
            if candidate.get("rel", "alternate") == "alternate" and candidate.get("href"):
                link = candidate["href"]
                break
    if not link:
        return None
    link = normalise_url(urljoin(base_url, link.strip()))
    if not link.startswith(("http://", "https://")):
        return None
    summary = ""
    for content in raw.get("content") or []:
        if len(content.get("value") or "") > len(summary):
            summary = content["value"]
    if len(raw.get("summary") or "") > len(summary):
        summary = raw["summary"]
    stamp = raw.get("published_parsed") or raw.get("updated_parsed")
    published = datetime(*stamp[:6], tzinfo=timezone.utc) if stamp else None
    guid = (raw.get("id") or "").strip()
    return _Entry(key=(guid or link)[:512], link=link, title=(raw.get("title") or "").strip() or None,
                  author=(raw.get("author") or "").strip() or None, published=published, summary=summary)
