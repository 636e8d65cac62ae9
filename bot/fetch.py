"""Fetching feeds and pages from the web without letting the web reach where it shouldn't.

Anyone who may add a feed chooses URLs the bot will request, so every request is treated as hostile:

- the host is resolved first and every address it resolves to must be public (not private, loopback,
  link-local, reserved, multicast...), unless BRIEFBOT_ALLOW_PRIVATE_ADDRESSES is set; the connection then
  goes to the address that was checked (the URL's host is kept in the Host header and for TLS), so a DNS
  answer that changes between the check and the connection (rebinding) cannot slip a private address in;
- redirects are followed by hand, at most BRIEFBOT_FETCH_MAX_REDIRECTS, each hop checked the same way, and a
  loop is named as one;
- one deadline covers the whole fetch (redirects and body), and each connect and read has the same timeout;
- the body is streamed and refused once it passes BRIEFBOT_FETCH_MAX_BYTES (after decompression, so a gzip
  bomb is cut off too); a declared Content-Length over the cap is refused before reading anything;
- the content type must fit what is expected (a feed, or an HTML page) before the body is read;
- connections are never reused, so a TLS connection verified for one host never carries another's request.

Failures are `FetchError`s whose message says plainly what happened, for logs and for users.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urljoin, urlsplit

import httpx

from bot.settings import Settings

log = logging.getLogger(__name__)

FEED = "feed"
PAGE = "page"
REDIRECTS = frozenset({301, 302, 303, 307, 308})

# Content types refused before reading a byte of the body.
_FEED_TYPES = ("xml", "rss", "atom", "rdf", "json", "text/plain", "application/octet-stream")
_PAGE_TYPES = ("text/html", "application/xhtml+xml")

Resolver = Callable[[str, int], list[str]]
AddressCheck = Callable[[str, str], "str | None"]  # (host, address) -> why not, or None


class FetchError(Exception):
    """A fetch that did not give usable content. `kind` is for code, the message for people."""

    def __init__(self, kind: str, url: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.url = url
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass
class FetchPolicy:
    """The limits every fetch obeys (from settings; tests shrink them)."""

    timeout: float = 15.0
    max_bytes: int = 5_000_000
    max_redirects: int = 5
    allow_private: bool = False
    user_agent: str = "Briefbot/0.1 (news briefing bot; feed reader)"

    @classmethod
    def from_settings(cls, settings: Settings) -> "FetchPolicy":
        return cls(timeout=settings.fetch_timeout, max_bytes=settings.fetch_max_bytes,
                   max_redirects=settings.fetch_max_redirects, allow_private=settings.allow_private_addresses,
                   user_agent=settings.user_agent)


@dataclass
class FetchResult:
    """What a fetch brought back. `not_modified` means a conditional request got 304 and `content` is empty."""

    url: str  # after redirects
    status: int
    content: bytes = b""
    content_type: str = ""  # media type only, lower case
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    redirects: list[str] = field(default_factory=list)  # the URLs that redirected, in order

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def etag(self) -> str | None:
        return self.headers.get("etag")

    @property
    def last_modified(self) -> str | None:
        return self.headers.get("last-modified")


def address_problem(address: str) -> str | None:
    """Why the bot must not connect to this IP address ("a loopback address"), or None when it is public."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:  # ::ffff:127.0.0.1 is 127.0.0.1
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_reserved:
        return "a reserved address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "not a public address"
    return None


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host:port (IPv4 and IPv6), in its order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        if sockaddr[0] not in seen:
            seen.append(sockaddr[0])
    return seen


def _media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def _size(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB" if n >= 1_000_000 else f"{n:,} bytes"


class Fetcher:
    """Safe GETs for feeds and pages. Synchronous: the bot runs it in a worker thread, the CLI directly."""

    def __init__(self, policy: FetchPolicy, resolver: Resolver | None = None,
                 address_check: AddressCheck | None = None, clock: Callable[[], float] = time.monotonic,
                 verify: ssl.SSLContext | str | bool = True):
        """`resolver` and `address_check` replace DNS and the public-address rule (tests use them to let a
        made-up host name on the loopback test server count as the public web); `verify` is httpx's (True:
        certifi's CAs; a CA bundle path or an SSLContext for a private CA)."""
        self.policy = policy
        self.verify = verify
        self.resolve = resolver or system_resolver
        self.address_check = address_check or (lambda _host, address: address_problem(address))
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> "Fetcher":
        return cls(FetchPolicy.from_settings(settings))

    # --- the public call ---------------------------------------------------------------------------------------
    def fetch(self, url: str, kind: str = PAGE, etag: str | None = None,
              last_modified: str | None = None) -> FetchResult:
        """GET `url` as a feed or a page, with conditional headers when given; raises FetchError."""
        policy = self.policy
        deadline = self._clock() + policy.timeout
        seen: list[str] = []
        current = url
        timeout = httpx.Timeout(policy.timeout)
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(timeout=timeout, limits=limits, follow_redirects=False, trust_env=False,
                          verify=self.verify) as client:
            while True:
                if current in seen:
                    chain = " → ".join(seen + [current])
                    raise FetchError("redirects", url, f"redirect loop: {chain}")
                seen.append(current)
                target, host_header, sni = self._checked_target(current, url, hops=len(seen) - 1)
                headers = {"Host": host_header, "User-Agent": policy.user_agent, "Accept": _accept(kind),
                           "Accept-Encoding": "gzip, deflate"}
                if etag:  # on every hop: the validators belong to wherever the feed now lives
                    headers["If-None-Match"] = etag
                if last_modified:
                    headers["If-Modified-Since"] = last_modified
                request = client.build_request("GET", target, headers=headers,
                                               extensions={"sni_hostname": sni} if sni else {})
                response = self._send(client, request, url, current, deadline)
                try:
                    if response.status_code in REDIRECTS:
                        current = self._next_hop(response, url, current, len(seen))
                        continue
                    return self._finish(response, url, current, kind, deadline, seen[:-1])
                finally:
                    response.close()

    # --- steps ---------------------------------------------------------------------------------------------------
    def _checked_target(self, current: str, original: str, hops: int) -> tuple[str, str, str | None]:
        """The URL to connect to (the checked address in place of the host), the Host header, the TLS name."""
        via = f" (after {hops} redirect{'s' if hops != 1 else ''})" if hops else ""
        try:
            parts = httpx.URL(current)
        except (httpx.InvalidURL, ValueError) as exc:
            raise FetchError("bad-url", original, f"not a valid URL{via}: {current!r} ({exc})") from None
        if parts.scheme not in ("http", "https"):
            raise FetchError("bad-url", original, f"only http and https URLs are fetched{via}, not {current!r}")
        if not parts.host:
            raise FetchError("bad-url", original, f"URL has no host{via}: {current!r}")
        if parts.userinfo:
            raise FetchError("bad-url", original, f"URLs with a user name or password are not fetched{via}")
        host = parts.host
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = [host] if _is_ip(host) else self.resolve(host, port)
        except (OSError, UnicodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise FetchError("dns", original, f"host {host} could not be resolved{via} ({reason})") from None
        if not addresses:
            raise FetchError("dns", original, f"host {host} has no address{via}")
        if not self.policy.allow_private:
            for address in addresses:
                problem = self.address_check(host, address)
                if problem:
                    what = f"{host} is {problem}" if host == address else f"{host} resolves to {address}, {problem}"
                    raise FetchError("blocked-address", original, f"refused{via}: {what} "
                                     "(BRIEFBOT_ALLOW_PRIVATE_ADDRESSES is off)")
        pinned = addresses[0]
        default_port = (parts.scheme == "https" and port == 443) or (parts.scheme == "http" and port == 80)
        host_header = (f"[{host}]" if ":" in host else host) + ("" if default_port else f":{port}")
        target = parts.copy_with(host=pinned.split("%", 1)[0], port=port if not default_port else None)
        return str(target), host_header, (host if parts.scheme == "https" and not _is_ip(host) else None)

    def _send(self, client: httpx.Client, request: httpx.Request, original: str, current: str,
              deadline: float) -> httpx.Response:
        if self._clock() >= deadline:
            raise FetchError("timeout", original, f"timed out after {self.policy.timeout:g} s (redirects included)")
        try:
            return client.send(request, stream=True)
        except httpx.TimeoutException:
            raise FetchError("timeout", original, f"timed out after {self.policy.timeout:g} s waiting for "
                             f"{urlsplit(current).netloc}") from None
        except httpx.TooManyRedirects:  # pragma: no cover - redirects are followed by hand
            raise FetchError("redirects", original, "too many redirects") from None
        except httpx.HTTPError as exc:
            raise FetchError("network", original, f"could not connect to {urlsplit(current).netloc} "
                             f"({_network_reason(exc)})") from None

    def _next_hop(self, response: httpx.Response, original: str, current: str, hops: int) -> str:
        location = response.headers.get("location")
        if not location:
            raise FetchError("redirects", original, f"HTTP {response.status_code} redirect without a Location")
        if hops > self.policy.max_redirects:
            raise FetchError("redirects", original, f"more than {self.policy.max_redirects} redirects "
                             f"(last one to {urljoin(current, location)})")
        return urljoin(current, location.strip())

    def _finish(self, response: httpx.Response, original: str, current: str, kind: str, deadline: float,
                redirects: list[str]) -> FetchResult:
        headers = {k.lower(): v for k, v in response.headers.items()}
        status = response.status_code
        if status == 304:
            return FetchResult(current, 304, headers=headers, redirects=redirects)
        if status not in (200, 203):
            phrase = response.reason_phrase or ""
            raise FetchError("http-status", original, f"HTTP {status} {phrase}".rstrip())
        media = _media_type(headers.get("content-type"))
        self._check_type(media, kind, original)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.policy.max_bytes:
            raise FetchError("too-large", original, f"larger than the {_size(self.policy.max_bytes)} limit "
                             f"(Content-Length {_size(int(declared))}); not downloaded")
        content = self._read_capped(response, original, deadline)
        if kind == PAGE and not media and not _looks_like_html(content):
            raise FetchError("content-type", original, "not an HTML page (no content type, and it doesn't look like HTML)")
        if kind == FEED and media in _PAGE_TYPES and not _looks_like_feed(content):
            raise FetchError("content-type", original, f"an HTML page, not a feed (content type {media})")
        return FetchResult(current, status, content, media, headers, redirects)

    def _check_type(self, media: str, kind: str, original: str) -> None:
        if not media:
            return  # judged from the first bytes once read
        if kind == PAGE and media not in _PAGE_TYPES:
            raise FetchError("content-type", original, f"not an HTML page (content type {media})")
        if kind == FEED and media not in _PAGE_TYPES and not any(t in media for t in _FEED_TYPES):
            raise FetchError("content-type", original, f"not a feed (content type {media})")

    def _read_capped(self, response: httpx.Response, original: str, deadline: float) -> bytes:
        cap = self.policy.max_bytes
        chunks: list[bytes] = []
        total = 0
        try:
            for chunk in response.iter_bytes():  # as it arrives, so the deadline is seen
                total += len(chunk)
                if total > cap:
                    raise FetchError("too-large", original, f"larger than the {_size(cap)} limit; stopped reading "
                                     f"after {_size(total)}")
                if self._clock() > deadline:
                    raise FetchError("timeout", original, f"timed out after {self.policy.timeout:g} s while "
                                     f"downloading ({_size(total)} read)")
                chunks.append(chunk)
        except httpx.TimeoutException:
            raise FetchError("timeout", original, f"timed out after {self.policy.timeout:g} s while downloading "
                             f"({_size(total)} read)") from None
        except httpx.DecodingError as exc:
            raise FetchError("network", original, f"the response could not be decoded ({exc})") from None
        except httpx.HTTPError as exc:
            raise FetchError("network", original, f"the connection broke while downloading "
                             f"({_network_reason(exc)})") from None
        return b"".join(chunks)


def _accept(kind: str) -> str:
    if kind == FEED:
        return "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.1"
    return "text/html, application/xhtml+xml;q=0.9, */*;q=0.1"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _network_reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if "[Errno" in text:
        text = text.split("]", 1)[-1].strip() or text
    return text[:200]


def _looks_like_html(content: bytes) -> bool:
    head = content[:1024].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html")) or b"<html" in head or b"<body" in head


def _looks_like_feed(content: bytes) -> bool:
    head = content[:1024].lstrip().lower()
    return head.startswith(b"<?xml") or any(tag in head for tag in (b"<rss", b"<feed", b"<rdf:rdf"))

