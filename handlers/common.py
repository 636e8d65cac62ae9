"""What every handler needs: the service from the application, the chat's key, sending a reply."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from functools import partial
from typing import Any, Callable, TypeVar

from telegram import CallbackQuery, Update
from telegram.constants import ChatAction
from telegram.error import TelegramError
from telegram.ext import ContextTypes

from bot.app import Briefbot
from bot.service import Reply
from handlers.delivery import send_html, with_retries
from handlers.render import reply_messages

log = logging.getLogger(__name__)

BRIEFBOT = "briefbot"
CHAT_LOCKS = "chat_locks"
LOCK_STRIPES = 256
T = TypeVar("T")


def briefbot(context: ContextTypes.DEFAULT_TYPE) -> Briefbot:
    return context.application.bot_data[BRIEFBOT]


def chat_lock(context: ContextTypes.DEFAULT_TYPE, chat_id: int) -> asyncio.Lock:
    """Updates run concurrently, but one chat's messages are answered in order (its state is read-modify-write).

    A fixed set of striped locks keeps memory bounded however many chats there are.
    """
    locks = context.application.bot_data.setdefault(CHAT_LOCKS, [asyncio.Lock() for _ in range(LOCK_STRIPES)])
    return locks[hash(chat_id) % LOCK_STRIPES]


def chat_key(update: Update) -> str:
    """Conversations are per chat: a private chat is one user, a group shares one thread."""
    return f"tg:{update.effective_chat.id}"


async def in_worker(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Embedding and SQL run off the event loop, so one slow question never stalls the others."""
    return await asyncio.to_thread(partial(fn, *args, **kwargs))


async def send_reply(context: ContextTypes.DEFAULT_TYPE, chat_id: int, reply: Reply, reply_to: int | None = None) -> None:
    for message in reply_messages(reply):
        await send_html(context.bot, chat_id, message.html, message.buttons, reply_to=reply_to)
        reply_to = None


async def typing(context: ContextTypes.DEFAULT_TYPE, chat_id: int) -> None:
    """Best effort: a failed "typing…" must never cost the answer."""
    try:
        await context.bot.send_chat_action(chat_id, ChatAction.TYPING)
    except Exception:  # noqa: BLE001 - purely cosmetic
        pass


async def acknowledge(query: CallbackQuery, text: str | None = None) -> None:
    """Answer a button press (stops the spinner, shows `text`). Best effort, retried: the reply that follows
    matters more than the spinner, so a Bot API failure here must never cost the user that reply."""
    try:
        await with_retries(lambda: query.answer(text), "answerCallbackQuery")
    except TelegramError as exc:
        log.info("could not answer a button press: %s", exc)


def over_rate_limit(context: ContextTypes.DEFAULT_TYPE, per_minute: int, now: float | None = None) -> bool:
    """True when this user asked more than `per_minute` questions in the last minute (kept in user_data)."""
    now = time.monotonic() if now is None else now
    if context.user_data is None:
        return False
    stamps: deque = context.user_data.setdefault("asked_at", deque())
    while stamps and now - stamps[0] > 60:
        stamps.popleft()
    if len(stamps) >= per_minute:
        return True
    stamps.append(now)
    return False
