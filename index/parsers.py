"""Input files → `ParsedArticle`s: a JSONL corpus (one article a line) or one plain-text article per file.

Ingestion runs over folders people point it at, so bad input never raises: a file or line that can't be used becomes
a `ParseFailure` naming it, and everything else still goes on.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from index.cleaning import clean_text, clean_title
from index.types import ParsedArticle

log = logging.getLogger(__name__)

JSONL_SUFFIXES = frozenset({".jsonl"})
TEXT_SUFFIXES = frozenset({".txt", ".md", ""})
# Files that sit beside articles in a folder but are not articles; only skipped when a folder is expanded.
_NOT_ARTICLES = frozenset("license licence copying notice readme changelog authors contributing".split())
_SNIFF_BYTES = 8192


@dataclass(frozen=True)
class ParseFailure:
    """A file, or a line of a JSONL file, that could not be turned into an article, and why (for the user)."""

    origin: str
    reason: str


def iter_inputs(paths: list[Path]) -> Iterator[Path]:
    """Files to parse: files as given, folders expanded recursively in sorted order, skipping hidden entries.

    Inside folders only supported types are yielded, and LICENSE/README-style files are left out. A path that does
    not exist is passed through so that `parse_path` reports it.
    """
    for path in paths:
        path = Path(path)
        if not path.is_dir():
            yield path
            continue
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                candidate = Path(root, name)
                if name.startswith(".") or not candidate.is_file():
                    continue
                suffix = candidate.suffix.lower()
                if suffix not in JSONL_SUFFIXES | TEXT_SUFFIXES:
                    log.debug("not an input type, skipped: %s", candidate)
                    continue
                if suffix in TEXT_SUFFIXES and candidate.stem.lower() in _NOT_ARTICLES:
                    log.debug("not an article, skipped: %s", candidate)
                    continue
                yield candidate


def parse_path(path: Path) -> Iterator[ParsedArticle | ParseFailure]:
    """Articles (or failures) from one file, by suffix: .jsonl is a corpus, .txt/.md/none is one article."""
    path = Path(path)
    origin = str(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        yield ParseFailure(origin, "is a folder, not a file")
    elif not path.exists():
        yield ParseFailure(origin, "file not found")
    elif suffix in JSONL_SUFFIXES:
        yield from _parse_jsonl(path)
    elif suffix in TEXT_SUFFIXES:
        yield _guarded(origin, lambda: _parse_text_file(path))
    else:
        yield ParseFailure(origin, f"unsupported file type {suffix!r} (expected .jsonl, .txt, .md or no suffix)")


def _guarded(origin: str, parse: Callable[[], ParsedArticle | ParseFailure]) -> ParsedArticle | ParseFailure:
    """Run one parse; an unexpected error becomes a failure for this input instead of stopping the whole run."""
    try:
        return parse()
    except Exception as exc:  # noqa: BLE001 — one odd input must not abort an ingestion of thousands
        log.exception("unexpected error parsing %s", origin)
        return ParseFailure(origin, f"could not be parsed ({type(exc).__name__}: {exc})")


# --- plain text ----------------------------------------------------------------------------------------------------
def _read_text(path: Path) -> str | ParseFailure:
    origin = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        return ParseFailure(origin, f"cannot be read ({exc.strerror or exc})")
    problem = _not_text(data[:_SNIFF_BYTES])
    if problem:
        return ParseFailure(origin, problem)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return ParseFailure(origin, f"is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})")
    if not text.strip():
        return ParseFailure(origin, "is empty")
    return text


def _not_text(head: bytes) -> str | None:
    """Why the first bytes of a file show it is not text we can read, or None."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "is UTF-16 text; save it as UTF-8"
    control = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    if b"\x00" in head or (head and control / len(head) > 0.1):
        return "looks like a binary file, not text"
    return None


def _parse_text_file(path: Path) -> ParsedArticle | ParseFailure:
    text = _read_text(path)
    if isinstance(text, ParseFailure):
        return text
    return parse_plain_article(text, origin=str(path))


# --- JSONL ---------------------------------------------------------------------------------------------------------
def _parse_jsonl(path: Path) -> Iterator[ParsedArticle | ParseFailure]:
    origin = str(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        yield ParseFailure(origin, f"cannot be read ({exc.strerror or exc})")
        return
    with handle:
        try:
            head = handle.read(_SNIFF_BYTES)
            problem = _not_text(head)
            if problem:
                yield ParseFailure(origin, problem)
                return
            handle.seek(0)
            any_line = False
            for lineno, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                any_line = True
                line_origin = f"{path}:{lineno}"
                yield _guarded(line_origin, lambda: _parse_jsonl_line(raw, line_origin, first=lineno == 1))
        except OSError as exc:
            yield ParseFailure(origin, f"read error ({exc.strerror or exc})")
            return
    if not any_line:
        yield ParseFailure(origin, "is empty")


def _parse_jsonl_line(raw: bytes, origin: str, first: bool) -> ParsedArticle | ParseFailure:
    try:
        line = raw.decode("utf-8-sig" if first else "utf-8")
    except UnicodeDecodeError as exc:
        return ParseFailure(origin, f"is not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})")
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        return ParseFailure(origin, f"is not valid JSON ({exc.msg} at column {exc.colno})")
    if not isinstance(record, dict):
        return ParseFailure(origin, f"is a JSON {type(record).__name__}, expected an object with a 'text' field")
    raw_text = record.get("text")
    if not isinstance(raw_text, str) or not raw_text.strip():
        return ParseFailure(origin, "has no 'text'" if raw_text is None else "has an empty or non-string 'text'")
    text = clean_text(raw_text)
    if not text:
        return ParseFailure(origin, "has no text left after cleaning")
    dateline = _optional_str(record.get("dateline"))
    source = _optional_str(record.get("source"))
    if dateline is None:
        dateline, text, agency = split_dateline(text)
        source = source or agency
        if not text:
            return ParseFailure(origin, "has only a dateline, no article text")
    title = clean_title(_optional_str(record.get("title")) or "") or _fallback_title(text)
    external_id = record.get("id")
    return ParsedArticle(
        title=title,
        text=text,
        source=source,
        author=_optional_str(record.get("author")),
        dateline=_normalise_dateline(dateline),
        published=_parse_datetime(record.get("published"), origin),
        url=_optional_str(record.get("url")),
        external_id=str(external_id) if isinstance(external_id, (str, int)) and str(external_id).strip() else None,
        origin=origin,
    )


def _optional_str(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    value = " ".join(value.split())
    return value or None


_DATELINE_TAIL = re.compile(r"[\s\-–—:]+$")


def _normalise_dateline(dateline: str | None) -> str | None:
    """"SALVADOR, Feb 26 -" -> "SALVADOR, Feb 26", the same shape the plain-text parser gives."""
    if dateline is None:
        return None
    return _DATELINE_TAIL.sub("", dateline) or None


def _fallback_title(text: str) -> str:
    """No title given: the start of the first paragraph, cut at a word boundary."""
    first = text.split("\n", 1)[0]
    if len(first) <= 80:
        return first
    return first[:80].rsplit(" ", 1)[0] + "…"


def _parse_datetime(value: object, origin: str) -> datetime | None:
    """ISO 8601 → aware UTC datetime; a time without zone is taken as UTC. Unreadable dates are dropped, not fatal."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        log.warning("%s: unreadable published date %r ignored", origin, value)
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


# --- plain-text article layout: headline, byline, dateline, credit line, page furniture -----------------------------
_HEADLINE_MARKUP = re.compile(r"^\s*#{1,6}\s*|\s+#+\s*$")
_UNDERLINE = re.compile(r"^\s*(?:=+|-+)\s*$")
_BULLET = re.compile(r"^\s*(?:[-*•·▪►–—]|\d{1,2}[.)])\s+\S")
_COPYRIGHT = re.compile(r"^\s*(?:©|\(c\)\s|copyright\b|all rights reserved)", re.IGNORECASE)
_INLINE_FURNITURE = re.compile(
    r"^\s*(?:read more|read also|also read|related|see also|more on this|recommended)\s*[:|»›>–—-]\s*\S", re.IGNORECASE
)
_SENTENCE_END = re.compile(r"[.!?:;,…\"'”’]$")
_BYLINE = re.compile(r"^By\s+[A-Z]")
_CREDIT = re.compile(
    r"^\(?\s*(?:(?:additional\s+)?reporting|writing|editing|compiled|contributed|by|agencies|source|photo)\b|\bvia\b",
    re.IGNORECASE,
)
_AGENCY_ONLY = re.compile(r"^(?:reuters|ap|afp|xinhua|dpa|ani|pti|ians|bloomberg|agencies)\.?$", re.IGNORECASE)
_HEADING_KEY_TRIM = re.compile(r"[\s:.»›>|\-–—]+$")

# Headings that open the page's own lists after a story; everything from there on is not the story.
_FURNITURE_HEADINGS = frozenset(
    """today's top news|top news|top stories|top headlines|headlines|related|related stories|related articles|
    related news|related content|related coverage|related links|read more|read also|also read|see also|more from|
    more stories|more news|more on this story|most viewed|most read|most popular|most shared|popular|
    popular stories|trending|trending now|trending stories|you may also like|you might also like|recommended|
    recommended for you|recommended stories|editor's picks|editors' picks|latest news|latest stories|latest|
    what to read next|don't miss|further reading|in other news""".replace("\n", "").replace("    ", "").split("|")
)
# Single lines of page chrome that can sit anywhere, even mid-story.
_CLUTTER_LINES = frozenset(
    """advertisement|advertising|sponsored|share|share this|share this article|share this story|print|email|
    comments|follow us|subscribe|sign up|continue reading|scroll to continue|story continues below|
    story continues below advertisement""".replace("\n", "").replace("    ", "").split("|")
)

_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?"
_PLACE_WORD = r"[A-Z][\w.'’\-]*"
_DATELINE = re.compile(
    rf"^(?P<place>{_PLACE_WORD}(?:(?:\s|/|,\s?){_PLACE_WORD}){{0,5}}?)"
    rf"(?:,\s*(?P<date>{_MONTH}\s+\d{{1,2}}(?:,?\s+\d{{4}})?))?"
    r"(?:\s*\((?P<agency>[A-Z][\w.&' -]{0,30})\))?"
    r"(?:\s+(?:--?|—|–)\s+|\s*[—–]\s*)(?=[\"“‘'A-Z0-9])"
)
_THREE_CAPS = re.compile(r"[A-Z]{3}")


def parse_plain_article(text: str, origin: str = "") -> ParsedArticle | ParseFailure:
    """One article laid out as on a news page: headline line, body, maybe a credit line and the page's lists after it.

    The headline is the first non-empty line; a leading "By ..." line is the author; a dateline opening the body
    ("DUBAI/ISLAMABAD — ", "LONDON (Reuters) -") is split off; trailing page furniture is dropped; a short credit line
    ending the story ("Agencies Via Xinhua") becomes `source`.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return ParseFailure(origin, "is empty")
    title = clean_title(_HEADLINE_MARKUP.sub("", lines[first]))
    body = lines[first + 1 :]
    nonblank = [i for i, line in enumerate(body) if line.strip()]
    if nonblank and _UNDERLINE.match(body[nonblank[0]]):
        body = body[nonblank[0] + 1 :]
    body = [line for line in body if not _is_clutter(line)]
    body = body[: _furniture_start(body)]
    while body and not body[-1].strip():
        body.pop()

    source = author = None
    content = [i for i, line in enumerate(body) if line.strip()]
    if len(content) >= 2 and _is_credit(body[content[-1]]):
        source = body[content[-1]].strip().strip("()").strip()
        body = body[: content[-1]]
        content.pop()
    if len(content) >= 2 and _is_byline(body[content[0]]):
        author = body[content[0]].strip()[3:].strip()
        body = body[content[0] + 1 :]

    cleaned = clean_text("\n".join(body))
    dateline, cleaned, agency = split_dateline(cleaned)
    if not cleaned:
        return ParseFailure(origin, "has a headline but no article text")
    return ParsedArticle(
        title=title or _fallback_title(cleaned),
        text=cleaned,
        source=source or agency,
        author=author,
        dateline=dateline,
        origin=origin,
    )


def split_dateline(text: str) -> tuple[str | None, str, str | None]:
    """Split a dateline off the start of cleaned text: (dateline, rest of text, agency named in it, if any).

    All-caps places count on their own ("DUBAI/ISLAMABAD — "); mixed-case ones only with a date or an agency
    ("Kabul, Afghanistan (AP) — ", "NEW YORK, Feb 26 - "), so an ordinary opening like "The U.S. - China talks" stays.
    """
    match = _DATELINE.match(text)
    if match is None:
        return None, text, None
    place, date, agency = match.group("place"), match.group("date"), match.group("agency")
    if len(place) > 60 or "\n" in match.group():
        return None, text, None
    if not (date or agency) and not (place == place.upper() and _THREE_CAPS.search(place)):
        return None, text, None
    dateline = f"{place}, {date}" if date else place
    return dateline, text[match.end() :].lstrip(), agency.strip() if agency else None


def _heading_key(line: str) -> str:
    return " ".join(_HEADING_KEY_TRIM.sub("", line.strip().replace("’", "'")).lower().split())


def _is_clutter(line: str) -> bool:
    return _heading_key(line) in _CLUTTER_LINES or bool(_INLINE_FURNITURE.match(line))


def _is_heading_like(line: str, max_words: int = 8) -> bool:
    stripped = line.strip()
    return bool(stripped) and not _BULLET.match(stripped) and len(stripped.split()) <= max_words and not (
        _SENTENCE_END.search(stripped)
    )


def _furniture_start(lines: list[str]) -> int | None:
    """Index where the page furniture after the story begins (a slice end), or None when there is none.

    Furniture starts at a known heading ("Today's Top News", "Related Stories") followed only by short lines, or at a
    heading-like short line that two or more bullet lines follow at the end of the page.
    """
    first_content = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
    for i in range(first_content + 1, len(lines)):
        if _heading_key(lines[i]) in _FURNITURE_HEADINGS and all(_is_listy(line) for line in lines[i + 1 :]):
            return i
    block = len(lines)
    while block > 0:
        line = lines[block - 1]
        if line.strip() and not (
            _BULLET.match(line) or _COPYRIGHT.match(line) or _heading_key(line) in _FURNITURE_HEADINGS
            or _is_heading_like(line, max_words=25)
        ):
            break
        block -= 1
    if not any(line.strip() for line in lines[:block]):
        # everything is list-like: the first line is still story, furniture can only come after it
        block = next((i + 1 for i, line in enumerate(lines) if line.strip()), len(lines))
    tail = range(block, len(lines))
    bullets = [i for i in tail if _BULLET.match(lines[i])]
    if len(bullets) >= 2:
        before = next((i for i in range(bullets[0] - 1, block - 1, -1) if lines[i].strip()), None)
        if before is not None and _is_heading_like(lines[before]):
            return bullets[0] if _is_known_credit(lines[before]) else before
    return next((i for i in tail if _COPYRIGHT.match(lines[i])), None)


def _is_listy(line: str) -> bool:
    """Blank, a bullet, a copyright line, or short enough to be a headline in a list (≤ 25 words)."""
    return not line.strip() or bool(_BULLET.match(line) or _COPYRIGHT.match(line)) or len(line.split()) <= 25


def _is_known_credit(line: str) -> bool:
    stripped = line.strip()
    return bool(_AGENCY_ONLY.match(stripped) or _CREDIT.search(stripped))


def _is_credit(line: str) -> bool:
    """A credit line: short with no sentence punctuation ("Agencies Via Xinhua"), or a known form ("(Reporting by ...)")."""
    stripped = line.strip()
    if not stripped or _BULLET.match(stripped):
        return False
    if _AGENCY_ONLY.match(stripped):
        return True
    words = len(stripped.split())
    if words <= 8 and not _SENTENCE_END.search(stripped):
        return True
    return words <= 30 and bool(_CREDIT.search(stripped)) and not re.search(r"[.!?\"”]$", stripped)


def _is_byline(line: str) -> bool:
    stripped = line.strip()
    return bool(_BYLINE.match(stripped)) and len(stripped.split()) <= 8 and not _SENTENCE_END.search(stripped)
