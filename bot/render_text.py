"""Plain-text rendering of replies for the terminal (`briefbot ask` and `briefbot chat`)."""

from __future__ import annotations

import textwrap

from bot.presentation import attribution_of
from bot.service import Answer, Headline, Reply, Result

BOLD, RESET = "\033[1m", "\033[0m"


def render_result(result: Result, bold: bool = False) -> str:
    """The verbatim passage, its best sentence marked, then who said it and where it was published."""
    start, end = result.highlight_start, result.highlight_end
    mark_open, mark_close = (BOLD, RESET) if bold else ("**", "**")
    if end - start < len(result.text):
        marked = result.text[:start] + mark_open + result.text[start:end] + mark_close + result.text[end:]
    else:
        marked = result.text
    lines = [f"[{result.rank}] " + textwrap.fill(marked, width=100, subsequent_indent="    ")]
    attribution = attribution_of(result)
    if attribution.speakers:
        lines.append("    — " + "; ".join(attribution.speakers))
    lines.append(f"    {attribution.title}" + (f" ({attribution.publication})" if attribution.publication else ""))
    if attribution.url:
        lines.append(f"    {attribution.url}")
    if attribution.also_carried_by:
        lines.append("    also carried by: " + "; ".join(attribution.also_carried_by))
    return "\n".join(lines)


def render_headlines(headlines: list[Headline]) -> str:
    lines = []
    for headline in headlines:
        extra = ", ".join(p for p in (headline.source, headline.published.strftime("%-d %b %Y") if headline.published else "") if p)
        lines.append(f"  • {headline.title}" + (f" ({extra})" if extra else ""))
    return "\n".join(lines)


def render_answer(answer: Answer, bold: bool = False) -> str:
    if not answer.answered:
        text = "I have nothing on that in the articles I know."
        if answer.headlines:
            text += " The latest headlines:\n" + render_headlines(answer.headlines)
        return text
    return "\n\n".join(render_result(r, bold) for r in answer.results)


def render_reply(reply: Reply, bold: bool = False) -> str:
    if reply.kind == "declined":
        return render_answer(reply.answer, bold)
    body = render_answer(reply.answer, bold) if reply.answer.results else ""
    return "\n".join(part for part in (reply.message, body) if part)
