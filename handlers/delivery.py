"""Sending to Telegram so that a message arrives once even when the Bot API hiccups.

PTB's AIORateLimiter already waits out 429 RetryAfter; this adds bounded retries for 5xx answers,
timeouts and dropped connections, and gives up quietly on a chat that blocked the bot.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import httpx
from telegram import Bot, InlineKeyboardMarkup, LinkPreviewOptions, Message
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.ext import AIORateLimiter

log = logging.getLogger(__name__)

ATTEMPTS = 6  # at 20% failed calls, 4 attempts lost 1 message in 600; 6 lose 1 in 15,000
MAX_DELAY = 4.0  # seconds between attempts, at most (0.5, 1, 2, 4, 4: a flaky minute is ridden out)
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


def retry_after_seconds(exc: RetryAfter) -> float:
    """RetryAfter's wait in seconds (PTB 22 keeps a timedelta and warns when the int attribute is read)."""
    value = getattr(exc, "_retry_after", None)
    if value is None:
        value = exc.retry_after
    return float(value.total_seconds() if hasattr(value, "total_seconds") else value)


async def with_retries(call, what: str, attempts: int = ATTEMPTS,
                       retry_on: Callable[[Exception], bool] | None = None):
    """Run `call()` (a coroutine factory), retrying transient failures with a short backoff.

    `retry_on`, when given, decides which failures are repeated (digests repeat only what Telegram
    certainly did not act on, see `failure_kind`); the others are raised at once.
    """
    delay = 0.5
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except (BadRequest, Forbidden):
            raise  # Telegram refused the request itself: repeating it cannot help
        except Exception as exc:
            if retry_on is None:
                if not isinstance(exc, (RetryAfter, TimedOut, NetworkError)):
                    raise
            elif not retry_on(exc):
                raise
            if attempt == attempts:
                raise
            if isinstance(exc, RetryAfter):
                wait = retry_after_seconds(exc)
                log.warning("%s: flood control, retrying in %.1fs", what, wait)
                await asyncio.sleep(wait)
            else:
                log.warning("%s: %s; retry %d of %d", what, exc, attempt, attempts - 1)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_DELAY)
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


# --- digests: knowing whether Telegram acted on a request -------------------------------------------------------
# Failures where the request certainly never reached Telegram, or Telegram answered without sending.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.WriteError, httpx.WriteTimeout,
             httpx.UnsupportedProtocol, httpx.ProxyError)


def failure_kind(exc: BaseException) -> str:
    """How a failed send ended, for exactly-once digests.

    "blocked" (403: the user blocked the bot, pause), "refused" (400: the request itself is wrong),
    "safe" (429, 5xx, or the connection never carried the request: Telegram did not send it, so it may be
    sent again), or "ambiguous" (the request left and the answer was lost: it may have been sent).
    """
    if isinstance(exc, Forbidden):
        return "blocked"
    if isinstance(exc, RetryAfter):
        return "safe"
    if isinstance(exc, BadRequest) or (isinstance(exc, TelegramError) and not isinstance(exc, NetworkError)):
        return "refused"
    if isinstance(exc, NetworkError):
        cause = exc.__cause__
        if cause is None or isinstance(cause, TelegramError) or isinstance(cause, _NOT_SENT):
            return "safe"  # an HTTP error status (500, 502) is an answer: nothing was sent
        return "ambiguous"
    return "ambiguous"


@dataclass
class BeforeSend:
    """`rate_limit_args` for DeliveryRateLimiter: a hook run inside the rate limiter's slot."""

    hook: Callable[[], Awaitable[Any]]
    max_retries: int | None = None


class DeliveryRateLimiter(AIORateLimiter):
    """PTB's AIORateLimiter (30 messages a second overall, groups 20 a minute, RetryAfter honoured by pausing
    everything), plus an optional hook that runs after the wait, just before the request leaves.

    Digests write "sending" to the database in that hook, so a message waiting out a flood-control pause is
    still "pending" if the bot dies: the window where a crash leaves its fate unknown is one HTTP request.
    """

    async def process_request(self, callback, args, kwargs, endpoint, data, rate_limit_args):
        if isinstance(rate_limit_args, BeforeSend):
            hook, rate_limit_args = rate_limit_args.hook, rate_limit_args.max_retries
            inner = callback

            async def callback(*call_args, **call_kwargs):  # noqa: F811 - the wrapped request
                await hook()
                return await inner(*call_args, **call_kwargs)

        return await super().process_request(callback, args, kwargs, endpoint, data, rate_limit_args)


async def send_digest_part(bot: Bot, chat_id: int, html: str, buttons: InlineKeyboardMarkup | None,
                           before_send: Callable[[], Awaitable[Any]]) -> Message:
    """Send one digest message. `before_send` records "sending" right before the request leaves; only
    failures Telegram certainly did not act on are retried here (flood control, 5xx, no connection)."""

    async def call():
        options = dict(parse_mode=ParseMode.HTML, reply_markup=buttons, link_preview_options=NO_PREVIEW)
        if isinstance(getattr(bot, "rate_limiter", None), DeliveryRateLimiter):
            return await bot.send_message(chat_id, html, rate_limit_args=BeforeSend(before_send), **options)
        await before_send()
        return await bot.send_message(chat_id, html, **options)

    return await with_retries(call, f"digest to {chat_id}", retry_on=lambda exc: failure_kind(exc) == "safe")
