"""Plain data passed between the index's stages (parse → chunk → attribute → embed → search).

Kept free of storage and Telegram so every stage can be tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Speaker:
    """Someone quoted or credited in a passage, as the text names them."""

    name: str
    description: str | None = None
    cue: str = "said"  # the phrase that attributes it: "said", "according to", "told Reuters", ...

    def as_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "cue": self.cue}


@dataclass
class ParsedArticle:
    """An article after parsing and cleaning, ready to be chunked.

    `text` is the cleaned article body (paragraphs separated by a blank line); passage spans point into it.
    """

    title: str
    text: str
    source: str | None = None  # the outlet, or the credit line ("Agencies Via Xinhua")
    author: str | None = None
    dateline: str | None = None
    published: datetime | None = None
    url: str | None = None
    external_id: str | None = None  # the id the input gave it, if any
    origin: str = ""  # file (and line) it came from, for error messages


@dataclass(frozen=True)
class Chunk:
    """A passage cut from a cleaned article: whole sentences, never across articles."""

    position: int
    text: str
    start: int  # char span in ParsedArticle.text
    end: int
    speakers: tuple[Speaker, ...] = field(default_factory=tuple)
