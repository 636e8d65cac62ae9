"""Questions: any text in a private chat; in groups `/ask`, mentions of the bot and replies to it."""

from __future__ import annotations

import asyncio
import logging
import re
import time

from telegram import Update
from telegram.constants import ChatType
from telegram.ext import ContextTypes

from bot.service import BadQuestion
from handlers.common import briefbot, chat_key, chat_lock, in_worker, over_rate_limit, send_reply, typing
from handlers.delivery import send_html
from handlers.render import esc

log = logging.getLogger(__name__)

SLOW_DOWN = "You're asking faster than I can read — please wait a minute and ask again."
# "typing…" only for an answer that keeps the user waiting: most take milliseconds, and an indicator for
# each would be a second Bot API call per question, half of the 30 a second Telegram allows a bot.
TYPING_AFTER_SECONDS = 0.5


async def answer_text(update: Update, context: ContextTypes.DEFAULT_TYPE, text: str) -> None:
    """Run one message through the conversation and send the reply."""
    app = briefbot(context)
    chat_id = update.effective_chat.id
    if over_rate_limit(context, app.settings.questions_per_minute):
        await send_html(context.bot, chat_id, esc(SLOW_DOWN))
        return
    async with chat_lock(context, chat_id):
        started, outcome = time.perf_counter(), "error"
        try:
            work = asyncio.ensure_future(in_worker(app.service.chat, chat_key(update), text))
            done, _ = await asyncio.wait({work}, timeout=TYPING_AFTER_SECONDS)
            if not done:
                await typing(context, chat_id)
            reply = await work
            outcome = reply.kind
        except BadQuestion as exc:
            outcome = "bad"
            await send_html(context.bot, chat_id, esc(str(exc)))
            return
        finally:
            app.metrics.observe_question(outcome, time.perf_counter() - started)
        await send_reply(context, chat_id, reply)


async def private_message(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await answer_text(update, context, update.effective_message.text or "")


async def group_message(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """In a group, only what is addressed to the bot: a mention or a reply to one of its messages."""
    message = update.effective_message
    username = (context.bot.username or "").lower()
    text = message.text or ""
    replied_to_bot = bool(message.reply_to_message and message.reply_to_message.from_user
                          and message.reply_to_message.from_user.id == context.bot.id)
    mentioned = bool(username) and f"@{username}" in text.lower()
    if not (mentioned or replied_to_bot):
        return
    if mentioned:
        text = re.sub(rf"@{re.escape(username)}\b", " ", text, flags=re.IGNORECASE)
    await answer_text(update, context, text)


async def ask_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    question = " ".join(context.args or [])
    if not question.strip():
        await send_html(context.bot, update.effective_chat.id,
                        "Ask like this: <code>/ask why did Iran strike Pakistan?</code>")
        return
    await answer_text(update, context, question)


def is_private(update: Update) -> bool:
    return update.effective_chat is not None and update.effective_chat.type == ChatType.PRIVATE
