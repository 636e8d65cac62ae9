"""`briefbot feeds ...` and `briefbot ingest URL` as a user runs them (in-process, so the loaded model is reused),
against the local news site."""

from __future__ import annotations

import json

import pytest

from bot import cli
from bot.app import Briefbot
from tests.feedsite import FeedSite, load_articles, rss


@pytest.fixture
def run(settings, encoder, monkeypatch, capsys, tmp_path):
    """`briefbot ARGS --data-dir ...` in this process: (exit code, stdout, stderr)."""
    original = Briefbot.open.__func__

    def open_with_encoder(cls, settings_, _encoder=None, *args, **kwargs):
        return original(cls, settings_, encoder, *args, **kwargs)

    monkeypatch.setattr(Briefbot, "open", classmethod(open_with_encoder))
    monkeypatch.setenv("BRIEFBOT_ALLOW_PRIVATE_ADDRESSES", "true")
    if settings.database_url:  # the PostgreSQL variant: the command reads DATABASE_URL like a user's shell
        monkeypatch.setenv("DATABASE_URL", settings.database_url)
    data_dir = str(tmp_path / "data")

    def _run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = cli.main([*args, "--data-dir", data_dir])
        out, err = capsys.readouterr()
        return code, out, err

    return _run


@pytest.fixture
def site(shared_data):
    with FeedSite() as running:
        yield running


def test_feeds_add_list_poll_export_import_remove(run, site, tmp_path):
    (worship,) = load_articles(["GUM_news_worship"])
    site.add_feed("/feed.xml", rss([site.item(worship)], title="Wikinews Latest"))

    code, out, _ = run("feeds", "add", site.url("/feed.xml") + "?utm_source=cli", "--every", "15")
    assert code == 0 and "feed #1 added" in out and "every 15 min" in out
    code, out, _ = run("feeds", "add", site.url("/feed.xml"))
    assert code == 0 and "already following feed #1" in out
    code, _, err = run("feeds", "add", "ftp://example.com/feed")
    assert code == 2 and "isn't a web address" in err
    code, _, err = run("feeds", "add", site.url("/other.xml"), "--every", "1")
    assert code == 2 and "5 to 10080 minutes" in err

    code, out, _ = run("feeds", "poll")
    assert code == 0 and "#1 Wikinews Latest: 1 new entry, 1 article(s) added" in out
    code, out, _ = run("feeds", "poll")
    assert code == 0 and "no feed is due" in out
    code, out, _ = run("feeds", "poll", "--all")
    assert code == 0 and "nothing new" in out and site.hits_for("/feed.xml")[-1].status == 304

    code, out, _ = run("feeds", "list", "--json")
    (listed,) = [json.loads(line) for line in out.splitlines()]
    assert listed["url"] == site.url("/feed.xml") and listed["articles"] == 1 and listed["status"] == "ok"
    assert listed["every_minutes"] == 15 and listed["title"] == "Wikinews Latest"

    code, opml, _ = run("feeds", "export")
    assert code == 0 and f'xmlUrl="{site.url("/feed.xml")}"' in opml
    code, out, _ = run("feeds", "remove", "1")
    assert code == 0 and "feed #1 removed" in out and "articles stay" in out
    code, out, err = run("feeds", "remove", "1")
    assert code == 2 and "no feed '1'" in err
    path = tmp_path / "feeds.opml"
    path.write_text(opml)
    code, out, _ = run("feeds", "import", str(path))
    assert code == 0 and "1 feed(s) added, 0 already followed, 0 skipped" in out
    code, out, _ = run("feeds", "list")
    assert "Wikinews Latest" in out and site.url("/feed.xml") in out
    code, out, _ = run("status", "--json")
    assert json.loads(out)["articles"] == 1


def test_ingest_accepts_web_pages_beside_files(run, site, tmp_path, monkeypatch):
    (stampede,) = load_articles(["GUM_news_stampede"])
    path = site.add_article(stampede)
    note = tmp_path / "note.txt"
    note.write_text("A local note\n\nThe council met on Tuesday and approved the new library budget.\n")

    code, out, err = run("ingest", "-q", site.url(path) + "?utm_campaign=x&fbclid=y", str(note))
    assert code == 0, err
    assert "1 file(s), 1 page(s): 2 new article(s)" in out
    code, out, _ = run("ingest", "-q", site.url(path) + "#top")
    assert code == 0 and "1 page(s): 0 new article(s), 0 updated, 1 unchanged" in out

    code, out, err = run("ingest", site.url("/articles/nowhere.html"))
    assert code == 1 and f"skipped {site.url('/articles/nowhere.html')}: HTTP 404 Not Found" in err

    monkeypatch.setenv("BRIEFBOT_ALLOW_PRIVATE_ADDRESSES", "false")
    code, out, err = run("ingest", site.url(path))
    assert code == 1 and "refused: 127.0.0.1 is a loopback address" in err
    code, out, _ = run("ask", "--json", "how many people died in the Hajj stampede?")
    assert json.loads(out)["results"][0]["title"] == "Hundreds dead in Hajj stampede"
