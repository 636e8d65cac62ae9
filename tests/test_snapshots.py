"""Index snapshots: one worker publishes, serving processes swap new versions in while answering."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bot.app import Briefbot
from bot.corpus import ReadOnlyCorpus
from bot.settings import Settings
from bot.snapshots import SNAPSHOT_KEY, read_published
from bot.worker import IngestWorker
from tests.conftest import DataCopy

REPO = Path(__file__).resolve().parents[1]
OLD_QUESTION = "why did Iran strike Pakistan?"
NEW_TITLE = "Zephyria volcano erupts"
NEW_QUESTION = "what did the Zephyria volcano observatory say about the eruption?"


def new_articles(n: int = 0) -> list[dict]:
    return [{
        "id": f"zephyria-{n}", "title": NEW_TITLE if n == 0 else f"Zephyria ash cloud, day {n}",
        "text": (f"The Zephyria volcano erupted before dawn, the island's volcano observatory said. "
                 f"\"Ash reached eleven kilometres and lava is flowing toward the harbour,\" said Mira Olsen, "
                 f"the observatory's chief scientist. Flights were cancelled for day {n + 1}."),
        "source": "Island Wire", "published": f"2026-11-2{n}T06:00:00Z", "url": f"https://example.org/zephyria-{n}",
    }]


def drop(folder: Path, name: str, articles: list[dict]) -> Path:
    """Write a file the way a producer should: under a hidden name, renamed when complete."""
    temp = folder / f".{name}.part"
    temp.write_text("".join(json.dumps(a) + "\n" for a in articles), encoding="utf-8")
    return temp.rename(folder / name)


def settings_for(copy: DataCopy, **extra) -> Settings:
    return copy.settings(**{"BRIEFBOT_SNAPSHOT_POLL_SECONDS": 0.1, **extra})


@pytest.fixture
def copy(seeded_copy: DataCopy, tmp_path, monkeypatch) -> DataCopy:
    """The seeded corpus for this test, on SQLite and on PostgreSQL; DATABASE_URL set for in-process CLI calls."""
    for name in ("DATABASE_URL", "TELEGRAM_BOT_TOKEN", "BRIEFBOT_INDEX_SNAPSHOTS"):
        monkeypatch.delenv(name, raising=False)
    if seeded_copy.database_url:
        monkeypatch.setenv("DATABASE_URL", seeded_copy.database_url)
    monkeypatch.chdir(tmp_path)
    return seeded_copy


@pytest.fixture
def opened(encoder):
    """Open applications and close them (their snapshot watchers) after the test."""
    apps: list[Briefbot] = []

    def _open(settings: Settings, **kwargs) -> Briefbot:
        app = Briefbot.open(settings, encoder=kwargs.pop("encoder", encoder), **kwargs)
        apps.append(app)
        return app

    yield _open
    for app in apps:
        app.close()
        app.corpus.store.engine.dispose()


def titles(answer) -> list[str]:
    return [r.title for r in answer.results]


def test_a_snapshot_published_while_questions_are_answered_is_swapped_in_without_errors(copy, tmp_path, opened):
    """Done when: a worker publishes while two threads ask continuously; nothing fails, the new article appears."""
    writer = opened(settings_for(copy), writer=True, publish=True)
    first = read_published(writer.corpus.store)
    follower = opened(settings_for(copy))
    assert (follower.corpus.role, follower.corpus.snapshot.version) == ("follower", first.version)
    assert NEW_TITLE not in titles(follower.service.ask(NEW_QUESTION))

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    worker = IngestWorker(writer, [inbox], interval=0.1, poll_feeds=False, settle_seconds=0)
    stop_worker, stop_asking = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    seen: list[tuple[float, int | None, str, bool, list[str]]] = []  # time, version, question, answered, titles

    def ask_continuously(questions: list[str]) -> None:
        while not stop_asking.is_set():
            for question in questions:
                try:
                    with follower.corpus.reading() as snapshot:
                        answer = follower.service.ask(question)
                    seen.append((time.monotonic(), snapshot.version, question, answer.answered, titles(answer)))
                except BaseException as exc:  # noqa: BLE001 - every failure is the test's business
                    errors.append(exc)

    askers = [threading.Thread(target=ask_continuously, args=([OLD_QUESTION, NEW_QUESTION],)),
              threading.Thread(target=ask_continuously, args=([NEW_QUESTION, "how many people were killed in Kerman?"],))]
    worker_thread = threading.Thread(target=worker.run, args=(stop_worker,))
    started = time.monotonic()
    for thread in [*askers, worker_thread]:
        thread.start()
    try:
        time.sleep(0.5)
        drop(inbox, "zephyria-0.jsonl", new_articles(0))
        assert wait_for(lambda: any(NEW_TITLE in t for *_, t in seen), timeout=60), "the new article never appeared"
        drop(inbox, "zephyria-1.jsonl", new_articles(1))  # a second swap under load
        latest = lambda: read_published(writer.corpus.store).version  # noqa: E731
        assert wait_for(lambda: latest() >= first.version + 2, timeout=60)
        assert wait_for(lambda: any(v == latest() for _, v, *_ in seen[-20:]), timeout=30)
    finally:
        stop_asking.set()
        stop_worker.set()
        for thread in [*askers, worker_thread]:
            thread.join(60)
    assert not errors, errors[:3]
    versions = [v for _, v, *_ in seen]
    assert {first.version, first.version + 1, first.version + 2} <= set(versions)
    old_answers = [(v, answered, t) for _, v, q, answered, t in seen if q == OLD_QUESTION]
    assert all(answered and "Iran-Pakistan flare-up rooted in borderlands" in t for _, answered, t in old_answers), \
        "the old articles were answered the same before, during and after the swaps"
    new_on_old = [t for _, v, q, _, t in seen if q == NEW_QUESTION and v == first.version]
    assert new_on_old and not any("Zephyria" in title for t in new_on_old for title in t), \
        "questions on the first snapshot never saw the new articles"
    swapped = [t for _, v, q, _, t in seen if q == NEW_QUESTION and v is not None and v > first.version]
    assert swapped and all(any("Zephyria" in title for title in t) for t in swapped), \
        "once swapped in, the new articles answer every time"
    print(f"\n{len(seen)} questions answered in {time.monotonic() - started:.1f} s across snapshots "
          f"{sorted(set(versions))}, no errors")


def wait_for(condition, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


class GatedEncoder:
    """The real encoder, except that the first question waits at a gate, as if it were slow."""

    def __init__(self, encoder, corpus_ref: list):
        self.encoder, self.corpus_ref = encoder, corpus_ref
        self.dim, self.name = encoder.dim, encoder.name
        self.waiting, self.release = threading.Event(), threading.Event()
        self.pinned_after_release: list[int | None] = []

    def encode(self, texts):
        if not self.release.is_set() and self.corpus_ref:
            self.waiting.set()
            self.release.wait(30)
            self.pinned_after_release.append(self.corpus_ref[0].snapshot.version)
        return self.encoder.encode(texts)


def test_a_question_in_flight_finishes_on_the_snapshot_it_started_on(copy, tmp_path, encoder, opened):
    writer = opened(settings_for(copy), writer=True, publish=True)
    old_version = writer.corpus.snapshot.version
    ref: list = []
    gated = GatedEncoder(encoder, ref)
    follower = opened(settings_for(copy, BRIEFBOT_SNAPSHOT_POLL_SECONDS=3600), encoder=gated)
    ref.append(follower.corpus)
    result: dict = {}

    def ask() -> None:
        try:
            result["answer"] = follower.service.ask(NEW_QUESTION)
        except BaseException as exc:  # noqa: BLE001
            result["error"] = exc

    thread = threading.Thread(target=ask)
    thread.start()
    assert gated.waiting.wait(30)
    (tmp_path / "new.jsonl").write_text(json.dumps(new_articles(0)[0]) + "\n", encoding="utf-8")
    writer.corpus.ingest_paths([tmp_path / "new.jsonl"])  # publishes
    assert follower.corpus.refresh_snapshot() is True
    assert follower.corpus.snapshot.version == old_version + 1
    gated.release.set()
    thread.join(30)
    assert "error" not in result, result.get("error")
    assert gated.pinned_after_release == [old_version], "the question kept its snapshot across the swap"
    assert NEW_TITLE not in titles(result["answer"])
    assert NEW_TITLE in titles(follower.service.ask(NEW_QUESTION)), "the next question uses the new snapshot"


def test_followers_never_write_or_rebuild_and_wait_for_the_first_snapshot(copy, tmp_path, opened):
    index_file = copy.data_dir / "index" / "passages.faiss"
    before = index_file.stat().st_mtime_ns
    follower = opened(settings_for(copy, BRIEFBOT_INDEX_SNAPSHOTS="follow"))
    assert follower.corpus.role == "follower" and follower.corpus.snapshot.version is None
    assert len(follower.corpus.index) == 0, "nothing is built while waiting for the worker"
    assert not follower.service.ask(OLD_QUESTION).answered
    with pytest.raises(ReadOnlyCorpus):
        follower.corpus.ingest_paths([tmp_path])
    with pytest.raises(ReadOnlyCorpus):
        follower.corpus.reindex()
    assert index_file.stat().st_mtime_ns == before and not (copy.data_dir / "index" / "snapshots").exists()

    writer = opened(settings_for(copy), writer=True, publish=True)
    assert wait_for(lambda: follower.corpus.snapshot.version == writer.corpus.snapshot.version, timeout=10)
    assert follower.service.ask(OLD_QUESTION).answered


def test_a_snapshot_is_named_only_when_complete_and_old_ones_are_pruned(copy, tmp_path, opened, monkeypatch):
    writer = opened(settings_for(copy), writer=True, publish=True)
    store, snapshots = writer.corpus.store, writer.corpus.snapshots
    follower = opened(settings_for(copy, BRIEFBOT_SNAPSHOT_POLL_SECONDS=3600))
    published = read_published(store)

    from index.lexical import LexicalIndex

    def disk_full(self, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(LexicalIndex, "save", disk_full)
    with pytest.raises(OSError):
        writer.corpus.publish()
    monkeypatch.undo()
    assert read_published(store) == published, "a failed publication names nothing"
    assert snapshots.versions() == [published.version]
    assert not [p for p in snapshots.root.iterdir() if p.name.startswith(".")], "its temporary folder is gone"
    assert follower.corpus.refresh_snapshot() is False

    for _ in range(4):
        writer.corpus.publish()
    latest = read_published(store).version
    assert len(snapshots.versions()) == 5, "superseded moments ago: kept for followers still loading them"
    removed = snapshots.prune(keep=3, current=latest, grace_seconds=0)
    assert snapshots.versions() == [latest - 2, latest - 1, latest] and len(removed) == 2
    assert follower.corpus.refresh_snapshot() is True and follower.corpus.snapshot.version == latest

    store.set_meta(SNAPSHOT_KEY, json.dumps({"version": latest + 7, "passages": 1, "kind": "flat",
                                            "published_at": "2026-11-30T00:00:00+00:00"}))
    assert follower.corpus.refresh_snapshot() is False, "a named snapshot that isn't on disk is not swapped in"
    assert follower.service.ask(OLD_QUESTION).answered, "and the one in use keeps answering"


def test_a_snapshot_holds_what_another_writer_stored_meanwhile(copy, tmp_path, opened, capsys):
    """`briefbot ingest` beside the worker: whichever publishes next publishes the database as it is then."""
    from bot.cli import main

    worker = opened(settings_for(copy), writer=True, publish=True)
    (tmp_path / "new.jsonl").write_text(json.dumps(new_articles(0)[0]) + "\n", encoding="utf-8")
    assert main(["ingest", "-q", "--data-dir", str(copy.data_dir), str(tmp_path / "new.jsonl")]) == 0
    by_ingest = read_published(worker.corpus.store)
    assert by_ingest.version == worker.corpus.snapshot.version + 1, "the ingest command published, too"
    published = worker.corpus.publish()  # the worker's next publication, knowing nothing of that ingest
    assert published.passages == by_ingest.passages == len(worker.corpus.store.passage_ids())
    follower = opened(settings_for(copy))
    assert NEW_TITLE in titles(follower.service.ask(NEW_QUESTION))

    capsys.readouterr()
    assert main(["status", "--json", "--data-dir", str(copy.data_dir)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["snapshot"]["version"] == published.version and status["snapshot"]["on_disk"] >= 2


def test_without_a_worker_nothing_changes(make_app, tmp_path):
    """Single-process use: no snapshot is published or looked for; ingest then ask works as before."""
    (tmp_path / "a.jsonl").write_text(json.dumps(new_articles(0)[0]) + "\n", encoding="utf-8")
    app = make_app()
    app.corpus.ingest_paths([tmp_path / "a.jsonl"])
    assert app.corpus.role == "local" and app.corpus.snapshot.version is None
    assert not (app.settings.index_dir / "snapshots").exists()
    assert read_published(app.corpus.store) is None
    reopened = make_app()
    assert reopened.corpus.role == "local"
    assert NEW_TITLE in titles(reopened.service.ask(NEW_QUESTION))


def test_worker_process_publishes_and_stops_cleanly_on_sigterm(copy, tmp_path, opened):
    """`briefbot worker` as its own process: a file dropped in its folder reaches a serving process."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    env = copy.env(BRIEFBOT_ENCODER="torch", BRIEFBOT_DATA_DIR=str(copy.data_dir))
    worker = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "worker", "--watch", str(inbox), "--every", "0.2", "--no-feeds"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        settings = settings_for(copy, BRIEFBOT_INDEX_SNAPSHOTS="follow")
        follower = opened(settings)
        assert wait_for(lambda: follower.corpus.snapshot.version is not None, timeout=120, step=0.2), \
            "the worker published its first snapshot"
        errors: list[BaseException] = []
        answered_new = threading.Event()
        stop = threading.Event()

        def ask() -> None:
            while not stop.is_set():
                try:
                    if NEW_TITLE in titles(follower.service.ask(NEW_QUESTION)):
                        answered_new.set()
                    follower.service.ask(OLD_QUESTION)
                except BaseException as exc:  # noqa: BLE001
                    errors.append(exc)

        asker = threading.Thread(target=ask)
        asker.start()
        try:
            drop(inbox, "zephyria.jsonl", new_articles(0))
            assert answered_new.wait(120), "the article dropped in the worker's folder was answered"
        finally:
            stop.set()
            asker.join(60)
        assert not errors, errors[:3]
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err[-2000:]
    assert "worker stopped" in err
