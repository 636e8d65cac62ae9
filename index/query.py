"""What a question says about time and outlet: "latest", "today", "this week", "in March", "from Reuters".

These words narrow or re-rank the search; they are removed from the text that is searched, so "latest
news from Reuters on oil" searches for "oil" among Reuters articles, newest first.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Iterable

_MONTHS = {name.lower(): number for number, name in enumerate(calendar.month_name) if name}
_MONTHS.update({name.lower(): number for number, name in enumerate(calendar.month_abbr) if name})
_MONTH_NAMES = "|".join(sorted(_MONTHS, key=len, reverse=True))

_RECENT = re.compile(r"\b(?:the\s+)?(?:latest|newest|most\s+recent|recent(?:ly)?|lately|just\s+now)\b", re.I)
_TODAY = re.compile(r"\btoday(?:'s)?\b", re.I)
_YESTERDAY = re.compile(r"\byesterday(?:'s)?\b", re.I)
# "this year" is left alone: in news questions it is usually the event's year ("sugar imports this year").
_THIS_WEEK = re.compile(r"\b(?:this|past|last)\s+(week|month)\b", re.I)
_IN_MONTH = re.compile(rf"\b(?:in|during|from|since)\s+({_MONTH_NAMES})\.?(?:\s+(\d{{4}}))?\b", re.I)
_IN_YEAR = re.compile(r"\b(?:in|during)\s+((?:19|20)\d{2})\b", re.I)
_FILLER = re.compile(r"^\s*(?:news|stories|headlines|articles)?\s*(?:on|about)?\s*|\s+(?:news|stories)\s*$", re.I)


@dataclass
class QueryIntent:
    """The searchable text of a question plus the constraints its words put on date and outlet."""

    text: str
    sources: list[str] = field(default_factory=list)  # outlet names as stored
    start: datetime | None = None  # published on or after
    end: datetime | None = None  # published before
    months: set[int] = field(default_factory=set)  # "in March" without a year: that month of any year
    prefer_recent: bool = False

    @property
    def has_filters(self) -> bool:
        return bool(self.sources or self.start or self.end or self.months)

    def accepts(self, published: datetime | None, source: str | None) -> bool:
        """Whether an article with this date and outlet fits the question's constraints."""
        if self.sources and (source or "").lower() not in {s.lower() for s in self.sources}:
            return False
        if self.start or self.end or self.months:
            if published is None:
                return False
            if published.tzinfo is None:
                published = published.replace(tzinfo=timezone.utc)
            if self.start and published < self.start:
                return False
            if self.end and published >= self.end:
                return False
            if self.months and published.month not in self.months:
                return False
        return True


# Questions are short (dev-qa's longest has 14 words). A longer message is a pasted passage, often the bot's own:
# its "in 2020" or "according to Reuters" is what the passage says, not a filter on what to search.
QUESTION_MAX_WORDS = 30

_YEAR = re.compile(r"\b(1[89]\d{2}|2[01]\d{2})\b")


def years_named(question: str) -> list[int]:
    """Four-digit years in a question ("the 2022 world cup")."""
    return [int(y) for y in _YEAR.findall(question)]


def _day(value: date) -> datetime:
    return datetime.combine(value, time.min, tzinfo=timezone.utc)


def parse_query(question: str, known_sources: Iterable[str] = (), now: datetime | None = None) -> QueryIntent:
    """Pull the time and outlet phrases out of a question (outlets only when the corpus has them); a message
    too long to be a question is searched as it stands."""
    if len(question.split()) > QUESTION_MAX_WORDS:
        return QueryIntent(text=question)
    now = now or datetime.now(timezone.utc)
    today = now.astimezone(timezone.utc).date()
    text = question
    intent = QueryIntent(text=question)

    for source in sorted({s for s in known_sources if s}, key=len, reverse=True):
        pattern = re.compile(rf"\b(?:from|by|in|on|according\s+to|per)\s+(?:the\s+)?{re.escape(source)}\b", re.I)
        if pattern.search(text):
            intent.sources.append(source)
            text = pattern.sub(" ", text)

    if _TODAY.search(text):
        intent.start, intent.end = _day(today), _day(today + timedelta(days=1))
        text = _TODAY.sub(" ", text)
    elif _YESTERDAY.search(text):
        intent.start, intent.end = _day(today - timedelta(days=1)), _day(today)
        text = _YESTERDAY.sub(" ", text)
    elif match := _THIS_WEEK.search(text):
        span = {"week": 7, "month": 31}[match.group(1).lower()]
        intent.start, intent.end = _day(today - timedelta(days=span)), _day(today + timedelta(days=1))
        text = _THIS_WEEK.sub(" ", text)
    elif match := _IN_MONTH.search(text):
        month = _MONTHS[match.group(1).lower()]
        if match.group(2):
            year = int(match.group(2))
            intent.start = _day(date(year, month, 1))
            intent.end = _day(date(year + (month == 12), month % 12 + 1, 1))
        else:
            intent.months = {month}
        text = _IN_MONTH.sub(" ", text)
    elif match := _IN_YEAR.search(text):
        year = int(match.group(1))
        intent.start, intent.end = _day(date(year, 1, 1)), _day(date(year + 1, 1, 1))
        text = _IN_YEAR.sub(" ", text)

    if _RECENT.search(text):
        intent.prefer_recent = True
        text = _RECENT.sub(" ", text)

    text = " ".join(text.split())
    stripped = " ".join(_FILLER.sub(" ", text).split())
    intent.text = stripped if any(ch.isalnum() for ch in stripped) else ""
    return intent
