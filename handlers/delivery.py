"""Sending to Telegram so that a message arrives once even when the Bot API hiccups.

PTB's AIORateLimiter already waits out 429 RetryAfter; this adds bounded retries for 5xx answers,
timeouts and dropped connections, and gives up quietly on a chat that blocked the bot.
"""

from __future__ import annotations

import asyncio
import logging

from telegram import Bot, InlineKeyboardMarkup, LinkPreviewOptions, Message
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut

log = logging.getLogger(__name__)

ATTEMPTS = 4
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


async def with_retries(call, what: str, attempts: int = ATTEMPTS):
    """Run `call()` (a coroutine factory), retrying transient failures with a short backoff."""
    delay = 0.5
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except (BadRequest, Forbidden):
            raise  # Telegram refused the request itself: repeating it cannot help
        except RetryAfter as exc:
            if attempt == attempts:
                raise
            wait = exc.retry_after.total_seconds() if hasattr(exc.retry_after, "total_seconds") else exc.retry_after
            log.warning("%s: flood control, retrying in %.1fs", what, wait)
            await asyncio.sleep(float(wait))
        except (TimedOut, NetworkError) as exc:
            if attempt == attempts:
                raise
            log.warning("%s: %s; retry %d of %d", what, exc, attempt, attempts - 1)
            await asyncio.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


async def send_html(bot: Bot, chat_id: int, html: str, buttons: InlineKeyboardMarkup | None = None,
                    reply_to: int | None = None) -> Message | None:
    """Send one HTML message; None when the chat has blocked the bot (nothing more to do there)."""

    async def call():
        return await bot.send_message(
            chat_id, html, parse_mode=ParseMode.HTML, reply_markup=buttons, link_preview_options=NO_PREVIEW,
            reply_to_message_id=reply_to, allow_sending_without_reply=True,
        )

    try:
        return await with_retries(call, f"sendMessage to {chat_id}")
    except Forbidden as exc:
        log.info("chat %s can't be reached: %s", chat_id, exc.message)
        return None
