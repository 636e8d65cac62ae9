"""The Telegram bot: all handler wiring in one place, over the same Briefbot application as the CLI."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlparse

from telegram import Update
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from bot.app import Briefbot, redact_token_in_logs
from bot.ops import OpsServer
from handlers import callbacks, commands, digests, errors, feeds, other, questions
from handlers.common import BRIEFBOT
from handlers.delivery import DeliveryRateLimiter, with_retries

log = logging.getLogger(__name__)

OPS_SERVER = "ops_server"

NO_TOKEN = (
    "TELEGRAM_BOT_TOKEN is not set. Get a token from @BotFather in Telegram (/newbot), then put\n"
    "TELEGRAM_BOT_TOKEN=123456:ABC... in .env or the environment. Without Telegram, `briefbot chat`\n"
    "gives the same answers in the terminal."
)


def application_builder(token: str, base_url: str | None = None) -> ApplicationBuilder:
    """PTB's builder for Telegram, or for another Bot API server at `base_url` (self-hosted, or a test server)."""
    redact_token_in_logs(token)  # before PTB builds the Bot, which logs its URLs (token included) at DEBUG
    builder = ApplicationBuilder().token(token)
    if base_url:
        builder = builder.base_url(base_url).base_file_url(base_url.replace("/bot", "/file/bot"))
    return builder


def build_application(briefbot: Briefbot, builder: ApplicationBuilder) -> Application:
    """The PTB Application with every handler registered, over the given Briefbot."""
    builder = (builder.rate_limiter(DeliveryRateLimiter(max_retries=3)).concurrent_updates(True)
               .post_init(_post_init).post_shutdown(_post_shutdown))
    application = builder.build()
    application.bot_data[BRIEFBOT] = briefbot
    redact_token_in_logs(application.bot.token)

    private = filters.ChatType.PRIVATE
    groups = filters.ChatType.GROUPS
    fresh = filters.UpdateType.MESSAGE  # edited messages and channel posts are not questions
    application.add_handler(CommandHandler("start", commands.start, filters=fresh))
    application.add_handler(CommandHandler("help", commands.help_command, filters=fresh))
    application.add_handler(CommandHandler("ask", questions.ask_command, filters=fresh))
    application.add_handler(CommandHandler("latest", commands.latest, filters=fresh))
    application.add_handler(CommandHandler("sources", commands.sources, filters=fresh))
    _add_digest_handlers(application, fresh)
    _add_feed_handlers(application, fresh)
    application.add_handler(CallbackQueryHandler(callbacks.button))
    application.add_handler(MessageHandler(fresh & private & filters.COMMAND, other.unknown_command))
    application.add_handler(MessageHandler(fresh & private & filters.TEXT, questions.private_message))
    application.add_handler(MessageHandler(fresh & groups & filters.TEXT & ~filters.COMMAND, questions.group_message))
    application.add_handler(MessageHandler(fresh & private & ~filters.TEXT, other.not_text))
    application.add_error_handler(errors.error_handler)
    return application


def _add_digest_handlers(application: Application, fresh: filters.BaseFilter) -> None:
    """Daily digests: commands, their buttons, block/unblock, and the minute job that sends what is due."""
    application.add_handler(CommandHandler("start", digests.resume_on_start, filters=fresh), group=-1)
    application.add_handler(CommandHandler("subscribe", digests.subscribe, filters=fresh))
    application.add_handler(CommandHandler("unsubscribe", digests.unsubscribe, filters=fresh))
    application.add_handler(CommandHandler("digest", digests.digest_now, filters=fresh))
    application.add_handler(CommandHandler("time", digests.set_time, filters=fresh))
    application.add_handler(CommandHandler("timezone", digests.set_timezone, filters=fresh))
    application.add_handler(CommandHandler("topics", digests.topics, filters=fresh))
    application.add_handler(CommandHandler("settings", digests.show_settings, filters=fresh))
    application.add_handler(CallbackQueryHandler(digests.ask_about, pattern=r"^f:\d{1,18}$"))
    application.add_handler(CallbackQueryHandler(digests.timezone_button, pattern=r"^tz:"))
    application.add_handler(ChatMemberHandler(digests.membership, ChatMemberHandler.MY_CHAT_MEMBER))
    briefbot: Briefbot = application.bot_data[BRIEFBOT]
    application.job_queue.run_repeating(
        digests.digest_job, interval=briefbot.settings.digest_poll_seconds, first=1.0, name="digests",
        job_kwargs={"max_instances": 2, "coalesce": True, "misfire_grace_time": None},
    )


def _add_feed_handlers(application: Application, fresh: filters.BaseFilter) -> None:
    """Feeds: the admins' commands, and the job that polls whatever the database says is due."""
    application.add_handler(CommandHandler("addfeed", feeds.add_feed, filters=fresh))
    application.add_handler(CommandHandler("feeds", feeds.list_feeds, filters=fresh))
    application.add_handler(CommandHandler("removefeed", feeds.remove_feed, filters=fresh))
    briefbot: Briefbot = application.bot_data[BRIEFBOT]
    application.job_queue.run_repeating(
        feeds.feed_job, interval=briefbot.settings.feed_poll_seconds, first=2.0, name="feeds",
        job_kwargs={"max_instances": 2, "coalesce": True, "misfire_grace_time": None},
    )


async def _post_init(application: Application) -> None:
    ops: OpsServer | None = application.bot_data.get(OPS_SERVER)
    if ops is not None:
        await ops.start()
    try:  # the model loads before the first update is read, so the first user does not wait for it
        await asyncio.to_thread(lambda: application.bot_data[BRIEFBOT].corpus.encoder)
    except Exception:  # noqa: BLE001 - logged; questions will say sorry, everything else still works
        log.exception("the encoder did not load at start-up")
    try:  # the command menu is a convenience: a Bot API hiccup at start-up must not stop the bot starting
        await with_retries(lambda: application.bot.set_my_commands(commands.COMMANDS), "setMyCommands", attempts=3)
    except TelegramError as exc:
        log.warning("could not set the command menu: %s", exc)


async def _post_shutdown(application: Application) -> None:
    ops: OpsServer | None = application.bot_data.get(OPS_SERVER)
    if ops is not None:
        await ops.stop()
    application.bot_data[BRIEFBOT].close()


def serve_operations(application: Application, listen: str, port: int) -> OpsServer:
    """/healthz and /metrics on their own port, started and stopped with the application (bot/ops.py)."""
    ops = OpsServer(application.bot_data[BRIEFBOT], listen, port)
    application.bot_data[OPS_SERVER] = ops
    return ops


def run(briefbot: Briefbot) -> int:
    """Long polling by default; a webhook server when WEBHOOK_URL is set."""
    settings = briefbot.settings
    if not settings.telegram_bot_token:
        print(NO_TOKEN)
        return 2
    builder = application_builder(settings.telegram_bot_token, settings.telegram_api_base_url)
    application = build_application(briefbot, builder)
    if settings.webhook_url:
        path = urlparse(settings.webhook_url).path.lstrip("/")
        log.info("starting webhook server on %s:%s", settings.webhook_listen, settings.webhook_port)
        if settings.ops_port:
            serve_operations(application, settings.ops_listen, settings.ops_port)
        application.run_webhook(
            listen=settings.webhook_listen, port=settings.webhook_port, url_path=path,
            webhook_url=settings.webhook_url, secret_token=settings.webhook_secret,
            allowed_updates=Update.ALL_TYPES,
        )
    else:
        log.info("starting long polling")
        application.run_polling(allowed_updates=Update.ALL_TYPES)
    return 0
