"""Feeds end to end against a local news site (tests/feedsite.py): RSS and Atom in, pages read and ingested with the
real model, conditional polls, one story under two links, every kind of failure beside feeds that keep flowing,
backoff and "down only after a day" on a fake clock, OPML, and the CLI.

Each test ingests at most a handful of short gum-news articles (the model embeds ~50 passages a second).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone

import pytest

from bot.feeds import BadFeed, FeedExists, FeedService, backoff
from bot.fetch import Fetcher, FetchPolicy, address_problem
from bot.storage import Feed
from bot.subscriptions import FakeClock
from index.pages import normalise_url
from tests.feedsite import FeedSite, Route, atom, endless, load_articles, rss, slow

UA = "Briefbot-test/1"
SMALL = ["GUM_news_worship", "GUM_news_stampede", "GUM_news_crane", "GUM_news_asylum"]  # 132-317 words each


@pytest.fixture(scope="module")
def articles(shared_data) -> dict[str, dict]:
    return {a["id"]: a for a in load_articles(SMALL + ["GUM_news_korea", "GUM_news_flag"])}


@pytest.fixture
def site():
    with FeedSite() as running:
        yield running


def service(app, *, allow_private: bool = True, public: str | None = None, timeout: float = 2.0,
            max_bytes: int = 1_000_000, clock=None) -> FeedService:
    """The app's feed service with test limits. `public`: a made-up host name that resolves to the loopback test
    server and counts as the public web, so private addresses can be refused while that site keeps working."""
    app.settings.allow_private_addresses = allow_private
    policy = FetchPolicy(timeout=timeout, max_bytes=max_bytes, max_redirects=3, allow_private=allow_private,
                         user_agent=UA)

    def check(host: str, address: str) -> str | None:
        return None if host == public else address_problem(address)

    fetcher = Fetcher(policy, resolver=lambda host, port: ["127.0.0.1"], address_check=check)
    return FeedService(app.corpus, app.settings, fetcher=fetcher, clock=clock)


def stored(app, url: str):
    return app.corpus.store.find_article("url:" + normalise_url(url))


# --- RSS and Atom in; nothing twice ------------------------------------------------------------------------------
def test_rss_entries_are_read_from_their_pages_and_a_second_poll_gets_304_and_stores_nothing_twice(
        make_app, site, articles):
    worship, stampede, crane = (articles[i] for i in SMALL[:3])
    site.add_feed("/feed.xml", rss([site.item(worship), site.item(stampede)]))
    app = make_app()
    feeds = service(app)
    feed = feeds.add(site.url("/feed.xml"))

    (outcome,) = feeds.poll_due().outcomes
    assert (outcome.state, outcome.entries, outcome.added, outcome.from_summary) == ("new", 2, 2, 0), outcome
    article = stored(app, site.url("/articles/stampede.html"))
    assert article.title == "Hundreds dead in Hajj stampede" and article.source == "Wikinews"
    assert article.published.replace(tzinfo=None) == datetime(2006, 1, 12) and "Plains of Arafat" in article.text
    assert "Home · World" not in article.text, "page furniture is left out"
    assert app.corpus.store.feed(feed.id).title == "Wikinews — Latest"
    answer = app.service.ask("how many people died in the Hajj stampede?")
    assert answer.answered and answer.results[0].title == "Hundreds dead in Hajj stampede"
    counts = app.corpus.store.counts()

    assert feeds.poll_due().outcomes == [], "not due again before its interval"
    (again,) = feeds.poll_due(force=True).outcomes
    assert again.state == "unchanged"
    last = site.hits_for("/feed.xml")[-1]
    assert last.status == 304 and last.sent == 0 and last.headers["if-none-match"]
    assert app.corpus.store.counts() == counts
    assert len(site.hits_for("/articles/stampede.html")) == 1

    site.add_feed("/feed.xml", rss([site.item(crane), site.item(worship), site.item(stampede)]))
    (changed,) = feeds.poll_due(force=True).outcomes
    assert (changed.entries, changed.added) == (1, 1), "only the new entry's page is read"
    assert len(site.hits_for("/articles/worship.html")) == 1 and len(site.hits_for("/articles/crane.html")) == 1
    assert app.corpus.store.counts()[0] == counts[0] + 1


def test_atom_feed_with_only_last_modified(make_app, site, articles):
    crane = articles["GUM_news_crane"]
    site.add_feed("/atom.xml", atom([site.item(crane)]), kind="atom", etag=False)
    app = make_app()
    feeds = service(app)
    feeds.add(site.url("/atom.xml"), every=15)
    (outcome,) = feeds.poll_due().outcomes
    assert (outcome.state, outcome.added) == ("new", 1)
    article = stored(app, site.url("/articles/crane.html"))
    assert article.title == "At least 107 killed in Mecca crane collapse" and "crane" in article.text
    (again,) = feeds.poll_due(force=True).outcomes
    last = site.hits_for("/atom.xml")[-1]
    assert again.state == "unchanged" and last.status == 304 and "if-modified-since" in last.headers
    assert app.corpus.store.counts()[0] == 1


def test_the_same_story_under_two_links_is_stored_once(make_app, site, articles):
    worship = articles["GUM_news_worship"]
    page = site.url("/articles/worship.html")
    site.add_feed("/a.xml", rss([site.item(worship, link=page + "?utm_source=rss&utm_medium=feed")], title="A"))
    site.add_feed("/b.xml", rss([site.item(worship, link=page + "?fbclid=IwAR0abc#comments")], title="B"))
    app = make_app()
    feeds = service(app)
    feeds.add(site.url("/a.xml"))
    feeds.add(site.url("/b.xml"))
    outcomes = feeds.poll_due().outcomes
    assert [o.state for o in outcomes] == ["new", "new"]
    assert app.corpus.store.counts()[0] == 1
    assert stored(app, page).url == normalise_url(page)
    assert len(site.hits_for("/articles/worship.html")) == 1, "the second link was known: its page wasn't fetched"


# --- failures: a clear reason each, and the other feeds keep flowing -----------------------------------------------
def test_every_kind_of_failure_is_logged_with_its_reason_and_the_other_feeds_keep_flowing(
        make_app, site, articles, caplog):
    caplog.set_level(logging.INFO)
    public = "news.test"

    def at(path: str) -> str:
        return site.url(path, host=public)

    worship, stampede, crane, asylum = (articles[i] for i in SMALL)
    site.add_feed("/good.xml", rss([site.item(worship, base=at(""))], title="Good news"))
    site.add("/broken.xml", Route(body=b'<?xml version="1.0"?><rss version="2.0"><channel><title>Broken</title>'
                                       b"<item><title>Half an item</tit", content_type="application/rss+xml"))
    site.add("/error.xml", Route(status=500, body=b"oops"))
    site.add("/slow.xml", slow(10))
    site.add("/loop.xml", Route(status=302, headers={"Location": "/loop2.xml"}))
    site.add("/loop2.xml", Route(status=302, headers={"Location": "/loop.xml"}))
    site.add("/photo.png", Route(body=b"\x89PNG" + b"\0" * 64, content_type="image/png"))
    # a working feed whose entries point at trouble: each falls back to the feed's summary
    site.add("/huge.html", Route(body=endless(50_000_000)))
    site.add("/report.pdf", Route(body=b"%PDF-1.4 ...", content_type="application/pdf"))
    site.add_feed("/tricky.xml", rss([
        site.item(stampede, link=at("/huge.html")),
        site.item(crane, link=at("/report.pdf")),
        site.item(asylum, link=site.url("/articles/asylum.html")),  # 127.0.0.1 itself
        dict(site.item(articles["GUM_news_korea"]), link=at("/articles/gone.html")),
    ], title="Tricky"))

    app = make_app()
    feeds = service(app, allow_private=False, public=public, timeout=1.0)
    with pytest.raises(BadFeed, match="127.0.0.1 is a loopback address"):
        feeds.add(site.url("/good.xml"))
    urls = {name: at(f"/{name}") for name in
            ("good.xml", "broken.xml", "missing.xml", "error.xml", "slow.xml", "loop.xml", "photo.png", "tricky.xml")}
    for url in urls.values():
        feeds.add(url)
    # added while private addresses were allowed, polled after they were switched off
    private = app.corpus.store.add_feed(Feed(url=site.url("/good.xml")))
    renamed = app.corpus.store.add_feed(Feed(url=site.url("/good.xml", host="intranet.test")))

    started = time.monotonic()
    run = feeds.poll_due()
    elapsed = time.monotonic() - started
    by_url = {o.url: o for o in run.outcomes}
    assert len(by_url) == 10

    good = by_url[urls["good.xml"]]
    assert (good.state, good.added) == ("new", 1)
    expected = {
        urls["broken.xml"]: "not a readable feed: not well-formed XML",
        urls["missing.xml"]: "HTTP 404 Not Found",
        urls["error.xml"]: "HTTP 500 Internal Server Error",
        urls["slow.xml"]: "timed out after 1 s",
        urls["loop.xml"]: "redirect loop",
        urls["photo.png"]: "not a feed (content type image/png)",
        private.url: "refused: 127.0.0.1 is a loopback address (BRIEFBOT_ALLOW_PRIVATE_ADDRESSES is off)",
        renamed.url: "intranet.test resolves to 127.0.0.1, a loopback address",
    }
    for url, reason in expected.items():
        outcome = by_url[url]
        assert outcome.state == "failed" and reason in outcome.error, (url, outcome.error)
        assert reason in caplog.text, reason
        row = app.corpus.store.feed(outcome.feed_id)
        assert row.consecutive_failures == 1 and reason in row.last_error and row.status == "ok"

    tricky = by_url[urls["tricky.xml"]]
    assert (tricky.state, tricky.entries, tricky.from_summary) == ("new", 4, 4), tricky
    notes = "\n".join(tricky.notes)
    for reason in ("larger than the 1.0 MB limit; stopped reading", "not an HTML page (content type application/pdf)",
                   "refused: 127.0.0.1 is a loopback address", "HTTP 404 Not Found"):
        assert reason in notes and reason in caplog.text, reason
    assert "stored the feed's summary instead" in notes
    summary = stored(app, at("/report.pdf"))
    assert summary.title == crane["title"] and summary.source == "Tricky"
    assert not site.hits_for("/articles/asylum.html"), "the private page was never requested"
    time.sleep(0.3)
    assert site.hits_for("/huge.html")[0].sent < 10_000_000, "the 50 MB page was cut short"
    assert app.corpus.store.counts()[0] == 5  # the good feed's article and the four summaries
    assert elapsed < 30


def test_a_feed_that_is_not_well_formed_still_gives_what_it_can(make_app, site, articles):
    worship = articles["GUM_news_worship"]
    document = rss([site.item(worship)]).replace("<description>Test feed</description>",
                                                  "<description>Caf&eacute; &amp; news</description>")
    site.add_feed("/sloppy.xml", document)
    app = make_app()
    feeds = service(app)
    feeds.add(site.url("/sloppy.xml"))
    (outcome,) = feeds.poll_due().outcomes
    assert outcome.added == 1 and any("read 1 entry leniently" in n for n in outcome.notes)


# --- backoff, and down only after a day ----------------------------------------------------------------------------
def test_backoff_doubles_and_is_capped():
    assert [backoff(n, 30) for n in (1, 2, 3, 4)] == [timedelta(minutes=m) for m in (5, 10, 20, 40)]
    assert backoff(20, 30) == timedelta(hours=6)
    assert backoff(20, 24 * 60) == timedelta(days=1), "never more often than the feed's own interval"


def test_failing_feed_backs_off_is_down_only_after_a_day_and_recovers(make_app, site, caplog):
    caplog.set_level(logging.INFO)
    site.add("/flaky.xml", Route(status=503, body=b"busy"))
    start = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    clock = FakeClock(start)
    app = make_app()
    feeds = service(app, clock=clock)
    feed = feeds.add(site.url("/flaky.xml"))
    waits = []
    while True:
        (outcome,) = feeds.poll_due().outcomes
        assert outcome.state == "failed" and "HTTP 503" in outcome.error
        row = app.corpus.store.feed(feed.id)
        failing_for = clock.now() - start
        assert row.status == ("down" if failing_for >= timedelta(days=1) else "ok"), (failing_for, row.status)
        if row.status == "down":
            break
        due = row.next_poll_at.replace(tzinfo=timezone.utc)
        waits.append(due - clock.now())
        clock.set(due - timedelta(minutes=1))
        hits = len(site.hits)
        assert feeds.poll_due().outcomes == [] and len(site.hits) == hits, "nothing is polled before it is due"
        clock.set(due)
    assert waits[:5] == [timedelta(minutes=m) for m in (5, 10, 20, 40, 80)]
    assert max(waits) == timedelta(hours=6)
    assert "is down: failing since 2024-05-01T12:00" in caplog.text

    site.add_feed("/flaky.xml", rss([]))
    clock.set(row.next_poll_at.replace(tzinfo=timezone.utc))
    (outcome,) = feeds.poll_due().outcomes
    row = app.corpus.store.feed(feed.id)
    assert outcome.state == "unchanged" and row.status == "ok"
    assert (row.consecutive_failures, row.failing_since, row.last_error) == (0, None, None)
    assert row.next_poll_at.replace(tzinfo=timezone.utc) == clock.now() + timedelta(minutes=30)
    assert "working again" in caplog.text


# --- managing feeds: input checks, OPML ------------------------------------------------------------------------------
def test_adding_checks_the_address_and_the_interval(make_app):
    app = make_app()
    feeds = service(app, allow_private=False)
    for bad, reason in [("", "Which feed"), ("example.com/feed", "isn't a web address"),
                        ("ftp://example.com/feed", "isn't a web address"), ("http://localhost:8080/f", "this machine"),
                        ("http://10.0.0.8/feed.xml", "private address")]:
        with pytest.raises(BadFeed, match=reason):
            feeds.add(bad)
    with pytest.raises(BadFeed, match="5 to 10080 minutes"):
        feeds.add("https://example.com/feed.xml", every=1)
    feed = feeds.add("https://Example.com/feed.xml?utm_source=x", every=60)
    assert feed.url == "https://example.com/feed.xml" and feed.interval_minutes == 60
    with pytest.raises(FeedExists):
        feeds.add("https://example.com/feed.xml")
    assert feeds.find(f"#{feed.id}").id == feeds.find("https://example.com/feed.xml").id == feed.id
    assert feeds.remove("https://example.com/feed.xml").id == feed.id and feeds.feeds() == []


def test_opml_import_and_export(make_app, encoder, tmp_path):
    from bot.app import Briefbot
    from bot.settings import Settings

    app = make_app()
    feeds = service(app, allow_private=False)
    feeds.add("https://one.example/rss")
    opml = """<?xml version="1.0"?><opml version="1.0"><head><title>mine</title></head><body>
      <outline text="News"><outline text="Two" title="Two" type="rss" xmlUrl="https://two.example/feed"/>
      <outline text="One again" xmlUrl="https://one.example/rss"/></outline>
      <outline text="Nope" xmlUrl="ftp://three.example/feed"/><outline text="No url"/></body></opml>"""
    result = feeds.import_opml(opml)
    assert [f.url for f in result.added] == ["https://two.example/feed"] and result.added[0].title == "Two"
    assert result.existing == ["https://one.example/rss"] and result.invalid[0][0] == "ftp://three.example/feed"
    exported = feeds.export_opml()
    other = Briefbot.open(Settings(BRIEFBOT_DATA_DIR=tmp_path / "other"), encoder=encoder)
    again = service(other, allow_private=False).import_opml(exported)
    assert sorted(f.url for f in again.added) == ["https://one.example/rss", "https://two.example/feed"]
    with pytest.raises(BadFeed, match="not an OPML file"):
        feeds.import_opml("<html><body>hi</body></html>")


# --- ingesting beside questions ----------------------------------------------------------------------------------------
def test_questions_are_answered_while_feed_articles_are_ingested_and_replaced(make_app, articles):
    """The bot ingests feeds in a worker thread while other threads answer questions: replacing an article (FAISS
    drops its passages before BM25 is rebuilt) and adding to the index must never fail a question."""
    import threading

    from index.types import ParsedArticle

    app = make_app()
    chosen = [articles[i] for i in SMALL[:3]]

    def version(n: int) -> list[ParsedArticle]:
        return [ParsedArticle(title=a["title"], text=a["text"][: 300 + (n * 53 + i * 17) % 500], source="Wikinews",
                              url=f"https://news.example/{i}") for i, a in enumerate(chosen)]

    app.corpus.ingest_articles(version(0))
    stop = time.monotonic() + 4
    errors: list[BaseException] = []
    answered = [0]

    def ingest() -> None:
        n = 0
        while time.monotonic() < stop:
            n += 1
            try:
                app.corpus.ingest_articles(version(n), batch_passages=4)
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

    def ask() -> None:
        while time.monotonic() < stop:
            try:
                app.service.ask("why did the crane collapse in Mecca?")
                answered[0] += 1
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

    threads = [threading.Thread(target=ingest)] + [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors[:3]
    assert answered[0] > 5
    assert app.corpus.store.counts()[0] == 3


def test_a_page_that_failed_is_tried_again_and_replaces_the_summary(make_app, site, articles):
    worship, crane = articles["GUM_news_worship"], articles["GUM_news_crane"]
    site.add_feed("/feed.xml", rss([site.item(worship), site.item(crane)]))
    site.add("/articles/worship.html", Route(status=500, body=b"down for a moment"))
    site.add("/articles/crane.html", Route(status=404, body=b"gone"))
    app = make_app()
    feeds = service(app)
    feeds.add(site.url("/feed.xml"))
    (first,) = feeds.poll_due().outcomes
    assert (first.added, first.from_summary) == (2, 2)
    summary = stored(app, site.url("/articles/worship.html"))
    assert summary.text == " ".join(summary.text.split()), "just the summary paragraph"

    site.add_article(worship)  # the page is back; the crane page stays gone
    (second,) = feeds.poll_due(force=True).outcomes
    assert site.hits_for("/feed.xml")[-1].status == 304
    assert (second.added, second.updated) == (0, 1) and any("read on attempt 2" in n for n in second.notes)
    full = stored(app, site.url("/articles/worship.html"))
    assert full.id == summary.id and len(full.text) > len(summary.text) and "\n\n" in full.text
    assert app.corpus.store.counts()[0] == 2, "the page replaced its summary"

    feeds.poll_due(force=True)
    feeds.poll_due(force=True)
    assert len(site.hits_for("/articles/crane.html")) == 3, "three attempts in all, then the summary stays"
    assert len(site.hits_for("/articles/worship.html")) == 2
