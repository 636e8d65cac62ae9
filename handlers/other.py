"""Messages that aren't questions: a short helpful word in private chats, silence elsewhere."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from handlers.delivery import send_html

TEXT_ONLY = "I read text questions only — type what you'd like to know, for example <i>what happened in Iran?</i>"
UNKNOWN_COMMAND = "I don't know that command. /help lists what I can do."


async def not_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await send_html(context.bot, update.effective_chat.id, TEXT_ONLY)


async def unknown_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await send_html(context.bot, update.effective_chat.id, UNKNOWN_COMMAND)
