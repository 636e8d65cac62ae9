"""The one error handler: log with context (never the token), tell the user something went wrong."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.ext import ContextTypes

from handlers.delivery import send_html

log = logging.getLogger(__name__)

SORRY = "Sorry, something went wrong on my side. Please try again in a moment."


async def error_handler(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    chat_id = update.effective_chat.id if isinstance(update, Update) and update.effective_chat else None
    user_id = update.effective_user.id if isinstance(update, Update) and update.effective_user else None
    log.error("error handling update %s (chat %s, user %s)",
              update.update_id if isinstance(update, Update) else None, chat_id, user_id, exc_info=context.error)
    if chat_id is None:
        return
    try:
        await send_html(context.bot, chat_id, SORRY)
    except Exception:  # noqa: BLE001 - the apology failing must not loop back here
        log.warning("could not tell chat %s about the error", chat_id)
