"""Text normalisation: raw wire copy and ordinary prose become paragraphs of running text.

Everything downstream (sentence splitting, passage spans, embeddings, the text shown to users) assumes
`ParsedArticle.text` is paragraphs separated by one blank line, each paragraph a single line with single spaces.
Raw Reuters-21578 copy needs real work to get there: hard-wrapped lines, paragraphs marked by a leading space,
"<IBM>"-style ticker tags, "<Bank of Tokyo Ltd>" name tags and a trailing "Reuter" sign-off. Ordinary prose only
gets its whitespace normalised and is split into paragraphs at its newlines.
"""

from __future__ import annotations

import html
import re

# --- character level ----------------------------------------------------------------------------------------------
_CARET_M = re.compile(r"\^M")  # Reuters-21578 has literal "^M" (a carriage return written out) at some line ends
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\ufeff]")
_INLINE_SPACE = re.compile(r"[ \t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")

# --- the trailing sign-off: "Reuter", "REUTER...", "REUTERS", "REUTER TAW", "REUTER11:43/VB", "More" ---------------
_SIGNOFF_LINE = re.compile(
    r"(?:^|\n)(?:[ \t]*(?i:reu[a-z]{0,2}ters?|reute|interrupted)|[ \t]*(?:MORE|More)|[ \t]+more)(?![A-Za-z])"
    r"(?:\d\d?:\d\d/\w+|\d{1,2}|[ \t]+[A-Z]{1,3})?(?:\.{2,3})?[ \t]*$"
)  # no single full stop: "... he told\nReuters." is a sentence, not a sign-off
_SIGNOFF_GLUED = re.compile(
    r"(?:(?<=[.!?\"')\]])[ \t]+(?:REUTERS?|Reuters?|REUTE|MORE)|(?<=[0-9])[ \t]+REUTERS?)"
    r"(?:\d\d?:\d\d/\w+)?(?:\.{2,3})?[ \t]*$"
)  # "... total 55.8 (33.7). REUTER", table rows "... 17 REUTER"

_LINE_DONE = re.compile(r"[.!?\"')\]0-9\-]$")

# --- Reuters tags --------------------------------------------------------------------------------------------------
_TICKER_BODY = r"[A-Z0-9][A-Z0-9.\-/&]{0,11}"
_TICKER = re.compile(_TICKER_BODY)
_GLUED_TICKER = re.compile(rf"(\w)\.(<{_TICKER_BODY}>)\.?")  # "Association.<ICGS.L>." -> before the full stop
_TAG = re.compile(r"<([^<>]{1,120})>")
_BROKEN_OPEN = re.compile(rf"<({_TICKER_BODY})[)<]")  # "<MHC)", "<CYL<"
_BROKEN_CLOSE = re.compile(r"\(([A-Z][A-Z0-9.\- ]{0,11}?)>")  # "(OLIV.MI>", "(SKFR ST>"
_STRAY_LT = re.compile(r"<(?=[A-Za-z0-9])")
_STRAY_GT = re.compile(r"(?<=[A-Za-z.])>")
_MARKUP = re.compile(r"^(?:/|!|\?|[a-z][a-z0-9]*(?:\s+[a-z\-:]+\s*=.*)?\s*/?$)", re.DOTALL)
_HTML_TAGS = frozenset(
    "a abbr b big blockquote br cite code div em font h1 h2 h3 h4 h5 h6 hr i img li ol p pre q s small span "
    "strong sub sup table tbody td th thead tr tt u ul".split()
)
_WHITESPACE = re.compile(r"\s+")
_BLANK_INSIDE = re.compile(r"\n[ \t]*\n")

# --- paragraphs ----------------------------------------------------------------------------------------------------
_TERMINAL = re.compile(r"[.!?:;\"'”’)\]]$")
_BULLET = re.compile(r"^\s*(?:[-*•·▪►–—]|\d{1,2}[.)])\s+\S")
_WIRE_MARKER = re.compile(r"^(?:more|reuters?)(?:\.\.\.)?$", re.IGNORECASE)  # "more" = story continues
_GLUED_MARKER = re.compile(r"(?<=[.!?\"')])\s+(?:MORE|More|REUTERS?)$")  # "... strained the system. MORE"
_WRAP_WIDTH = 100  # wire copy is wrapped near 70 columns; prose paragraphs on one line are far longer
_SOFT_HYPHEN_END = re.compile(r"[A-Za-z]-$")


def clean_text(raw: str) -> str:
    """Normalise raw article text into paragraphs joined by "\\n\\n", each paragraph one line of running text.

    Hard-wrapped text (wire copy) is re-flowed; a line indented by a space starts a new paragraph there. Other text keeps
    one paragraph per line. Tags, entities and the "Reuter" sign-off are dealt with; the words themselves are not touched.
    """
    text = _normalise_characters(raw)
    text = _strip_signoff(text)
    text = _ENTITY.sub(lambda m: html.unescape(m.group()), text)
    wrapped = _looks_hard_wrapped(text)  # before tags are replaced: a tag spanning a line break joins two lines
    text = _replace_tags(text)
    if not wrapped:
        return "\n\n".join(p for p in map(_collapse, text.split("\n")) if p)
    paragraphs = (_GLUED_MARKER.sub("", _collapse(p)) for p in _reflow(text.split("\n")))
    return "\n\n".join(p for p in paragraphs if p and not _WIRE_MARKER.match(p))


def clean_title(title: str) -> str:
    """A headline fit to show: tags as in the text ("STANDARD OIL (SRD) TO FORM UNIT"), one line, single spaces.

    ALL-CAPS wire headlines keep their capitals: title-casing would mangle acronyms and tickers (BP, U.S., IBM).
    """
    text = _normalise_characters(title)
    text = _ENTITY.sub(lambda m: html.unescape(m.group()), text)
    return _collapse(_replace_tags(text))


def _normalise_characters(raw: str) -> str:
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    text = _CARET_M.sub("", text)
    text = _CONTROL.sub("", text)
    return _INLINE_SPACE.sub(" ", text)


def _strip_signoff(text: str) -> str:
    """Drop the wire sign-off at the very end, however it was typed; repeated ones ("REUTER\\n Reuter") too."""
    text = text.rstrip()
    while True:
        match = _SIGNOFF_GLUED.search(text) or _SIGNOFF_LINE.search(text)
        if match is None or _continues_sentence(text, match):
            return text
        text = text[: match.start()].rstrip()


def _continues_sentence(text: str, match: re.Match[str]) -> bool:
    """An unindented "Reuters" after an unfinished line is the wrapped end of "... officials told\\nReuters"."""
    line = match.group().lstrip("\n")
    if not line or line[0].isspace() or match.re is _SIGNOFF_GLUED:
        return False
    before = text[: match.start()].rstrip()
    return bool(before) and not _LINE_DONE.search(before)


def _replace_tags(text: str) -> str:
    """"<IBM>" -> "(IBM)" after a name, bare "IBM" where it is the name; "<Bank of Tokyo Ltd>" -> "Bank of Tokyo Ltd"."""
    if "<" not in text and ">" not in text:
        return text
    text = _GLUED_TICKER.sub(r"\1 \2.", text)
    text = _BROKEN_OPEN.sub(lambda m: _ticker_replacement(m.string, m.start(), m.group(1)), text)
    text = _BROKEN_CLOSE.sub(lambda m: f"({m.group(1).strip()})", text)
    text = _TAG.sub(_tag_replacement, text)
    text = _STRAY_LT.sub("", text)
    return _STRAY_GT.sub("", text)


def _tag_replacement(match: re.Match[str]) -> str:
    content = match.group(1)
    if _BLANK_INSIDE.search(content):
        return match.group()  # a "<" and a ">" from different paragraphs: left to the stray-bracket pass
    content = _WHITESPACE.sub(" ", content).strip()
    if not content:
        return " "
    if _MARKUP.match(content) and (content[0] in "/!?" or content.split()[0].rstrip("/") in _HTML_TAGS):
        return " "  # HTML-ish markup that slipped into the text
    if _TICKER.fullmatch(content):
        return _ticker_replacement(match.string, match.start(), content)
    return content


def _ticker_replacement(text: str, start: int, ticker: str) -> str:
    """In parentheses when it follows a capitalised name ("Standard Oil <SRD>"), else the bare ticker ("symbol DAI")."""
    i = start - 1
    while i >= 0 and text[i] in " \t\n":
        i -= 1
    if i < 0 or text[i] in "([{\"'“‘":
        return ticker
    j = i
    while j > 0 and not text[j - 1].isspace() and i - j < 40:
        j -= 1
    first = text[j]
    return f"({ticker})" if first.isupper() or first.isdigit() else ticker


def _looks_hard_wrapped(text: str) -> bool:
    """Wire copy: short lines that run on into the next one, or paragraphs marked by an indent."""
    lines = [line for line in text.split("\n") if line.strip()]
    if len(lines) < 2:
        return False
    long_lines = sum(1 for line in lines if len(line) > _WRAP_WIDTH)
    if long_lines > len(lines) // 20:
        return False
    previous = ""
    for line in text.split("\n"):
        if not line.strip():
            previous = ""
            continue
        if previous and not line[0].isspace() and not _BULLET.match(line):
            follows_on = line.lstrip()[0].islower() or line.lstrip()[0].isdigit()
            if follows_on or not _TERMINAL.search(previous.rstrip()):
                return True
        previous = line
    indented = sum(1 for line in lines[1:] if line[0] == " " and not line[:5].isspace())
    return indented > 0 and not lines[0][0].isspace()


def _reflow(lines: list[str]) -> list[str]:
    """Join wrapped lines; a blank line, an indented line or a bullet starts a new paragraph."""
    paragraphs: list[str] = []
    current: list[str] = []
    for line in lines:
        if not line.strip():
            if current:
                paragraphs.append(_join_wrapped(current))
                current = []
            continue
        if current and (line[0].isspace() or _BULLET.match(line)):
            paragraphs.append(_join_wrapped(current))
            current = []
        current.append(line.strip())
    if current:
        paragraphs.append(_join_wrapped(current))
    return paragraphs


def _join_wrapped(lines: list[str]) -> str:
    """Lines of one paragraph; "non-\\nperforming" keeps its hyphen and loses the break."""
    out = lines[0]
    for line in lines[1:]:
        if _SOFT_HYPHEN_END.search(out) and line[:1].isalpha():
            out += line
        else:
            out += " " + line
    return out


def _collapse(paragraph: str) -> str:
    return _WHITESPACE.sub(" ", paragraph).strip()
