"""Feeds in Telegram: the real PTB Application and its JobQueue against the Bot API test server, the feed served by
the local news site. An admin adds a feed, the bot polls it, and a question about one of its articles is answered;
anyone else is refused."""

from __future__ import annotations

import asyncio
import contextlib

from tests.botapi import BotApiServer
from tests.feedsite import FeedSite, Route, load_articles, rss
from tests.test_telegram_bot import telegram_bot

ADMIN = 1001
STRANGER = 2002


@contextlib.asynccontextmanager
async def feed_bot(briefbot):
    """The bot as `briefbot run` wires it, polling feeds every 0.2 s."""
    briefbot.settings.feed_poll_seconds = 0.2
    async with telegram_bot(briefbot) as server:
        yield server


async def say(server: BotApiServer, user: int, text: str, expect: int = 1, timeout: float = 30):
    before = len(server.sent_messages(user, methods=["sendMessage"]))
    server.send_text(user, text)
    events = await server.wait_for_messages(user, before + expect, timeout=timeout, methods=["sendMessage"])
    return [e.text or "" for e in events[before:]]


async def test_an_admin_adds_a_feed_and_its_article_is_answered_soon_after(make_app, shared_data):
    stampede, worship = load_articles(["GUM_news_stampede", "GUM_news_worship"])
    app = make_app(admin_ids=str(ADMIN), allow_private_addresses=True)
    with FeedSite() as site:
        site.add_feed("/feed.xml", rss([site.item(stampede), site.item(worship)], title="Wikinews Latest"))
        site.add("/broken.xml", Route(body=b"<rss><channel><item><title>x</tit", content_type="application/rss+xml"))
        async with feed_bot(app) as server:
            for command in ("/addfeed http://127.0.0.1/feed.xml", "/feeds", "/removefeed 1"):
                (refused,) = await say(server, STRANGER, command)
                assert "not allowed" in refused and "admins" in refused, refused
            assert app.feeds.feeds() == []

            (usage,) = await say(server, ADMIN, "/addfeed")
            assert "/addfeed https://example.com/feed.xml" in usage
            (bad,) = await say(server, ADMIN, "/addfeed not-a-url")
            assert "isn't a web address" in bad

            added, found = await say(server, ADMIN, f"/addfeed {site.url('/feed.xml')} 15", expect=2, timeout=60)
            assert "Added feed #1" in added and "every 15 minutes" in added
            assert "Wikinews Latest" in found and "2 new article(s)" in found, found

            (answer,) = await say(server, ADMIN, "how many people died in the Hajj stampede?")
            assert "Hundreds dead in Hajj stampede" in answer and "Wikinews" in answer, answer
            (again,) = await say(server, STRANGER, "what did the Greek court rule about worship of ancient deities?")
            assert "Greek court rules worship of ancient Greek deities is legal" in again, again

            _, failed = await say(server, ADMIN, f"/addfeed {site.url('/broken.xml')}", expect=2, timeout=60)
            assert "couldn't read it" in failed and "not well-formed XML" in failed, failed
            (listing,) = await say(server, ADMIN, "/feeds")
            assert "#1" in listing and "Wikinews Latest" in listing and "2 article(s)" in listing
            assert "#2" in listing and "last error: not a readable feed" in listing
            (duplicate,) = await say(server, ADMIN, f"/addfeed {site.url('/feed.xml')}?utm_source=tg")
            assert "already follow that feed (#1)" in duplicate

            (removed,) = await say(server, ADMIN, "/removefeed 2")
            assert "Removed feed #2" in removed
            (missing,) = await say(server, ADMIN, "/removefeed 99")
            assert "don't follow" in missing
            await asyncio.sleep(0.5)
            assert len(site.hits_for("/articles/stampede.html")) == 1, "each page is read once"

            app.settings.admin_ids = ""
            (nobody,) = await say(server, ADMIN, "/feeds")
            assert "no admins are configured" in nobody and "briefbot feeds" in nobody
