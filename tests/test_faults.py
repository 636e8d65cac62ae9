"""Faults: a flaky Bot API, processes killed with SIGKILL, a locked database, a full disk.

Each test breaks one thing the way it breaks in production and asserts what the user (or the operator) sees
afterwards: every answer and every digest once, a consistent store after a crash, a polite failure that
recovers by itself, a clear error with nothing corrupted.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bot.subscriptions import FakeClock
from handlers.errors import SORRY
from tests.botapi import BotApiServer, running_server
from tests.test_digest_telegram import digest_bot, known_chat
from tests.test_telegram_bot import quotes, telegram_bot

REPO = Path(__file__).resolve().parents[1]
KINDS = (429, 500, 502, "timeout", "reset")


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def texts(server: BotApiServer, chat: int) -> list[str]:
    return [e.text or "" for e in server.sent_messages(chat, methods=["sendMessage"])]


@pytest.fixture
def sqlite_seeded(seeded_dir, encoder, monkeypatch, tmp_path):
    """The seeded corpus on SQLite only: for what does not depend on the database (a flaky Bot API), or is
    about SQLite itself (its write lock)."""
    from bot.app import Briefbot
    from bot.settings import Settings

    for name in ("DATABASE_URL", "TELEGRAM_BOT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    shutil.copytree(seeded_dir, tmp_path / "data")
    app = Briefbot.open(Settings(BRIEFBOT_DATA_DIR=tmp_path / "data"), encoder=encoder)
    yield app
    app.corpus.store.engine.dispose()


# --- a flaky Bot API ------------------------------------------------------------------------------------------------
QUESTIONS = ["why did Iran strike Pakistan?", "what did the Afghan robotics team win?",
             "how many people were killed in Kerman?", "who founded the FIRST Global competition?"]


async def converse(server: BotApiServer, user: int) -> None:
    """Four turns, each waiting for its one reply: a question, More, who said that?, what happened next?"""
    server.send_text(user, QUESTIONS[user % len(QUESTIONS)])
    (answer,) = await server.wait_for_messages(user, 1, timeout=120, methods=["sendMessage"])
    more = [d for d in answer.button_data() if d.startswith("m:")]
    if more:
        server.press_button(user, answer, more[0])
    else:
        server.send_text(user, "more")
    await server.wait_for_messages(user, 2, timeout=120, methods=["sendMessage"])
    server.send_text(user, "who said that?")
    await server.wait_for_messages(user, 3, timeout=120, methods=["sendMessage"])
    server.send_text(user, "what happened next?")
    await server.wait_for_messages(user, 4, timeout=120, methods=["sendMessage"])


@pytest.mark.parametrize("seed", [11, 12])
async def test_a_conversation_under_20_percent_api_faults_gets_every_answer_exactly_once(sqlite_seeded, seed):
    # 12 users: enough calls that at 20% at least 15 faults of every kind hit (8 were, while each question also
    # cost a typing indicator).
    users = list(range(7000 + 100 * seed, 7000 + 100 * seed + 12))
    async with telegram_bot(sqlite_seeded) as server:
        await server.wait_for_request("setMyCommands")
        server.fail_randomly(0.2, seed=seed, kinds=KINDS, hold=30)
        await asyncio.gather(*(converse(server, user) for user in users))
        server.clear_faults()
        await asyncio.sleep(2)  # a duplicate would arrive now
        for user in users:
            sent = server.sent_messages(user, methods=["sendMessage"])
            assert len(sent) == 4, (user, [t[:60] for t in texts(server, user)])
            assert not [t for t in texts(server, user) if SORRY in t]
            more, who = sent[1], sent[2]
            if quotes(more):
                assert quotes(who) and quotes(who)[0] == quotes(more)[0], "who said that? is about what More showed"
        hit = [f for f in server.faults]
        assert len(hit) >= 15 and {f.fault for f in hit} >= {"retry_after", "server_error", "timeout", "reset"}, hit


async def wait_final(app, chats: list[int], clock: FakeClock, timeout: float = 120) -> dict[str, int]:
    """Until every delivery is sent or failed; a delivery waiting to retry has its time brought forward."""
    store = app.corpus.store
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = store.delivery_status_counts()
        if counts.get("sent", 0) + counts.get("failed", 0) >= len(chats):
            return counts
        if counts.get("retry"):
            clock.advance(minutes=30)
        await asyncio.sleep(0.5)
    raise TimeoutError(f"deliveries still open: {store.delivery_status_counts()}")


def headers(server: BotApiServer, chat: int) -> int:
    return len([t for t in texts(server, chat) if t.startswith(("Your briefing", "Nothing new"))])


async def fan_out_under_faults(app, chats: list[int], seed: int, kinds) -> tuple[BotApiServer, dict]:
    clock = app.digests.clock = FakeClock(utc(1987, 3, 2, 6, 0))
    for chat in chats:
        app.digests.subscribe(chat)
        app.digests.set_time(chat, "06:30")
    async with digest_bot(app) as server:
        for chat in chats:
            known_chat(server, chat)
        server.fail_randomly(0.2, seed=seed, kinds=kinds, hold=30)
        clock.set(utc(1987, 3, 2, 6, 30))
        counts = await wait_final(app, chats, clock)
        server.clear_faults()
        await asyncio.sleep(1.5)  # a duplicate would arrive now
        return server, counts


async def test_a_digest_fan_out_under_20_percent_answered_faults_sends_every_digest_exactly_once(reuters_app):
    chats = list(range(8000, 8030))
    server, counts = await fan_out_under_faults(reuters_app, chats, seed=21, kinds=(429, 500, 502))
    assert counts == {"sent": len(chats)}, counts
    assert [headers(server, chat) for chat in chats] == [1] * len(chats)
    for chat in chats:
        assert len(texts(server, chat)) == len(set(texts(server, chat))), "no part twice"
    assert len(server.faults) >= 5


async def test_a_digest_fan_out_under_timeouts_and_resets_never_doubles_and_knows_what_it_could_not_know(reuters_app):
    """A timeout or reset after the request left is ambiguous (Telegram may have sent it): such a digest is
    recorded as uncertain and not sent again. Everything else arrives exactly once."""
    chats = list(range(8100, 8130))
    server, counts = await fan_out_under_faults(reuters_app, chats, seed=22, kinds=KINDS)
    assert counts == {"sent": len(chats)}, counts
    uncertain = {d.chat_id for d in reuters_app.corpus.store.deliveries_with_status(["sent"]) if d.uncertain}
    for chat in chats:
        assert headers(server, chat) <= 1 and len(texts(server, chat)) == len(set(texts(server, chat)))
        if chat not in uncertain:
            assert headers(server, chat) == 1, chat
    ambiguous = [f for f in server.faults if f.fault in ("timeout", "reset") and f.method == "sendMessage"]
    assert len(uncertain) <= len(ambiguous)


# --- kill -9 of ingestion -------------------------------------------------------------------------------------------
def briefbot(args: list[str], data_dir: Path, crash: str | None = None, timeout: float = 180) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TELEGRAM_BOT_TOKEN")}
    env["HF_HUB_OFFLINE"] = "1"
    command = [sys.executable, "-m", "tests.crash_at", crash] if crash else [sys.executable, "-m", "bot.cli"]
    return subprocess.Popen([*command, *args, "--data-dir", str(data_dir)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(process: subprocess.Popen, timeout: float = 180) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def status(data_dir: Path) -> dict:
    code, out, err = finished(briefbot(["status", "--json"], data_dir))
    assert code == 0 and "Traceback" not in err, err[-2000:]
    return json.loads(out)


@pytest.fixture(scope="module")
def articles(tmp_path_factory, shared_data) -> Path:
    """Ten gum-news articles: a few seconds of ingest, one embedding batch and one more."""
    path = tmp_path_factory.mktemp("kill-ingest") / "articles.jsonl"
    lines = (shared_data / "gum-news" / "articles.jsonl").read_text(encoding="utf-8").splitlines()[:10]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def recovers(data_dir: Path, articles: Path) -> None:
    """What the operator sees after the crash: a sane status, an ingest that completes, then agreement."""
    torn = status(data_dir) if (data_dir / "briefbot.db").exists() else None
    if torn is not None:
        assert torn["index"] in ("readable", "missing (built on next start)"), torn
    code, out, err = finished(briefbot(["ingest", "-q", str(articles)], data_dir))
    assert code == 0, err[-3000:]
    after = status(data_dir)
    assert after["consistent"] and after["articles"] == 10 and after["index_passages"] == after["passages"], after


@pytest.mark.parametrize("point", ["parsing:6", "after-commit", "mid-save:.faiss", "mid-save:.npz"])
def test_ingest_killed_at_a_named_point_leaves_a_store_the_next_run_completes(point, articles, tmp_path):
    data_dir = tmp_path / "data"
    code, _, err = finished(briefbot(["ingest", "-q", str(articles)], data_dir, crash=point))
    assert code == -signal.SIGKILL, (code, err[-2000:])
    leftovers = list((data_dir / "index").glob("*.tmp"))
    assert bool(leftovers) == point.startswith("mid-save"), leftovers
    for leftover in leftovers:  # as if the crash were an hour ago: the next save of that file removes it
        os.utime(leftover, (time.time() - 7200, time.time() - 7200))
    recovers(data_dir, articles)
    assert not list((data_dir / "index").glob("*.tmp")), "the killed write's temporary file is cleaned up"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ingest_killed_after_a_random_delay_leaves_a_store_the_next_run_completes(seed, articles, tmp_path):
    data_dir = tmp_path / "data"
    process = briefbot(["ingest", "-q", str(articles)], data_dir)
    delay = random.Random(seed).uniform(1.0, 8.0)
    try:
        process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
    finished(process)
    recovers(data_dir, articles)


# --- the database locked ------------------------------------------------------------------------------------------
async def test_questions_while_another_process_holds_the_write_lock_fail_politely_and_recover(sqlite_seeded):
    seeded_app = sqlite_seeded
    from sqlalchemy import event

    engine = seeded_app.corpus.store.engine
    engine.dispose()

    @event.listens_for(engine, "connect")
    def short_busy_timeout(dbapi_connection, _record) -> None:  # 30 s in production; 1 s keeps the test short
        dbapi_connection.execute("PRAGMA busy_timeout=1000")

    database = seeded_app.settings.data_dir / "briefbot.db"
    user = 9100
    async with telegram_bot(seeded_app) as server:
        server.send_text(user, "why did Iran strike Pakistan?")
        await server.wait_for_messages(user, 1, timeout=60, methods=["sendMessage"])
        blocker = sqlite3.connect(database, timeout=5, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another process writing, for longer than the bot will wait
        try:
            server.send_text(user, "how many people were killed in Kerman?")
            (refused,) = (await server.wait_for_messages(user, 2, timeout=60, methods=["sendMessage"]))[1:]
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert "try again in a moment" in refused.text and "locked" not in refused.text, refused.text
        server.send_text(user, "how many people were killed in Kerman?")
        (answer,) = (await server.wait_for_messages(user, 3, timeout=60, methods=["sendMessage"]))[2:]
        assert quotes(answer), answer.text
        server.send_text(user, "who said that?")
        (who,) = (await server.wait_for_messages(user, 4, timeout=60, methods=["sendMessage"]))[3:]
        assert quotes(who) and quotes(who)[0] == quotes(answer)[0], "the conversation goes on from the answer"


async def test_a_write_lock_held_briefly_only_delays_the_answer(sqlite_seeded):
    seeded_app = sqlite_seeded
    database = seeded_app.settings.data_dir / "briefbot.db"
    user = 9200
    async with telegram_bot(seeded_app) as server:
        blocker = sqlite3.connect(database, timeout=5, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        server.send_text(user, "why did Iran strike Pakistan?")
        await asyncio.sleep(2)
        blocker.execute("ROLLBACK")
        blocker.close()
        (answer,) = await server.wait_for_messages(user, 1, timeout=60, methods=["sendMessage"])
        assert quotes(answer), answer.text


async def test_postgresql_dropping_every_connection_costs_the_user_nothing(seeded_app, backend):
    """What a PostgreSQL restart (or a failover) looks like from the bot: every connection it holds is gone."""
    if backend != "postgresql":
        pytest.skip("about PostgreSQL's connections")
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    admin = create_engine(seeded_app.settings.database_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    user = 9500
    try:
        async with telegram_bot(seeded_app) as server:
            server.send_text(user, "why did Iran strike Pakistan?")
            (answer,) = await server.wait_for_messages(user, 1, timeout=60, methods=["sendMessage"])
            with admin.connect() as connection:
                dropped = connection.execute(text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar()
            assert dropped >= 1
            server.send_text(user, "who said that?")
            (who,) = (await server.wait_for_messages(user, 2, timeout=60, methods=["sendMessage"]))[1:]
    finally:
        admin.dispose()
    assert SORRY not in who.text and quotes(who) and quotes(who)[0] == quotes(answer)[0], who.text


@pytest.fixture
def paused_postgres(tmp_path, monkeypatch, encoder):
    """A PostgreSQL cluster of this test's own (so stopping it touches no other test), with the sample articles
    ingested, and a way to stop and start its server: (app, pause, resume)."""
    from bot.app import Briefbot
    from bot.settings import Settings

    if os.environ.get("BRIEFBOT_TEST_POSTGRES", "").lower() in ("0", "off", "no", "false"):
        pytest.skip("BRIEFBOT_TEST_POSTGRES=off")
    script = ["bash", str(REPO / "scripts" / "test-postgres.sh")]
    started = subprocess.run([*script, "start", "--owner", str(os.getpid()), "56100"], capture_output=True, text=True,
                             timeout=180)
    found = dict(line.split("=", 1) for line in started.stdout.splitlines() if "=" in line)
    if started.returncode or "BRIEFBOT_PG_DIR" not in found:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL outage test: {started.stderr[-300:]}")
        pytest.skip(f"no PostgreSQL server to stop: {started.stderr.strip()[-300:]}")
    cluster = found["BRIEFBOT_PG_DIR"]
    for name in ("DATABASE_URL", "TELEGRAM_BOT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    app = Briefbot.open(Settings(BRIEFBOT_DATA_DIR=tmp_path / "data", DATABASE_URL=found["BRIEFBOT_TEST_POSTGRES_URL"]),
                        encoder=encoder)
    app.corpus.ingest_paths([REPO / "bot" / "samples"])

    def control(action: str) -> None:
        subprocess.run([*script, action, cluster], check=True, capture_output=True, timeout=120)

    try:
        yield app, lambda: control("pause"), lambda: control("resume")
    finally:
        app.corpus.store.engine.dispose()
        subprocess.run([*script, "stop", cluster], capture_output=True, timeout=120)


async def test_while_postgresql_is_down_questions_get_a_polite_answer_and_afterwards_the_conversation_goes_on(
        paused_postgres):
    """A PostgreSQL restart or outage of several seconds: the bot stays up, says sorry (no error text) to what it
    cannot answer meanwhile, and once the server is back answers again with the conversation intact."""
    app, pause, resume = paused_postgres
    user = 9600
    async with telegram_bot(app) as server:
        server.send_text(user, "why did the dockworkers strike at Saltreach?")
        (answer,) = await server.wait_for_messages(user, 1, timeout=60, methods=["sendMessage"])
        assert "Oduya" in answer.text or "union" in answer.text.lower(), answer.text
        pause()
        try:
            server.send_text(user, "who said that?")
            (refused,) = (await server.wait_for_messages(user, 2, timeout=60, methods=["sendMessage"]))[1:]
            server.send_text(user, "more")
            (refused_again,) = (await server.wait_for_messages(user, 3, timeout=60, methods=["sendMessage"]))[2:]
        finally:
            resume()
        for reply in (refused, refused_again):
            assert reply.text == SORRY, reply.text  # no "psycopg", no "connection refused", no traceback
        server.send_text(user, "who said that?")
        (who,) = (await server.wait_for_messages(user, 4, timeout=60, methods=["sendMessage"]))[3:]
        assert SORRY not in who.text and quotes(who) and quotes(who)[0] == quotes(answer)[0], who.text


# --- a full or read-only disk --------------------------------------------------------------------------------------
FULL_DISK = """
import errno, os

_real_fsync = os.fsync


def _fsync(fd):
    # The disk fills up while the new FAISS index is written: its temporary file is half there.
    if "passages.faiss" in os.readlink(f"/proc/self/fd/{fd}"):
        raise OSError(CODE, os.strerror(CODE))
    return _real_fsync(fd)


os.fsync = _fsync
"""


def fill_the_disk(code: int) -> None:
    """Make the next index save fail as on a full (ENOSPC) or read-only (EROFS) disk."""
    exec(FULL_DISK.replace("CODE", str(code)), {})


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS], ids=["ENOSPC", "EROFS"])
def test_an_index_save_on_a_full_or_read_only_disk_is_a_clear_error_and_corrupts_nothing(make_app, shared_data,
                                                                                          articles, code):
    app = make_app()
    app.corpus.ingest_paths([shared_data / "seed"])
    index_file = app.corpus.index_path
    before = index_file.read_bytes()
    real_fsync = os.fsync
    try:
        fill_the_disk(code)
        with pytest.raises(OSError) as failure:
            app.corpus.ingest_paths([articles])
    finally:
        os.fsync = real_fsync
    assert failure.value.errno == code
    assert index_file.read_bytes() == before, "the index in place is untouched"
    assert not list(index_file.parent.glob("*.tmp")), "the half-written temporary file is removed"

    restarted = make_app()  # disk freed: the next start adds what the index lacked from the database
    articles_stored, _ = restarted.corpus.store.counts()
    assert articles_stored == 11 and restarted.corpus.index.ids() == restarted.corpus.store.passage_ids()
    assert restarted.service.ask("what did the Afghan robotics team win?").answered


def test_the_cli_says_clearly_when_the_disk_is_full(tmp_path, articles):
    driver = tmp_path / "full_disk.py"
    driver.write_text(FULL_DISK.replace("CODE", "errno.ENOSPC")
                      + "import sys\nfrom bot.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
    data_dir = tmp_path / "data"
    result = subprocess.run([sys.executable, str(driver), "ingest", "-q", str(articles), "--data-dir", str(data_dir)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 1, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert "No space left on device" in last and "Traceback" not in result.stderr, result.stderr[-2000:]
    recovers(data_dir, articles)


# --- kill -9 of the bot during a conversation ------------------------------------------------------------------------
async def start_bot(server: BotApiServer, data_dir: Path, log_path: Path,
                    database_url: str | None) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "WEBHOOK_URL", "HTTP_PROXY", "HTTPS_PROXY")}
    if database_url:
        env["DATABASE_URL"] = database_url
    env.update({"TELEGRAM_BOT_TOKEN": server.token, "TELEGRAM_API_BASE_URL": server.base_url, "HF_HUB_OFFLINE": "1",
                "NO_PROXY": "127.0.0.1", "BRIEFBOT_OPS_PORT": "0"})
    log = log_path.open("ab")
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "bot.cli", "run", "--data-dir", str(data_dir),
                                                cwd=REPO, env=env, stdout=log, stderr=log)


async def kill(bot: asyncio.subprocess.Process) -> None:
    bot.send_signal(signal.SIGKILL)
    await bot.wait()


async def test_a_failing_command_menu_does_not_stop_the_bot_starting(sqlite_seeded):
    async with running_server() as server:
        server.inject("setMyCommands", 500, times=None)
        from bot.telegram_app import build_application

        application = build_application(sqlite_seeded, server.application_builder(read_timeout=5))
        await application.initialize()
        await application.post_init(application)
        await application.start()
        await application.updater.start_polling(poll_interval=0, timeout=1)
        try:
            server.send_text(9400, "why did Iran strike Pakistan?")
            (answer,) = await server.wait_for_messages(9400, 1, timeout=60, methods=["sendMessage"])
        finally:
            await application.updater.stop()
            await application.stop()
            await application.shutdown()
    assert quotes(answer) and len([r for r in server.requests if r.method == "setMyCommands"]) == 3


async def test_the_bot_killed_mid_conversation_carries_on_after_a_restart(seeded_app, tmp_path):
    seeded_app.corpus.store.engine.dispose()
    data_dir, log_path = seeded_app.settings.data_dir, tmp_path / "bot.log"
    user = 9300
    async with running_server() as server:
        bot = await start_bot(server, data_dir, log_path, seeded_app.settings.database_url)
        try:
            server.send_text(user, "why did Iran strike Pakistan?")
            (answer,) = await server.wait_for_messages(user, 1, timeout=90, methods=["sendMessage"])
            server.send_text(user, "more")
            (more,) = (await server.wait_for_messages(user, 2, timeout=60, methods=["sendMessage"]))[1:]
        finally:
            await kill(bot)
        bot = await start_bot(server, data_dir, log_path, seeded_app.settings.database_url)
        try:
            server.send_text(user, "who said that?")
            (who,) = (await server.wait_for_messages(user, 3, timeout=90, methods=["sendMessage"]))[2:]
            server.press_button(user, answer, [d for d in answer.button_data() if d.startswith("m:")][0])
            (again,) = (await server.wait_for_messages(user, 4, timeout=60, methods=["sendMessage"]))[3:]
        finally:
            await kill(bot)
        server.assert_no_violations()
    assert "Who said it" in who.text and quotes(who)[0] == quotes(more)[0], "the conversation survived the kill"
    shown = set(quotes(answer)) | set(quotes(more))
    assert not set(quotes(again)) & shown, "More after the restart still never repeats a passage"
