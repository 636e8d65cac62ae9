"""Daily digests end to end: the real PTB Application and its JobQueue against the Bot API test server,
with the bot's clock under the test's control (the job polls every 0.2 s instead of every minute)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from datetime import datetime, timezone

from bot.storage import DigestDelivery
from bot.subscriptions import FakeClock
from bot.telegram_app import build_application
from tests.botapi import BotApiServer, running_server

USER = 1001
POLL = 0.2


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


async def start_bot(briefbot, server: BotApiServer):
    briefbot.settings.digest_poll_seconds = POLL
    application = build_application(briefbot, server.application_builder(read_timeout=5))
    await application.initialize()
    await application.post_init(application)
    await application.start()
    await application.updater.start_polling(poll_interval=0, timeout=1)
    return application


async def stop_bot(application) -> None:
    await application.updater.stop()
    await application.stop()
    await application.shutdown()


@contextlib.asynccontextmanager
async def digest_bot(briefbot):
    async with running_server() as server:
        application = await start_bot(briefbot, server)
        try:
            yield server
        finally:
            await stop_bot(application)
        server.assert_no_violations()


def texts(server: BotApiServer, chat: int) -> list[str]:
    return [e.text or "" for e in server.sent_messages(chat, methods=["sendMessage"])]


def digests_in(server: BotApiServer, chat: int) -> list:
    """Digest messages (a briefing, or the one line saying nothing is new) sent to a chat."""
    return [e for e in server.sent_messages(chat, methods=["sendMessage"])
            if (e.text or "").startswith(("Your briefing", "Nothing new"))]


async def say(server: BotApiServer, user: int, text: str, timeout: float = 20):
    before = len(server.sent_messages(user, methods=["sendMessage"]))
    server.send_text(user, text)
    events = await server.wait_for_messages(user, before + 1, timeout=timeout, methods=["sendMessage"])
    return events[before]


def known_chat(server: BotApiServer, chat: int) -> None:
    """A user who has talked to the bot before (Telegram only delivers to chats that exist)."""
    server.add_user(chat)
    server.add_chat(chat, "private")
    server.known_chats.add(chat)


async def wait_deliveries(briefbot, count: int, statuses=("sent",), timeout: float = 30) -> list[DigestDelivery]:
    deadline = time.monotonic() + timeout
    while True:
        rows = briefbot.corpus.store.deliveries_with_status(statuses)
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.1)


async def test_subscribe_at_0730_berlin_the_digest_comes_at_0730_local_across_dst_and_never_twice(reuters_app):
    clock = reuters_app.digests.clock = FakeClock(utc(1987, 3, 28, 6, 0))  # Sat 07:00 CET; Sunday is summer time
    async with digest_bot(reuters_app) as server:
        menu = await server.wait_for_request("setMyCommands")
        assert "subscribe" in str(menu[0].params.get("commands"))
        assert "Subscribed" in (await say(server, USER, "/subscribe")).text
        assert "Europe/Berlin" in (await say(server, USER, "/timezone Europe/Berlin")).text
        reply = (await say(server, USER, "/time 07:30")).text
        assert "Sat 28 Mar at 07:30" in reply, reply

        clock.set(utc(1987, 3, 28, 6, 29))  # 07:29 in Berlin
        await asyncio.sleep(5 * POLL)
        assert not digests_in(server, USER)
        clock.set(utc(1987, 3, 28, 6, 30))  # 07:30 in Berlin
        await server.wait_for(lambda: digests_in(server, USER), 1, timeout=10)

        for later in ((1987, 3, 28, 6, 31), (1987, 3, 28, 12, 0), (1987, 3, 28, 22, 59)):
            clock.set(utc(*later))
            await asyncio.sleep(3 * POLL)
        assert len(digests_in(server, USER)) == 1, "never twice on the same local day"

        clock.set(utc(1987, 3, 29, 5, 29))  # Sunday 07:29 summer time (UTC+2)
        await asyncio.sleep(5 * POLL)
        assert len(digests_in(server, USER)) == 1
        clock.set(utc(1987, 3, 29, 5, 30))  # 07:30 local, an hour earlier in UTC than yesterday
        await server.wait_for(lambda: digests_in(server, USER), 2, timeout=10)
        clock.set(utc(1987, 3, 29, 6, 30))  # yesterday's UTC time: nothing more
        await asyncio.sleep(5 * POLL)
        assert len(digests_in(server, USER)) == 2

        settings = (await say(server, USER, "/settings")).text
        assert "07:30" in settings and "Europe/Berlin" in settings and "Mon 30 Mar at 07:30" in settings
    slots = sorted(d.slot_at for d in reuters_app.corpus.store.deliveries_with_status(["sent"]))
    assert slots == [utc(1987, 3, 28, 6, 30), utc(1987, 3, 29, 5, 30)]


async def test_a_digest_missed_while_the_bot_was_down_is_sent_at_start_up_the_same_day(reuters_app):
    clock = reuters_app.digests.clock = FakeClock(utc(1987, 3, 2, 6, 0))  # Monday 07:00 in Berlin
    reuters_app.digests.subscribe(USER)
    reuters_app.digests.set_timezone(USER, "Europe/Berlin")
    reuters_app.digests.set_time(USER, "07:30")
    async with running_server() as server:
        known_chat(server, USER)
        clock.set(utc(1987, 3, 2, 9, 0))  # the bot was down at 07:30; it starts at 10:00 Berlin
        application = await start_bot(reuters_app, server)
        try:
            (digest,) = await server.wait_for(lambda: digests_in(server, USER), 1, timeout=15)
            assert digest.text.startswith("Your briefing") and "Ask about this" in str(digest.reply_markup)
        finally:
            await stop_bot(application)
        application = await start_bot(reuters_app, server)  # restarted again the same day: nothing more
        await asyncio.sleep(2 + 3 * POLL)
        await stop_bot(application)
        assert len(digests_in(server, USER)) == 1

        clock.set(utc(1987, 3, 4, 7, 0))  # down all Tuesday; Wednesday 08:00 Berlin, 07:30 missed: sent now
        application = await start_bot(reuters_app, server)
        try:
            await server.wait_for(lambda: digests_in(server, USER), 2, timeout=15)
            await asyncio.sleep(3 * POLL)
        finally:
            await stop_bot(application)
        assert len(digests_in(server, USER)) == 2, "Tuesday's is not sent late"
        server.assert_no_violations()
    dates = sorted(d.local_date for d in reuters_app.corpus.store.recent_deliveries(limit=10))
    assert dates == ["1987-03-02", "1987-03-04"]


async def test_a_blocked_subscriber_is_paused_and_resumed_when_unblocked(reuters_app):
    clock = reuters_app.digests.clock = FakeClock(utc(1987, 3, 2, 6, 0))
    chats = [2001, 2002, 2003]
    for chat in chats:
        reuters_app.digests.subscribe(chat)
        reuters_app.digests.set_time(chat, "06:30")  # UTC
    async with digest_bot(reuters_app) as server:
        for chat in chats:
            known_chat(server, chat)
        server.block(2002, notify=False)  # Telegram says nothing: the bot finds out from the 403
        clock.set(utc(1987, 3, 2, 6, 30))
        await wait_deliveries(reuters_app, 2)
        await wait_deliveries(reuters_app, 1, statuses=("paused",))
        assert len(digests_in(server, 2001)) == len(digests_in(server, 2003)) == 1
        assert not digests_in(server, 2002)
        assert reuters_app.digests.view(2002).paused
        assert any(r.status == 403 for r in server.requests if r.params.get("chat_id") in (2002, "2002"))

        server.unblock(2002)  # my_chat_member: the user is back
        await server.wait_for(lambda: [1] if not reuters_app.digests.view(2002).paused else [], 1, timeout=10)
        server.block(2003)  # my_chat_member "kicked": paused before anything is tried
        await server.wait_for(lambda: [1] if reuters_app.digests.view(2003).paused else [], 1, timeout=10)
        requests_2003 = len([r for r in server.requests if str(r.params.get("chat_id")) == "2003"])

        clock.set(utc(1987, 3, 3, 6, 30))
        await server.wait_for(lambda: digests_in(server, 2002), 1, timeout=10)
        await server.wait_for(lambda: digests_in(server, 2001), 2, timeout=10)
        await asyncio.sleep(3 * POLL)
        assert len([r for r in server.requests if str(r.params.get("chat_id")) == "2003"]) == requests_2003
        server.unblock(2003)
        (welcome,) = [await say(server, 2003, "/start")]
        assert "Briefbot" in welcome.text
        assert not reuters_app.digests.view(2003).paused


async def test_a_429_storm_slows_sending_but_loses_nothing(reuters_app):
    clock = reuters_app.digests.clock = FakeClock(utc(1987, 3, 2, 6, 0))
    chats = list(range(3000, 3030))
    for chat in chats:
        reuters_app.digests.subscribe(chat)
        reuters_app.digests.set_time(chat, "06:30")
    async with digest_bot(reuters_app) as server:
        for chat in chats:
            known_chat(server, chat)
        server.fail_randomly(0.3, seed=4, kinds=[429], methods=["sendMessage"], retry_after=1)
        started = time.monotonic()
        clock.set(utc(1987, 3, 2, 6, 30))
        rows = await wait_deliveries(reuters_app, len(chats), timeout=90)
        elapsed = time.monotonic() - started
        server.clear_faults()
        await asyncio.sleep(3 * POLL)
        assert len(rows) == len(chats)
        assert [len(digests_in(server, chat)) for chat in chats] == [1] * len(chats)
        storms = [f for f in server.faults if f.status == 429]
        assert len(storms) >= 5
        assert elapsed > 1.0 * len(storms) / reuters_app.settings.digest_send_concurrency, "RetryAfter was waited out"


async def test_ask_about_this_makes_the_story_the_focus_of_follow_ups(reuters_app):
    reuters_app.digests.clock = FakeClock(utc(1987, 3, 2, 0, 30))
    async with digest_bot(reuters_app) as server:
        await say(server, USER, "/subscribe")
        digest = await say(server, USER, "/digest")
        assert digest.text.startswith("Your briefing"), digest.text
        assert "MANILA SAID TO OFFER DEBT BONDS TO BANKS" in digest.text and "2 sources" in digest.text
        assert any(e["type"] == "blockquote" for e in digest.entities)
        data = digest.button_data()
        assert all(len(d.encode()) <= 64 for d in data)
        first = [d for d in data if d.startswith("f:")][0]
        before = len(texts(server, USER))
        server.press_button(USER, digest, first)
        (focus,) = (await server.wait_for_messages(USER, before + 1, timeout=20, methods=["sendMessage"]))[before:]
        assert "Ask me anything about" in focus.text and "MANILA SAID TO OFFER DEBT BONDS" in focus.text
        nxt = await say(server, USER, "what happened next?")
        assert "MANILA SAID TO OFFER DEBT BONDS" in nxt.text, nxt.text
        assert not [t for t in texts(server, USER) if re.search(r"Traceback|Exception", t)]


async def test_bad_settings_get_friendly_answers(reuters_app):
    reuters_app.digests.clock = FakeClock(utc(1987, 3, 2, 0, 30))
    async with digest_bot(reuters_app) as server:
        assert "isn't a time of day" in (await say(server, USER, "/time 25:99")).text
        mars = await say(server, USER, "/timezone Mars/Olympus")
        assert "I don't know the time zone" in mars.text and mars.button_data()
        typo = await say(server, USER, "/timezone Europe/Berlinn")
        assert "tz:Europe/Berlin" in typo.button_data()
        before = len(texts(server, USER))
        server.press_button(USER, typo, "tz:Europe/Berlin")
        (chosen,) = (await server.wait_for_messages(USER, before + 1, timeout=10, methods=["sendMessage"]))[before:]
        assert "Time zone set to Europe/Berlin" in chosen.text
        many = " ".join(f"topic{i}," for i in range(500))
        assert "at most 10 topics" in (await say(server, USER, f"/topics add {many}")).text
        assert "oil prices" in (await say(server, USER, "/topics add oil prices, coffee")).text
        assert "Not found: 99" in (await say(server, USER, "/topics remove 99")).text
        listed = (await say(server, USER, "/topics")).text
        assert "1. oil prices" in listed and "2. coffee" in listed
        assert "not subscribed" in (await say(server, USER, "/settings")).text
        assert "weren't subscribed" in (await say(server, USER, "/unsubscribe")).text
        topical = await say(server, USER, "/digest")
        assert "COFFEE" in topical.text and "Topics: oil prices, coffee" in topical.text
        assert not [t for t in texts(server, USER) if re.search(r"Traceback|Exception|went wrong", t)]


async def test_failures_are_retried_recorded_or_assumed_sent_never_doubled(reuters_app):
    from tests.botapi import Fault

    reuters_app.settings.digest_max_attempts = 2
    clock = reuters_app.digests.clock = FakeClock(utc(1987, 3, 2, 6, 0))
    flaky, down, lost = 4001, 4002, 4003
    for chat in (flaky, down, lost):
        reuters_app.digests.subscribe(chat)
        reuters_app.digests.set_time(chat, "06:30")
    async with digest_bot(reuters_app) as server:
        for chat in (flaky, down, lost):
            known_chat(server, chat)
        server.inject("sendMessage", 500, times=2, chat_id=flaky)  # retried at once, then delivered
        server.inject("sendMessage", 502, times=None, chat_id=down)  # Telegram unreachable for this chat
        server.inject("sendMessage", Fault.reset(after_processing=True), chat_id=lost)  # sent, answer lost
        clock.set(utc(1987, 3, 2, 6, 30))
        await wait_deliveries(reuters_app, 2)
        await wait_deliveries(reuters_app, 1, statuses=("retry",))
        clock.set(utc(1987, 3, 2, 6, 32))  # the retry's time has come; it fails again and is recorded
        failed = await wait_deliveries(reuters_app, 1, statuses=("failed",))
        await asyncio.sleep(3 * POLL)
        assert len(digests_in(server, flaky)) == 1
        assert len(digests_in(server, lost)) == 1, "a lost answer is not a reason to send twice"
        assert not digests_in(server, down)
        assert failed[0].chat_id == down and "Bad Gateway" in failed[0].last_error and failed[0].attempts == 2
        (uncertain,) = [d for d in reuters_app.corpus.store.deliveries_with_status(["sent"]) if d.uncertain]
        assert uncertain.chat_id == lost


async def test_questions_are_answered_while_a_fan_out_is_sending(reuters_app):
    clock = reuters_app.digests.clock = FakeClock(utc(1987, 3, 2, 6, 0))
    reuters_app.settings.digest_messages_per_second = 10
    chats = list(range(6000, 6060))  # six seconds of digests
    for chat in chats:
        reuters_app.digests.subscribe(chat)
        reuters_app.digests.set_time(chat, "06:30")
    async with digest_bot(reuters_app) as server:
        for chat in chats:
            known_chat(server, chat)
        clock.set(utc(1987, 3, 2, 6, 30))
        await server.wait_for(lambda: [c for c in chats if digests_in(server, c)], 10, timeout=20)
        asked = time.monotonic()
        answer = await say(server, USER, "why did Manila offer debt bonds to the banks?")
        waited = time.monotonic() - asked
        sent_so_far = len([c for c in chats if digests_in(server, c)])
        assert "MANILA" in answer.text or "Philippines" in answer.text, answer.text
        assert sent_so_far < len(chats), "the answer came while digests were still going out"
        assert waited < 3, waited
        await wait_deliveries(reuters_app, len(chats), timeout=30)
