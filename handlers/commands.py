"""/start, /help, /latest, /sources — the bot explaining itself."""

from __future__ import annotations

from telegram import BotCommand, Update
from telegram.ext import ContextTypes

from bot.presentation import date_phrase
from handlers.common import briefbot, in_worker
from handlers.delivery import send_html
from handlers.questions import answer_text
from handlers.render import esc, headlines_html

COMMANDS = [
    BotCommand("start", "Welcome and example questions"),
    BotCommand("help", "What I can do"),
    BotCommand("ask", "Ask a question (in groups)"),
    BotCommand("latest", "The newest headlines"),
    BotCommand("sources", "Which outlets I know"),
    BotCommand("subscribe", "A daily briefing (optionally on topics)"),
    BotCommand("digest", "The briefing now"),
    BotCommand("topics", "Topics of your briefing"),
    BotCommand("time", "When the briefing comes (HH:MM)"),
    BotCommand("timezone", "Your time zone"),
    BotCommand("settings", "Your briefing settings"),
    BotCommand("unsubscribe", "Stop the daily briefing"),
]

HELP = (
    "Ask me about the news in plain words, for example <i>why did Iran strike Pakistan?</i>\n"
    "I answer with passages quoted word for word from the articles, with who said it, the outlet, the date "
    "and a link. When I have nothing on a question I say so.\n\n"
    "Follow up with <i>more</i>, <i>who said that?</i>, <i>what happened next?</i>, <i>and before that?</i> "
    "or a short question such as <i>why?</i>\n\n"
    "/latest — newest headlines\n/sources — what I know\n/ask — ask in a group chat\n"
    "/subscribe — a daily briefing at 08:00 your time (/time, /timezone, /topics, /settings, /digest)"
)


def example_questions(titles: list[str]) -> list[str]:
    """Questions a new user can copy, made from the newest headlines so they always have answers."""
    return [f"What happened: {title.rstrip('.')}?" for title in titles[:3]]


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Welcome; a deep link `t.me/<bot>?start=q_why_did_iran_strike` asks that question straight away."""
    payload = (context.args or [""])[0]
    if payload.startswith("q_") and len(payload) > 2:
        await answer_text(update, context, payload[2:].replace("_", " "))
        return
    app = briefbot(context)
    headlines = await in_worker(app.service.latest, 3)
    examples = example_questions([h.title for h in headlines])
    text = "<b>Hello! I'm Briefbot, a news briefing bot.</b>\n\n" + HELP
    if examples:
        text += "\n\nTry:\n" + "\n".join(f"• <code>{esc(q)}</code>" for q in examples)
    await send_html(context.bot, update.effective_chat.id, text)


async def help_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await send_html(context.bot, update.effective_chat.id, HELP)


async def latest(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    headlines = await in_worker(briefbot(context).service.latest, 8)
    text = "<b>Latest headlines</b>\n" + headlines_html(headlines) if headlines else "I know no articles yet."
    await send_html(context.bot, update.effective_chat.id, text)


async def sources(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    rows = await in_worker(briefbot(context).service.sources)
    if not rows:
        await send_html(context.bot, update.effective_chat.id, "I know no articles yet.")
        return
    total = sum(count for _, count, _ in rows)
    lines = [f"<b>I know {total} article(s) from {len(rows)} outlet(s):</b>"]
    for outlet, count, newest in rows[:30]:
        lines.append(f"• {esc(outlet)} — {count}" + (f", newest {date_phrase(newest)}" if newest else ""))
    await send_html(context.bot, update.effective_chat.id, "\n".join(lines))
