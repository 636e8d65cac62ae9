"""The Bot API test server behaves like Telegram, seen from a real telegram.Bot and from raw HTTP.

Later end-to-end tests trust this server to refuse what Telegram refuses and to fail the way
Telegram fails, so those behaviours are pinned down here.
"""

from __future__ import annotations

import asyncio
import datetime as dtm
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest, Conflict, Forbidden, NetworkError, RetryAfter, TimedOut
from telegram.ext import ContextTypes, MessageHandler, filters
from telegram.request import HTTPXRequest

from tests.botapi import BotApiServer, Fault, botapi_server, check_html, entity_text, format_text  # noqa: F401
from tests.botapi.html_check import HtmlParseError, check_url, parse_html, utf16_len

USER = 4242


@pytest_asyncio.fixture
async def server(botapi_server: BotApiServer) -> BotApiServer:  # noqa: F811 - the shared fixture
    return botapi_server


def make_bot(server: BotApiServer, read_timeout: float = 3.0) -> Bot:
    """A real PTB Bot aimed at the test server, with short timeouts so no test can hang."""
    return Bot(
        server.token,
        base_url=server.base_url,
        base_file_url=server.base_file_url,
        request=HTTPXRequest(connect_timeout=2, read_timeout=read_timeout, write_timeout=2, pool_timeout=2),
        get_updates_request=HTTPXRequest(connect_timeout=2, read_timeout=read_timeout, pool_timeout=2),
    )


@pytest_asyncio.fixture
async def bot(server: BotApiServer) -> AsyncIterator[Bot]:
    async with make_bot(server) as b:
        yield b


@pytest_asyncio.fixture
async def http(server: BotApiServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.api_url, timeout=3, trust_env=False) as client:
        yield client


# ------------------------------------------------------------------------------ basics


async def test_get_me(bot: Bot, server: BotApiServer) -> None:
    me = await bot.get_me()
    assert me.id == server.bot_id
    assert me.is_bot
    assert me.username == server.bot_username
    assert bot.username == server.bot_username


async def test_send_message_parses_html_with_utf16_offsets(bot: Bot, server: BotApiServer) -> None:
    server.send_text(USER, "hi")
    html = "<b>Hi</b> 😀 <i>there</i> <a href='https://example.com'>l</a>"
    message = await bot.send_message(USER, html, parse_mode=ParseMode.HTML)
    assert message.text == "Hi 😀 there l"
    kinds = [(e.type, e.offset, e.length) for e in message.entities]
    # the emoji is two UTF-16 code units: "Hi " is 3, the emoji 2, the space 1 -> "there" at 6
    assert kinds == [("bold", 0, 2), ("italic", 6, 5), ("text_link", 12, 1)]
    assert message.entities[2].url == "https://example.com/"
    assert message.parse_entity(message.entities[1]) == "there"
    assert message.from_user.id == server.bot_id and message.chat.id == USER
    [event] = server.sent_messages(USER)
    assert event.method == "sendMessage" and event.text == "Hi 😀 there l"
    assert not server.violations


async def test_message_ids_increase_per_chat(bot: Bot, server: BotApiServer) -> None:
    server.send_text(USER, "hi")  # message 1 in the chat
    server.send_text(7, "hi")
    first = await bot.send_message(USER, "one")
    second = await bot.send_message(USER, "two")
    other = await bot.send_message(7, "three")
    assert (first.message_id, second.message_id, other.message_id) == (2, 3, 2)


@pytest.mark.parametrize(
    ("html", "detail"),
    [
        ("<b>unclosed", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<div>x</div>", 'Unsupported start tag "div" at byte offset 0'),
        ("1 < 2", 'Unsupported start tag "" at byte offset 2'),
        ("<b><i>x</b></i>", 'Unmatched end tag at byte offset 7, expected "</i>", found "</b>"'),
    ],
)
async def test_invalid_html_is_refused(bot: Bot, server: BotApiServer, html: str, detail: str) -> None:
    server.send_text(USER, "hi")
    with pytest.raises(BadRequest) as caught:
        await bot.send_message(USER, html, parse_mode=ParseMode.HTML)
    assert caught.value.message.lower() == f"can't parse entities: {detail}".lower()
    [violation] = server.violations
    assert violation.description == f"Bad Request: can't parse entities: {detail}"
    assert server.sent_messages() == []


async def test_length_limit_counts_text_after_parsing(bot: Bot, server: BotApiServer) -> None:
    server.send_text(USER, "hi")
    with pytest.raises(BadRequest, match="(?i)message is too long"):
        await bot.send_message(USER, "x" * 4097)
    tagged = "<b>" + "x" * 4000 + "</b>" + "&amp;" * 96
    assert len(tagged) > 4096
    message = await bot.send_message(USER, tagged, parse_mode=ParseMode.HTML)
    assert len(message.text) == 4096
    assert len(server.violations) == 1


async def test_empty_and_blank_text(bot: Bot, server: BotApiServer) -> None:
    server.send_text(USER, "hi")
    with pytest.raises(BadRequest, match="(?i)message text is empty"):
        await bot.send_message(USER, "")
    with pytest.raises(BadRequest, match="(?i)text must be non-empty"):
        await bot.send_message(USER, "<b> </b>\n", parse_mode=ParseMode.HTML)


async def test_callback_data_over_64_bytes_is_refused(bot: Bot, server: BotApiServer) -> None:
    server.send_text(USER, "hi")
    ok = InlineKeyboardMarkup([[InlineKeyboardButton("ok", callback_data="x" * 64)]])
    message = await bot.send_message(USER, "fits", reply_markup=ok)
    assert message.reply_markup == ok
    too_long = InlineKeyboardMarkup([[InlineKeyboardButton("no", callback_data="é" * 32 + "x")]])  # 65 bytes
    with pytest.raises(BadRequest, match="(?i)button_data_invalid"):
        await bot.send_message(USER, "too long", reply_markup=too_long)
    assert server.violations[-1].description == "Bad Request: BUTTON_DATA_INVALID"


async def test_bad_button_url_is_refused(bot: Bot, server: BotApiServer) -> None:
    server.send_text(USER, "hi")
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("go", url="ftp://example.com")]])
    with pytest.raises(BadRequest):
        await bot.send_message(USER, "x", reply_markup=markup)
    assert server.violations[-1].description == (
        "Bad Request: inline keyboard button URL 'ftp://example.com' is invalid: Unsupported URL protocol"
    )


async def test_javascript_link_is_dropped_not_refused(bot: Bot, server: BotApiServer) -> None:
    server.send_text(USER, "hi")
    message = await bot.send_message(USER, '<a href="javascript:alert(1)">click</a>', parse_mode=ParseMode.HTML)
    assert message.text == "click" and message.entities == ()
    assert server.warnings and "javascript:alert(1)" in server.warnings[0]
    assert not server.violations


async def test_unknown_chat_is_not_found(bot: Bot, server: BotApiServer) -> None:
    server.add_user(999)  # exists, but never wrote to the bot
    with pytest.raises(BadRequest, match="(?i)chat not found"):
        await bot.send_message(999, "hello")
    assert server.violations[0].description == "Bad Request: chat not found"


# ------------------------------------------------------------------------------ updates


async def test_long_poll_returns_as_soon_as_a_user_writes(bot: Bot, server: BotApiServer) -> None:
    started = time.monotonic()
    poll = asyncio.create_task(bot.get_updates(timeout=2))
    await asyncio.sleep(0.2)
    assert not poll.done()
    server.send_text(USER, "/start")
    updates = await asyncio.wait_for(poll, 2)
    assert time.monotonic() - started < 1.5
    [update] = updates
    assert update.message.text == "/start"
    assert [(e.type, e.offset, e.length) for e in update.message.entities] == [("bot_command", 0, 6)]
    assert update.message.from_user.id == USER and update.message.chat.type == "private"


async def test_long_poll_times_out_empty(bot: Bot) -> None:
    started = time.monotonic()
    assert await bot.get_updates(timeout=1) == ()
    assert 0.9 < time.monotonic() - started < 2


async def test_offset_confirms_updates(bot: Bot, server: BotApiServer) -> None:
    first = server.send_text(USER, "one")
    second = server.send_text(USER, "two")
    assert second["update_id"] == first["update_id"] + 1
    updates = await bot.get_updates()
    assert [u.update_id for u in updates] == [first["update_id"], second["update_id"]]
    assert len(await bot.get_updates()) == 2  # not confirmed yet
    assert len(await bot.get_updates(offset=first["update_id"] + 1)) == 1
    assert await bot.get_updates(offset=second["update_id"] + 1) == ()
    assert server.pending_updates == []


async def test_limit_and_allowed_updates(bot: Bot, server: BotApiServer) -> None:
    for n in range(3):
        server.send_text(USER, f"m{n}")
    assert len(await bot.get_updates(limit=2)) == 2
    await bot.get_updates(offset=-1, allowed_updates=["message"])
    assert len(server.pending_updates) == 1  # negative offset forgets all but the last
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("a", callback_data="a")]])
    sent = await bot.send_message(USER, "pick", reply_markup=keyboard)
    assert server.press_button(USER, sent, "a") is None  # callback_query not allowed: dropped
    assert server.dropped_updates[-1]["callback_query"]["data"] == "a"


async def test_command_with_bot_name_and_group_privacy(bot: Bot, server: BotApiServer) -> None:
    group = -100123
    assert server.send_text(USER, "just chatting", chat_id=group, chat_type="supergroup") is None
    update = server.send_text(USER, f"/digest@{server.bot_username} now", chat_id=group, chat_type="supergroup")
    assert update is not None
    [update] = await bot.get_updates()
    assert update.message.chat.type == "supergroup"
    command = update.message.entities[0]
    assert command.type == "bot_command"
    assert update.message.parse_entity(command) == f"/digest@{server.bot_username}"
    reply = await bot.send_message(group, "ok", reply_to_message_id=update.message.message_id)
    assert reply.reply_to_message.message_id == update.message.message_id


async def test_raw_updates_and_conflicting_pollers(server: BotApiServer) -> None:
    user = {"id": USER, "is_bot": False, "first_name": "A"}
    chat = {"id": USER, "type": "private", "first_name": "A"}
    raw = server.send_update({"edited_message": {"chat": chat, "from": user, "text": "fixed"}})
    assert raw is not None and raw["edited_message"]["message_id"] == 1
    async with make_bot(server) as first, make_bot(server) as second:
        await first.get_updates(offset=raw["update_id"] + 1)
        waiting = asyncio.create_task(first.get_updates(timeout=3))
        await asyncio.sleep(0.2)
        await second.get_updates(timeout=0)
        with pytest.raises(Conflict, match="terminated by other getUpdates request"):
            await asyncio.wait_for(waiting, 2)
    assert server.violations[-1].error_code == 409


async def test_webhook_blocks_polling_until_deleted(bot: Bot, server: BotApiServer) -> None:
    with pytest.raises(BadRequest, match="(?i)https url must be provided"):
        await bot.set_webhook("http://127.0.0.1:8080/hook")
    assert await bot.set_webhook("https://bot.example.com/hook", secret_token="s3cret")
    assert (await bot.get_webhook_info()).url == "https://bot.example.com/hook"
    server.send_text(USER, "queued")
    with pytest.raises(Conflict, match="(?i)webhook is active"):
        await bot.get_updates()
    assert await bot.delete_webhook(drop_pending_updates=True)
    info = await bot.get_webhook_info()
    assert (info.url, info.pending_update_count) == ("", 0)
    assert await bot.get_updates() == ()


# ------------------------------------------------------------------------------ edits and buttons


async def test_edit_press_and_answer(bot: Bot, server: BotApiServer) -> None:
    server.send_text(USER, "hi")
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("More", callback_data="more:1")]])
    sent = await bot.send_message(USER, "Page 1", reply_markup=keyboard)
    update = server.press_button(USER, sent, "more:1")
    assert update is not None
    [incoming] = await bot.get_updates(offset=update["update_id"])
    query = incoming.callback_query
    assert query.data == "more:1" and query.message.message_id == sent.message_id
    assert await bot.answer_callback_query(query.id, text="Loading")
    with pytest.raises(BadRequest, match="(?i)query is too old"):
        await bot.answer_callback_query(query.id)
    edited = await bot.edit_message_text("Page 2", chat_id=USER, message_id=sent.message_id, reply_markup=keyboard)
    assert edited.text == "Page 2" and edited.edit_date is not None
    with pytest.raises(BadRequest, match="(?i)message is not modified"):
        await bot.edit_message_text("Page 2", chat_id=USER, message_id=sent.message_id, reply_markup=keyboard)
    # an edit without reply_markup drops the keyboard, as on Telegram
    await bot.edit_message_text("Page 3", chat_id=USER, message_id=sent.message_id)
    assert "reply_markup" not in server.message(USER, sent.message_id)
    with pytest.raises(LookupError):
        server.press_button(USER, sent, "more:1")
    with pytest.raises(BadRequest, match="(?i)message to edit not found"):
        await bot.edit_message_text("x", chat_id=USER, message_id=999)
    await bot.edit_message_reply_markup(chat_id=USER, message_id=sent.message_id, reply_markup=keyboard)
    methods = [e.method for e in server.sent_messages(USER)]
    assert methods == ["sendMessage", "editMessageText", "editMessageText", "editMessageReplyMarkup"]
    assert server.callback_answers[query.id]["text"] == "Loading"
    assert len(server.violations) == 3


async def test_commands_and_chat_action(bot: Bot, server: BotApiServer) -> None:
    assert await bot.set_my_commands([("digest", "Today's digest"), ("help", "How to use")])
    commands = await bot.get_my_commands()
    assert [(c.command, c.description) for c in commands] == [("digest", "Today's digest"), ("help", "How to use")]
    with pytest.raises(BadRequest, match="(?i)bot_command_invalid"):
        await bot.set_my_commands([("Digest", "capitals are not allowed")])
    assert await bot.delete_my_commands()
    assert await bot.get_my_commands() == ()
    server.send_text(USER, "hi")
    assert await bot.send_chat_action(USER, "typing")
    assert server.chat_actions == [(USER, "typing")]


# ------------------------------------------------------------------------------ faults


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")  # int retry_after
async def test_injected_429_raises_retry_after_and_delivers_nothing(bot: Bot, server: BotApiServer) -> None:
    server.send_text(USER, "hi")
    server.inject("sendMessage", 429, retry_after=3)
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(USER, "hello")
    assert caught.value.retry_after in (3, dtm.timedelta(seconds=3))
    assert server.sent_messages() == [] and not server.violations
    await bot.send_message(USER, "hello")  # times=1: the retry goes through, exactly once
    assert [e.text for e in server.sent_messages()] == ["hello"]


async def test_blocked_user_is_forbidden_until_unblocked(bot: Bot, server: BotApiServer) -> None:
    server.send_text(USER, "hi")
    server.block(USER)
    with pytest.raises(Forbidden, match="(?i)bot was blocked by the user"):
        await bot.send_message(USER, "anyone there?")
    with pytest.raises(Forbidden):
        await bot.send_chat_action(USER, "typing")
    server.unblock(USER)
    await bot.send_message(USER, "welcome back")
    kinds = [next(k for k in u if k != "update_id") for u in server.pending_updates]
    assert kinds == ["message", "my_chat_member", "my_chat_member"]
    assert not server.violations


async def test_server_errors_timeouts_and_resets(server: BotApiServer) -> None:
    server.send_text(USER, "hi")
    async with make_bot(server, read_timeout=0.5) as bot:
        server.inject("sendMessage", 500)
        with pytest.raises(NetworkError, match="Internal Server Error"):
            await bot.send_message(USER, "a")
        server.inject("sendMessage", 502)
        with pytest.raises(NetworkError, match="Bad Gateway"):
            await bot.send_message(USER, "b")
        server.inject("sendMessage", "reset")
        with pytest.raises(NetworkError):
            await bot.send_message(USER, "c")
        server.inject("sendMessage", "timeout")
        started = time.monotonic()
        with pytest.raises(TimedOut):
            await bot.send_message(USER, "d")
        assert time.monotonic() - started < 2
        assert server.sent_messages() == []
        # the classic duplicate: Telegram delivered it, the response was lost
        server.inject("sendMessage", Fault.timeout(after_processing=True))
        with pytest.raises(TimedOut):
            await bot.send_message(USER, "e")
        assert [e.text for e in server.sent_messages()] == ["e"]
        assert (await bot.send_message(USER, "f")).text == "f"
    assert [f.fault for f in server.faults] == ["server_error", "bad_gateway", "reset", "timeout", "timeout"]
    assert not server.violations


async def test_injection_per_chat_and_random_failures(bot: Bot, server: BotApiServer) -> None:
    server.send_text(USER, "hi")
    server.send_text(7, "hi")
    server.inject("sendMessage", 403, chat_id=7, times=None)
    await bot.send_message(USER, "fine")
    for _ in range(2):
        with pytest.raises(Forbidden):
            await bot.send_message(7, "no")
    server.clear_faults()

    async def run(seed: int) -> list[bool]:
        server.fail_randomly(0.5, seed=seed, kinds=[500], methods=["getWebhookInfo"])
        results = []
        for _ in range(10):
            try:
                await bot.get_webhook_info()
                results.append(True)
            except NetworkError:
                results.append(False)
        return results

    first = await run(1)
    assert first == await run(1)  # same seed, same failures
    assert True in first and False in first
    server.fail_randomly(0)
    assert (await bot.get_webhook_info()).pending_update_count == 2


async def test_stop_is_quick_with_held_and_polling_clients() -> None:
    server = BotApiServer()
    await server.start()
    server.send_text(USER, "hi")
    server.inject("sendMessage", Fault.timeout(hold=30))
    async with make_bot(server, read_timeout=10) as bot:
        await bot.get_updates(offset=-1)
        await bot.get_updates(offset=server.pending_updates[0]["update_id"] + 1)
        held = asyncio.create_task(bot.send_message(USER, "never answered"))
        polling = asyncio.create_task(bot.get_updates(timeout=8))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        await server.stop()
        assert time.monotonic() - started < 1
        for task in (held, polling):
            with pytest.raises(NetworkError):
                await asyncio.wait_for(task, 2)


# ------------------------------------------------------------------------------ raw HTTP


async def test_raw_http_shapes(http: httpx.AsyncClient, server: BotApiServer) -> None:
    async with httpx.AsyncClient(timeout=3, trust_env=False) as raw:
        bad_token = await raw.post(f"{server.base_url}123456:WRONG/getMe")
        assert bad_token.status_code == 401
        assert bad_token.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
        malformed = await raw.post(f"{server.base_url}not-a-token/getMe")
        assert malformed.status_code == 404
    unknown = await http.post("/noSuchMethod")
    assert unknown.status_code == 404
    assert unknown.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
    me = await http.get("/GETME")  # method names are case-insensitive, GET works too
    assert me.json()["result"]["id"] == server.bot_id
    server.send_text(USER, "hi")
    as_json = await http.post("/sendMessage", json={"chat_id": USER, "text": "<i>j</i>", "parse_mode": "html"})
    assert as_json.json()["result"]["entities"] == [{"offset": 0, "length": 1, "type": "italic"}]
    keyboard = {"inline_keyboard": [[{"text": "a", "callback_data": "b"}]]}
    as_form = await http.post(
        "/sendMessage", data={"chat_id": str(USER), "text": "form", "reply_markup": json.dumps(keyboard)}
    )
    assert as_form.json()["result"]["reply_markup"] == keyboard
    multipart = await http.post(
        "/sendMessage", data={"chat_id": str(USER), "text": "multi"}, files={"document": ("a.txt", b"x")}
    )
    assert multipart.json()["result"]["text"] == "multi"
    server.inject("sendMessage", 429, retry_after=7)
    limited = await http.post("/sendMessage", json={"chat_id": USER, "text": "x"})
    assert limited.status_code == 429
    assert limited.json() == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 7",
        "parameters": {"retry_after": 7},
    }
    refused = await http.post("/sendMessage", json={"chat_id": USER, "text": "<p>x</p>", "parse_mode": "HTML"})
    assert refused.json() == {
        "ok": False,
        "error_code": 400,
        "description": 'Bad Request: can\'t parse entities: Unsupported start tag "p" at byte offset 0',
    }


async def test_channel_posts_get_chat_and_unimplemented_methods(
    bot: Bot, server: BotApiServer, http: httpx.AsyncClient
) -> None:
    channel = -100777
    update = server.send_text(USER, "breaking", chat_id=channel, chat_type="channel")
    assert update is not None and "from" not in update["channel_post"]
    assert update["channel_post"]["sender_chat"]["id"] == channel
    chat = await bot.get_chat(channel)
    assert chat.type == "channel"
    missing = await http.post("/sendDice", json={"chat_id": USER})  # real, but not implemented here
    assert missing.status_code == 404
    assert server.unknown_methods == ["sendDice"]
    assert [(v.method, v.error_code) for v in server.violations] == [("sendDice", 404)]


# ------------------------------------------------------------------------------ PTB Application


async def test_ptb_application_echo_over_polling(server: BotApiServer) -> None:
    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await update.effective_message.reply_html(f"<b>echo</b> {update.effective_message.text}", do_quote=True)

    app = server.application_builder().build()
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, echo))
    started = time.monotonic()
    await asyncio.wait_for(app.initialize(), 5)
    await app.start()
    await app.updater.start_polling(poll_interval=0, timeout=1)
    try:
        server.send_text(USER, "hello there")
        [reply] = await server.wait_for_messages(USER, 1, timeout=5)
        assert reply.text == "echo hello there"
        assert reply.entities == [{"offset": 0, "length": 4, "type": "bold"}]
        assert reply.message["reply_to_message"]["text"] == "hello there"
    finally:
        stopping = time.monotonic()
        await asyncio.wait_for(app.updater.stop(), 5)
        await asyncio.wait_for(app.stop(), 5)
        await asyncio.wait_for(app.shutdown(), 5)
    assert time.monotonic() - stopping < 1.5
    assert time.monotonic() - started < 5
    assert server.pending_updates == []  # the final getUpdates confirmed the echoed message
    server.assert_no_violations()


# ------------------------------------------------------------------------------ html_check on its own


def test_html_check_helpers() -> None:
    assert check_html("<b>ok</b> &amp; fine & dandy >") is None
    assert check_html("<br>") == 'Bad Request: can\'t parse entities: Unsupported start tag "br" at byte offset 0'
    assert check_html("😀" * 4096) is None  # the limit counts code points, not UTF-16 units
    assert check_html("😀" * 4097) == "Bad Request: message is too long"
    text, entities = parse_html("<s>é😀</s><tg-spoiler>x</tg-spoiler>")
    assert text == "é😀x" and utf16_len(text) == 4
    assert [(e.type, e.offset, e.length) for e in entities] == [("strikethrough", 0, 3), ("spoiler", 3, 1)]
    with pytest.raises(HtmlParseError, match="Unclosed end tag at byte offset 4"):
        parse_html("<b>x</b")
    with pytest.raises(HtmlParseError, match="Unexpected end tag at byte offset 1"):
        parse_html("x</b>")
    formatted = format_text("<b>x <code>y</code> z</b>")
    pieces = [(e["type"], entity_text(formatted.text, e)) for e in formatted.entities]
    assert pieces == [("bold", "x "), ("code", "y"), ("bold", " z")]  # bold may not contain code
    assert check_url("HTTPS://Example.COM") == "https://example.com/"
