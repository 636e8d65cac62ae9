"""Feeds in Telegram, for the bot's admins (ADMIN_IDS): /addfeed, /feeds, /removefeed, and the job that polls.

Everyone else is told politely that these commands are not theirs. Polling (network and embedding) runs in a
worker thread, in short encoder calls, so questions keep being answered while a feed is read.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

from telegram import Update
from telegram.ext import ContextTypes

from bot.feeds import BadFeed, FeedExists, PollOutcome
from bot.storage import Feed
from handlers.common import briefbot, in_worker
from handlers.delivery import send_html
from handlers.render import MESSAGE_LIMIT, esc, visible_length

log = logging.getLogger(__name__)

NOT_ALLOWED = "Sorry, you're not allowed to manage feeds: only the bot's admins are. Ask me about the news instead!"
NO_ADMINS = ("Sorry, nobody is allowed to manage feeds here: no admins are configured (ADMIN_IDS). "
             "The operator can use <code>briefbot feeds</code> on the server.")
ADD_USAGE = "Send it like this: <code>/addfeed https://example.com/feed.xml</code> (optionally minutes: <code>30</code>)"
REMOVE_USAGE = "Which one? <code>/removefeed 3</code> or <code>/removefeed https://example.com/feed.xml</code> (see /feeds)"
MAX_LISTED = 40


async def _admin(update: Update, context: ContextTypes.DEFAULT_TYPE) -> bool:
    """True for an admin; anyone else gets a polite no."""
    admins = briefbot(context).settings.admin_id_set
    user = update.effective_user
    if user is not None and user.id in admins:
        return True
    log.info("feed command refused for user %s", user.id if user else None)
    await send_html(context.bot, update.effective_chat.id, NO_ADMINS if not admins else esc(NOT_ALLOWED))
    return False


async def add_feed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/addfeed URL [minutes]: follow a feed; it is read at once and the admin is told what came of it."""
    if not await _admin(update, context):
        return
    chat_id = update.effective_chat.id
    args = list(context.args or [])
    if not args or len(args) > 2:
        await send_html(context.bot, chat_id, ADD_USAGE)
        return
    minutes = None
    if len(args) == 2:
        if not args[1].isdigit():
            await send_html(context.bot, chat_id, f"“{esc(args[1][:20])}” isn't a number of minutes. " + ADD_USAGE)
            return
        minutes = int(args[1])
    try:
        feed = await in_worker(briefbot(context).feeds.add, args[0], minutes, notify_chat_id=chat_id)
    except FeedExists as exc:
        await send_html(context.bot, chat_id, f"I already follow that feed (#{exc.feed.id}). /feeds lists them.")
        return
    except BadFeed as exc:
        await send_html(context.bot, chat_id, esc(str(exc)))
        return
    await send_html(context.bot, chat_id, f"✅ Added feed #{feed.id}: {esc(feed.url)}\nI'm reading it now, then every "
                    f"{feed.interval_minutes} minutes; I'll tell you what I found.")
    context.job_queue.run_once(feed_job, 0, name="feeds-now")


async def list_feeds(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/feeds: what the bot follows, with each feed's state."""
    if not await _admin(update, context):
        return
    rows = await in_worker(briefbot(context).feeds.feeds)
    if not rows:
        await send_html(context.bot, update.effective_chat.id, "I follow no feeds yet. " + ADD_USAGE)
        return
    lines = [f"<b>Feeds ({len(rows)})</b>"]
    for feed, articles in rows[:MAX_LISTED]:
        lines.append(feed_line(feed, articles))
    if len(rows) > MAX_LISTED:
        lines.append(f"… and {len(rows) - MAX_LISTED} more (<code>briefbot feeds list</code> shows all).")
    text = "\n".join(lines)
    while visible_length(text) > MESSAGE_LIMIT and len(lines) > 2:
        lines.pop(-2)
        text = "\n".join(lines)
    await send_html(context.bot, update.effective_chat.id, text)


def feed_line(feed: Feed, articles: int) -> str:
    name = esc(feed.title or feed.url)
    state = "🔴 down" if feed.status == "down" else ("🟠 failing" if feed.consecutive_failures else "🟢")
    polled = f"read {_ago(feed.last_polled_at)}" if feed.last_polled_at else "not read yet"
    line = f"#{feed.id} {state} <b>{name}</b> — {articles} article(s), every {feed.interval_minutes} min, {polled}"
    if feed.title:
        line += f"\n    {esc(feed.url)}"
    if feed.last_error:
        line += f"\n    last error: {esc(feed.last_error[:200])}"
    return line


async def remove_feed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/removefeed ID|URL: stop following a feed (its articles stay)."""
    if not await _admin(update, context):
        return
    ref = " ".join(context.args or []).strip()
    if not ref:
        await send_html(context.bot, update.effective_chat.id, REMOVE_USAGE)
        return
    feed = await in_worker(briefbot(context).feeds.remove, ref)
    if feed is None:
        await send_html(context.bot, update.effective_chat.id, f"I don't follow “{esc(ref[:100])}”. " + REMOVE_USAGE)
        return
    await send_html(context.bot, update.effective_chat.id,
                    f"Removed feed #{feed.id}: {esc(feed.title or feed.url)}. Its articles stay.")


# --- the polling job ----------------------------------------------------------------------------------------------
async def feed_job(context: ContextTypes.DEFAULT_TYPE) -> None:
    """Every BRIEFBOT_FEED_POLL_SECONDS (and right after /addfeed): poll the feeds the database says are due."""
    application = context.application
    app = briefbot(context)
    if app.corpus.role == "follower":
        return  # a serving replica: `briefbot worker` polls the feeds and publishes what they bring
    run = await asyncio.to_thread(app.feeds.poll_due, keep_going=lambda: application.running)
    if run is None:
        return  # a poll is still running; the next tick picks up whatever it left
    for outcome in run.outcomes:
        if outcome.notify_chat_id is not None:
            await _tell_admin(context, outcome)


async def _tell_admin(context: ContextTypes.DEFAULT_TYPE, outcome: PollOutcome) -> None:
    """The first poll of a feed added in Telegram: tell the admin who added it how it went (once)."""
    try:
        await send_html(context.bot, outcome.notify_chat_id, outcome_html(outcome))
    except Exception:  # noqa: BLE001 - the note is a courtesy; the feed works either way
        log.warning("could not tell chat %s about feed #%d", outcome.notify_chat_id, outcome.feed_id, exc_info=True)
    await in_worker(briefbot(context).corpus.store.update_feed, outcome.feed_id, notify_chat_id=None)


def outcome_html(outcome: PollOutcome) -> str:
    """What the first poll of a feed brought, for the admin who added it (the feed's title and error escaped)."""
    name = esc(outcome.name)
    if outcome.state == "failed":
        text = f"⚠️ Feed #{outcome.feed_id} <b>{name}</b>: I couldn't read it: {esc(outcome.error)}\n" \
               "I'll keep trying, less often; /feeds shows how it's going."
    elif outcome.entries or outcome.added:
        text = f"📰 Feed #{outcome.feed_id} <b>{name}</b>: {outcome.added} new article(s) from " \
               f"{outcome.entries} entr{'y' if outcome.entries == 1 else 'ies'}."
        if outcome.from_summary:
            text += f" {outcome.from_summary} page(s) couldn't be read, so I kept the feed's summary for those."
        text += " Ask me about them!"
    else:
        text = f"📰 Feed #{outcome.feed_id} <b>{name}</b>: read; nothing new in it yet."
    return text


def _ago(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    seconds = max(0, int((datetime.now(timezone.utc) - value).total_seconds()))
    if seconds < 90:
        return "just now"
    if seconds < 90 * 60:
        return f"{seconds // 60} min ago"
    if seconds < 36 * 3600:
        return f"{seconds // 3600} h ago"
    return f"{value:%d %b %H:%M} UTC"
