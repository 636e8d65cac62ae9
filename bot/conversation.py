"""What a chat message means in the light of the conversation so far.

Pure functions over a small state dict, so the rules can be tested without a model or a database.
The state is what the service stores per chat: it survives restarts and expires after a quiet period.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum


class Intent(str, Enum):
    QUESTION = "question"  # a new topic
    FOLLOW_UP = "follow_up"  # a short or pronoun-led question about the current topic
    MORE = "more"  # next results for the same question
    WHO = "who"  # full attribution of the passage last shown
    NEXT = "next"  # the passage after the one in focus
    BEFORE = "before"  # the passage before the one in focus


def _phrases(*patterns: str) -> re.Pattern[str]:
    return re.compile(r"^(?:" + "|".join(patterns) + r")$", re.IGNORECASE)


_MORE = _phrases(
    r"more", r"(?:tell me |show me |give me )?more(?: please)?", r"go on", r"continue", r"keep going", r"next results?",
    r"anything else", r"what else", r"and\??", r"more results", r"others?",
)
_WHO = _phrases(
    r"who said (?:that|this|it|so)", r"who says(?: so)?", r"says who", r"sources?", r"what(?:'s| is) the source",
    r"who(?:'s| is| was) (?:the )?source", r"where (?:is|was|did) (?:that|this|it)(?: come)? from", r"attribution",
    r"who (?:told|reported) (?:that|this|it)", r"who wrote (?:that|this|it)", r"according to whom", r"citation",
)
_NEXT = _phrases(
    r"what happened next", r"what happened after(?: that)?", r"and then", r"then what", r"what came next",
    r"after that", r"what next", r"and after that", r"what followed", r"next",
)
_BEFORE = _phrases(
    r"and before that", r"before that", r"what happened before(?: that)?", r"earlier", r"what came before",
    r"what led to (?:that|this|it)", r"and earlier",
)
_PRONOUN_LED = re.compile(
    r"^(?:and|but|so|also|what about|how about|they|he|she|it|its|their|his|her|that|this|those|these|"
    r"what did (?:they|he|she|it)|what do (?:they)|is that|was that|did (?:they|he|she|it))\b",
    re.IGNORECASE,
)
_REFERRING = re.compile(r"\b(?:they|them|he|him|she|her|it|its|their|that|this|those|these|there)\b", re.IGNORECASE)
_TRAILING = re.compile(r"[\s?!.…]+$")


def normalise(message: str) -> str:
    return _TRAILING.sub("", " ".join(message.split())).strip()


def classify(message: str, has_context: bool) -> Intent:
    """Decide what a message asks for; without context everything is a new question."""
    text = normalise(message)
    if not has_context:
        return Intent.QUESTION
    for pattern, intent in ((_MORE, Intent.MORE), (_WHO, Intent.WHO), (_NEXT, Intent.NEXT), (_BEFORE, Intent.BEFORE)):
        if pattern.match(text):
            return intent
    words = text.split()
    if len(words) <= 3 or _PRONOUN_LED.match(text) or (len(words) <= 8 and _REFERRING.search(text)):
        return Intent.FOLLOW_UP
    return Intent.QUESTION


@dataclass
class ConversationState:
    """What the bot remembers of one chat."""

    query: str = ""  # the effective question of the current topic
    topic_id: int | None = None  # the stored Topic: the question and every passage shown for it
    last_shown: list[int] = field(default_factory=list)  # what the last reply showed
    focus_article: int | None = None
    focus_position: int | None = None
    updated_at: str | None = None

    @property
    def has_context(self) -> bool:
        return bool(self.query or self.focus_article is not None)

    def to_dict(self) -> dict:
        return {
            "query": self.query, "topic_id": self.topic_id, "last_shown": self.last_shown,
            "focus_article": self.focus_article, "focus_position": self.focus_position, "updated_at": self.updated_at,
        }

    @classmethod
    def from_dict(cls, data: dict | None, ttl: timedelta, now: datetime | None = None) -> "ConversationState":
        """Restore a stored state, or a fresh one when it is missing, damaged or older than `ttl`."""
        if not data:
            return cls()
        now = now or datetime.now(timezone.utc)
        try:
            updated = datetime.fromisoformat(data["updated_at"]) if data.get("updated_at") else None
            if updated is None or now - updated > ttl:
                return cls()
            return cls(
                query=str(data.get("query") or ""),
                topic_id=int(data["topic_id"]) if data.get("topic_id") is not None else None,
                last_shown=[int(i) for i in data.get("last_shown") or []],
                focus_article=int(data["focus_article"]) if data.get("focus_article") is not None else None,
                focus_position=int(data["focus_position"]) if data.get("focus_position") is not None else None,
                updated_at=data.get("updated_at"),
            )
        except (KeyError, TypeError, ValueError):
            return cls()


def contextual_query(previous: str, message: str) -> str:
    """A follow-up is searched together with the question it follows ("and Pakistan?" after "why did Iran strike?")."""
    follow = normalise(message)
    follow = re.sub(r"^(?:and|but|so|also|what about|how about)\s+", "", follow, flags=re.IGNORECASE)
    return f"{previous} {follow}".strip() if previous else follow
