"""Telegram HTML for a daily digest: a header, then each story with its key sentences, who said them and where.

Same rules as handlers/render.py: everything from articles is escaped, messages are split between stories
only (never inside one), none goes over 4096 visible characters, and callback data carries stored ids
only ("f:<article>" asks about a story, "a:<article>:0" shows an article without a link). Each message's
keyboard has the buttons of the stories in it, so "Ask about this" sits under its story's message.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.digest import Digest, Story, place_of, speaker_line, where_line
from handlers.render import MESSAGE_LIMIT, OutgoingMessage, esc, pack, safe_url, visible_length

MAX_SOURCES_LISTED = 5


def _local(value, zone: str):
    return value.astimezone(ZoneInfo(zone)) if value is not None else None


def header_html(digest: Digest, zone: str = "UTC") -> str:
    since = _local(digest.since, zone)
    count = len(digest.stories)
    line = f"<b>Your briefing</b> · {count} {'story' if count == 1 else 'stories'} since {since:%a %-d %b, %H:%M}"
    if digest.topics:
        line += "\n<i>Topics: " + esc(", ".join(digest.topics)) + "</i>"
    return line


def sources_html(story: Story, zone: str = "UTC") -> str:
    """"2 sources: Reuters (MANILA, 01:30), Reuters (MANILA, 04:37)" — each linked when it has a link."""
    items = []
    for source in story.sources[:MAX_SOURCES_LISTED]:
        detail = ", ".join(p for p in (place_of(source.dateline) or "", _clock(source.published, zone)) if p)
        label = esc(source.source or "unknown outlet") + (f" ({esc(detail)})" if detail else "")
        url = safe_url(source.url)
        items.append(f'<a href="{esc(url)}">{label}</a>' if url else label)
    more = len(story.sources) - MAX_SOURCES_LISTED
    return f"{len(story.sources)} sources: " + ", ".join(items) + (f" and {more} more" if more > 0 else "")


def _clock(value, zone: str) -> str:
    local = _local(value, zone)
    return f"{local:%-d %b %H:%M}" if local else ""


def story_html(story: Story, zone: str = "UTC") -> str:
    url = safe_url(story.url)
    title = f'<a href="{esc(url)}">{esc(story.headline)}</a>' if url else esc(story.headline)
    lines = [f"<b>{story.rank}. {title}</b>"]
    if story.sentences:
        lines.append("<blockquote>" + esc(" ".join(story.sentences)) + "</blockquote>")
    if story.speakers:
        lines.append("— <i>" + esc(speaker_line(story.speakers)) + "</i>")
    where = where_line(story)
    if where:
        lines.append(esc(where))
    if len(story.sources) > 1:
        lines.append(sources_html(story, zone))
    return "\n".join(lines)


def story_buttons(story: Story) -> list[InlineKeyboardButton]:
    row = [InlineKeyboardButton(f"{story.rank}. Ask about this", callback_data=f"f:{story.article_id}")]
    url = safe_url(story.url)
    if url:
        row.append(InlineKeyboardButton(f"{story.rank}. Full article", url=url))
    else:
        row.append(InlineKeyboardButton(f"{story.rank}. Full article", callback_data=f"a:{story.article_id}:0"))
    return row


def digest_messages(digest: Digest, zone: str = "UTC", limit: int = MESSAGE_LIMIT) -> list[OutgoingMessage]:
    """The messages that carry one digest; one short line when nothing new matches."""
    if digest.empty:
        return [OutgoingMessage(esc(digest.notice))]
    messages: list[tuple[str, list[Story]]] = []
    current, stories = header_html(digest, zone), []
    for story in digest.stories:
        block = story_html(story, zone)
        for piece in pack([block], limit):  # only a pathological story is ever cut
            candidate = f"{current}\n\n{piece}"
            if visible_length(candidate) > limit:
                messages.append((current, stories))
                current, stories = piece, []
            else:
                current = candidate
        stories.append(story)
    messages.append((current, stories))
    return [
        OutgoingMessage(html, InlineKeyboardMarkup([story_buttons(s) for s in group]) if group else None)
        for html, group in messages
    ]
