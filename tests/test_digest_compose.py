"""What a digest says: stories clustered from wire copies, ranked, key sentences verbatim, topics by meaning,
Telegram messages within limits — through `briefbot digest --json` as a user runs it, and in-process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bot.digest import Digest, Story, StorySource
from handlers.digest_render import digest_messages
from handlers.render import visible_length
from index.types import Speaker
from tests.botapi import check_html
from tests.conftest import DataCopy

REPO = Path(__file__).resolve().parents[1]
NOW, SINCE = "1987-03-02T00:00:00+00:00", "1987-03-01T00:00:00+00:00"
MANILA = "MANILA SAID TO OFFER DEBT BONDS TO BANKS"


def briefbot(args: list[str], data: Path | DataCopy, timeout: int = 300) -> subprocess.CompletedProcess:
    """`briefbot ARGS` in a child process, on a data directory (SQLite) or a copy with its own database."""
    copy = data if isinstance(data, DataCopy) else DataCopy(data, None)
    return subprocess.run([sys.executable, "-m", "bot.cli", *args, "--data-dir", str(copy.data_dir)],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO, env=copy.env())


@pytest.fixture
def reuters_dir(reuters_copy) -> DataCopy:
    """The one-day Reuters corpus for the CLI, on the test's database (the same one reuters_app reads)."""
    return reuters_copy


def test_digest_json_over_a_reuters_day_makes_wire_copies_one_story_with_its_sources(reuters_dir, reuters_app):
    done = briefbot(["digest", "--json", "--now", NOW, "--since", SINCE], reuters_dir)
    assert done.returncode == 0, done.stderr
    digest = json.loads(done.stdout)
    stories = digest["stories"]
    assert 5 <= len(stories) <= 8 and digest["articles"] == 38
    manila = [s for s in stories if s["headline"] == MANILA]
    assert len(manila) == 1, [s["headline"] for s in stories]
    story = manila[0]
    assert story["rank"] == 1, "carried by the most sources"
    assert story["source_count"] == 2 and len({s["article_id"] for s in story["sources"]}) == 2
    assert all(s["title"] == MANILA and s["source"] == "Reuters" for s in story["sources"])
    others = {s["article_id"] for other in stories if other is not story for s in other["sources"]}
    assert not others & {s["article_id"] for s in story["sources"]}
    assert any(sp["name"] == "Jaime Ongpin" for sp in story["speakers"]) and story["place"] == "MANILA"

    store = reuters_app.corpus.store
    for item in stories:
        assert 1 <= len(item["sentences"]) <= 2
        text = " ".join(store.article(item["article_id"]).text.split())
        assert all(" ".join(sentence.split()) in text for sentence in item["sentences"]), "verbatim"
    times = [s["published"] for s in stories[1:]]
    assert times == sorted(times, reverse=True), "single-source stories newest first"

    for message in digest["messages"]:
        assert visible_length(message["html"]) <= 4096
        check_html(message["html"])
        data = [b["callback_data"] for row in message["buttons"] for b in row if "callback_data" in b]
        assert all(len(d.encode()) <= 64 for d in data)
    buttons = [b for m in digest["messages"] for row in m["buttons"] for b in row]
    assert {"text": "1. Ask about this", "callback_data": f"f:{story['article_id']}"} in buttons


def test_topics_keep_the_stories_close_to_them_in_meaning(reuters_app):
    now, since = datetime.fromisoformat(NOW), datetime.fromisoformat(SINCE)
    coffee = reuters_app.digests.preview("coffee", now=now, since=since)
    assert coffee.stories and all("COFFEE" in s.headline for s in coffee.stories)
    oil = reuters_app.digests.preview("oil prices", now=now, since=since)
    assert any("OPEC" in s.headline for s in oil.stories)
    assert not any("COPRA" in s.headline or "QANTAS" in s.headline for s in oil.stories)
    nothing = reuters_app.digests.preview("ice hockey results", now=now, since=since)
    assert nothing.empty and nothing.notice == "Nothing new on your topics (ice hockey results) since your last digest."
    empty = reuters_app.digests.preview(now=datetime(1999, 1, 1, tzinfo=timezone.utc))
    assert empty.empty and digest_messages(empty)[0].html == "Nothing new since your last digest."


def test_a_fan_out_composes_once_per_topic_set_not_per_subscriber(reuters_app, monkeypatch):
    composer = reuters_app.digests.composer
    calls = {"pool": 0, "embed": 0, "compose": 0}
    for name in calls:
        original = getattr(composer, {"pool": "pool", "embed": "embed_topics", "compose": "compose"}[name])

        def counted(*args, _original=original, _name=name, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(composer, {"pool": "pool", "embed": "embed_topics", "compose": "compose"}[name], counted)
    sets = [[], ["coffee"], ["oil prices", "opec"], ["Coffee"], ["banks"]]  # "Coffee" is "coffee"
    subscribers = [(chat, sets[chat % len(sets)]) for chat in range(1000)]
    digests = reuters_app.digests.group_and_compose(subscribers, datetime.fromisoformat(NOW),
                                                    datetime.fromisoformat(SINCE))
    assert calls == {"pool": 1, "embed": 1, "compose": 4}
    assert digests[1] is digests[3] and digests[0] is digests[5]


def _story(rank: int, words: int) -> Story:
    sentence = ("Officials & <analysts> said the talks would " + "continue " * words).strip() + "."
    return Story(rank=rank, headline=f"STORY {rank} <HEADLINE>", article_id=rank, sentences=[sentence, sentence],
                 speakers=[Speaker("Jane Roe", "a <trader>")], source="Reuters", place="LONDON",
                 published=datetime(1987, 3, 1, 12, tzinfo=timezone.utc), url=None,
                 sources=[StorySource(rank, "T", "Reuters", "LONDON, March 1 -", None, "https://example.org/a?x=1&y=2"),
                          StorySource(100 + rank, "T", "AP", None, None, "javascript:alert(1)")],
                 score=1.0)


def test_a_long_digest_is_split_between_stories_only_within_telegram_limits():
    digest = Digest(datetime(1987, 3, 1, tzinfo=timezone.utc), datetime(1987, 3, 2, tzinfo=timezone.utc),
                    ["talks & <more>"], [_story(rank, 150) for rank in range(1, 9)], articles=20)
    messages = digest_messages(digest, "Europe/Berlin")
    assert len(messages) > 1
    seen = []
    for message in messages:
        assert visible_length(message.html) <= 4096
        check_html(message.html)
        ranks = [int(b.callback_data[2:]) for row in message.buttons.inline_keyboard for b in row
                 if b.callback_data and b.callback_data.startswith("f:")]
        for rank in ranks:
            assert f"STORY {rank} &lt;HEADLINE&gt;" in message.html, "a story's button sits under its own message"
            assert message.html.count("continue") >= 300 * (len(ranks) > 0)
        seen += ranks
    assert seen == list(range(1, 9))
    assert "javascript" not in "".join(m.html for m in messages)
    assert "Topics: talks &amp; &lt;more&gt;" in messages[0].html


def test_subscriptions_from_the_terminal_and_a_subscribers_preview(reuters_dir):
    bad = briefbot(["subscribe", "--chat-id", "5", "--time", "25:99"], reuters_dir)
    assert bad.returncode == 2 and "isn't a time of day" in bad.stderr and "Traceback" not in bad.stderr
    typo = briefbot(["subscribe", "--chat-id", "5", "--timezone", "Europe/Berlinn"], reuters_dir)
    assert typo.returncode == 2 and "did you mean: Europe/Berlin" in typo.stderr
    done = briefbot(["subscribe", "--chat-id", "5", "--time", "07:30", "--timezone", "Europe/Berlin", "--json"],
                    reuters_dir)
    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    assert view["subscribed"] and view["time"] == "07:30" and view["timezone"] == "Europe/Berlin"
    listed = briefbot(["subscriptions"], reuters_dir)
    assert "chat 5: subscribed; daily at 07:30 Europe/Berlin" in listed.stdout
    preview = briefbot(["digest", "--chat-id", "5", "--json", "--now", NOW], reuters_dir)
    data = json.loads(preview.stdout)
    assert data["timezone"] == "Europe/Berlin" and data["stories"]
    assert "since Sun 1 Mar, 01:00" in data["messages"][0]["html"], "times in the subscriber's zone"
    topics = briefbot(["subscribe", "--chat-id", "5", "--topics", "coffee, oil", "--remove-topics", "1", "--json"],
                      reuters_dir)
    assert json.loads(topics.stdout)["topics"] == ["oil"]
    story = data["stories"][0]
    focus = briefbot(["ask-about", "--chat-id", "5", str(story["article_id"]), "--json"], reuters_dir)
    assert focus.returncode == 0 and story["headline"] in json.loads(focus.stdout)["message"]


def test_rouge_and_benchmark_commands_report_figures(seeded_dir, reuters_dir, tmp_path, shared_data):
    gum_dir = tmp_path / "gum"
    shutil.copytree(seeded_dir, gum_dir)
    done = briefbot(["eval-digest", str(shared_data / "gum-news" / "articles.jsonl"), "--json"], gum_dir)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["articles"] == 24
    ours, lead = report["systems"]["key sentences (digest)"], report["systems"]["lead, same count (baseline)"]
    assert 0.2 < ours["rouge1"] < 0.8 and 0.2 < lead["rouge1"] < 0.8

    bench = briefbot(["bench-digest", "--subscribers", "500", "--topic-sets", "5", "--baseline-sample", "3",
                      "--now", NOW, "--json"], reuters_dir)
    assert bench.returncode == 0, bench.stderr
    result = json.loads(bench.stdout)
    assert result["subscribers"] == 500 and result["editions"] == 5 and result["speedup"] > 1
