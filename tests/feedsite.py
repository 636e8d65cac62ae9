"""A small news site on 127.0.0.1 for the feed and fetch tests: RSS 2.0 and Atom feeds and article pages built
from ../shared/data articles, plus every kind of misbehaviour (broken XML, 404, 500, a slow answer, a 50 MB page,
a redirect loop, a non-HTML page). It honours If-None-Match / If-Modified-Since and records what it was asked
and how many bytes it actually wrote, so tests can prove a 304 or a download cut short.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterable, Iterator
from urllib.parse import urlsplit

GUM_NEWS = Path(__file__).resolve().parents[2] / "shared" / "data" / "gum-news" / "articles.jsonl"
LAST_MODIFIED = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def load_articles(ids: Iterable[str]) -> list[dict]:
    """gum-news articles by id (read at test time; nothing is copied into the repository)."""
    wanted = list(ids)
    found: dict[str, dict] = {}
    with GUM_NEWS.open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if record["id"] in wanted:
                found[record["id"]] = record
    return [found[i] for i in wanted]


def slug(article: dict) -> str:
    return article["id"].removeprefix("GUM_news_")


def paragraphs(article: dict) -> list[str]:
    return [p.strip() for p in article["text"].split("\n\n") if p.strip()]


def article_html(article: dict, outlet: str = "Wikinews") -> str:
    """An article page as news sites make them: navigation, the story in <article>, a footer."""
    title = html.escape(article["title"])
    body = "\n".join(f"<p>{html.escape(p)}</p>" for p in paragraphs(article))
    author = f'<meta name="author" content="{html.escape(article["author"])}">' if article.get("author") else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title} | {outlet}</title>
<meta property="og:site_name" content="{outlet}">{author}
<meta property="article:published_time" content="{article['published']}">
</head><body>
<nav><a href="/">Home</a> · <a href="/world">World</a> · <a href="/sport">Sport</a></nav>
<article><h1>{title}</h1>
{body}
</article>
<footer>Content is available under a free licence. About · Contact · Privacy</footer>
</body></html>"""


def _rfc822(value: str) -> str:
    return format_datetime(datetime.fromisoformat(value.replace("Z", "+00:00")), usegmt=True)


def rss(items: list[dict], title: str = "Wikinews — Latest") -> str:
    """items: {"title", "link", "guid", "published", "summary"}"""
    parts = [f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>{html.escape(title)}</title><link>http://news.test/</link>
<description>Test feed</description>"""]
    for item in items:
        parts.append(f"""<item><title>{html.escape(item['title'])}</title><link>{html.escape(item['link'])}</link>
<guid isPermaLink="false">{html.escape(item['guid'])}</guid><pubDate>{_rfc822(item['published'])}</pubDate>
<description>{html.escape(item['summary'])}</description></item>""")
    parts.append("</channel></rss>")
    return "\n".join(parts)


def atom(items: list[dict], title: str = "Wikinews Atom") -> str:
    parts = [f"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>{html.escape(title)}</title><id>urn:test:atom</id>
<updated>2024-05-01T12:00:00Z</updated>"""]
    for item in items:
        parts.append(f"""<entry><title>{html.escape(item['title'])}</title><id>{html.escape(item['guid'])}</id>
<link rel="alternate" href="{html.escape(item['link'])}"/><updated>{item['published']}</updated>
<summary type="html">{html.escape(item['summary'])}</summary></entry>""")
    parts.append("</feed>")
    return "\n".join(parts)


@dataclass
class Route:
    status: int = 200
    body: bytes | Callable[[], Iterator[bytes]] = b""
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    conditional: bool = False  # answer 304 to a matching If-None-Match / If-Modified-Since
    etag: bool = True
    delay: float = 0.0  # seconds before answering
    length: int | None = None  # Content-Length to declare for a streamed body


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    status: int
    sent: int  # body bytes written (so far)


class FeedSite:
    """Start with `with FeedSite() as site:`; `site.url(path)`, `site.add(path, Route(...))`, `site.hits`."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self.host = "127.0.0.1"

    # --- content --------------------------------------------------------------------------------------------
    def add(self, path: str, route: Route) -> Route:
        self.routes[path] = route
        return route

    def add_article(self, article: dict, outlet: str = "Wikinews") -> str:
        """Serve the article's page; returns its path."""
        path = f"/articles/{slug(article)}.html"
        self.add(path, Route(body=article_html(article, outlet).encode("utf-8")))
        return path

    def item(self, article: dict, link: str | None = None, base: str | None = None) -> dict:
        """A feed item for an article whose page this site serves (added if needed)."""
        path = self.add_article(article)
        first = next((p for p in paragraphs(article) if len(p.split()) > 12), paragraphs(article)[0])
        return {"title": article["title"], "link": link or (base or self.base) + path, "guid": article["id"],
                "published": article["published"], "summary": first}

    def add_feed(self, path: str, document: str, kind: str = "rss", etag: bool = True) -> Route:
        content_type = "application/rss+xml" if kind == "rss" else "application/atom+xml"
        return self.add(path, Route(body=document.encode("utf-8"), content_type=f"{content_type}; charset=utf-8",
                                    conditional=True, etag=etag))

    # --- addresses and records --------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str, host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"

    def hits_for(self, path: str) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if urlsplit(h.path).path == path]

    # --- server -----------------------------------------------------------------------------------------------
    def __enter__(self) -> "FeedSite":
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # a body ends when the connection closes: streaming needs no length

            def log_message(self, *_args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                site._serve(self)

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        path = urlsplit(handler.path).path
        route = self.routes.get(path)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        if route is None:
            route = Route(status=404, body=b"<html><body>Not found</body></html>")
        if route.delay:
            self._stop.wait(route.delay)
        status = route.status
        body = route.body
        extra = dict(route.headers)
        if route.conditional and isinstance(body, bytes):
            etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
            if route.etag:
                extra["ETag"] = etag
            extra["Last-Modified"] = format_datetime(LAST_MODIFIED, usegmt=True)
            if _not_modified(headers, etag if route.etag else None):
                status, body = 304, b""
        hit = Hit(handler.path, headers, status, 0)
        with self._lock:  # recorded before answering, so a client that has its answer sees the hit
            self.hits.append(hit)
        try:
            handler.send_response(status)
            if status != 304:
                handler.send_header("Content-Type", route.content_type)
            for name, value in extra.items():
                handler.send_header(name, value)
            if isinstance(body, bytes):
                handler.send_header("Content-Length", str(len(body)))
            elif route.length is not None:
                handler.send_header("Content-Length", str(route.length))
            handler.end_headers()
            chunks = [body] if isinstance(body, bytes) else body()
            for chunk in chunks:
                if self._stop.is_set():
                    break
                handler.wfile.write(chunk)
                hit.sent += len(chunk)
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError):
            pass  # the client stopped reading: that is the point of some tests


def _not_modified(headers: dict[str, str], etag: str | None) -> bool:
    if etag is not None and "if-none-match" in headers:
        return etag in [t.strip() for t in headers["if-none-match"].split(",")]
    since = headers.get("if-modified-since")
    if since:
        try:
            return parsedate_to_datetime(since) >= LAST_MODIFIED
        except (TypeError, ValueError):
            return False
    return False


def endless(total: int, chunk: int = 64 * 1024) -> Callable[[], Iterator[bytes]]:
    """A body of `total` bytes of HTML-ish filler, produced as it is written (never held in memory)."""
    def produce() -> Iterator[bytes]:
        yield b"<!DOCTYPE html><html><body><p>"
        block = (b"filler " * (chunk // 7 + 1))[:chunk]
        written = 0
        while written < total:
            yield block
            written += len(block)
    return produce


def gzip_bomb(total: int) -> bytes:
    """`total` bytes of zeros, gzip-compressed to a few kilobytes."""
    return gzip.compress(b"<html><body>" + b"0" * total, compresslevel=9)


def slow(seconds: float) -> Route:
    return Route(delay=seconds, body=b"<rss version='2.0'><channel><title>late</title></channel></rss>",
                 content_type="application/rss+xml")


def wait_until(probe: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return True
        time.sleep(0.02)
    return probe()
