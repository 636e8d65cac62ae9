"""Safe fetching against a local HTTP server: limits, redirects, content types and the public-address rule.

No model, no database: each test is a few requests to 127.0.0.1 (`BRIEFBOT_ALLOW_PRIVATE_ADDRESSES` is on unless
the test is about it being off).
"""

from __future__ import annotations

import time

import pytest

from bot.fetch import FEED, PAGE, FetchError, Fetcher, FetchPolicy, address_problem
from index.pages import normalise_url
from tests.feedsite import FeedSite, Route, endless, gzip_bomb, slow

UA = "Briefbot-test/1 (+https://example.invalid/briefbot)"


@pytest.fixture
def site():
    with FeedSite() as running:
        running.add("/page.html", Route(body=b"<!DOCTYPE html><html><body><p>Hello.</p></body></html>"))
        yield running


def fetcher(allow_private: bool = True, **limits) -> Fetcher:
    policy = FetchPolicy(timeout=limits.pop("timeout", 2.0), max_bytes=limits.pop("max_bytes", 1_000_000),
                         max_redirects=limits.pop("max_redirects", 3), allow_private=allow_private, user_agent=UA)
    return Fetcher(policy, **limits)


def failure(call) -> FetchError:
    with pytest.raises(FetchError) as caught:
        call()
    return caught.value


# --- the public-address rule ------------------------------------------------------------------------------------
@pytest.mark.parametrize("address, problem", [
    ("127.0.0.1", "loopback"), ("10.1.2.3", "private"), ("192.168.0.10", "private"), ("172.16.5.4", "private"),
    ("169.254.169.254", "link-local"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"), ("fe80::1", "link-local"),
    ("fc00::1", "private"), ("0.0.0.0", "unspecified"), ("224.0.0.1", "multicast"), ("100.64.0.1", "not a public"),
    ("240.0.0.1", "reserved"), ("8.8.8.8", None), ("2606:4700:4700::1111", None),
])
def test_address_rule(address, problem):
    found = address_problem(address)
    assert (found is None) if problem is None else (problem in found), found


def test_loopback_is_refused_before_connecting_when_private_addresses_are_off(site):
    error = failure(lambda: fetcher(allow_private=False).fetch(site.url("/page.html")))
    assert error.kind == "blocked-address"
    assert "127.0.0.1 is a loopback address" in str(error) and "BRIEFBOT_ALLOW_PRIVATE_ADDRESSES" in str(error)
    assert not site.hits, "no request reached the server"


def test_a_name_is_checked_after_resolution(site):
    resolved = []

    def resolver(host, port):
        resolved.append(host)
        return ["127.0.0.1"]

    error = failure(lambda: fetcher(allow_private=False, resolver=resolver).fetch(site.url("/page.html", "news.test")))
    assert "news.test resolves to 127.0.0.1, a loopback address" in str(error)
    assert resolved == ["news.test"] and not site.hits


def test_every_address_a_name_resolves_to_must_be_public(site):
    error = failure(lambda: fetcher(allow_private=False, resolver=lambda h, p: ["8.8.8.8", "10.0.0.7"]).fetch(
        "http://mixed.test/page.html"))
    assert "10.0.0.7, a private address" in str(error)


def test_the_connection_goes_to_the_checked_address_with_the_host_name_kept(site):
    """The address is resolved once and connected to directly, so DNS can't change its answer in between."""
    calls = []

    def resolver(host, port):
        calls.append((host, port))
        return ["127.0.0.1"]

    result = fetcher(resolver=resolver).fetch(site.url("/page.html", "news.test"))
    assert result.status == 200 and b"Hello" in result.content
    (hit,) = site.hits
    assert hit.headers["host"] == f"news.test:{site.port}"
    assert hit.headers["user-agent"] == UA
    assert calls == [("news.test", site.port)]


def test_a_redirect_to_a_private_address_is_checked_and_refused(site):
    """news.test counts as the public web here; its redirect to 127.0.0.1 must still be refused."""
    site.add("/out", Route(status=302, headers={"Location": site.url("/page.html")}))

    def public_news_test(host, address):
        return None if host == "news.test" else address_problem(address)

    client = fetcher(allow_private=False, resolver=lambda h, p: ["127.0.0.1"], address_check=public_news_test)
    error = failure(lambda: client.fetch(site.url("/out", "news.test")))
    assert error.kind == "blocked-address"
    assert "after 1 redirect" in str(error) and "127.0.0.1 is a loopback address" in str(error)
    assert [h.path for h in site.hits] == ["/out"], "the private target was never requested"


# --- redirects ----------------------------------------------------------------------------------------------------
def test_redirects_are_followed_and_reported(site):
    site.add("/a", Route(status=301, headers={"Location": "/b"}))
    site.add("/b", Route(status=307, headers={"Location": site.url("/page.html")}))
    result = fetcher().fetch(site.url("/a"))
    assert result.url == site.url("/page.html") and result.redirects == [site.url("/a"), site.url("/b")]


def test_a_redirect_loop_is_named_as_one(site):
    site.add("/loop1", Route(status=302, headers={"Location": "/loop2"}))
    site.add("/loop2", Route(status=302, headers={"Location": "/loop1"}))
    error = failure(lambda: fetcher().fetch(site.url("/loop1")))
    assert error.kind == "redirects" and "redirect loop" in str(error) and "/loop2" in str(error)
    assert len(site.hits) == 2


def test_too_many_redirects(site):
    for n in range(10):
        site.add(f"/hop{n}", Route(status=302, headers={"Location": f"/hop{n + 1}"}))
    error = failure(lambda: fetcher(max_redirects=3).fetch(site.url("/hop0")))
    assert "more than 3 redirects" in str(error) and len(site.hits) == 4


def test_redirect_to_another_scheme_is_refused(site):
    site.add("/ftp", Route(status=302, headers={"Location": "ftp://example.com/file"}))
    error = failure(lambda: fetcher().fetch(site.url("/ftp")))
    assert error.kind == "bad-url" and "only http and https" in str(error)


# --- statuses, time, size, type ---------------------------------------------------------------------------------
def test_http_errors_say_the_status(site):
    site.add("/gone", Route(status=500, body=b"oops"))
    assert str(failure(lambda: fetcher().fetch(site.url("/missing")))) == "HTTP 404 Not Found"
    assert str(failure(lambda: fetcher().fetch(site.url("/gone")))) == "HTTP 500 Internal Server Error"


def test_a_slow_server_times_out(site):
    site.add("/slow", slow(5))
    started = time.monotonic()
    error = failure(lambda: fetcher(timeout=0.5).fetch(site.url("/slow"), kind=FEED))
    assert error.kind == "timeout" and "timed out after 0.5 s" in str(error)
    assert time.monotonic() - started < 3, "well before the server's 5 s"


def test_a_trickling_body_hits_the_overall_deadline(site):
    def trickle():
        yield b"<html><body>"
        for _ in range(50):
            time.sleep(0.1)
            yield b"x" * 10

    site.add("/trickle", Route(body=trickle))
    started = time.monotonic()
    error = failure(lambda: fetcher(timeout=0.6).fetch(site.url("/trickle")))
    assert error.kind == "timeout" and "while downloading" in str(error)
    assert time.monotonic() - started < 3, "well before the 5 s the body takes"


def test_a_50_mb_page_is_cut_at_the_cap_without_reading_it_all(site):
    site.add("/huge.html", Route(body=endless(50_000_000)))
    started = time.monotonic()
    error = failure(lambda: fetcher(max_bytes=1_000_000).fetch(site.url("/huge.html")))
    assert error.kind == "too-large" and "larger than the 1.0 MB limit; stopped reading" in str(error)
    assert time.monotonic() - started < 5
    time.sleep(0.3)  # let the server notice the closed connection
    (hit,) = site.hits
    assert hit.sent < 10_000_000, f"the server wrote {hit.sent:,} bytes"


def test_a_declared_50_mb_page_is_not_downloaded_at_all(site):
    site.add("/declared.html", Route(body=endless(50_000_000), length=50_000_000))
    error = failure(lambda: fetcher(max_bytes=1_000_000).fetch(site.url("/declared.html")))
    assert "Content-Length 50.0 MB" in str(error) and "not downloaded" in str(error)
    time.sleep(0.3)
    assert site.hits[0].sent < 10_000_000


def test_a_gzip_bomb_is_cut_at_the_cap_after_decompression(site):
    site.add("/bomb.html", Route(body=gzip_bomb(20_000_000), headers={"Content-Encoding": "gzip"}))
    error = failure(lambda: fetcher(max_bytes=1_000_000).fetch(site.url("/bomb.html")))
    assert error.kind == "too-large"


def test_non_html_pages_and_non_feeds_are_refused_by_content_type(site):
    site.add("/photo.png", Route(body=b"\x89PNG" + b"\0" * 100, content_type="image/png"))
    site.add("/report.pdf", Route(body=b"%PDF-1.4", content_type="application/pdf"))
    site.add("/html-as-feed", Route(body=b"<!DOCTYPE html><html><body>hi</body></html>"))
    assert str(failure(lambda: fetcher().fetch(site.url("/photo.png")))) == "not an HTML page (content type image/png)"
    assert "not a feed (content type application/pdf)" in str(failure(
        lambda: fetcher().fetch(site.url("/report.pdf"), kind=FEED)))
    assert "an HTML page, not a feed" in str(failure(lambda: fetcher().fetch(site.url("/html-as-feed"), kind=FEED)))


def test_conditional_requests_get_304(site):
    site.add("/feed.xml", Route(body=b"<rss version='2.0'><channel/></rss>", content_type="application/rss+xml",
                                conditional=True))
    first = fetcher().fetch(site.url("/feed.xml"), kind=FEED)
    assert first.etag and first.last_modified
    again = fetcher().fetch(site.url("/feed.xml"), kind=FEED, etag=first.etag, last_modified=first.last_modified)
    assert again.not_modified and again.content == b""
    assert site.hits[1].headers["if-none-match"] == first.etag and site.hits[1].status == 304


@pytest.mark.parametrize("url, reason", [
    ("ftp://example.com/feed", "only http and https"), ("http://user:secret@example.com/", "user name or password"),
    ("http:///nohost", "no host"),
])
def test_bad_urls(url, reason):
    assert reason in str(failure(lambda: fetcher().fetch(url, kind=PAGE)))


# --- one spelling per story -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, expected", [
    ("HTTP://News.Example.COM:80/World/Story.html?utm_source=rss&utm_medium=feed#comments",
     "http://news.example.com/World/Story.html"),
    ("https://example.com/a?b=2&fbclid=XYZ&a=1&gclid=1", "https://example.com/a?a=1&b=2"),
    ("https://example.com:443", "https://example.com/"),
    ("https://example.com/a?id=7&mc_cid=x&_ga=2.1", "https://example.com/a?id=7"),
    ("http://example.com:8080/a?at_medium=RSS&page=2", "http://example.com:8080/a?page=2"),
])
def test_urls_are_normalised(raw, expected):
    assert normalise_url(raw) == expected


# --- TLS to the checked address ------------------------------------------------------------------------------------
@pytest.fixture
def tls_site(tmp_path):
    """An HTTPS server on 127.0.0.1 with a self-signed certificate for news.test (made with the openssl tool)."""
    import shutil
    import ssl
    import subprocess
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    if shutil.which("openssl") is None:
        pytest.skip("the openssl tool is not installed")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=news.test", "-addext", "subjectAltName=DNS:news.test"],
                   check=True, capture_output=True, timeout=60)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            body = f"<html><body><p>Served to {self.headers['Host']}.</p></body></html>".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    trust = ssl.create_default_context(cafile=str(cert))
    yield server.server_address[1], trust
    server.shutdown()
    server.server_close()


def test_tls_is_verified_for_the_host_name_while_connecting_to_the_checked_address(tls_site):
    port, trust = tls_site
    client = fetcher(resolver=lambda host, p: ["127.0.0.1"], verify=trust)
    result = client.fetch(f"https://news.test:{port}/story.html")
    assert f"Served to news.test:{port}" in result.content.decode()
    error = failure(lambda: client.fetch(f"https://other.test:{port}/story.html"))
    assert error.kind == "network" and "certificate" in str(error).lower(), str(error)
