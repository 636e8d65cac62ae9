"""The real PTB Application, polling the Bot API test server, over the seeded corpus."""

from __future__ import annotations

import asyncio
import contextlib
import re

import pytest

from bot.telegram_app import build_application
from tests.botapi import BotApiServer, running_server

USER = 1001


@contextlib.asynccontextmanager
async def telegram_bot(briefbot, builder=None):
    """Start the bot exactly as `briefbot run` wires it, against a fresh test server. `builder(server)` replaces
    the test server's application builder (short timeouts) with another, e.g. `briefbot run`'s own."""
    async with running_server() as server:
        made = builder(server) if builder else server.application_builder(read_timeout=5)
        application = build_application(briefbot, made)
        await application.initialize()
        await application.post_init(application)
        await application.start()
        await application.updater.start_polling(poll_interval=0, timeout=1)
        try:
            yield server
        finally:
            await application.updater.stop()
            await application.stop()
            await application.shutdown()
        server.assert_no_violations()


async def say(server: BotApiServer, user: int, text: str, expect: int = 1, timeout: float = 30):
    """Send a message and wait for `expect` new messages from the bot in that chat."""
    before = len(server.sent_messages(user, methods=["sendMessage"]))
    server.send_text(user, text)
    events = await server.wait_for_messages(user, before + expect, timeout=timeout, methods=["sendMessage"])
    return events[before:]


def plain(event) -> str:
    return event.text or ""


async def test_start_question_more_who_and_next(seeded_app):
    async with telegram_bot(seeded_app) as server:
        commands = await server.wait_for_request("setMyCommands")
        assert commands, "the command menu is set at start-up"

        (welcome,) = await say(server, USER, "/start")
        assert "Briefbot" in plain(welcome) and "What happened" in plain(welcome)

        (answer,) = await say(server, USER, "what's behind iran's strikes, according to analysts?")
        text = plain(answer)
        assert "Iran-Pakistan flare-up rooted in borderlands" in text and "Agencies Via Xinhua" in text
        assert any(e["type"] == "blockquote" for e in answer.entities)
        assert any(e["type"] == "bold" for e in answer.entities), "the best sentence is bold"
        more_data = [d for d in answer.button_data() if d.startswith("m:")]
        assert more_data, answer.reply_markup

        server.press_button(USER, answer, more_data[0])
        (more,) = (await server.wait_for_messages(USER, 3, timeout=30, methods=["sendMessage"]))[2:]
        first_quotes = quotes(answer)
        assert first_quotes and not set(first_quotes) & set(quotes(more)), "More never repeats a passage"

        (who,) = await say(server, USER, "who said that?")
        assert "Who said it" in plain(who)
        assert quotes(who) == quotes(more), "the attribution covers the passages just shown"

        (nxt,) = await say(server, USER, "what happened next?")
        assert quotes(nxt) and quotes(nxt)[0] not in quotes(who)


def quotes(event) -> list[str]:
    """The text of each blockquote in a bot message."""
    text = event.text or ""
    encoded = text.encode("utf-16-le")
    found = []
    for entity in event.entities:
        if entity["type"] in ("blockquote", "expandable_blockquote"):
            start, length = entity["offset"] * 2, entity["length"] * 2
            found.append(encoded[start:start + length].decode("utf-16-le"))
    return found


async def test_nothing_relevant_is_said_plainly_with_headlines(seeded_app):
    async with telegram_bot(seeded_app) as server:
        (reply,) = await say(server, USER, "what is the recipe for banana bread?")
        assert "nothing on that" in plain(reply)
        assert not quotes(reply)


async def test_two_users_keep_separate_conversations(seeded_app):
    async with telegram_bot(seeded_app) as server:
        await say(server, 1, "why did Iran strike Pakistan?")
        await say(server, 2, "Afghan girls robotics team visas")
        (alice,) = await say(server, 1, "who said that?")
        (bob,) = await say(server, 2, "who said that?")
        assert "Iran" in plain(alice) and "robotics" in plain(bob)


async def test_fifty_users_four_questions_each_get_exactly_their_own_answers(seeded_app):
    questions = ["why did Iran strike Pakistan?", "what did the Afghan robotics team win?",
                 "how many people were killed in Kerman?", "who founded the FIRST Global competition?"]
    async with telegram_bot(seeded_app) as server:
        users = range(5000, 5050)
        for round_ in range(4):
            for user in users:
                server.send_text(user, f"{questions[(user + round_) % 4]} (user {user})")
        for user in users:
            await server.wait_for_messages(user, 4, timeout=240, methods=["sendMessage"])
        await asyncio.sleep(0.5)
        for user in users:
            sent = server.sent_messages(user, methods=["sendMessage"])
            assert len(sent) == 4, (user, [plain(e)[:60] for e in sent])
            assert all(e.chat_id == user for e in sent)


async def test_flood_control_and_server_error_still_deliver_once(seeded_app):
    async with telegram_bot(seeded_app) as server:
        server.inject("sendMessage", 429, retry_after=1)
        server.inject("sendMessage", 500)
        (answer,) = await say(server, USER, "why did Iran strike Pakistan?")
        await asyncio.sleep(1.5)
        assert len(server.sent_messages(USER, methods=["sendMessage"])) == 1
        assert "Iran" in plain(answer)


async def test_terminal_chat_and_telegram_give_the_same_passages(seeded_app):
    question = "how many people were killed in the Kerman bombing?"
    terminal = seeded_app.service.chat("cli:compare", question)
    async with telegram_bot(seeded_app) as server:
        (answer,) = await say(server, USER, question)
    assert [r.text for r in terminal.answer.results] == quotes(answer)


async def test_groups_answer_only_when_addressed(seeded_app):
    async with telegram_bot(seeded_app) as server:
        group = -100200
        server.send_text(USER, "/ask why did Iran strike Pakistan?", chat_id=group, chat_type="group")
        (answer,) = await server.wait_for_messages(group, 1, timeout=30, methods=["sendMessage"])
        assert quotes(answer)
        server.send_text(USER, f"@{server.bot_username} who said that?", chat_id=group, chat_type="group")
        await server.wait_for_messages(group, 2, timeout=30, methods=["sendMessage"])


async def test_stickers_edits_and_unknown_commands_never_error(seeded_app):
    async with telegram_bot(seeded_app) as server:
        server.send_update({"message": {"message_id": 900, "date": 0, "chat": {"id": USER, "type": "private"},
                                        "from": {"id": USER, "is_bot": False, "first_name": "U"},
                                        "sticker": {"file_id": "x", "file_unique_id": "y", "width": 1, "height": 1,
                                                    "is_animated": False, "is_video": False, "type": "regular"}}})
        (sticker_reply,) = await server.wait_for_messages(USER, 1, timeout=10, methods=["sendMessage"])
        assert "text questions" in plain(sticker_reply)
        (unknown,) = await say(server, USER, "/frobnicate now")
        assert "/help" in plain(unknown)
        (slow,) = await say(server, USER, "   ")
        assert "question" in plain(slow).lower()
        assert not [e for e in server.sent_messages(USER) if re.search(r"Traceback|Exception", plain(e))]


async def test_full_article_without_link_comes_in_parts_and_buttons_survive_a_restart(seeded_app, encoder):
    from bot.app import Briefbot

    async with telegram_bot(seeded_app) as server:
        (answer,) = await say(server, USER, "why did Iran strike Pakistan?")
        data = answer.button_data()
    restarted = Briefbot.open(seeded_app.settings, encoder=encoder)
    async with telegram_bot(restarted) as server:
        server.send_text(USER, "hello")  # the new server must know the chat, as Telegram would
        await server.wait_for_messages(USER, 1, timeout=30, methods=["sendMessage"])
        message = {"message_id": 1, "chat": {"id": USER, "type": "private"}, "date": 0, "text": "old answer",
                   "reply_markup": answer.reply_markup}
        server.send_update({"callback_query": {"id": "77", "from": {"id": USER, "is_bot": False, "first_name": "U"},
                                               "chat_instance": "1", "message": message,
                                               "data": [d for d in data if d.startswith("a:")][0]}})
        (article,) = (await server.wait_for_messages(USER, 2, timeout=30, methods=["sendMessage"]))[1:]
        assert plain(article).startswith("Iran-Pakistan flare-up rooted in borderlands")
        assert "Gregory Brew" in plain(article) or article.button_data()
        server.send_update({"callback_query": {"id": "78", "from": {"id": USER, "is_bot": False, "first_name": "U"},
                                               "chat_instance": "1", "message": message,
                                               "data": [d for d in data if d.startswith("m:")][0]}})
        (more,) = (await server.wait_for_messages(USER, 3, timeout=30, methods=["sendMessage"]))[2:]
        assert quotes(more) and not set(quotes(more)) & set(quotes(answer)), "More works after a restart"


async def test_forged_and_foreign_callback_data_get_a_short_notice(seeded_app):
    async with telegram_bot(seeded_app) as server:
        (answer,) = await say(server, USER, "why did Iran strike Pakistan?")
        more_data = [d for d in answer.button_data() if d.startswith("m:")][0]
        stranger = 2002
        await say(server, stranger, "/help")
        for data in ("m:999999", "a:999999:0", "zz", "x" * 64, more_data):
            server.send_update({"callback_query": {
                "id": f"cb-{data[:8]}", "from": {"id": stranger, "is_bot": False, "first_name": "S"},
                "chat_instance": "2", "data": data,
                "message": {"message_id": 1, "chat": {"id": stranger, "type": "private"}, "date": 0, "text": "x"}}})
        await server.wait_for(lambda: server.callback_answers, 5, timeout=30)
        await asyncio.sleep(0.5)
        notices = [plain(e) for e in server.sent_messages(stranger, methods=["sendMessage"])][1:]
        assert all("Ask me a question first" in n for n in notices), notices
        assert len(server.sent_messages(USER, methods=["sendMessage"])) == 1, "nothing reached the other user"


async def test_deep_link_latest_and_sources(seeded_app):
    async with telegram_bot(seeded_app) as server:
        (deep,) = await say(server, USER, "/start q_why_did_iran_strike_pakistan")
        assert quotes(deep)
        (latest,) = await say(server, USER, "/latest")
        assert "Latest headlines" in plain(latest)
        (sources,) = await say(server, USER, "/sources")
        assert "Wikinews" in plain(sources) and "25 article" in plain(sources)


async def test_too_many_questions_get_a_polite_slow_down(seeded_app):
    seeded_app.settings.questions_per_minute = 2
    async with telegram_bot(seeded_app) as server:
        await say(server, USER, "why did Iran strike Pakistan?")
        await say(server, USER, "who founded FIRST Global?")
        (third,) = await say(server, USER, "what happened in Kerman?")
        assert "wait a minute" in plain(third)


async def test_typing_shows_only_while_an_answer_keeps_the_user_waiting(seeded_app, monkeypatch):
    """A quick answer needs no "typing…" (it would cost a second Bot API call per question); a slow one gets it
    before the answer, so the user knows the question arrived."""
    import time as _time

    from handlers import questions

    answer = seeded_app.service.chat

    def slow(*args, **kwargs):
        _time.sleep(1.0)
        return answer(*args, **kwargs)

    async with telegram_bot(seeded_app) as server:
        monkeypatch.setattr(questions, "TYPING_AFTER_SECONDS", 30.0)  # every answer here is quicker than that
        await say(server, USER, "why did Iran strike Pakistan?")
        assert server.chat_actions == []
        monkeypatch.setattr(questions, "TYPING_AFTER_SECONDS", 0.2)
        monkeypatch.setattr(seeded_app.service, "chat", slow)
        (reply,) = await say(server, USER, "who founded FIRST Global?")
        assert server.chat_actions == [(USER, "typing")] and quotes(reply)


async def test_an_internal_error_is_logged_without_the_token_and_the_user_told_politely(seeded_app, caplog, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("database exploded at /secret/path")

    monkeypatch.setattr(seeded_app.service, "chat", broken)
    async with telegram_bot(seeded_app) as server:
        (reply,) = await say(server, USER, "why did Iran strike?")
        assert "something went wrong" in plain(reply) and "exploded" not in plain(reply)
        assert server.token not in caplog.text
        assert "exploded" in caplog.text


async def test_webhook_mode_accepts_updates_with_the_secret_only(seeded_app, unused_tcp_port):
    import httpx

    async with running_server() as server:
        application = build_application(seeded_app, server.application_builder(read_timeout=5))
        await application.initialize()
        await application.start()
        await application.updater.start_webhook(listen="127.0.0.1", port=unused_tcp_port, url_path="hook",
                                                secret_token="s3cret", webhook_url="https://bot.example.test/hook")
        server.add_chat(USER, "private")
        update = {"update_id": 1, "message": {"message_id": 5, "date": 0, "text": "why did Iran strike Pakistan?",
                                              "chat": {"id": USER, "type": "private"},
                                              "from": {"id": USER, "is_bot": False, "first_name": "U"}}}
        server.known_chats.add(USER)
        try:
            async with httpx.AsyncClient() as client:
                url = f"http://127.0.0.1:{unused_tcp_port}/hook"
                wrong = await client.post(url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "nope"})
                assert wrong.status_code == 403
                right = await client.post(url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret"})
                assert right.status_code == 200
            (answer,) = await server.wait_for_messages(USER, 1, timeout=30, methods=["sendMessage"])
            assert quotes(answer)
        finally:
            await application.updater.stop()
            await application.stop()
            await application.shutdown()
