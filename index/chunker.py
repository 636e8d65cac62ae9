"""Sentence splitting and passage building over cleaned article text.

Passages are what gets embedded and shown verbatim, so they are whole sentences from one paragraph (news paragraphs
are units of meaning), carry exact char spans into the article text, and are bounded in size even for junk input.
"""

from __future__ import annotations

import re

from index.types import Chunk

# A sentence may end at ".", "?", "!" or an ellipsis, optionally followed by closing quotes/brackets, then whitespace.
_END = re.compile(r"(?:[.!?]+|…)[\"'”’)\]]*(?=\s)")
_NEXT_WORD = re.compile(r"\s+[\"'“‘(\[]*([^\s\"'“‘(\[]?)(\S*)")
_SPEECH_AFTER = re.compile(
    r"\s+(?:[A-Z][\w.'’-]*\s+){0,3}(?:said|says|asked|asks|added|adds|told|wrote|writes|explained|replied|"
    r"continued|insisted|noted|warned|recalled)\b"
)
_PARAGRAPH = re.compile(r"[^\n]+")
_WORD = re.compile(r"\S+")
_OPENERS = "\"'“‘([{"
_CLOSERS = "\"'”’)]}"

# Never the end of a sentence: "Mr. Smith", "No. 5", "St. Louis", "Barcelona vs. Madrid".
_ALWAYS_ABBREV = frozenset(
    "mr mrs ms messrs dr prof sen sens rep reps gov gen col lt sgt capt cmdr adm maj rev hon pres supt insp det "
    "st mt ft vs v cf e.g i.e approx est ca dept".split()
)
# Usually not the end, but can be: "... Acme Corp. The company said", "... in the U.S. The move".
_MAYBE_ABBREV = frozenset(
    "corp inc co cos ltd plc llc bros jr sr jan feb mar apr jun jul aug sep sept oct nov dec etc ave blvd rd "
    "univ assn a.m p.m".split()
)
_BEFORE_NUMBERS = frozenset("jan feb mar apr jun jul aug sep sept oct nov dec no nos vol art fig figs pp".split())
# Words that plausibly open a new sentence after an ambiguous abbreviation.
_SENTENCE_STARTERS = frozenset(
    "The A An He She It They We I You In On At But And Or So This That These Those There Its His Her Their Our "
    "As If When While After Before Meanwhile However Also Some Many Most Other Analysts Officials Shares Earlier "
    "Later Last Next For With From Under Such Both Each All One What Why How Who Where Despite Although Though "
    "Since Because According Asked Until Yet Still Now Today Yesterday Thus Then Instead Separately Mr Mrs Ms Dr "
    "Trading Prices Sales Net Profit Revenue Earnings".split()
)

# After "U.S." only words that can hardly go on a sentence: Reuters copy capitalises whatever follows "U.S."
# ("the U.S. And Japan", "U.S. Officials said"), so "And", "In", "Officials" prove nothing there.
_STARTERS_AFTER_ACRONYM = frozenset("The It He She They We I Its His Their There".split())

_HARD_MAX_WORDS = 200  # no passage, however pathological its sentence, is longer than this
_HARD_MAX_CHARS = 2000


def split_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) char spans of the sentences of cleaned `text`, in order, without surrounding whitespace.

    A line break always ends a sentence (cleaned text has one paragraph per line). Abbreviations common in news
    ("U.S.", "Mr.", "Corp.", "Jan.", "J. Smith", "5.93") do not end one; ".", "?", "!" followed by quotes do.
    """
    spans: list[tuple[int, int]] = []
    for paragraph in _PARAGRAPH.finditer(text):
        spans.extend(_sentences_in(text, paragraph.start(), paragraph.end()))
    return spans


def chunk_article(text: str, max_words: int = 80, max_sentences: int = 3) -> list[Chunk]:
    """Cut cleaned article text into passages of whole sentences, each within one paragraph.

    Sentences are packed greedily up to `max_words` words and `max_sentences` sentences; a longer sentence is a passage
    of its own, and one beyond 200 words (junk without punctuation) is cut at word boundaries into bounded pieces.
    """
    max_words = max(1, max_words)
    max_sentences = max(1, max_sentences)
    hard_max_words = max(_HARD_MAX_WORDS, max_words)
    spans: list[tuple[int, int]] = []
    for paragraph in _PARAGRAPH.finditer(text):
        group: list[tuple[int, int]] = []
        group_words = 0
        for start, end in _sentences_in(text, paragraph.start(), paragraph.end()):
            words = _count_words(text, start, end, hard_max_words)
            if words > hard_max_words or end - start > _HARD_MAX_CHARS:
                if group:
                    spans.append((group[0][0], group[-1][1]))
                    group, group_words = [], 0
                spans.extend(_bounded_pieces(text, start, end, hard_max_words, _HARD_MAX_CHARS))
                continue
            if group and (len(group) >= max_sentences or group_words + words > max_words):
                spans.append((group[0][0], group[-1][1]))
                group, group_words = [], 0
            group.append((start, end))
            group_words += words
        if group:
            spans.append((group[0][0], group[-1][1]))
    return [Chunk(position=i, text=text[s:e], start=s, end=e) for i, (s, e) in enumerate(spans)]


def _sentences_in(text: str, start: int, end: int) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    sentence_start = _skip_space(text, start, end)
    for match in _END.finditer(text, sentence_start, end):
        if match.start() < sentence_start:
            continue
        if _is_boundary(text, match, end):
            spans.append((sentence_start, match.end()))
            sentence_start = _skip_space(text, match.end(), end)
    tail_end = _trim_space(text, sentence_start, end)
    if tail_end > sentence_start:
        spans.append((sentence_start, tail_end))
    return spans


def _is_boundary(text: str, match: re.Match[str], limit: int) -> bool:
    """Whether the punctuation in `match` really ends a sentence, judged by the word before and the word after."""
    next_word = _NEXT_WORD.match(text, match.end(), limit)
    if next_word is None or not next_word.group(1):
        return True  # end of paragraph
    first = next_word.group(1)
    if first.islower():
        return False  # "e.g. the", "... he said. and" — a sentence does not start in lower case
    punct = match.group()
    if punct[-1] in _CLOSERS and _SPEECH_AFTER.match(text, match.end(), limit):
        return False  # '"Why?" Smith asked.'
    if "." not in punct or punct.startswith("..") or punct[-1] in _CLOSERS:
        return True  # '?', '!', an ellipsis, or a full stop inside quotes: 'he said "no." Then'
    token = _token_before(text, match.start())
    if not token:
        return True  # spaced punctuation ("said . The")
    lower = token.lower()
    follows = first + next_word.group(2)
    next_is_number = first.isdigit()
    if lower in _ALWAYS_ABBREV:
        return False
    if next_is_number and (lower in _BEFORE_NUMBERS or _is_acronym(token)):
        return False  # "Jan. 3", "No. 5", "U.S. 30-year bonds"
    follows = follows.rstrip(",;:")
    if _is_acronym(token):
        return follows in _STARTERS_AFTER_ACRONYM
    if lower in _MAYBE_ABBREV or (len(token) == 1 and token.isupper()):
        return follows in _SENTENCE_STARTERS
    return True


def _token_before(text: str, index: int) -> str:
    """The word just before a full stop, without opening quotes or brackets: "U.S", "Mr", "(Corp"."""
    i = index
    floor = max(0, index - 40)
    while i > floor and not text[i - 1].isspace():
        i -= 1
    return text[i:index].lstrip(_OPENERS)


def _is_acronym(token: str) -> bool:
    """"U.S", "D.C", "L.P", "a.m": letters each followed by a dot (the final dot is the one being judged)."""
    parts = token.split(".")
    return len(parts) >= 2 and all(len(p) == 1 and p.isalpha() for p in parts)


def _count_words(text: str, start: int, end: int, cap: int) -> int:
    """Words in text[start:end]; stops counting a little past `cap` so huge junk sentences stay cheap."""
    if end - start < 20 * cap:
        return len(text[start:end].split())
    count = 0
    for _ in _WORD.finditer(text, start, end):
        count += 1
        if count > cap:
            break
    return count


def _bounded_pieces(text: str, start: int, end: int, max_words: int, max_chars: int) -> list[tuple[int, int]]:
    """Cut an oversized sentence at word boundaries; a single word longer than `max_chars` is cut inside."""
    pieces: list[tuple[int, int]] = []
    piece_start = piece_end = -1
    words = 0
    for word in _WORD.finditer(text, start, end):
        ws, we = word.span()
        while we - ws > max_chars:  # one giant token: no word boundary to respect
            if piece_start >= 0:
                pieces.append((piece_start, piece_end))
                piece_start, words = -1, 0
            pieces.append((ws, ws + max_chars))
            ws += max_chars
        if piece_start >= 0 and (words >= max_words or we - piece_start > max_chars):
            pieces.append((piece_start, piece_end))
            piece_start, words = -1, 0
        if piece_start < 0:
            piece_start = ws
        piece_end = we
        words += 1
    if piece_start >= 0:
        pieces.append((piece_start, piece_end))
    return pieces


def _skip_space(text: str, i: int, end: int) -> int:
    while i < end and text[i].isspace():
        i += 1
    return i


def _trim_space(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1].isspace():
        end -= 1
    return end
