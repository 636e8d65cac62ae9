"""Daily digests in Telegram: /subscribe, /unsubscribe, /digest, /time, /timezone, /topics, /settings, the
"Ask about this" and time-zone buttons, block/unblock, and the job that sends what is due.

Every handler is a thin step from the update to the DigestService (in a worker thread) and back to an HTML
message; bad input gets a friendly line, never a traceback.
"""

from __future__ import annotations

import logging
import re

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ChatMemberStatus
from telegram.ext import ContextTypes

from bot.subscriptions import COMMON_TIMEZONES, BadSetting, SubscriptionView
from handlers.common import acknowledge, briefbot, chat_key, chat_lock, in_worker, send_reply
from handlers.delivery import send_html
from handlers.digest_render import digest_messages
from handlers.fanout import DigestFanout
from handlers.render import esc

log = logging.getLogger(__name__)

FANOUT = "digest_fanout"
STALE = "That button no longer works."
TOPICS_HELP = ("/topics add oil prices, iran — follow topics (commas between them)\n"
               "/topics remove 2 — stop following topic 2 (or give its words)\n/topics clear — follow everything")


# --- what the bot says about a subscription ---------------------------------------------------------------------
def next_line(view: SubscriptionView) -> str:
    if not view.subscribed:
        return "You're not subscribed. /subscribe for a daily briefing."
    if view.paused:
        return "Your daily briefing is paused because the bot couldn't reach you; /start resumes it."
    when = f"{view.next_digest:%a %-d %b at %H:%M}" if view.next_digest else "soon"
    return f"Your daily briefing comes at {view.digest_time} ({esc(view.timezone)}); the next one {when}."


def topics_line(view: SubscriptionView) -> str:
    if not view.topics:
        return "Topics: everything (add some with /topics add oil prices)."
    return "Topics: " + esc(", ".join(view.topics))


def settings_html(view: SubscriptionView) -> str:
    lines = ["<b>Your daily briefing</b>", next_line(view), topics_line(view),
             f"Time: {view.digest_time} · Time zone: {esc(view.timezone)}"]
    if view.last_digest:
        lines.append(f"Last briefing: {view.last_digest:%a %-d %b %H:%M}")
    lines.append("\n/time 07:30 · /timezone Europe/Berlin · /topics · /digest (one now) · /unsubscribe")
    return "\n".join(lines)


def timezone_buttons(names: list[str]) -> InlineKeyboardMarkup:
    rows, row = [], []
    for name in names:
        row.append(InlineKeyboardButton(name, callback_data=f"tz:{name}"[:64]))
        if len(row) == 2:
            rows.append(row)
            row = []
    if row:
        rows.append(row)
    return InlineKeyboardMarkup(rows)


def _chat(update: Update) -> int:
    return update.effective_chat.id


def _args_text(context: ContextTypes.DEFAULT_TYPE) -> str:
    return " ".join(context.args or [])


async def _say(update: Update, context: ContextTypes.DEFAULT_TYPE, html: str, buttons=None) -> None:
    await send_html(context.bot, _chat(update), html, buttons)


# --- commands ---------------------------------------------------------------------------------------------------
async def subscribe(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/subscribe [topics]: a daily briefing at 08:00 (or the chat's time) in its time zone."""
    try:
        view = await in_worker(briefbot(context).digests.subscribe, _chat(update), _args_text(context))
    except BadSetting as exc:
        await _say(update, context, esc(str(exc)))
        return
    await _say(update, context, "✅ Subscribed. " + next_line(view) + "\n" + topics_line(view)
               + "\n\n/time and /timezone set when; /digest sends one now; /unsubscribe stops it.")


async def unsubscribe(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    was = await in_worker(briefbot(context).digests.unsubscribe, _chat(update))
    await _say(update, context, "Unsubscribed — no more daily briefings. /subscribe brings them back; your topics "
               "and time are kept." if was else "You weren't subscribed. /subscribe for a daily briefing.")


async def digest_now(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/digest: the briefing as it would be now, with this chat's topics (it doesn't replace the daily one)."""
    app = briefbot(context)
    chat_id = _chat(update)
    digest = await in_worker(app.digests.preview, chat_id=chat_id)
    view = await in_worker(app.digests.view, chat_id)
    for message in digest_messages(digest, view.timezone):
        await send_html(context.bot, chat_id, message.html, message.buttons)


async def set_time(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/time HH:MM"""
    text = _args_text(context)
    if not text:
        view = await in_worker(briefbot(context).digests.view, _chat(update))
        await _say(update, context, f"Your briefing time is {view.digest_time} ({esc(view.timezone)}). "
                   "Change it like this: <code>/time 07:30</code>")
        return
    try:
        view = await in_worker(briefbot(context).digests.set_time, _chat(update), text)
    except BadSetting as exc:
        await _say(update, context, esc(str(exc)))
        return
    await _say(update, context, f"Time set to {view.digest_time}. " + next_line(view))


async def set_timezone(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/timezone Area/City — suggestions on a typo, buttons for common zones."""
    text = _args_text(context)
    if not text:
        view = await in_worker(briefbot(context).digests.view, _chat(update))
        await _say(update, context, f"Your time zone is {esc(view.timezone)}. Pick one, or type "
                   "<code>/timezone Europe/Berlin</code>:", timezone_buttons(COMMON_TIMEZONES))
        return
    try:
        view = await in_worker(briefbot(context).digests.set_timezone, _chat(update), text)
    except BadSetting as exc:
        await _say(update, context, esc(str(exc)), timezone_buttons(exc.suggestions) if exc.suggestions else None)
        return
    await _say(update, context, f"Time zone set to {esc(view.timezone)}. " + next_line(view))


async def topics(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/topics, /topics add …, /topics remove …, /topics clear"""
    service = briefbot(context).digests
    args = list(context.args or [])
    action = args[0].lower() if args else ""
    rest = " ".join(args[1:]) if action in ("add", "remove", "rm", "delete", "clear") else " ".join(args)
    try:
        if not args:
            view = await in_worker(service.view, _chat(update))
            listed = "\n".join(f"{i}. {esc(t)}" for i, t in enumerate(view.topics, start=1))
            await _say(update, context, (f"<b>Your topics</b>\n{listed}" if listed else "You follow everything.")
                       + "\n\n" + esc(TOPICS_HELP))
            return
        if action == "clear":
            view = await in_worker(service.clear_topics, _chat(update))
            await _say(update, context, "Topics cleared: your briefing covers everything.")
            return
        if action in ("remove", "rm", "delete"):
            if not rest.strip():
                await _say(update, context, "Which one? For example <code>/topics remove 2</code>")
                return
            items = re.findall(r"\d+", rest) if re.fullmatch(r"[\d,\s]+", rest) else rest
            view, missing = await in_worker(service.remove_topics, _chat(update), items)
            note = f"Not found: {esc(', '.join(missing))}\n" if missing else ""
            await _say(update, context, note + topics_line(view))
            return
        view = await in_worker(service.add_topics, _chat(update), rest)
        await _say(update, context, topics_line(view) + ("" if view.subscribed else "\n/subscribe to get the briefing."))
    except BadSetting as exc:
        await _say(update, context, esc(str(exc)))


async def show_settings(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    view = await in_worker(briefbot(context).digests.view, _chat(update))
    await _say(update, context, settings_html(view))


# --- buttons ----------------------------------------------------------------------------------------------------
async def ask_about(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """"Ask about this" under a digest story ("f:<article id>"): the story becomes the conversation's focus."""
    query = update.callback_query
    try:
        article_id = int(query.data.split(":", 1)[1])
    except (ValueError, IndexError, AttributeError):
        await acknowledge(query, STALE)
        return
    if update.effective_chat is None:
        await acknowledge(query, STALE)
        return
    await acknowledge(query)
    async with chat_lock(context, update.effective_chat.id):
        reply = await in_worker(briefbot(context).service.focus_on, chat_key(update), article_id)
        await send_reply(context, update.effective_chat.id, reply)


async def timezone_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    if update.effective_chat is None or not query.data:
        await acknowledge(query, STALE)
        return
    try:
        view = await in_worker(briefbot(context).digests.set_timezone, _chat(update), query.data[3:])
    except BadSetting:
        await acknowledge(query, STALE)
        return
    await acknowledge(query, f"Time zone: {view.timezone}")
    await _say(update, context, f"Time zone set to {esc(view.timezone)}. " + next_line(view))


# --- reachability -------------------------------------------------------------------------------------------------
async def membership(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """my_chat_member: blocked or removed -> pause the subscription; unblocked or added back -> resume it."""
    change = update.my_chat_member
    if change is None:
        return
    status = change.new_chat_member.status
    service = briefbot(context).digests
    if status in (ChatMemberStatus.BANNED, ChatMemberStatus.LEFT):
        await in_worker(service.pause_blocked, change.chat.id)
    elif status in (ChatMemberStatus.MEMBER, ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER):
        await in_worker(service.resume, change.chat.id)


async def resume_on_start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/start from a chat whose subscription was paused because it was unreachable: it is back."""
    if update.effective_chat is not None:
        await in_worker(briefbot(context).digests.resume, update.effective_chat.id)


# --- the fan-out job ---------------------------------------------------------------------------------------------
def fanout(context: ContextTypes.DEFAULT_TYPE) -> DigestFanout:
    return context.application.bot_data.setdefault(FANOUT, DigestFanout(briefbot(context)))


async def digest_job(context: ContextTypes.DEFAULT_TYPE) -> None:
    """Each minute (and right after start-up): send whatever the database says is due."""
    application = context.application
    sent = await fanout(context).tick(context.bot, keep_going=lambda: application.running)
    if sent:
        log.info("digest fan-out: %d message(s) sent", sent)
