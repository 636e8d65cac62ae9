"""Web pages and feed summaries → `ParsedArticle`s, and the one spelling of a URL the corpus keys articles by.

No networking here: the page arrives as bytes (or text) with the URL it came from. The main text, headline,
byline, date and outlet are extracted with trafilatura; what the page lacks is filled from what the caller
already knows (a feed entry's title, author, date and the feed's name).
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from index.cleaning import clean_text, clean_title
from index.parsers import ParseFailure, split_dateline
from index.types import ParsedArticle

log = logging.getLogger(__name__)

# Query parameters that only say how a reader arrived; the same story under two of them is one story.
_TRACKING_NAMES = frozenset(
    """fbclid gclid gclsrc dclid gbraid wbraid msclkid yclid igshid twclid ttclid li_fat_id mc_cid mc_eid _ga _gl
    mkt_tok oly_anon_id oly_enc_id vero_id vero_conv wt.mc_id wt_mc cmpid ocid ref_src ref_url s_cid ncid sr_share
    at_medium at_campaign at_link_id at_link_type at_link_origin at_format at_ptr_name at_bbc_team rss_source
    spm __twitter_impression smid""".split()
)
_TRACKING_PREFIXES = ("utm_", "at_custom", "_hs", "pk_", "mtm_", "hsa_")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_BLOCK_TAGS = frozenset("p div li h1 h2 h3 h4 h5 h6 blockquote tr section article pre dd dt figcaption".split())
_TITLE_SUFFIX = re.compile(r"\s+[|\-–—:·]\s+[^|\-–—:·]{2,60}$")


# --- URLs ------------------------------------------------------------------------------------------------------
def is_tracking_parameter(name: str) -> bool:
    lowered = name.lower()
    return lowered in _TRACKING_NAMES or lowered.startswith(_TRACKING_PREFIXES)


def normalise_url(url: str) -> str:
    """One spelling per story: lower-case scheme and host, no default port, credentials or fragment, tracking
    parameters (utm_*, fbclid, gclid, ...) dropped and the rest sorted. Paths are left alone (they are
    case-sensitive on most servers). Something that isn't an absolute http(s) URL comes back stripped."""
    url = url.strip()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return url
    host = parts.hostname.lower().rstrip(".")
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        return url
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not is_tracking_parameter(k)]
    query.sort(key=lambda pair: pair[0])
    return urlunsplit((scheme, netloc, parts.path or "/", urlencode(query, doseq=True), ""))


def _bare_host(url: str) -> str:
    host = (urlsplit(url).hostname or "").lower()
    return host[4:] if host.startswith("www.") else host


# --- pages -----------------------------------------------------------------------------------------------------
def parse_page(content: bytes | str, url: str, *, title: str | None = None, author: str | None = None,
               published: datetime | None = None, source: str | None = None) -> ParsedArticle | ParseFailure:
    """An article page → its story. The keyword arguments are what is already known (from a feed entry):
    `published` wins over the page's own date, the page's headline, byline and outlet win over the rest."""
    try:
        import trafilatura

        doc = trafilatura.bare_extraction(
            content, url=url, with_metadata=True, include_comments=False, include_tables=False,
            include_images=False, date_extraction_params={
                "outputformat": "%Y-%m-%dT%H:%M:%S%z", "original_date": True, "extensive_search": False},
        )
    except Exception as exc:  # noqa: BLE001 - a page the extractor chokes on is one skipped page
        log.warning("extraction failed for %s", url, exc_info=True)
        return ParseFailure(url, f"the page could not be read ({type(exc).__name__}: {exc})")
    if doc is None or not (getattr(doc, "text", None) or "").strip():
        return ParseFailure(url, "no article text found on the page")
    outlet = _clean(getattr(doc, "sitename", None)) or _clean(source) or _bare_host(url) or None
    headline = clean_title(_strip_outlet(_clean(doc.title) or "", outlet)) or clean_title(title or "")
    text = _drop_repeated_headline(doc.text, headline)
    cleaned = clean_text(text)
    dateline, cleaned, agency = split_dateline(cleaned)
    if not cleaned:
        return ParseFailure(url, "no article text found on the page")
    canonical = getattr(doc, "url", None)
    key_url = canonical if canonical and _bare_host(canonical) == _bare_host(url) else url
    return ParsedArticle(
        title=headline or cleaned.split("\n", 1)[0][:80],
        text=cleaned,
        source=outlet or agency,
        author=_clean(getattr(doc, "author", None)) or _clean(author),
        dateline=dateline,
        published=published or parse_page_date(getattr(doc, "date", None)),
        url=normalise_url(key_url),
        origin=url,
    )


def summary_article(summary_html: str, url: str, *, title: str | None = None, author: str | None = None,
                    published: datetime | None = None, source: str | None = None) -> ParsedArticle | ParseFailure:
    """A feed entry's own summary or content as the article, for when its page can't be fetched."""
    text = clean_text(html_fragment_text(summary_html or ""))
    dateline, text, agency = split_dateline(text)
    if not text:
        return ParseFailure(url, "the feed entry has no summary to fall back on")
    return ParsedArticle(
        title=clean_title(title or "") or text.split("\n", 1)[0][:80],
        text=text,
        source=_clean(source) or agency or _bare_host(url) or None,
        author=_clean(author),
        dateline=dateline,
        published=published,
        url=normalise_url(url),
        origin=url,
    )


def html_fragment_text(fragment: str) -> str:
    """The text of an HTML fragment (a feed summary), one paragraph per line; plain text passes through."""
    if "<" not in fragment:
        return fragment
    import lxml.html

    try:
        root = lxml.html.fragment_fromstring(fragment, create_parent="div")
    except Exception:  # noqa: BLE001 - unparseable markup: fall back to stripping tags
        return re.sub(r"<[^>]*>", " ", fragment)
    for unwanted in root.xpath(".//script|.//style"):
        unwanted.drop_tree()
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        tag = element.tag.lower()
        if tag == "br":
            element.tail = "\n" + (element.tail or "")
        elif tag in _BLOCK_TAGS:
            element.tail = "\n" + (element.tail or "")
            element.text = "\n" + (element.text or "")
    return root.text_content()


def parse_page_date(value: str | None) -> datetime | None:
    """trafilatura's date ("2017-07-21T10:30:00+0200" or "2017-07-21") → aware UTC; None when unreadable."""
    if not value:
        return None
    for pattern in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            parsed = datetime.strptime(value.strip(), pattern)
        except ValueError:
            continue
        return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)
    return None


def _clean(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    value = " ".join(value.split())
    return value or None


def _strip_outlet(title: str, outlet: str | None) -> str:
    """"Big news | The Daily" → "Big news" when the outlet is The Daily (the <title> often carries it)."""
    if outlet and title.lower().endswith(outlet.lower()):
        match = _TITLE_SUFFIX.search(title)
        if match and match.start() > 0:
            return title[: match.start()]
    return title


def _drop_repeated_headline(text: str, headline: str) -> str:
    """trafilatura keeps the page's <h1> as the first line; the headline is stored apart from the text."""
    lines = text.split("\n")
    if lines and headline and " ".join(lines[0].split()).lower() == headline.lower():
        return "\n".join(lines[1:])
    return text
