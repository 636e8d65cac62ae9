"""Telegram's text formatting rules, reproduced so tests can reject what Telegram rejects.

Telegram (the Bot API server, built on TDLib) turns ``parse_mode="HTML"`` text into plain text plus
entities, then "fixes" the result: strips control characters, trims whitespace, re-nests or drops
entities that may not overlap, and adds entities it detects by itself (URLs, @mentions, #hashtags,
...). The HTML parser here follows TDLib's ``parse_html`` (td/telegram/MessageEntity.cpp) byte for byte,
so the error texts and byte offsets match the real ones, e.g.
``can't parse entities: Unsupported start tag "div" at byte offset 0``.

Documented or observed behaviour worth knowing (all reproduced here):

* Only ``b strong i em u ins s strike del span(class="tg-spoiler") tg-spoiler a tg-emoji code pre
  blockquote`` are allowed; tag names are case-insensitive; any other tag is an error.
* Only ``&lt; &gt; &amp; &quot;`` and numeric entities are decoded; anything else after ``&`` stays as
  is (a bare ``&`` is *not* an error). A bare ``<`` starts a tag, so ``a < b`` is an error
  (``Unsupported start tag ""``); a bare ``>`` is fine.
* ``<a href="...">`` with a URL Telegram can't use (``javascript:...``, ``ftp://...``, no dot in the
  host) is **silently dropped**: the text stays, the link entity disappears. We report it as a warning.
* Offsets and lengths of entities are in UTF-16 code units.
* The 4096 limit of a message is counted in Unicode code points *after* entity parsing and trimming
  (a live probe: 4096 astral emoji, 8192 UTF-16 units, are accepted; 4097 are refused).

Auto-detected entities (url, email, mention, hashtag, cashtag, bot_command) are an approximation of
TDLib's ``find_entities``: URL detection knows common TLDs only and skips phone numbers and bank cards.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_MESSAGE_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024

ALLOWED_TAGS = frozenset(
    {
        "a", "b", "strong", "i", "em", "s", "strike", "del", "u", "ins",
        "tg-spoiler", "tg-emoji", "span", "pre", "code", "blockquote",
    }
)  # fmt: skip

# TDLib's MessageEntity::get_type_priority, used to order entities that start and end together.
_PRIORITY = {
    "mention": 50, "hashtag": 50, "bot_command": 50, "url": 50, "email": 50, "bold": 90,
    "italic": 91, "code": 20, "pre": 11, "text_link": 49, "text_mention": 49, "cashtag": 50,
    "phone_number": 50, "underline": 92, "strikethrough": 93, "blockquote": 0,
    "bank_card_number": 50, "spoiler": 94, "custom_emoji": 99, "expandable_blockquote": 0,
}  # fmt: skip
SPLITTABLE = ("bold", "italic", "underline", "strikethrough", "spoiler")
BLOCKQUOTES = frozenset({"blockquote", "expandable_blockquote"})
PRE_TYPES = frozenset({"code", "pre"})
ENTITY_TYPES = frozenset(_PRIORITY)


class TelegramTextError(ValueError):
    """Text Telegram would refuse. ``description`` is the Bot API text after ``"Bad Request: "``."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class HtmlParseError(TelegramTextError):
    """HTML Telegram can't parse; ``detail`` is TDLib's message, e.g. ``Unclosed start tag at byte offset 3``."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"can't parse entities: {detail}")
        self.detail = detail


class UrlError(ValueError):
    """A URL Telegram refuses; ``reason`` is TDLib's wording, e.g. ``Wrong HTTP URL``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Entity:
    """One MessageEntity with offsets in UTF-16 code units."""

    type: str
    offset: int
    length: int
    url: str | None = None
    language: str | None = None
    user: dict | None = None
    custom_emoji_id: str | None = None

    @property
    def end(self) -> int:
        return self.offset + self.length

    def sort_key(self) -> tuple[int, int, int]:
        priority = 10 if self.type == "pre" and self.language else _PRIORITY.get(self.type, 50)
        return (self.offset, -self.length, priority)

    def copy(self, offset: int | None = None, length: int | None = None) -> Entity:
        return Entity(
            self.type,
            self.offset if offset is None else offset,
            self.length if length is None else length,
            self.url,
            self.language,
            self.user,
            self.custom_emoji_id,
        )

    def to_dict(self) -> dict:
        data: dict = {"offset": self.offset, "length": self.length, "type": self.type}
        if self.type == "text_link":
            data["url"] = self.url
        elif self.type == "text_mention":
            data["user"] = self.user
        elif self.type == "pre" and self.language:
            data["language"] = self.language
        elif self.type == "custom_emoji":
            data["custom_emoji_id"] = self.custom_emoji_id
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Entity:
        return cls(
            data["type"],
            data["offset"],
            data["length"],
            data.get("url"),
            data.get("language"),
            data.get("user"),
            data.get("custom_emoji_id"),
        )


@dataclass(frozen=True)
class FormattedText:
    """Text and entities as Telegram would store them, plus what it silently changed."""

    text: str
    entities: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of entity offsets."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def entity_text(text: str, entity: dict) -> str:
    """The part of ``text`` an entity covers (offsets are UTF-16, Python indexes code points)."""
    data = text.encode("utf-16-le", "surrogatepass")
    part = data[2 * entity["offset"] : 2 * (entity["offset"] + entity["length"])]
    return part.decode("utf-16-le", "surrogatepass")


def sort_entities(entities: list[Entity]) -> list[Entity]:
    return sorted(entities, key=Entity.sort_key)


# --------------------------------------------------------------------------------------------- URLs

_URL_PART_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_!$,~*'();&+=")
_HEX = frozenset("0123456789abcdefABCDEF")


def _check_url_part(part: str, name: str, allow_colon: bool) -> None:
    i = 0
    while i < len(part):
        c = part[i]
        if c in _URL_PART_OK or (allow_colon and c == ":") or ord(c) >= 128:
            i += 1
            continue
        if c == "%" and i + 2 < len(part) and part[i + 1] in _HEX and part[i + 2] in _HEX:
            i += 3
            continue
        raise UrlError(f"Disallowed character in URL {name}")


def _parse_http_url(url: str) -> tuple[str, str, str, int, str]:
    """TDLib's ``parse_url``: returns (scheme, userinfo, host, specified_port, query)."""
    scheme = "http"
    rest = url
    match = re.match(r"[^:/?#@\[\]]*", url)
    head = match.group(0) if match else ""
    if url[len(head) : len(head) + 3] == "://":
        scheme = head.lower()
        if scheme not in ("http", "https"):
            raise UrlError("Unsupported URL protocol")
        rest = url[len(head) + 3 :]
    cut = len(rest)
    for sep in "/?#":
        pos = rest.find(sep)
        if pos != -1:
            cut = min(cut, pos)
    userinfo_host_port, query = rest[:cut], rest[cut:]
    port = 0
    colon = len(userinfo_host_port) - 1
    while colon > 0 and userinfo_host_port[colon] not in ":]@":
        colon -= 1
    userinfo_host = userinfo_host_port
    if colon > 0 and userinfo_host_port[colon] == ":":
        port_text = userinfo_host_port[colon + 1 :]
        while len(port_text) > 1 and port_text[0] == "0":
            port_text = port_text[1:]
        port = int(port_text) if port_text.isascii() and port_text.isdigit() and int(port_text) else -1
        userinfo_host = userinfo_host_port[:colon]
    if port < 0 or port > 65535:
        raise UrlError("Wrong port number specified in the URL")
    at = userinfo_host.rfind("@")
    userinfo = userinfo_host[:at] if at != -1 else ""
    host = userinfo_host[at + 1 :]
    if not host:
        raise UrlError("URL host is empty")
    if host == ".":
        raise UrlError("Host is invalid")
    host = host.lower()
    if not (host.startswith("[") and host.endswith("]")):
        _check_url_part(host, "host", False)
        _check_url_part(userinfo, "userinfo", True)
    query = query.rstrip(" \t\r\n\v")
    if not query:
        query = "/"
    if not query.startswith("/"):
        query = "/" + query
    query = "".join(f"%{ord(c):02x}" if ord(c) <= 0x20 else c for c in query)
    return scheme, userinfo, host, port, query


def check_url(url: str, *, https_only: bool = False) -> str:
    """Validate a link the way TDLib's ``LinkManager::check_link`` does and return its normal form.

    ``https://example.com`` comes back as ``https://example.com/``; a link without a scheme gets
    ``http://``. Raises :class:`UrlError` with TDLib's reason.
    """
    link = url
    is_tg = is_ton = False
    if link[:3].lower() == "tg:":
        link, is_tg = link[3:], True
    elif link[:4].lower() == "ton:":
        link, is_ton = link[4:], True
    if (is_tg or is_ton) and link.startswith("//"):
        link = link[2:]
    scheme, userinfo, host, port, query = _parse_http_url(link)
    if https_only and (scheme != "https" or is_tg or is_ton):
        raise UrlError("Only HTTPS links are allowed")
    if is_tg or is_ton:
        if link[:7].lower() == "http://" or scheme == "https" or userinfo or port or host.startswith("["):
            raise UrlError("Wrong tg URL" if is_tg else "Wrong ton URL")
        if not all(c.isascii() and (c.isalnum() or c in "-_") for c in host):
            raise UrlError("Unallowed characters in URL host")
        if len(query) > 1 and query[1] == "?":
            query = query[1:]
        return f"{'tg' if is_tg else 'ton'}://{host}{query}"
    if "." not in host and not host.startswith("["):
        raise UrlError("Wrong HTTP URL")
    result = f"{scheme}://"
    if userinfo:
        result += userinfo + "@"
    result += host
    if port:
        result += f":{port}"
    return result + query


_TG_USER = re.compile(r"^tg:(?://)?user\?(?:.*&)?id=(\d+)(?:&.*)?$", re.IGNORECASE)


def link_user_id(url: str) -> int | None:
    """The user a ``tg://user?id=...`` link mentions, else None."""
    match = _TG_USER.match(url)
    return int(match.group(1)) if match and int(match.group(1)) > 0 else None


# --------------------------------------------------------------------------------------------- HTML


def _is_space(c: int) -> bool:
    return c in (0x20, 0x09, 0x0D, 0x0A, 0x00, 0x0B)


def _is_alnum(c: int) -> bool:
    return 0x30 <= c <= 0x39 or 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A


def _decode_html_entity(data: bytes, pos: int) -> tuple[int, int]:
    """TDLib's ``decode_html_entity``: (code point, position after it), or (0, pos) if none."""

    def at(i: int) -> int:
        return data[i] if i < len(data) else 0

    end = pos + 1
    res = 0
    if at(pos + 1) == 0x23:  # '#'
        end += 1
        if at(pos + 2) == 0x78:  # 'x' (lowercase only)
            end += 1
            while chr(at(end)) in _HEX and at(end):
                res = res * 16 + int(chr(at(end)), 16)
                end += 1
        else:
            while 0x30 <= at(end) <= 0x39:
                res = res * 10 + at(end) - 0x30
                end += 1
        if res == 0 or res >= 0x10FFFF or end - pos >= 10:
            return 0, pos
    else:
        while 0x41 <= at(end) <= 0x5A or 0x61 <= at(end) <= 0x7A:
            end += 1
        res = {b"lt": 0x3C, b"gt": 0x3E, b"amp": 0x26, b"quot": 0x22}.get(data[pos + 1 : end], 0)
        if not res:
            return 0, pos
    if at(end) == 0x3B:  # ';'
        end += 1
    return res, end


def parse_html(
    html: str,
    *,
    warnings: list[str] | None = None,
    resolve_user: Callable[[int], dict | None] | None = None,
) -> tuple[str, list[Entity]]:
    """Parse Telegram HTML into (text, entities); raises :class:`HtmlParseError` like Telegram.

    Links Telegram would drop are dropped and described in ``warnings``. ``resolve_user`` turns a
    ``tg://user?id=`` link into the User object of a ``text_mention`` (unknown users are dropped).
    """
    data = html.encode("utf-8", "surrogatepass")
    n = len(data)

    def at(i: int) -> int:
        return data[i] if i < n else 0

    out = bytearray()
    utf16 = 0
    entities: list[Entity] = []
    stack: list[tuple[str, str, int, int]] = []  # tag, argument, utf16 offset, byte position in out
    code_languages: dict[int, str] = {}  # id(entity) -> language of a <code class="language-...">
    i = 0
    while i < n:
        c = data[i]
        if c == 0x26:  # '&'
            code, after = _decode_html_entity(data, i)
            if code:
                utf16 += 2 if code > 0xFFFF else 1
                out += chr(code).encode("utf-8", "surrogatepass")
                i = after
                continue
        if c != 0x3C:  # '<'
            if (c & 0xC0) != 0x80:
                utf16 += 2 if c >= 0xF0 else 1
            out.append(c)
            i += 1
            continue

        begin = i
        i += 1
        if at(i) != 0x2F:  # start tag
            while not _is_space(at(i)) and at(i) != 0x3E:
                i += 1
            if at(i) == 0:
                raise HtmlParseError(f"Unclosed start tag at byte offset {begin}")
            tag = data[begin + 1 : i].lower().decode("utf-8", "replace")
            if tag not in ALLOWED_TAGS:
                raise HtmlParseError(f'Unsupported start tag "{tag}" at byte offset {begin}')
            argument = ""
            while at(i) != 0x3E:
                while at(i) != 0 and _is_space(at(i)):
                    i += 1
                if at(i) == 0x3E:
                    break
                name_begin = i
                while not _is_space(at(i)) and at(i) not in (0x3D, 0x3E, 0x2F, 0x22, 0x27):
                    i += 1
                name = data[name_begin:i]
                if not name:
                    raise HtmlParseError(f'Empty attribute name in the tag "{tag}" at byte offset {begin}')
                while at(i) != 0 and _is_space(at(i)):
                    i += 1
                if at(i) != 0x3D:  # attribute without a value
                    if at(i) == 0:
                        raise HtmlParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')
                    if tag == "blockquote" and name == b"expandable":
                        argument = "1"
                    continue
                i += 1
                while at(i) != 0 and _is_space(at(i)):
                    i += 1
                if at(i) == 0:
                    raise HtmlParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')
                if at(i) not in (0x22, 0x27):  # unquoted name token, case-insensitive
                    token_begin = i
                    while _is_alnum(at(i)) or at(i) in (0x2E, 0x2D):
                        i += 1
                    value = data[token_begin:i].lower()
                    if not _is_space(at(i)) and at(i) != 0x3E:
                        raise HtmlParseError(f"Unexpected end of name token at byte offset {token_begin}")
                else:
                    quote = at(i)
                    i += 1
                    buf = bytearray()
                    while at(i) != quote and at(i) != 0:
                        if at(i) == 0x26:
                            code, after = _decode_html_entity(data, i)
                            if code:
                                buf += chr(code).encode("utf-8", "surrogatepass")
                                i = after
                                continue
                        buf.append(at(i))
                        i += 1
                    if at(i) == quote:
                        i += 1
                    value = bytes(buf)
                if at(i) == 0:
                    raise HtmlParseError(f"Unclosed start tag at byte offset {begin}")
                text_value = value.decode("utf-8", "replace")
                if tag == "a" and name == b"href":
                    argument = text_value
                elif tag == "code" and name == b"class" and text_value.startswith("language-"):
                    argument = text_value[9:]
                elif tag == "span" and name == b"class" and text_value.startswith("tg-"):
                    argument = text_value[3:]
                elif tag == "tg-emoji" and name == b"emoji-id":
                    argument = text_value
                elif tag == "blockquote" and name == b"expandable":
                    argument = "1"
            if tag == "span" and argument != "spoiler":
                raise HtmlParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {begin}')
            stack.append((tag, argument, utf16, len(out)))
        else:  # end tag
            if not stack:
                raise HtmlParseError(f"Unexpected end tag at byte offset {begin}")
            while not _is_space(at(i)) and at(i) != 0x3E:
                i += 1
            end_tag = data[begin + 2 : i].lower().decode("utf-8", "replace")
            while _is_space(at(i)) and at(i) != 0:
                i += 1
            if at(i) != 0x3E:
                raise HtmlParseError(f"Unclosed end tag at byte offset {begin}")
            tag, argument, offset, out_pos = stack[-1]
            if end_tag and end_tag != tag:
                raise HtmlParseError(
                    f'Unmatched end tag at byte offset {begin}, expected "</{tag}>", found "</{end_tag}>"'
                )
            if utf16 > offset:
                length = utf16 - offset
                last = entities[-1] if entities else None
                same_range = last is not None and last.offset == offset and last.length == length
                if tag in ("i", "em"):
                    entities.append(Entity("italic", offset, length))
                elif tag in ("b", "strong"):
                    entities.append(Entity("bold", offset, length))
                elif tag in ("s", "strike", "del"):
                    entities.append(Entity("strikethrough", offset, length))
                elif tag in ("u", "ins"):
                    entities.append(Entity("underline", offset, length))
                elif tag in ("tg-spoiler", "span"):
                    entities.append(Entity("spoiler", offset, length))
                elif tag == "tg-emoji":
                    if not re.fullmatch(r"-?\d{1,19}", argument) or not -(2**63) <= int(argument) < 2**63:
                        raise HtmlParseError("Invalid custom emoji identifier specified")
                    if int(argument) == 0:
                        raise HtmlParseError("Invalid custom emoji identifier specified")
                    entities.append(Entity("custom_emoji", offset, length, custom_emoji_id=str(int(argument))))
                elif tag == "a":
                    url = argument or bytes(out[out_pos:]).decode("utf-8", "replace")
                    user_id = link_user_id(url)
                    if user_id is not None:
                        user = resolve_user(user_id) if resolve_user else None
                        if user is not None:
                            entities.append(Entity("text_mention", offset, length, user=user))
                        elif warnings is not None:
                            warnings.append(f"mention of unknown user {user_id} dropped")
                    else:
                        try:
                            entities.append(Entity("text_link", offset, length, url=check_url(url)))
                        except UrlError as exc:
                            if warnings is not None:
                                warnings.append(f"link {url!r} dropped by Telegram: {exc.reason}")
                elif tag == "pre":
                    if same_range and last.type == "code" and code_languages.get(id(last)):
                        last.type, last.language = "pre", code_languages.pop(id(last))
                    else:
                        entities.append(Entity("pre", offset, length))
                elif tag == "code":
                    if same_range and last.type == "pre" and argument:
                        last.language = argument
                    else:
                        entity = Entity("code", offset, length)
                        if argument:
                            code_languages[id(entity)] = argument
                        entities.append(entity)
                else:  # blockquote
                    kind = "expandable_blockquote" if argument else "blockquote"
                    entities.append(Entity(kind, offset, length))
            stack.pop()
        i += 1  # past '>'
    if stack:
        raise HtmlParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    try:
        text = bytes(out).decode("utf-8")
    except UnicodeDecodeError:
        raise HtmlParseError(
            "Text contains invalid Unicode characters after decoding HTML entities, "
            "check for unmatched surrogate code units"
        ) from None
    return text, sort_entities(entities)


# ------------------------------------------------------------------------------ fixing entities


def _are_entities_valid(entities: list[Entity]) -> bool:
    """TDLib's fast-path check (per the documented nesting rules): when it passes, entities stay as
    they are; otherwise they are re-split, and e.g. ``<b>x <code>y</code></b>`` comes back as bold
    "x " plus code "y"."""
    stack: list[Entity] = []
    for entity in entities:
        while stack and entity.offset >= stack[-1].end:
            stack.pop()
        if stack:
            if entity.end > stack[-1].end:
                return False  # overlaps its parent
            kinds = {e.type for e in stack}
            if kinds & PRE_TYPES:
                return False  # nothing goes inside code/pre
            if entity.type in SPLITTABLE:
                if entity.type in kinds:
                    return False  # bold in bold
            elif entity.type in BLOCKQUOTES:
                return False  # blockquotes can't be nested
            elif entity.type in PRE_TYPES:
                if kinds - BLOCKQUOTES:
                    return False  # bold/italic/... can't contain code or pre
            elif any(k not in SPLITTABLE and k not in BLOCKQUOTES for k in kinds):
                return False  # continuous in continuous (a link in a link)
        if len(stack) >= 10:
            return False
        stack.append(entity)
    return True


def _remove_intersecting(entities: list[Entity]) -> list[Entity]:
    kept: list[Entity] = []
    last_end = 0
    for entity in sort_entities(entities):
        if entity.offset >= last_end:
            last_end = entity.end
            kept.append(entity)
    return kept


def _remove_intersecting_blockquote(entities: list[Entity], quotes: list[Entity]) -> list[Entity]:
    kept = []
    for entity in entities:
        quote = next((q for q in quotes if q.end > entity.offset), None)
        if quote is not None and (quote.end < entity.end or entity.offset < quote.offset < entity.end):
            continue
        kept.append(entity)
    return kept


def _split_entities(splittable: list[Entity], others: list[Entity]) -> list[Entity]:
    """Merge same-kind bold/italic/... runs, cut them at other entities' edges, drop parts in code/pre."""
    splittable = sort_entities(splittable)
    result: list[Entity] = []
    begin = dict.fromkeys(SPLITTABLE, 0)
    end = dict.fromkeys(SPLITTABLE, 0)
    position = 0

    def flush(offset: int) -> None:
        for kind in SPLITTABLE:
            if end[kind] != 0 and begin[kind] < offset:
                if end[kind] <= offset:
                    result.append(Entity(kind, begin[kind], end[kind] - begin[kind]))
                    begin[kind] = end[kind] = 0
                else:
                    result.append(Entity(kind, begin[kind], offset - begin[kind]))
                    begin[kind] = offset

    def add_entities(end_offset: int) -> None:
        nonlocal position
        while position < len(splittable):
            entity = splittable[position]
            if entity.offset >= end_offset:
                break
            kind = entity.type
            if end[kind] != 0 and entity.offset <= end[kind]:
                end[kind] = max(end[kind], entity.end)
            else:
                flush(entity.offset)
                begin[kind], end[kind] = entity.offset, entity.end
            position += 1
        flush(end_offset)

    stack: list[Entity] = []

    def add_offset(offset: int) -> None:
        while stack and offset >= stack[-1].end:
            size = len(result)
            add_entities(stack[-1].end)
            if stack[-1].type in PRE_TYPES:
                del result[size:]
            stack.pop()
        add_entities(offset)

    for other in sort_entities(others):
        add_offset(other.offset)
        stack.append(other)
    add_offset(1 << 62)
    return sort_entities(result)


def _resplit(splittable: list[Entity], others: list[Entity]) -> list[Entity]:
    if not splittable:
        return sort_entities(others)
    return sort_entities(others + _split_entities(splittable, others))


def _partition(entities: list[Entity]) -> tuple[list[Entity], list[Entity], list[Entity]]:
    continuous = [e for e in entities if e.type not in SPLITTABLE and e.type not in BLOCKQUOTES]
    quotes = [e for e in entities if e.type in BLOCKQUOTES]
    splittable = [e for e in entities if e.type in SPLITTABLE]
    return continuous, quotes, splittable


def fix_entities(entities: list[Entity]) -> list[Entity]:
    """TDLib's ``fix_entities``: make entities nest the way Telegram allows, dropping the rest."""
    entities = sort_entities([e for e in entities if e.length > 0])
    if _are_entities_valid(entities):
        return entities
    continuous, quotes, splittable = _partition(entities)
    continuous = _remove_intersecting(continuous)
    if quotes:
        quotes = _remove_intersecting(quotes)
        continuous = sort_entities(_remove_intersecting_blockquote(continuous, quotes) + quotes)
    return _resplit(splittable, continuous)


def _merge_new_entities(entities: list[Entity], new: list[Entity]) -> list[Entity]:
    if not new:
        return entities
    continuous, quotes, splittable = _partition(entities)
    new = _remove_intersecting_blockquote(sort_entities(new), quotes)
    new = [n for n in new if not any(o.offset < n.end and n.offset < o.end for o in continuous)]
    continuous = sort_entities(continuous + new + quotes)
    return _resplit(splittable, continuous)


# ---------------------------------------------------------------------- cleaning and trimming

_REMOVED = frozenset("\r\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u0333\u033f\u030a")


def _clean_text(text: str, entities: list[Entity]) -> tuple[str, list[Entity]]:
    """Control characters become spaces, CR and a few invisible marks are removed; entities follow."""
    total = utf16_len(text)
    for entity in entities:
        if entity.offset > total:
            raise TelegramTextError(f"entity begins after the end of the text at UTF-16 offset {entity.offset}")
        if entity.end > total:
            raise TelegramTextError(
                f"entity beginning at UTF-16 offset {entity.offset} ends after the end of the text "
                f"at UTF-16 offset {entity.end}"
            )
    starts = _utf16_starts(text)
    boundaries = set(starts)
    for entity in entities:
        if entity.offset not in boundaries or entity.end not in boundaries:
            raise TelegramTextError(
                f"entity beginning at UTF-16 offset {entity.offset} is in a middle of a UTF-16 symbol"
            )
    out: list[str] = []
    new_offset = {}
    removed = 0
    for index, char in enumerate(text):
        new_offset[starts[index]] = starts[index] - removed
        if char in _REMOVED:
            removed += 1 if ord(char) <= 0xFFFF else 2
            continue
        out.append(" " if ord(char) < 0x20 and char != "\n" else char)
    new_offset[total] = total - removed
    cleaned = []
    for entity in entities:
        offset, end = new_offset[entity.offset], new_offset[entity.end]
        cleaned.append(entity.copy(offset, end - offset))
    return "".join(out), [e for e in cleaned if e.length > 0]


def _utf16_starts(text: str) -> list[int]:
    """UTF-16 offset of every code point, plus the total length at the end."""
    starts = [0]
    for char in text:
        starts.append(starts[-1] + (2 if ord(char) > 0xFFFF else 1))
    return starts


def fix_formatted_text(
    text: str,
    entities: list[Entity],
    *,
    auto_entities: bool = True,
    skip_bot_commands: bool = False,
) -> tuple[str, list[Entity]]:
    """TDLib's ``fix_formatted_text`` for an outgoing message: clean, fix, trim, detect entities."""
    for entity in entities:
        if entity.offset < 0 or entity.offset > 1_000_000:
            raise TelegramTextError(f"receive an entity with incorrect offset {entity.offset}")
        if entity.length < 0 or entity.length > 1_000_000:
            raise TelegramTextError(f"receive an entity with incorrect length {entity.length}")
    entities = fix_entities(entities)
    text, entities = _clean_text(text, entities)
    stripped = text.rstrip(" \n")
    if not stripped:
        raise TelegramTextError("text must be non-empty")
    entities = fix_entities(entities)
    # right trim: whitespace after the last visible character goes, entities are cut to fit
    last = utf16_len(stripped)
    trimmed = []
    for entity in entities:
        if entity.offset >= last:
            continue
        trimmed.append(entity.copy(length=min(entity.length, last - entity.offset)))
    entities = sort_entities(trimmed)
    text = stripped
    # left trim, but only up to the first entity
    first = entities[0].offset if entities else len(text)
    lead = 0
    while lead < first and lead < len(text) and text[lead] in " \n":
        lead += 1
    if lead:
        text = text[lead:]
        entities = [e.copy(e.offset - lead) for e in entities]
    if auto_entities:
        entities = _merge_new_entities(entities, find_entities(text, skip_bot_commands=skip_bot_commands))
    return text, entities


# -------------------------------------------------------------------- auto-detected entities

_TLDS = (
    "com|org|net|edu|gov|mil|int|info|biz|name|pro|io|co|me|tv|ai|app|dev|news|blog|online|site|"
    "tech|xyz|club|shop|store|live|media|press|global|world|today|uk|us|ca|au|nz|ie|de|fr|es|it|"
    "nl|be|ch|at|se|no|dk|fi|pl|cz|sk|hu|ro|bg|gr|pt|ru|ua|by|kz|tr|il|in|cn|jp|kr|tw|hk|sg|br|"
    "ar|mx|cl|za|eu|ly|gl|gg|to|cc|fm|am|is|ee|lv|lt|ir|id|my|th|vn|ph|pk|ng|ke|eg|sa|ae|su|рф|org\\.uk"
)
_URL_TAIL = r"(?:[/?#][^\s<>\"]*)?"
_URL_RE = re.compile(
    r"(?<![\w@.\-/])(?:"
    r"(?:https?|ftp)://[^\s<>\"/?#]+" + _URL_TAIL + r"|"
    r"tg://[^\s<>\"]+|"
    r"(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+(?:" + _TLDS + r")(?![\w\-])(?::\d{1,5})?" + _URL_TAIL + r")",
    re.IGNORECASE,
)
_EMAIL_RE = re.compile(
    r"(?<![\w.+\-])[a-z0-9._+\-]+@(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+(?:" + _TLDS + r")(?![\w\-])",
    re.IGNORECASE,
)
_SHORT_USERNAMES = frozenset({"gif", "wiki", "vid", "bing", "pic", "bold", "imdb", "coub", "like", "vote"})


def _is_word(char: str) -> bool:
    return char == "_" or unicodedata.category(char)[0] in "LN"


def _is_hashtag_letter(char: str) -> bool:
    category = unicodedata.category(char)
    return char in "_\u200c\u00b7" or "\u0d80" <= char <= "\u0dff" or category[0] == "L" or category == "Nd"


def _trim_url(url: str) -> str:
    while url and url[-1] in ".,:;!?'\"":
        url = url[:-1]
    for close, open_ in ((")", "("), ("]", "["), ("}", "{")):
        while url.endswith(close) and url.count(close) > url.count(open_):
            url = url[:-1]
            while url and url[-1] in ".,:;!?'\"":
                url = url[:-1]
    return url


def _find_spans(text: str, skip_bot_commands: bool) -> list[tuple[int, int, str]]:
    """(start, end, type) in code point indexes, following TDLib's matchers where it matters."""
    spans: list[tuple[int, int, str]] = []
    n = len(text)
    ascii_word = re.compile(r"[A-Za-z0-9_]")
    for i, char in enumerate(text):
        prev = text[i - 1] if i else ""
        if char == "@" and not (prev and _is_word(prev)):
            j = i + 1
            while j < n and ascii_word.match(text[j]):
                j += 1
            name = text[i + 1 : j]
            if 2 <= len(name) <= 32 and not (j < n and _is_word(text[j])):
                if len(name) >= 5 or name in _SHORT_USERNAMES:
                    spans.append((i, j, "mention"))
        elif char == "/" and not skip_bot_commands and not (prev and (_is_word(prev) or prev in "/<>")):
            j = i + 1
            while j < n and ascii_word.match(text[j]):
                j += 1
            if not 1 <= j - i - 1 <= 64:
                continue
            if j < n and text[j] == "@":
                k = j + 1
                while k < n and ascii_word.match(text[k]):
                    k += 1
                if not 3 <= k - j - 1 <= 32:
                    continue
                j = k
            if j < n and (_is_word(text[j]) or text[j] in "/<>"):
                continue
            spans.append((i, j, "bot_command"))
        elif char == "#" and not (prev and _is_hashtag_letter(prev)):
            j = i + 1
            while j < n and _is_hashtag_letter(text[j]):
                j += 1
            body = text[i + 1 : j]
            if body and not (j < n and text[j] == "#") and any(unicodedata.category(c)[0] == "L" for c in body):
                spans.append((i, min(j, i + 1 + 256), "hashtag"))
        elif char == "$" and not (prev and (_is_hashtag_letter(prev) or prev == "$")):
            j = i + 1
            if text[j : j + 5] == "1INCH":
                j += 5
            else:
                while j < n and "A" <= text[j] <= "Z":
                    j += 1
            if 1 <= j - i - 1 <= 8 and not (j < n and (_is_hashtag_letter(text[j]) or text[j] == "$")):
                spans.append((i, j, "cashtag"))
    emails = [(m.start(), m.end(), "email") for m in _EMAIL_RE.finditer(text)]
    spans += emails
    for match in _URL_RE.finditer(text):
        url = _trim_url(match.group(0))
        start, end = match.start(), match.start() + len(url)
        if url and not any(s < end and start < e for s, e, _ in emails):
            spans.append((start, end, "url"))
    return spans


def find_entities(text: str, *, skip_bot_commands: bool = False) -> list[Entity]:
    """Entities Telegram adds by itself (an approximation of TDLib's ``find_entities``)."""
    starts = _utf16_starts(text)
    found = [
        Entity(kind, starts[start], starts[end] - starts[start])
        for start, end, kind in _find_spans(text, skip_bot_commands)
        if end > start
    ]
    return _remove_intersecting(found)


# --------------------------------------------------------------------------------- entry points


def parse_entities_param(raw: list, resolve_user: Callable[[int], dict | None] | None = None) -> list[Entity]:
    """Validate an explicit ``entities`` parameter the way the Bot API does."""
    if not isinstance(raw, list):
        raise TelegramTextError("can't parse entities JSON object")
    entities = []
    for item in raw:
        if not isinstance(item, dict):
            raise TelegramTextError("can't parse MessageEntity: expected an Object")
        for name in ("type", "offset", "length"):
            if name not in item:
                raise TelegramTextError(f'can\'t parse MessageEntity: Can\'t find field "{name}"')
        kind = item["type"]
        if kind not in ENTITY_TYPES:
            raise TelegramTextError("can't parse MessageEntity: Unsupported type specified")
        if not isinstance(item["offset"], int) or not isinstance(item["length"], int):
            raise TelegramTextError("can't parse MessageEntity: Field \"offset\" must be a valid Number")
        entity = Entity(kind, item["offset"], item["length"])
        if kind == "text_link":
            if "url" not in item:
                raise TelegramTextError('can\'t parse MessageEntity: Can\'t find field "url"')
            url = str(item["url"])
            user_id = link_user_id(url)
            if user_id is not None:
                user = resolve_user(user_id) if resolve_user else None
                if user is None:
                    raise TelegramTextError("user not found")
                entity.type, entity.user = "text_mention", user
            else:
                try:
                    entity.url = check_url(url)
                except UrlError as exc:
                    raise TelegramTextError(f"entity URL '{url}' is invalid: {exc.reason}") from None
        elif kind == "text_mention":
            if not isinstance(item.get("user"), dict):
                raise TelegramTextError('can\'t parse MessageEntity: Can\'t find field "user"')
            user = resolve_user(item["user"].get("id", 0)) if resolve_user else item["user"]
            if user is None:
                raise TelegramTextError("user not found")
            entity.user = user
        elif kind == "pre":
            entity.language = item.get("language") or None
        elif kind == "custom_emoji":
            if "custom_emoji_id" not in item:
                raise TelegramTextError('can\'t parse MessageEntity: Can\'t find field "custom_emoji_id"')
            value = str(item["custom_emoji_id"])
            if not re.fullmatch(r"-?\d{1,19}", value) or not -(2**63) <= int(value) < 2**63:
                raise TelegramTextError('can\'t parse MessageEntity: Field "custom_emoji_id" must be a valid Number')
            entity.custom_emoji_id = value
        entities.append(entity)
    return entities


def format_text(
    text: str,
    parse_mode: str | None = "HTML",
    entities: list | None = None,
    *,
    max_length: int = MAX_MESSAGE_LENGTH,
    auto_entities: bool = True,
    skip_bot_commands: bool = False,
    resolve_user: Callable[[int], dict | None] | None = None,
) -> FormattedText:
    """What Telegram makes of a sendMessage/editMessageText text; raises :class:`TelegramTextError`.

    ``error.description`` is the Bot API description without the ``"Bad Request: "`` prefix.
    Markdown parse modes are not implemented here and raise :class:`NotImplementedError`.
    """
    if not text:
        raise TelegramTextError("message text is empty")
    warnings: list[str] = []
    mode = (parse_mode or "").lower()
    if mode and mode != "none":
        if mode == "html":
            plain, parsed = parse_html(text, warnings=warnings, resolve_user=resolve_user)
        elif mode in ("markdown", "markdownv2"):
            raise NotImplementedError(f"parse_mode {parse_mode!r} is not implemented by the test server")
        else:
            raise TelegramTextError("unsupported parse_mode")
    else:
        plain, parsed = text, parse_entities_param(entities or [], resolve_user)
    plain, fixed = fix_formatted_text(
        plain, parsed, auto_entities=auto_entities, skip_bot_commands=skip_bot_commands
    )
    if len(plain) > max_length:
        raise TelegramTextError("message is too long")
    return FormattedText(plain, [e.to_dict() for e in fixed], warnings)


def check_html(html: str, *, max_length: int = MAX_MESSAGE_LENGTH) -> str | None:
    """None if Telegram accepts ``html`` as a message in parse_mode HTML, else the Bot API description.

    Handy in unit tests of the code that builds messages: ``assert check_html(render(x)) is None``.
    """
    try:
        format_text(html, "HTML", max_length=max_length)
    except TelegramTextError as exc:
        return f"Bad Request: {exc.description}"
    return None


def visible_length(html: str) -> int:
    """Code points a message shows once Telegram parsed and trimmed it (what the 4096 limit counts)."""
    return len(format_text(html, "HTML", max_length=1 << 62, auto_entities=False).text)


def utf16_to_index(text: str, offset: int) -> int:
    """Python index of the code point at a UTF-16 offset."""
    return bisect_left(_utf16_starts(text), offset)
