"""A Telegram Bot API test server on 127.0.0.1, so the bot runs end to end without Telegram.

The bot talks to it over real HTTP exactly as it would talk to api.telegram.org; the test plays
the users (``send_text``, ``press_button``, ``send_update``), reads what the bot sent
(``sent_messages``, ``wait_for_messages``) and breaks things on purpose (``inject``, ``block``,
``fail_randomly``). Requests Telegram would refuse are refused with Telegram's own error texts and
listed in ``violations``, so a test can assert the bot never sent anything Telegram would reject.

Usage::

    async with running_server() as server:            # or the ``botapi_server`` pytest fixture
        app = server.application_builder().build()    # token, base_url, base_file_url, short timeouts
        app.add_handler(...)
        await app.initialize(); await app.start()
        await app.updater.start_polling(poll_interval=0, timeout=1)
        server.send_text(42, "/start")                # user 42 writes; the chat now exists
        [reply] = await server.wait_for_messages(42, 1, timeout=5)
        server.press_button(42, reply, "more:1")      # a callback_query on that message
        server.inject("sendMessage", 429, retry_after=2)
        server.assert_no_violations()
        await app.updater.stop(); await app.stop(); await app.shutdown()

PTB configuration: ``base_url=server.base_url`` (``http://127.0.0.1:PORT/bot``, PTB appends the
token) and ``base_file_url=server.base_file_url``. Keep read timeouts short and poll with
``timeout=1`` so stopping is quick; a ``"timeout"`` fault holds the request until the client's own
read timeout fires. httpx honours HTTP(S)_PROXY variables: keep them unset (or NO_PROXY=127.0.0.1).

Behaviour worth knowing (all as on Telegram):

* A private chat exists only once its user wrote to the bot (``send_text``/``press_button``/
  ``send_update``); until then sendMessage gets "Bad Request: chat not found".
* ``editMessageText`` without ``reply_markup`` removes the inline keyboard; an edit that changes
  nothing is "message is not modified"; a callback query can be answered once.
* In groups the bot is in privacy mode by default: it only gets commands, mentions of it and
  replies to it (``BotApiServer(privacy_mode=False)`` to see everything).
* Telegram adds entities by itself (url, mention, hashtag, ...; bot_command except in the bot's
  own private-chat messages) and may split bold/italic around them: compare ``text``, or filter
  entities by type, rather than whole entity lists. ``auto_entities=False`` turns this off.
* Unknown methods get 404 "Not Found", which PTB raises as InvalidToken; methods this server does
  not implement are listed in ``unknown_methods`` and ``violations`` too (Markdown parse modes are
  refused with a 400 naming the test server). ``close``/``logOut`` just return True.

The server is single-threaded asyncio: call its helpers from the event loop that runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import json
import logging
import random
import re
import socket
import struct
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import h11
import pytest_asyncio

from tests.botapi.html_check import (
    MAX_MESSAGE_LENGTH,
    TelegramTextError,
    UrlError,
    check_url,
    entity_text,
    find_entities,
    format_text,
    link_user_id,
)

log = logging.getLogger(__name__)

TOKEN_RE = re.compile(r"^(\d+):[A-Za-z0-9_-]+$")
# Updates delivered when getUpdates never named allowed_updates (Bot API default).
DEFAULT_ALLOWED = frozenset(
    {
        "message", "edited_message", "channel_post", "edited_channel_post", "business_connection",
        "business_message", "edited_business_message", "deleted_business_messages", "inline_query",
        "chosen_inline_result", "callback_query", "shipping_query", "pre_checkout_query",
        "purchased_paid_media", "poll", "poll_answer", "my_chat_member", "chat_join_request",
        "chat_boost", "removed_chat_boost",
    }
)  # fmt: skip
CHAT_ACTIONS = frozenset(
    {
        "typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
        "upload_document", "choose_sticker", "find_location", "record_video_note", "upload_video_note",
    }
)  # fmt: skip
NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the same "
    "as a current content and reply markup of the message"
)
CONFLICT_POLL = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
CONFLICT_WEBHOOK = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
)
_MESSAGE_UPDATES = frozenset(
    {"message", "edited_message", "channel_post", "edited_channel_post", "business_message", "edited_business_message"}
)
QUERY_INVALID = "query is too old and response timeout expired or query ID is invalid"
BAD_GATEWAY_HTML = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n</body>\r\n</html>\r\n"
)


class ApiError(Exception):
    """A refusal in Telegram's shape. ``violation`` says whether it counts as the bot's mistake."""

    def __init__(
        self,
        code: int,
        description: str,
        *,
        parameters: dict | None = None,
        violation: bool = True,
    ) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters
        self.violation = violation

    @classmethod
    def bad_request(cls, description: str) -> ApiError:
        return cls(400, f"Bad Request: {description}")

    def payload(self) -> dict:
        body: dict = {"ok": False, "error_code": self.code, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


# ----------------------------------------------------------------------------------- faults


@dataclass(frozen=True)
class Fault:
    """Something that goes wrong with one request, as it goes wrong with the real Telegram.

    ``kind`` is one of ``retry_after`` (429 flood control), ``server_error`` (500), ``bad_gateway``
    (502, nginx HTML body), ``timeout`` (hold the connection until the client gives up, then drop
    it), ``reset`` (TCP reset, no response) or ``forbidden`` (403). Faults hit before the request is
    carried out, so nothing is delivered; ``after_processing=True`` (timeout and reset only) carries
    the request out and loses the response instead, the case that makes naive retries duplicate.
    """

    kind: str
    retry_after: int = 1
    hold: float = 30.0
    after_processing: bool = False
    description: str = "Forbidden: bot was blocked by the user"

    KINDS = ("retry_after", "server_error", "bad_gateway", "timeout", "reset", "forbidden")

    @classmethod
    def too_many_requests(cls, retry_after: int = 1) -> Fault:
        return cls("retry_after", retry_after=retry_after)

    @classmethod
    def server_error(cls) -> Fault:
        return cls("server_error")

    @classmethod
    def bad_gateway(cls) -> Fault:
        return cls("bad_gateway")

    @classmethod
    def timeout(cls, hold: float = 30.0, *, after_processing: bool = False) -> Fault:
        return cls("timeout", hold=hold, after_processing=after_processing)

    @classmethod
    def reset(cls, *, after_processing: bool = False) -> Fault:
        return cls("reset", after_processing=after_processing)

    @classmethod
    def forbidden(cls, description: str = "Forbidden: bot was blocked by the user") -> Fault:
        return cls("forbidden", description=description)

    @classmethod
    def parse(cls, spec: Fault | int | str, *, retry_after: int = 1, hold: float = 30.0) -> Fault:
        """Accept shorthands: 429, 500, 502, 403, "timeout", "reset", "429", "retry_after", ..."""
        if isinstance(spec, Fault):
            return spec
        key = str(spec).strip().lower()
        aliases = {
            "429": "retry_after", "flood": "retry_after", "500": "server_error", "502": "bad_gateway",
            "403": "forbidden", "blocked": "forbidden", "connection_reset": "reset",
        }  # fmt: skip
        kind = aliases.get(key, key)
        if kind not in cls.KINDS:
            raise ValueError(f"unknown fault {spec!r}; use one of {cls.KINDS} or 429/500/502/403")
        return cls(kind, retry_after=retry_after, hold=hold)


@dataclass
class Injection:
    """A scheduled fault: hits the next ``remaining`` matching requests (None: every one)."""

    method: str
    fault: Fault
    remaining: int | None
    chat_id: int | str | None = None
    hits: int = 0

    def matches(self, method: str, chat_id: Any) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.method not in ("*", method.lower()):
            return False
        return self.chat_id is None or str(self.chat_id) == str(chat_id)


# ----------------------------------------------------------------------------------- records


@dataclass
class BotEvent:
    """Something the bot did to a chat that Telegram carried out (send, edit, delete)."""

    method: str
    chat_id: int
    message_id: int
    text: str | None
    entities: list[dict]
    reply_markup: dict | None
    message: dict | None
    params: dict
    at: float = field(default_factory=time.monotonic)

    @property
    def is_edit(self) -> bool:
        return self.method.startswith("edit")

    def button_data(self) -> list[str]:
        """All callback_data values of the inline keyboard, row by row."""
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [b["callback_data"] for row in rows for b in row if "callback_data" in b]


@dataclass
class RequestRecord:
    """One HTTP request the bot made and how it ended."""

    method: str
    params: dict
    status: int
    description: str | None = None
    fault: str | None = None
    at: float = field(default_factory=time.monotonic)


@dataclass
class Violation:
    """A request Telegram would have refused (not counting injected faults)."""

    method: str
    params: dict
    error_code: int
    description: str

    def __str__(self) -> str:
        return f"{self.method}: {self.error_code} {self.description} (params={self.params!r})"


class _Notifier:
    """Wakes every waiter when state changes; usable from sync code on the loop."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._event.wait(), max(timeout, 0))


class _ClientGone(Exception):
    """The client closed the connection while we were holding its request."""


@dataclass
class _Drop:
    """Answer a request by dropping the connection (``reset``) or holding then dropping it."""

    kind: str
    hold: float = 0.0


@dataclass
class _Poller:
    terminated: asyncio.Event = field(default_factory=asyncio.Event)


class _Connection:
    """One client connection: h11 state plus a watcher that notices when the client hangs up."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.SERVER)
        self.disconnected = asyncio.Event()
        self._watch: asyncio.Task | None = None

    async def _watch_loop(self) -> None:
        try:
            while True:
                data = await self.reader.read(65536)
                self.h11.receive_data(data)
                if not data:
                    break
        except (ConnectionError, OSError, h11.RemoteProtocolError):
            pass
        self.disconnected.set()

    def start_watch(self) -> None:
        if self._watch is None and not self.disconnected.is_set():
            self._watch = asyncio.create_task(self._watch_loop())

    async def stop_watch(self) -> None:
        task, self._watch = self._watch, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def next_event(self) -> Any:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            if self.disconnected.is_set():
                return h11.ConnectionClosed()
            data = await self.reader.read(65536)
            self.h11.receive_data(data)

    def abort(self, reset: bool = False) -> None:
        if reset:
            sock = self.writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


# ----------------------------------------------------------------------------------- the server


class BotApiServer:
    """Bot API test server: see the module docstring. Only binds 127.0.0.1."""

    def __init__(
        self,
        token: str = "123456:TEST-token_for_briefbot",
        *,
        bot_username: str = "briefbot_test_bot",
        bot_first_name: str = "Briefbot",
        privacy_mode: bool = True,
        auto_entities: bool = True,
        first_update_id: int = 100_000,
    ) -> None:
        match = TOKEN_RE.match(token)
        if not match:
            raise ValueError("token must look like '123:ABC' (digits, colon, secret)")
        self.token = token
        self.bot_id = int(match.group(1))
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        self.privacy_mode = privacy_mode
        self.auto_entities = auto_entities
        self.host = "127.0.0.1"
        self.port = 0
        # state
        self.users: dict[int, dict] = {}
        self.chats: dict[int, dict] = {}
        self.known_chats: set[int] = set()
        self.blocked: set[int] = set()
        self.messages: dict[int, dict[int, dict]] = {}  # chat_id -> message_id -> Message
        self._next_message_id: dict[int, int] = {}
        self._update_ids = itertools.count(first_update_id)
        self._query_ids = itertools.count(1)
        self._updates: list[dict] = []
        self.allowed_updates: frozenset[str] = DEFAULT_ALLOWED
        self.webhook: dict | None = None
        self.commands: dict[tuple[str, str], list[dict]] = {}
        self.callback_queries: dict[str, dict] = {}
        self.callback_answers: dict[str, dict] = {}
        # records for tests
        self.events: list[BotEvent] = []
        self.requests: list[RequestRecord] = []
        self.violations: list[Violation] = []
        self.warnings: list[str] = []
        self.chat_actions: list[tuple[int, str]] = []
        self.dropped_updates: list[dict] = []
        self.faults: list[RequestRecord] = []
        self.unknown_methods: list[str] = []
        self.server_errors: list[str] = []
        self.bot_profile: dict[str, str] = {}
        # fault injection
        self._injections: list[Injection] = []
        self._random: random.Random | None = None
        self._random_rate = 0.0
        self._random_kinds: tuple[Fault, ...] = ()
        self._random_methods: frozenset[str] | None = None
        # machinery
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task] = set()
        self._poller: _Poller | None = None
        self._changed: _Notifier | None = None
        self._method_table: dict[str, Callable] | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        """For ``ApplicationBuilder().base_url(...)`` / ``Bot(base_url=...)``: PTB appends the token."""
        return f"http://{self.host}:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://{self.host}:{self.port}/file/bot"

    @property
    def api_url(self) -> str:
        """``{base_url}{token}``, for raw HTTP clients: POST ``f"{server.api_url}/sendMessage"``."""
        return f"{self.base_url}{self.token}"

    async def start(self, port: int = 0) -> BotApiServer:
        self._changed = _Notifier()
        self._server = await asyncio.start_server(self._serve, self.host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.debug("Bot API test server listening on %s", self.base_url)
        return self

    async def stop(self) -> None:
        """Close the listener and every connection, held or idle, without waiting on clients."""
        if self._server is None:
            return
        self._server.close()
        for conn in list(self._connections):
            conn.abort()  # handlers see EOF and finish on their own
        tasks = [t for t in self._tasks if not t.done()]
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=0.5)
            for task in stuck:
                task.cancel()
            if stuck:
                await asyncio.wait(stuck, timeout=1)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 2)
        self._server = None

    async def __aenter__(self) -> BotApiServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ the test's side: users

    def add_user(
        self,
        user_id: int,
        *,
        first_name: str | None = None,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
        is_bot: bool = False,
    ) -> dict:
        """Create or update a user (a User object). Does not open a chat with the bot."""
        user = self.users.get(user_id, {"id": user_id, "is_bot": is_bot, "first_name": f"User{user_id}"})
        user["is_bot"] = is_bot
        for key, value in (
            ("first_name", first_name),
            ("last_name", last_name),
            ("username", username),
            ("language_code", language_code),
        ):
            if value is not None:
                user[key] = value
        self.users[user_id] = user
        return copy.deepcopy(user)

    def add_chat(
        self, chat_id: int, chat_type: str = "group", *, title: str | None = None, username: str | None = None
    ) -> dict:
        """Create a group, supergroup or channel (a Chat object); private chats come from users."""
        if chat_type == "private":
            user = self.users.get(chat_id) or self.add_user(chat_id)
            chat = {"id": chat_id, "type": "private", "first_name": user["first_name"]}
            for key in ("last_name", "username"):
                if key in user:
                    chat[key] = user[key]
        else:
            if chat_type not in ("group", "supergroup", "channel"):
                raise ValueError(f"unknown chat type {chat_type!r}")
            chat = {"id": chat_id, "type": chat_type, "title": title or f"Test {chat_type} {chat_id}"}
            if username:
                chat["username"] = username
        self.chats[chat_id] = chat
        return copy.deepcopy(chat)

    def _chat_for(self, chat_id: int, chat_type: str) -> dict:
        chat = self.chats.get(chat_id)
        if chat is None or (chat_type == "private" and chat["type"] != "private"):
            chat = self.add_chat(chat_id, chat_type)
        return chat

    def send_text(
        self,
        user_id: int,
        text: str,
        chat_id: int | None = None,
        chat_type: str = "private",
        entities: list[dict] | None = None,
        *,
        reply_to: dict | BotEvent | int | None = None,
    ) -> dict | None:
        """A user writes ``text``; returns the Update queued for the bot, or None if Telegram would not
        deliver it (group privacy mode, allowed_updates).

        Entities the user's client would add (bot_command for ``/cmd`` and ``/cmd@bot``, url,
        mention, hashtag) are added unless ``entities`` is given.
        """
        if chat_id is None:
            if chat_type != "private":
                raise ValueError("group messages need a chat_id")
            chat_id = user_id
        if chat_type == "private" and chat_id != user_id:
            raise ValueError("in a private chat, chat_id is the user's id")
        if user_id not in self.users:
            self.add_user(user_id)
        chat = self._chat_for(chat_id, chat_type)
        message: dict = {
            "message_id": self._new_message_id(chat_id),
            "from": copy.deepcopy(self.users[user_id]),
            "chat": copy.deepcopy(chat),
            "date": int(time.time()),
            "text": text,
        }
        if chat_type == "channel":  # channel posts are signed by the channel, not a user
            del message["from"]
            message["sender_chat"] = copy.deepcopy(chat)
        found = entities if entities is not None else [e.to_dict() for e in find_entities(text)]
        if found:
            message["entities"] = copy.deepcopy(found)
        if reply_to is not None:
            replied = self._resolve_message(reply_to, chat_id)
            message["reply_to_message"] = _without_reply(replied)
        self._store_message(chat_id, message)
        self.known_chats.add(chat_id)
        if chat_type in ("group", "supergroup") and self.privacy_mode and not self._privacy_allows(message):
            log.debug("privacy mode: bot does not see %r in chat %s", text, chat_id)
            return None
        kind = "channel_post" if chat_type == "channel" else "message"
        return self._enqueue({kind: message})

    def press_button(
        self,
        user_id: int,
        message: dict | BotEvent | int | Any,
        callback_data: str,
        *,
        chat_id: int | None = None,
        check: bool = True,
    ) -> dict | None:
        """A user presses an inline button of a bot message; returns the callback_query Update.

        ``message`` is a BotEvent, a Message dict or PTB Message, or a message_id with ``chat_id``.
        With ``check`` the button must exist on the message as it is now (after edits).
        """
        current = self._resolve_message(message, chat_id)
        if check:
            rows = (current.get("reply_markup") or {}).get("inline_keyboard", [])
            data = [b.get("callback_data") for row in rows for b in row]
            if callback_data not in data:
                raise LookupError(f"message {current['message_id']} has no button with data {callback_data!r}: {data}")
        if user_id not in self.users:
            self.add_user(user_id)
        query_id = str(4_300_000_000_000_000_000 + next(self._query_ids))
        chat_id = current["chat"]["id"]
        self.known_chats.add(chat_id)
        query = {
            "id": query_id,
            "from": copy.deepcopy(self.users[user_id]),
            "message": copy.deepcopy(current),
            "chat_instance": str(-(abs(chat_id) * 7919 % 10**18) - 1),
            "data": callback_data,
        }
        self.callback_queries[query_id] = query
        return self._enqueue({"callback_query": query})

    def send_update(self, update: dict) -> dict | None:
        """Queue any raw Update (edited_message, channel_post, documents, group replies, ...).

        A fresh ``update_id`` is always assigned; missing ``message_id``/``date`` of contained
        messages are filled in; users and chats found in it become known.
        """
        update = copy.deepcopy(update)
        update.pop("update_id", None)
        for key, value in update.items():
            if not isinstance(value, dict):
                continue
            if key in _MESSAGE_UPDATES and isinstance(value.get("chat"), dict):
                self._register_message(value, edited=key.startswith("edited_"))
            elif key == "callback_query" and isinstance(value.get("message"), dict):
                self._register_message(value["message"], edited=False)
            elif isinstance(value.get("chat"), dict) and "id" in value["chat"]:  # my_chat_member, ...
                self.chats.setdefault(value["chat"]["id"], copy.deepcopy(value["chat"]))
                self.known_chats.add(value["chat"]["id"])
            sender = value.get("from")
            if isinstance(sender, dict) and "id" in sender:
                self.users.setdefault(sender["id"], copy.deepcopy(sender))
            if key == "callback_query" and "id" in value:
                self.callback_queries[str(value["id"])] = value
        return self._enqueue(update)

    def _register_message(self, message: dict, *, edited: bool) -> None:
        chat = message["chat"]
        chat_id = chat["id"]
        if chat_id not in self.chats:
            self.chats[chat_id] = copy.deepcopy(chat)
        self.known_chats.add(chat_id)
        message.setdefault("date", int(time.time()))
        if "message_id" not in message:
            message["message_id"] = self._new_message_id(chat_id)
        else:
            self._next_message_id[chat_id] = max(self._next_message_id.get(chat_id, 1), message["message_id"] + 1)
        if edited:
            message.setdefault("edit_date", int(time.time()))
        self._store_message(chat_id, message)

    def block(self, chat_id: int, *, notify: bool = True) -> None:
        """The user blocks the bot (or the bot is removed from the group) until ``unblock``.

        Sends the bot a ``my_chat_member`` update, as Telegram does, unless ``notify=False``.
        """
        self.blocked.add(chat_id)
        if notify and chat_id in self.chats:
            self._member_update(chat_id, "kicked")

    def unblock(self, chat_id: int, *, notify: bool = True) -> None:
        self.blocked.discard(chat_id)
        if notify and chat_id in self.chats:
            self._member_update(chat_id, "member")

    def _member_update(self, chat_id: int, status: str) -> None:
        chat = self.chats[chat_id]
        actor_id = chat_id if chat["type"] == "private" else next(iter(self.users), chat_id)
        actor = self.users.get(actor_id) or self.add_user(actor_id)
        bot = self.bot_user()
        old = {"status": "member" if status == "kicked" else "kicked", "user": bot}
        new = {"status": status, "user": bot}
        if status == "kicked":
            new["until_date"] = 0
        if old["status"] == "kicked":
            old["until_date"] = 0
        self._enqueue(
            {
                "my_chat_member": {
                    "chat": copy.deepcopy(chat),
                    "from": copy.deepcopy(actor),
                    "date": int(time.time()),
                    "old_chat_member": old,
                    "new_chat_member": new,
                }
            }
        )

    # ------------------------------------------------------------------ the test's side: reading

    def sent_messages(self, chat_id: int | None = None, *, methods: Iterable[str] | None = None) -> list[BotEvent]:
        """Everything Telegram carried out for the bot (sends, edits, deletes), oldest first."""
        wanted = {m.lower() for m in methods} if methods else None
        return [
            e
            for e in self.events
            if (chat_id is None or e.chat_id == chat_id) and (wanted is None or e.method.lower() in wanted)
        ]

    async def wait_for_messages(
        self,
        chat_id: int | None,
        count: int,
        timeout: float = 5.0,
        *,
        methods: Iterable[str] | None = None,
    ) -> list[BotEvent]:
        """Wait until the bot has ``count`` events in ``chat_id`` (None: any chat); returns them all.

        Raises TimeoutError describing what did arrive and any violations.
        """
        events = await self.wait_for(lambda: self.sent_messages(chat_id, methods=methods), count, timeout)
        return events

    async def wait_for(self, probe: Callable[[], list], count: int = 1, timeout: float = 5.0) -> list:
        """Wait until ``probe()`` returns at least ``count`` items; returns them."""
        assert self._changed is not None, "server not started"
        deadline = time.monotonic() + timeout
        while True:
            items = probe()
            if len(items) >= count:
                return items
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"waited {timeout}s for {count} item(s), got {len(items)}: {items!r}; "
                    f"violations: {[str(v) for v in self.violations]}"
                )
            await self._changed.wait(remaining)

    async def wait_for_request(self, method: str, count: int = 1, timeout: float = 5.0) -> list[RequestRecord]:
        """Wait until the bot has made ``count`` requests of ``method`` (any outcome)."""
        wanted = method.lower()
        return await self.wait_for(lambda: [r for r in self.requests if r.method.lower() == wanted], count, timeout)

    def message(self, chat_id: int, message_id: int) -> dict | None:
        """A message as it is now (after edits), sent by the bot or by a user."""
        found = self.messages.get(chat_id, {}).get(message_id)
        return copy.deepcopy(found) if found else None

    def chat_history(self, chat_id: int) -> list[dict]:
        """Every message of a chat as it is now, both directions, by message_id."""
        return [copy.deepcopy(m) for _, m in sorted(self.messages.get(chat_id, {}).items())]

    @property
    def pending_updates(self) -> list[dict]:
        """Updates not yet confirmed by the bot (getUpdates with a higher offset)."""
        return copy.deepcopy(self._updates)

    def assert_no_violations(self) -> None:
        if self.violations:
            raise AssertionError("Telegram would have refused:\n" + "\n".join(map(str, self.violations)))

    def application_builder(self, *, read_timeout: float = 3.0) -> Any:
        """A PTB ApplicationBuilder aimed at this server with short timeouts (tests must not hang).

        Poll with ``app.updater.start_polling(poll_interval=0, timeout=1)`` for quick shutdowns.
        """
        from telegram.ext import ApplicationBuilder

        return (
            ApplicationBuilder()
            .token(self.token)
            .base_url(self.base_url)
            .base_file_url(self.base_file_url)
            .connect_timeout(2)
            .read_timeout(read_timeout)
            .write_timeout(2)
            .pool_timeout(2)
            .get_updates_connect_timeout(2)
            .get_updates_read_timeout(read_timeout)
            .get_updates_pool_timeout(2)
        )

    def bot_user(self) -> dict:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.bot_first_name,
            "username": self.bot_username,
        }

    # ------------------------------------------------------------------ fault injection

    def inject(
        self,
        method: str,
        fault: Fault | int | str,
        times: int | None = 1,
        chat_id: int | str | None = None,
        *,
        retry_after: int = 1,
        hold: float = 30.0,
    ) -> Injection:
        """Make the next ``times`` calls of ``method`` ("*" for any) fail with ``fault``.

        ``fault`` is a :class:`Fault` or a shorthand: 429 (with ``retry_after``), 500, 502, 403,
        "timeout" (held for up to ``hold`` seconds or until the client gives up), "reset".
        ``chat_id`` limits it to requests for that chat. ``times=None`` means every call.
        """
        injection = Injection(method.lower(), Fault.parse(fault, retry_after=retry_after, hold=hold), times, chat_id)
        self._injections.append(injection)
        return injection

    def clear_faults(self) -> None:
        """Drop scheduled injections and random failures (blocks stay)."""
        self._injections.clear()
        self._random = None
        self._random_rate = 0.0

    def fail_randomly(
        self,
        rate: float,
        seed: int = 0,
        kinds: Iterable[Fault | int | str] = (429, 500, 502, "timeout", "reset"),
        *,
        methods: Iterable[str] | None = None,
        retry_after: int = 1,
        hold: float = 30.0,
    ) -> None:
        """Fail a fraction ``rate`` of requests (``methods`` only, default all but getMe) with a
        fault drawn from ``kinds``, reproducibly for a given ``seed``. ``rate=0`` turns it off."""
        self._random = random.Random(seed)
        self._random_rate = rate
        self._random_kinds = tuple(Fault.parse(k, retry_after=retry_after, hold=hold) for k in kinds)
        self._random_methods = frozenset(m.lower() for m in methods) if methods else None

    def _pick_fault(self, method: str, params: dict) -> Fault | None:
        chat_id = params.get("chat_id")
        for injection in self._injections:
            if injection.matches(method, chat_id):
                injection.hits += 1
                if injection.remaining is not None:
                    injection.remaining -= 1
                return injection.fault
        if self._random is not None and self._random_rate > 0 and self._random_kinds:
            if self._random_methods is not None:
                eligible = method.lower() in self._random_methods
            else:
                eligible = method.lower() != "getme"
            if eligible and self._random.random() < self._random_rate:
                return self._random.choice(self._random_kinds)
        return None

    # ------------------------------------------------------------------ HTTP

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Connection(reader, writer)
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(conn)
        self._tasks.add(task)
        try:
            await self._serve_connection(conn)
        except (ConnectionError, OSError, h11.ProtocolError, asyncio.IncompleteReadError) as exc:
            log.debug("connection ended: %r", exc)
        except asyncio.CancelledError:
            # only stop() cancels us; ending quietly keeps asyncio's stream callback from logging it
            log.debug("connection handler cancelled by stop()")
        finally:
            await conn.stop_watch()
            self._connections.discard(conn)
            self._tasks.discard(task)
            if not writer.transport.is_closing():
                writer.close()

    async def _serve_connection(self, conn: _Connection) -> None:
        while True:
            event = await conn.next_event()
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return
            if not isinstance(event, h11.Request):
                return
            body = bytearray()
            while True:
                part = await conn.next_event()
                if isinstance(part, h11.Data):
                    body += part.data
                elif isinstance(part, h11.EndOfMessage):
                    break
                else:
                    return
            conn.start_watch()
            try:
                result = await self._handle_http(event, bytes(body), conn)
            finally:
                await conn.stop_watch()
            if isinstance(result, _Drop):
                if result.kind == "timeout":
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._watch_disconnect(conn), result.hold)
                conn.abort(reset=result.kind == "reset")
                return
            if conn.disconnected.is_set():  # the client hung up while we worked: nobody to answer
                return
            status, content_type, payload = result
            headers = [
                ("Content-Type", content_type),
                ("Content-Length", str(len(payload))),
                ("Server", "botapi-test"),
            ]
            writer = conn.writer
            writer.write(conn.h11.send(h11.Response(status_code=status, headers=headers)))
            writer.write(conn.h11.send(h11.Data(data=payload)))
            writer.write(conn.h11.send(h11.EndOfMessage()))
            await writer.drain()
            if conn.h11.our_state is h11.MUST_CLOSE or conn.h11.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.h11.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _watch_disconnect(self, conn: _Connection) -> None:
        conn.start_watch()
        try:
            await conn.disconnected.wait()
        finally:
            await conn.stop_watch()

    async def _handle_http(
        self, request: h11.Request, body: bytes, conn: _Connection
    ) -> tuple[int, str, bytes] | _Drop:
        target = request.target.decode("latin-1")
        path, _, query = target.partition("?")
        match = re.fullmatch(r"/bot([^/]*)/([^/]+)/?", path)
        if not match:
            return _json_response(404, {"ok": False, "error_code": 404, "description": "Not Found"})
        token, method = match.group(1), urllib.parse.unquote(match.group(2))
        token_match = TOKEN_RE.match(token)
        if not token_match:
            return _json_response(404, {"ok": False, "error_code": 404, "description": "Not Found"})
        if token != self.token:
            description = "Unauthorized: invalid token specified" if int(token_match.group(1)) == 0 else "Unauthorized"
            return _json_response(401, {"ok": False, "error_code": 401, "description": description})
        handler = self._methods().get(method.lower())
        if handler is None:
            # Telegram answers unknown methods with 404 (PTB raises InvalidToken); a real method we
            # did not implement is flagged so the bot author is not sent hunting a token problem.
            self.unknown_methods.append(method)
            log.warning("Bot API test server: method %r not implemented (or not a Bot API method)", method)
            self.requests.append(RequestRecord(method, {}, 404, "Not Found"))
            self.violations.append(Violation(method, {}, 404, "Not Found"))
            self._notify()
            return _json_response(404, {"ok": False, "error_code": 404, "description": "Not Found"})
        name = handler.__name__.removeprefix("_m_")
        try:
            params = _parse_params(request, body, query)
        except ApiError as exc:
            return self._refuse(name, {}, exc)

        fault = self._pick_fault(name, params)
        if fault is not None and not fault.after_processing:
            return self._apply_fault(name, params, fault)
        try:
            result = await handler(params, conn)
        except _ClientGone:
            self.requests.append(RequestRecord(name, params, 0, "client hung up while waiting"))
            return _Drop("timeout", 0)
        except ApiError as exc:
            return self._refuse(name, params, exc)
        except Exception as exc:  # a bug in this server, not the bot's fault: say so loudly
            log.exception("Bot API test server failed on %s", name)
            self.server_errors.append(f"{name}: {exc!r}")
            self.requests.append(RequestRecord(name, params, 500, f"test server bug: {exc!r}"))
            body = {"ok": False, "error_code": 500, "description": f"Internal Server Error (test server bug: {exc!r})"}
            return _json_response(500, body)
        if fault is not None:  # carried out, response lost
            return self._apply_fault(name, params, fault)
        self.requests.append(RequestRecord(name, params, 200))
        self._notify()
        return _json_response(200, {"ok": True, "result": result})

    def _refuse(self, method: str, params: dict, exc: ApiError) -> tuple[int, str, bytes]:
        self.requests.append(RequestRecord(method, params, exc.code, exc.description))
        if exc.violation:
            self.violations.append(Violation(method, params, exc.code, exc.description))
            log.info("refused %s: %s", method, exc.description)
        self._notify()
        return _json_response(exc.code, exc.payload())

    def _apply_fault(self, method: str, params: dict, fault: Fault) -> tuple[int, str, bytes] | _Drop:
        record = RequestRecord(method, params, 0, fault=fault.kind)
        log.debug("injecting %s into %s", fault.kind, method)
        result: tuple[int, str, bytes] | _Drop
        if fault.kind == "retry_after":
            n = fault.retry_after
            record.status, record.description = 429, f"Too Many Requests: retry after {n}"
            body = {"ok": False, "error_code": 429, "description": record.description, "parameters": {"retry_after": n}}
            result = _json_response(429, body)
        elif fault.kind == "server_error":
            record.status, record.description = 500, "Internal Server Error"
            result = _json_response(500, {"ok": False, "error_code": 500, "description": "Internal Server Error"})
        elif fault.kind == "bad_gateway":
            record.status, record.description = 502, "Bad Gateway"
            result = (502, "text/html", BAD_GATEWAY_HTML)
        elif fault.kind == "forbidden":
            record.status, record.description = 403, fault.description
            result = _json_response(403, {"ok": False, "error_code": 403, "description": fault.description})
        else:
            result = _Drop(fault.kind, fault.hold)
        self.requests.append(record)
        self.faults.append(record)
        self._notify()
        return result

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.notify()

    def _methods(self) -> dict[str, Callable]:
        """Bot API method names are case-insensitive."""
        if self._method_table is None:
            self._method_table = {
                name.removeprefix("_m_").lower(): getattr(self, name) for name in dir(self) if name.startswith("_m_")
            }
        return self._method_table

    # ------------------------------------------------------------------ helpers for methods

    def _new_message_id(self, chat_id: int) -> int:
        message_id = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = message_id + 1
        return message_id

    def _store_message(self, chat_id: int, message: dict) -> None:
        self.messages.setdefault(chat_id, {})[message["message_id"]] = copy.deepcopy(message)

    def _resolve_message(self, ref: Any, chat_id: int | None) -> dict:
        if isinstance(ref, BotEvent):
            chat_id, message_id = ref.chat_id, ref.message_id
        elif isinstance(ref, dict):
            chat_id, message_id = ref["chat"]["id"], ref["message_id"]
        elif isinstance(ref, int):
            if chat_id is None:
                raise ValueError("a bare message_id needs chat_id")
            message_id = ref
        else:  # a telegram.Message or anything alike
            chat_id, message_id = ref.chat_id, ref.message_id
        found = self.messages.get(chat_id, {}).get(message_id)
        if found is None:
            raise LookupError(f"no message {message_id} in chat {chat_id}")
        return copy.deepcopy(found)

    def _privacy_allows(self, message: dict) -> bool:
        text = message.get("text", "")
        for entity in message.get("entities", []):
            part = entity_text(text, entity)
            if entity["type"] == "bot_command":
                _, _, target = part.partition("@")
                if not target or target.lower() == self.bot_username.lower():
                    return True
            if entity["type"] == "mention" and part[1:].lower() == self.bot_username.lower():
                return True
        replied = message.get("reply_to_message")
        return bool(replied and replied.get("from", {}).get("id") == self.bot_id)

    def _enqueue(self, update: dict) -> dict | None:
        kind = next((k for k in update if k != "update_id"), None)
        update = {"update_id": next(self._update_ids), **update}
        if kind not in self.allowed_updates:
            log.debug("update %s of type %s not in allowed_updates, dropped", update["update_id"], kind)
            self.dropped_updates.append(update)
            return None
        self._updates.append(update)
        self._notify()
        return copy.deepcopy(update)

    def _chat(self, params: dict) -> dict:
        """Resolve chat_id the way the Bot API does; blocked chats give 403."""
        raw = params.get("chat_id")
        if raw is None or raw == "":
            raise ApiError.bad_request("chat_id is empty")
        chat = None
        if isinstance(raw, str) and raw.startswith("@"):
            chat = next((c for c in self.chats.values() if c.get("username", "").lower() == raw[1:].lower()), None)
        else:
            try:
                chat_id = int(raw)
            except (TypeError, ValueError):
                raise ApiError.bad_request("chat not found") from None
            if chat_id in self.known_chats:
                chat = self.chats.get(chat_id)
        if chat is None or chat["id"] not in self.known_chats:
            raise ApiError.bad_request("chat not found")
        return chat

    def _check_blocked(self, chat: dict) -> None:
        if chat["id"] not in self.blocked:
            return
        description = {
            "private": "Forbidden: bot was blocked by the user",
            "group": "Forbidden: bot was kicked from the group chat",
            "supergroup": "Forbidden: bot was kicked from the supergroup chat",
            "channel": "Forbidden: bot is not a member of the channel chat",
        }[chat["type"]]
        raise ApiError(403, description, violation=False)

    def _resolve_user(self, user_id: int) -> dict | None:
        user = self.users.get(user_id)
        return copy.deepcopy(user) if user else None

    def _format(self, params: dict, chat: dict | None) -> tuple[str, list[dict]]:
        text = _str(params.get("text"))
        parse_mode = _str(params.get("parse_mode")) or None
        entities = _json(params, "entities") if params.get("entities") not in (None, "") else None
        try:
            formatted = format_text(
                text,
                parse_mode,
                entities,
                max_length=1 << 62,
                auto_entities=self.auto_entities,
                skip_bot_commands=chat is not None and chat["type"] == "private",
                resolve_user=self._resolve_user,
            )
        except NotImplementedError as exc:
            raise ApiError.bad_request(str(exc)) from None
        except TelegramTextError as exc:
            raise ApiError.bad_request(exc.description) from None
        for warning in formatted.warnings:
            self.warnings.append(warning)
            log.warning("Telegram would silently change this message: %s", warning)
        return formatted.text, formatted.entities

    def _markup(self, params: dict) -> dict | None:
        """Validate reply_markup; returns what Telegram echoes in the Message (inline keyboards only)."""
        if params.get("reply_markup") in (None, ""):
            return None
        markup = _json(params, "reply_markup", "can't parse reply keyboard markup JSON object")
        if not isinstance(markup, dict):
            raise ApiError.bad_request("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            return {"inline_keyboard": _check_inline_keyboard(markup["inline_keyboard"])}
        if "keyboard" in markup:
            _check_reply_keyboard(markup)
            return None
        if "remove_keyboard" in markup:
            _require_bool(markup, "remove_keyboard")
            return None
        if "force_reply" in markup:
            _require_bool(markup, "force_reply")
            return None
        raise ApiError.bad_request("can't parse reply keyboard markup JSON object")

    def _record(
        self, method: str, chat_id: int, message: dict | None, params: dict, message_id: int | None = None
    ) -> None:
        event = BotEvent(
            method=method,
            chat_id=chat_id,
            message_id=message["message_id"] if message else int(message_id or 0),
            text=message.get("text") if message else None,
            entities=copy.deepcopy(message.get("entities", [])) if message else [],
            reply_markup=copy.deepcopy(message.get("reply_markup")) if message else None,
            message=copy.deepcopy(message),
            params=copy.deepcopy(params),
        )
        self.events.append(event)
        self._notify()

    def _target_message(self, params: dict) -> tuple[dict, dict]:
        if params.get("inline_message_id") not in (None, ""):
            raise ApiError.bad_request("MESSAGE_ID_INVALID")
        chat = self._chat(params)
        message_id = _int(params, "message_id", "message identifier is not specified")
        found = self.messages.get(chat["id"], {}).get(message_id)
        if found is None:
            raise ApiError.bad_request("message to edit not found")
        if found.get("from", {}).get("id") != self.bot_id:
            raise ApiError.bad_request("message can't be edited")
        return chat, found

    # ------------------------------------------------------------------ Bot API methods

    async def _m_getMe(self, params: dict, conn: _Connection) -> dict:
        user = self.bot_user()
        user.update(
            can_join_groups=True,
            can_read_all_group_messages=not self.privacy_mode,
            supports_inline_queries=False,
            can_connect_to_business=False,
            has_main_web_app=False,
        )
        return user

    async def _m_getUpdates(self, params: dict, conn: _Connection) -> list[dict]:
        if self.webhook is not None:
            raise ApiError(409, CONFLICT_WEBHOOK)
        offset = _int(params, "offset", default=0)
        limit = min(max(_int(params, "limit", default=100), 1), 100)
        timeout = max(_float(params, "timeout", default=0.0), 0.0)
        if params.get("allowed_updates") not in (None, ""):
            allowed = _json(params, "allowed_updates")
            if isinstance(allowed, list):
                self.allowed_updates = frozenset(allowed) if allowed else DEFAULT_ALLOWED
        if offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        elif offset < 0:
            self._updates = self._updates[offset:]
        if self._poller is not None:
            self._poller.terminated.set()
        poller = self._poller = _Poller()
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self._updates:
                    return copy.deepcopy(self._updates[:limit])
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                assert self._changed is not None
                waits = [
                    asyncio.ensure_future(self._changed.wait(remaining)),
                    asyncio.ensure_future(poller.terminated.wait()),
                    asyncio.ensure_future(conn.disconnected.wait()),
                ]
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiter in waits:
                        waiter.cancel()
                if conn.disconnected.is_set():
                    raise _ClientGone
                if poller.terminated.is_set():
                    # Telegram answers the older request with 409; if its client already hung up
                    # (a cancelled poll), nobody sees it and it is not the bot's mistake.
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(conn.disconnected.wait(), 0.05)
                    if conn.disconnected.is_set():
                        raise _ClientGone
                    raise ApiError(409, CONFLICT_POLL)
        finally:
            if self._poller is poller:
                self._poller = None

    async def _m_setWebhook(self, params: dict, conn: _Connection) -> bool:
        url = _str(params.get("url"))
        if _bool(params, "drop_pending_updates"):
            self._updates.clear()
        if not url:
            self.webhook = None
            return True
        try:
            normal = check_url(url)
        except UrlError as exc:
            raise ApiError.bad_request(f"bad webhook: {exc.reason}") from None
        if not normal.startswith("https://"):
            raise ApiError.bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        port = urllib.parse.urlsplit(normal).port or 443
        if port not in (80, 88, 443, 8443):
            raise ApiError.bad_request("bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")
        allowed = _json(params, "allowed_updates") if params.get("allowed_updates") not in (None, "") else None
        if isinstance(allowed, list):
            self.allowed_updates = frozenset(allowed) if allowed else DEFAULT_ALLOWED
        self.webhook = {
            "url": url,
            "max_connections": _int(params, "max_connections", default=40),
            "secret_token": _str(params.get("secret_token")) or None,
            "allowed_updates": allowed,
        }
        return True

    async def _m_deleteWebhook(self, params: dict, conn: _Connection) -> bool:
        self.webhook = None
        if _bool(params, "drop_pending_updates"):
            self._updates.clear()
        return True

    async def _m_getWebhookInfo(self, params: dict, conn: _Connection) -> dict:
        info: dict = {"url": "", "has_custom_certificate": False, "pending_update_count": len(self._updates)}
        if self.webhook is not None:
            info["url"] = self.webhook["url"]
            info["max_connections"] = self.webhook["max_connections"]
            if self.webhook["allowed_updates"]:
                info["allowed_updates"] = self.webhook["allowed_updates"]
        return info

    async def _m_sendMessage(self, params: dict, conn: _Connection) -> dict:
        if not _str(params.get("text")):
            raise ApiError.bad_request("message text is empty")
        markup = self._markup(params)
        chat = self._chat(params)
        text, entities = self._format(params, chat)
        reply_to = _reply_target(params)
        replied = None
        if reply_to is not None:
            message_id, allow_without = reply_to
            replied = self.messages.get(chat["id"], {}).get(message_id)
            if replied is None and not allow_without:
                raise ApiError.bad_request("message to be replied not found")
        self._check_blocked(chat)
        if len(text) > MAX_MESSAGE_LENGTH:
            raise ApiError.bad_request("message is too long")
        message: dict = {
            "message_id": self._new_message_id(chat["id"]),
            "from": self.bot_user(),
            "chat": copy.deepcopy(chat),
            "date": int(time.time()),
            "text": text,
        }
        if entities:
            message["entities"] = entities
        if replied is not None:
            message["reply_to_message"] = _without_reply(replied)
        if params.get("link_preview_options") not in (None, ""):
            options = _json(params, "link_preview_options")
            if isinstance(options, dict) and options:
                message["link_preview_options"] = options
        if markup is not None:
            message["reply_markup"] = markup
        self._store_message(chat["id"], message)
        self._record("sendMessage", chat["id"], message, params)
        return copy.deepcopy(message)

    async def _m_editMessageText(self, params: dict, conn: _Connection) -> dict:
        if not _str(params.get("text")):
            raise ApiError.bad_request("message text is empty")
        markup = self._markup(params)
        chat, current = self._target_message(params)
        text, entities = self._format(params, chat)
        self._check_blocked(chat)
        if len(text) > MAX_MESSAGE_LENGTH:
            raise ApiError.bad_request("message is too long")
        if (
            current.get("text") == text
            and current.get("entities", []) == entities
            and current.get("reply_markup") == markup
        ):
            raise ApiError.bad_request(NOT_MODIFIED)
        message = copy.deepcopy(current)
        message["text"] = text
        message.pop("entities", None)
        if entities:
            message["entities"] = entities
        # Telegram drops the inline keyboard when an edit does not repeat it.
        message.pop("reply_markup", None)
        if markup is not None:
            message["reply_markup"] = markup
        message["edit_date"] = int(time.time())
        self._store_message(chat["id"], message)
        self._record("editMessageText", chat["id"], message, params)
        return copy.deepcopy(message)

    async def _m_editMessageReplyMarkup(self, params: dict, conn: _Connection) -> dict:
        markup = self._markup(params)
        chat, current = self._target_message(params)
        self._check_blocked(chat)
        if current.get("reply_markup") == markup:
            raise ApiError.bad_request(NOT_MODIFIED)
        message = copy.deepcopy(current)
        message.pop("reply_markup", None)
        if markup is not None:
            message["reply_markup"] = markup
        message["edit_date"] = int(time.time())
        self._store_message(chat["id"], message)
        self._record("editMessageReplyMarkup", chat["id"], message, params)
        return copy.deepcopy(message)

    async def _m_deleteMessage(self, params: dict, conn: _Connection) -> bool:
        chat = self._chat(params)
        message_id = _int(params, "message_id", "message identifier is not specified")
        found = self.messages.get(chat["id"], {}).get(message_id)
        if found is None:
            raise ApiError.bad_request("message to delete not found")
        if chat["type"] != "private" and found.get("from", {}).get("id") != self.bot_id:
            raise ApiError.bad_request("message can't be deleted")
        del self.messages[chat["id"]][message_id]
        self._record("deleteMessage", chat["id"], None, params, message_id=message_id)
        return True

    async def _m_answerCallbackQuery(self, params: dict, conn: _Connection) -> bool:
        query_id = _str(params.get("callback_query_id"))
        if query_id not in self.callback_queries or query_id in self.callback_answers:
            raise ApiError.bad_request(QUERY_INVALID)
        text = _str(params.get("text"))
        if len(text) > 200:
            raise ApiError.bad_request("MESSAGE_TOO_LONG")
        self.callback_answers[query_id] = {
            "text": text or None,
            "show_alert": _bool(params, "show_alert"),
            "url": _str(params.get("url")) or None,
            "cache_time": _int(params, "cache_time", default=0),
        }
        self._notify()
        return True

    async def _m_sendChatAction(self, params: dict, conn: _Connection) -> bool:
        chat = self._chat(params)
        action = _str(params.get("action"))
        if action not in CHAT_ACTIONS:
            raise ApiError.bad_request("wrong parameter action in request")
        self._check_blocked(chat)
        self.chat_actions.append((chat["id"], action))
        return True

    def _commands_key(self, params: dict) -> tuple[str, str]:
        scope = _json(params, "scope") if params.get("scope") not in (None, "") else {"type": "default"}
        if not isinstance(scope, dict) or "type" not in scope:
            raise ApiError.bad_request("can't parse BotCommandScope JSON object")
        language = _str(params.get("language_code"))
        if language and not re.fullmatch(r"[a-z]{2}", language):
            raise ApiError.bad_request("invalid language code specified")
        return json.dumps(scope, sort_keys=True), language

    async def _m_setMyCommands(self, params: dict, conn: _Connection) -> bool:
        raw: Any = []
        if params.get("commands") not in (None, ""):
            raw = _json(params, "commands", "can't parse commands JSON object")
        if not isinstance(raw, list):
            raise ApiError.bad_request("field \"commands\" must be of type Array")
        if len(raw) > 100:
            raise ApiError.bad_request("too many commands specified")
        commands = []
        for item in raw:
            if not isinstance(item, dict):
                raise ApiError.bad_request("can't parse BotCommand: expected an Object")
            for key in ("command", "description"):
                if key not in item:
                    raise ApiError.bad_request(f'can\'t parse BotCommand: Can\'t find field "{key}"')
            command, description = str(item["command"]), str(item["description"])
            if not re.fullmatch(r"[a-z0-9_]{1,32}", command):
                raise ApiError.bad_request("BOT_COMMAND_INVALID")
            if not description.strip():
                raise ApiError.bad_request("command description must be non-empty")
            if len(description) > 256:
                raise ApiError.bad_request("command description is too long")
            commands.append({"command": command, "description": description})
        self.commands[self._commands_key(params)] = commands
        return True

    async def _m_getMyCommands(self, params: dict, conn: _Connection) -> list[dict]:
        return copy.deepcopy(self.commands.get(self._commands_key(params), []))

    async def _m_deleteMyCommands(self, params: dict, conn: _Connection) -> bool:
        self.commands.pop(self._commands_key(params), None)
        return True

    async def _m_getChat(self, params: dict, conn: _Connection) -> dict:
        chat = copy.deepcopy(self._chat(params))
        chat.update(accent_color_id=0, max_reaction_count=11, accepted_gift_types={
            "unlimited_gifts": False, "limited_gifts": False, "unique_gifts": False, "premium_subscription": False,
            "gifts_from_channels": False})
        return chat

    async def _set_profile(self, params: dict, field_name: str, limit: int) -> bool:
        value = _str(params.get(field_name))
        if len(value) > limit:
            raise ApiError.bad_request(f"{field_name.replace('_', ' ')} is too long")
        self.bot_profile[f"{field_name}:{_str(params.get('language_code'))}"] = value
        return True

    def _get_profile(self, params: dict, field_name: str) -> dict:
        return {field_name: self.bot_profile.get(f"{field_name}:{_str(params.get('language_code'))}", "")}

    async def _m_setMyDescription(self, params: dict, conn: _Connection) -> bool:
        return await self._set_profile(params, "description", 512)

    async def _m_getMyDescription(self, params: dict, conn: _Connection) -> dict:
        return self._get_profile(params, "description")

    async def _m_setMyShortDescription(self, params: dict, conn: _Connection) -> bool:
        return await self._set_profile(params, "short_description", 120)

    async def _m_getMyShortDescription(self, params: dict, conn: _Connection) -> dict:
        return self._get_profile(params, "short_description")

    async def _m_setChatMenuButton(self, params: dict, conn: _Connection) -> bool:
        button = _json(params, "menu_button") if params.get("menu_button") not in (None, "") else {"type": "default"}
        self.bot_profile[f"menu_button:{_str(params.get('chat_id'))}"] = json.dumps(button)
        return True

    async def _m_getChatMenuButton(self, params: dict, conn: _Connection) -> dict:
        stored = self.bot_profile.get(f"menu_button:{_str(params.get('chat_id'))}")
        return json.loads(stored) if stored else {"type": "commands"}

    async def _m_close(self, params: dict, conn: _Connection) -> bool:
        return True

    async def _m_logOut(self, params: dict, conn: _Connection) -> bool:
        return True


# ----------------------------------------------------------------------------------- parsing


def _json_response(status: int, body: dict) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(body, ensure_ascii=False).encode()


def _parse_params(request: h11.Request, body: bytes, query: str) -> dict:
    """Parameters from the query string and a JSON, urlencoded or multipart body, as the Bot API takes them."""
    params: dict[str, Any] = {k: v[-1] for k, v in urllib.parse.parse_qs(query, keep_blank_values=True).items()}
    headers = {k.decode().lower(): v.decode("latin-1") for k, v in request.headers}
    content_type = headers.get("content-type", "")
    if not body:
        return params
    if content_type.startswith("application/json"):
        try:
            data = json.loads(body)
        except ValueError:
            raise ApiError.bad_request("can't parse JSON encoded request") from None
        if not isinstance(data, dict):
            raise ApiError.bad_request("can't parse JSON encoded request")
        params.update(data)
    elif content_type.startswith("multipart/form-data"):
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + body
        )
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not name:
                continue
            payload = part.get_payload(decode=True) or b""
            if part.get_filename():
                params[name] = {"filename": part.get_filename(), "content": payload}
            else:
                params[name] = payload.decode("utf-8")
    else:  # application/x-www-form-urlencoded, PTB's default
        for key, values in urllib.parse.parse_qs(body.decode("utf-8"), keep_blank_values=True).items():
            params[key] = values[-1]
    return params


def _str(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _int(params: dict, name: str, missing: str | None = None, *, default: int | None = None) -> int:
    value = params.get(name)
    if value is None or value == "":
        if default is not None:
            return default
        raise ApiError.bad_request(missing or f"parameter \"{name}\" is required")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError.bad_request(f"invalid {name} specified") from None


def _float(params: dict, name: str, *, default: float) -> float:
    value = params.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ApiError.bad_request(f"invalid {name} specified") from None


def _bool(params: dict, name: str) -> bool:
    value = params.get(name)
    if isinstance(value, bool):
        return value
    return _str(value).lower() in ("true", "1")


def _json(params: dict, name: str, error: str | None = None) -> Any:
    value = params.get(name)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise ApiError.bad_request(error or f"can't parse {name} JSON object") from None
    return value


def _reply_target(params: dict) -> tuple[int, bool] | None:
    if params.get("reply_parameters") not in (None, ""):
        reply = _json(params, "reply_parameters", "can't parse reply parameters JSON object")
        if not isinstance(reply, dict) or "message_id" not in reply:
            raise ApiError.bad_request('can\'t find field "message_id"')
        return int(reply["message_id"]), bool(reply.get("allow_sending_without_reply"))
    if params.get("reply_to_message_id") not in (None, ""):
        return _int(params, "reply_to_message_id"), _bool(params, "allow_sending_without_reply")
    return None


def _without_reply(message: dict) -> dict:
    """Telegram never nests reply_to_message inside reply_to_message."""
    replied = copy.deepcopy(message)
    replied.pop("reply_to_message", None)
    return replied


def _require_bool(markup: dict, name: str) -> None:
    if name in markup and not isinstance(markup[name], bool):
        raise ApiError.bad_request(f'field "{name}" must be of type Boolean')


_INLINE_ACTIONS = (
    "url", "callback_data", "web_app", "login_url", "switch_inline_query",
    "switch_inline_query_current_chat", "switch_inline_query_chosen_chat", "copy_text",
    "callback_game", "pay",
)  # fmt: skip


def _check_inline_keyboard(rows: Any) -> list[list[dict]]:
    """Validate an inline keyboard like Telegram; returns it as Telegram echoes it."""
    if not isinstance(rows, list):
        raise ApiError.bad_request('field "inline_keyboard" must be of type Array')
    result = []
    total = 0
    for row in rows:
        if not isinstance(row, list):
            raise ApiError.bad_request('field "inline_keyboard" must be of type Array')
        out_row = []
        for button in row:
            if not isinstance(button, dict):
                raise ApiError.bad_request("can't parse inline keyboard button: expected an Object")
            if "text" not in button:
                raise ApiError.bad_request('can\'t parse inline keyboard button: Can\'t find field "text"')
            if not isinstance(button["text"], str):
                raise ApiError.bad_request('can\'t parse inline keyboard button: Field "text" must be of type String')
            actions = [k for k in _INLINE_ACTIONS if button.get(k) not in (None, "", False)]
            if "switch_inline_query" in button and button["switch_inline_query"] == "":
                actions.append("switch_inline_query")
            if not actions:
                raise ApiError.bad_request(
                    "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
                )
            action = actions[0]
            out: dict = {"text": button["text"]}
            if action == "callback_data":
                data = _str(button["callback_data"])
                if len(data.encode("utf-8")) > 64:
                    raise ApiError.bad_request("BUTTON_DATA_INVALID")
                out["callback_data"] = data
            elif action == "url":
                url = _str(button["url"])
                try:
                    out["url"] = check_url(url)
                except UrlError as exc:
                    raise ApiError.bad_request(f"inline keyboard button URL '{url}' is invalid: {exc.reason}") from None
                if link_user_id(url) is not None:
                    out["url"] = url
            elif action == "web_app":
                url = _str((button["web_app"] or {}).get("url"))
                try:
                    check_url(url, https_only=True)
                except UrlError as exc:
                    raise ApiError.bad_request(
                        f"inline keyboard button Web App URL '{url}' is invalid: {exc.reason}"
                    ) from None
                out["web_app"] = {"url": url}
            elif action in ("pay", "callback_game"):
                raise ApiError.bad_request("BUTTON_TYPE_INVALID")
            elif action == "copy_text":
                copied = _str((button["copy_text"] or {}).get("text"))
                if not 1 <= len(copied) <= 256:
                    raise ApiError.bad_request("BUTTON_COPY_TEXT_INVALID")
                out["copy_text"] = {"text": copied}
            else:
                out[action] = button[action]
            if not button["text"].strip():
                raise ApiError.bad_request("BUTTON_TEXT_INVALID")  # approximation: wording unverified
            out_row.append(out)
            total += 1
        result.append(out_row)
    if total > 100:
        raise ApiError.bad_request("REPLY_MARKUP_TOO_LONG")
    return result


def _check_reply_keyboard(markup: dict) -> None:
    rows = markup["keyboard"]
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise ApiError.bad_request('field "keyboard" must be of type Array')
    for name in ("resize_keyboard", "one_time_keyboard", "selective", "is_persistent"):
        _require_bool(markup, name)
    for row in rows:
        for button in row:
            if isinstance(button, str):
                continue
            if not isinstance(button, dict) or "text" not in button:
                raise ApiError.bad_request('can\'t parse keyboard button: Can\'t find field "text"')
            web_app = button.get("web_app")
            if isinstance(web_app, dict):
                url = _str(web_app.get("url"))
                try:
                    check_url(url, https_only=True)
                except UrlError as exc:
                    detail = f"keyboard button Web App URL '{url}' is invalid: {exc.reason}"
                    raise ApiError.bad_request(detail) from None


# ----------------------------------------------------------------------------------- pytest


@contextlib.asynccontextmanager
async def running_server(**kwargs: Any) -> AsyncIterator[BotApiServer]:
    """``async with running_server() as server:`` — start, yield, always stop."""
    server = BotApiServer(**kwargs)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest_asyncio.fixture
async def botapi_server() -> AsyncIterator[BotApiServer]:
    """Pytest fixture: a started server, stopped after the test. Import it into a test module or conftest."""
    async with running_server() as server:
        yield server
