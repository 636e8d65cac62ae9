"""Telegram HTML for the service's replies: quotes with the best sentence in bold, attribution, buttons.

Everything that comes from articles or users is escaped. Messages are split between passages, never
inside one, so no message goes over Telegram's 4096-character limit (counted after entity parsing).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from urllib.parse import urlparse

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.presentation import attribution_of, date_phrase
from bot.service import Headline, Reply, Result

MESSAGE_LIMIT = 4096
CALLBACK_LIMIT = 64
_TAG = re.compile(r"<[^>]+>")


@dataclass
class OutgoingMessage:
    html: str
    buttons: InlineKeyboardMarkup | None = None


def esc(text: str | None) -> str:
    return html.escape(text or "", quote=True)


def visible_length(markup: str) -> int:
    """Length of the text Telegram shows (tags gone, entities decoded), in UTF-16 code units as it counts."""
    plain = html.unescape(_TAG.sub("", markup))
    return len(plain.encode("utf-16-le")) // 2


def safe_url(url: str | None) -> str | None:
    """Only http(s) links become hrefs; anything else (javascript:, data:) is shown as nothing."""
    if not url:
        return None
    parsed = urlparse(url.strip())
    if parsed.scheme in ("http", "https") and parsed.netloc:
        return url.strip()
    return None


def result_html(result: Result) -> str:
    start, end = result.highlight_start, result.highlight_end
    text = result.text
    if 0 <= start < end <= len(text) and (start, end) != (0, len(text)):
        quote = esc(text[:start]) + "<b>" + esc(text[start:end]) + "</b>" + esc(text[end:])
    else:
        quote = esc(text)
    attribution = attribution_of(result)
    lines = [f"<blockquote>{quote}</blockquote>"]
    if attribution.speakers:
        lines.append("— <i>" + esc("; ".join(attribution.speakers)) + "</i>")
    url = safe_url(attribution.url)
    title = f'<a href="{esc(url)}">{esc(attribution.title)}</a>' if url else f"<b>{esc(attribution.title)}</b>"
    lines.append(title + (" · " + esc(attribution.publication) if attribution.publication else ""))
    if attribution.also_carried_by:
        lines.append("<i>Also carried by " + esc("; ".join(attribution.also_carried_by)) + "</i>")
    return "\n".join(lines)


def headlines_html(headlines: list[Headline]) -> str:
    lines = []
    for headline in headlines:
        url = safe_url(headline.url)
        title = f'<a href="{esc(url)}">{esc(headline.title)}</a>' if url else esc(headline.title)
        extra = ", ".join(p for p in (headline.source or "", date_phrase(headline.published)) if p)
        lines.append("• " + title + (f" — {esc(extra)}" if extra else ""))
    return "\n".join(lines)


def pack(blocks: list[str], limit: int = MESSAGE_LIMIT) -> list[str]:
    """Join blocks into as few messages as fit; a block is never split unless it alone is too long."""
    messages: list[str] = []
    current = ""
    for block in blocks:
        for piece in _fit(block, limit):
            candidate = f"{current}\n\n{piece}" if current else piece
            if current and visible_length(candidate) > limit:
                messages.append(current)
                current = piece
            else:
                current = candidate
    if current:
        messages.append(current)
    return messages


def _fit(block: str, limit: int) -> list[str]:
    """A block over the limit (only plain escaped text can be) is cut on line then word boundaries."""
    if visible_length(block) <= limit:
        return [block]
    if _TAG.search(block):
        block = esc(html.unescape(_TAG.sub("", block)))
    pieces, current = [], ""
    for word in re.split(r"(\s+)", block):
        if current and visible_length(current + word) > limit:
            pieces.append(current.rstrip())
            current = word.lstrip()
        else:
            current += word
        while visible_length(current) > limit:  # one enormous "word"
            cut = _safe_cut(current, limit)
            pieces.append(current[:cut])
            current = current[cut:]
    if current.strip():
        pieces.append(current)
    return pieces


def _safe_cut(text: str, limit: int) -> int:
    """An index <= limit characters that does not fall inside an &entity;."""
    cut = min(len(text), limit // 2)
    amp = text.rfind("&", 0, cut)
    if amp != -1 and ";" not in text[amp:cut]:
        cut = amp
    return max(cut, 1)


def answer_buttons(reply: Reply) -> InlineKeyboardMarkup | None:
    """"More" for the question (by its stored id) and "Full article" for the top passage's article."""
    results = reply.answer.results
    if not results:
        return None
    row = []
    if reply.topic_id is not None and reply.kind in ("answer", "more", "neighbour"):
        row.append(InlineKeyboardButton("More", callback_data=f"m:{reply.topic_id}"))
    top = results[0]
    url = safe_url(top.url)
    if url:
        row.append(InlineKeyboardButton("Full article", url=url))
    else:
        row.append(InlineKeyboardButton("Full article", callback_data=f"a:{top.article_id}:0"))
    return InlineKeyboardMarkup([row])


def reply_messages(reply: Reply) -> list[OutgoingMessage]:
    """The messages that carry one reply; buttons go under the last one."""
    blocks = []
    if reply.message:
        blocks.append(esc(reply.message))
    if reply.kind == "declined":
        blocks.append(headlines_html(reply.answer.headlines) or "I know no articles yet.")
    else:
        blocks.extend(result_html(r) for r in reply.answer.results)
    texts = pack(blocks) or [esc("I have nothing to show.")]
    messages = [OutgoingMessage(t) for t in texts]
    messages[-1].buttons = answer_buttons(reply)
    return messages


def article_parts(title: str, text: str, limit: int = MESSAGE_LIMIT - 200) -> list[str]:
    """An article with no link, as escaped HTML in parts (paragraph boundaries where possible)."""
    blocks = [f"<b>{esc(title)}</b>"] + [esc(p) for p in text.split("\n\n") if p.strip()]
    return pack(blocks, limit)

