"""Inline buttons. Callback data carries stored ids only ("m:<topic>", "a:<article>:<part>"), so a button
still works after a restart, and forged or stale data gets a short notice instead of an error."""

from __future__ import annotations

import logging

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import ContextTypes

from handlers.common import acknowledge, briefbot, chat_key, chat_lock, in_worker, send_reply
from handlers.delivery import send_html
from handlers.render import article_parts

log = logging.getLogger(__name__)

STALE = "That button no longer works — please ask again."
MAX_ID = 2**63 - 1  # database ids are signed 64-bit: a bigger number can't name anything, and SQLite raises on it


def parse_callback(data: str | None) -> tuple[str, list[int]] | None:
    """("m", [topic]) or ("a", [article, part]); None for anything malformed, negative or too big for an id."""
    if not data or len(data) > 64:
        return None
    kind, _, rest = data.partition(":")
    try:
        numbers = [int(x) for x in rest.split(":")] if rest else []
    except ValueError:
        return None
    if any(not 0 <= n <= MAX_ID for n in numbers):
        return None
    if kind == "m" and len(numbers) == 1 or kind == "a" and len(numbers) == 2:
        return kind, numbers
    return None


async def button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    parsed = parse_callback(query.data)
    if parsed is None or update.effective_chat is None:
        await acknowledge(query, STALE)
        return
    kind, numbers = parsed
    if kind == "m":
        await more(update, context, numbers[0])
    else:
        await full_article(update, context, *numbers)


async def more(update: Update, context: ContextTypes.DEFAULT_TYPE, topic_id: int) -> None:
    query = update.callback_query
    await acknowledge(query)
    async with chat_lock(context, update.effective_chat.id):
        reply = await in_worker(briefbot(context).service.more, chat_key(update), topic_id)
        await send_reply(context, update.effective_chat.id, reply)


async def full_article(update: Update, context: ContextTypes.DEFAULT_TYPE, article_id: int, part: int) -> None:
    """An article without a link, in parts; each part offers the next."""
    query = update.callback_query
    article = await in_worker(briefbot(context).service.article, article_id)
    if article is None:
        await acknowledge(query, STALE)
        return
    parts = article_parts(article.title, article.text)
    if not 0 <= part < len(parts):
        await acknowledge(query, STALE)
        return
    await acknowledge(query)
    buttons = None
    if part + 1 < len(parts):
        buttons = InlineKeyboardMarkup(
            [[InlineKeyboardButton(f"Continue ({part + 2}/{len(parts)})", callback_data=f"a:{article_id}:{part + 1}")]]
        )
    await send_html(context.bot, update.effective_chat.id, parts[part], buttons)
