"""The words of an attribution, shared by the terminal and the Telegram renderings so both say the same."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.service import Result
from index.types import Speaker


def speaker_phrase(speaker: Speaker) -> str:
    """"Gregory Brew, an analyst at Eurasia Group" — the name with the description the text gives."""
    if speaker.description:
        return f"{speaker.name}, {speaker.description}"
    return speaker.name


def date_phrase(value: datetime | None) -> str:
    return value.strftime("%-d %b %Y") if value else ""


@dataclass
class Attribution:
    speakers: list[str]
    title: str
    url: str | None
    outlet: str
    byline: str
    date: str
    also_carried_by: list[str]  # "Wikinews, 3 Mar 2017" for each other article with the same passage

    @property
    def publication(self) -> str:
        """"Agencies Via Xinhua, by Jane Doe, 20 Jan 2024" — the parts that are known."""
        parts = [p for p in (self.outlet, f"by {self.byline}" if self.byline else "", self.date) if p]
        return ", ".join(parts)


def attribution_of(result: Result) -> Attribution:
    return Attribution(
        speakers=[speaker_phrase(s) for s in result.speakers],
        title=result.title,
        url=result.url,
        outlet=result.source or "",
        byline=result.author or "",
        date=date_phrase(result.published),
        also_carried_by=[_carrier_phrase(c) for c in result.also_carried_by],
    )


def _carrier_phrase(carrier: dict) -> str:
    published = datetime.fromisoformat(carrier["published"]) if carrier.get("published") else None
    parts = [p for p in (carrier.get("source") or "", carrier.get("title") or "", date_phrase(published)) if p]
    return ", ".join(parts)
