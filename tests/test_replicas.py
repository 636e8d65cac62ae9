"""Several bot processes on one database (`briefbot run` in webhook mode behind a load balancer).

The digest fan-out is claimed per subscriber and per delivery, so three replicas sending at once give every
subscriber exactly one digest, also when one of them is killed half-way; a conversation can be continued on any
replica, and two replicas answering one chat at the same moment lose neither turn.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

from bot.app import Briefbot
from bot.subscriptions import FakeClock
from tests.botapi import running_server

REPO = Path(__file__).resolve().parents[1]
REPLICAS = 3
SUBSCRIBERS = 300
FIRST = 700_000
USER = 4242
SECRET = "replica-secret"
LEASE_SECONDS = 3


# --- conversations -----------------------------------------------------------------------------------------------
def test_two_replicas_answering_one_chat_at_once_lose_neither_turn(seeded_copy, encoder, monkeypatch):
    replica_a = Briefbot.open(seeded_copy.settings(), encoder=encoder)
    replica_b = Briefbot.open(seeded_copy.settings(), encoder=encoder)
    try:
        replica_a.service.chat("tg:42", "why did Iran strike Pakistan?")
        store = replica_a.corpus.store
        load = store.load_conversation
        answered_by_b = []

        def load_then_b_answers(chat_id: str):
            row = load(chat_id)
            if not answered_by_b:  # B's message is handled between A's read and A's write
                answered_by_b.append(replica_b.service.chat(chat_id, "robotics competition Afghan girls team"))
            return row

        monkeypatch.setattr(store, "load_conversation", load_then_b_answers)
        more = replica_a.service.chat("tg:42", "more")
        monkeypatch.undo()

        (question,) = answered_by_b
        row = store.load_conversation("tg:42")
        state = replica_b.service.load_state("tg:42")
        assert row.version == 3, "three turns, three saves: none overwrote another"
        assert question.kind == "answer" and more.kind == "more"
        assert more.topic_id == question.topic_id, "A's 'more' was answered again on B's newer question"
        assert state.topic_id == question.topic_id
        assert state.last_shown == [r.passage_id for r in more.answer.results]
        assert "robotics" in more.answer.results[0].title.lower() or more.answer.results[0].article_id in {
            r.article_id for r in question.answer.results}
    finally:
        for app in (replica_a, replica_b):
            app.corpus.store.engine.dispose()


def test_two_replicas_hammering_one_chat_save_every_turn_exactly_once(seeded_copy, encoder):
    replicas = [Briefbot.open(seeded_copy.settings(), encoder=encoder) for _ in range(2)]
    try:
        replicas[0].service.chat("tg:7", "why did Iran strike Pakistan?")
        turns = 6
        errors: list[BaseException] = []

        def talk(app: Briefbot) -> None:
            try:
                for turn in range(turns):
                    app.service.chat("tg:7", "more" if turn % 2 else "who said that?")
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=talk, args=(app,)) for app in replicas]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        assert replicas[0].corpus.store.load_conversation("tg:7").version == 1 + 2 * turns
        state = replicas[1].service.load_state("tg:7")
        topic = replicas[1].corpus.store.topic(state.topic_id)
        assert topic.chat_id == "tg:7" and set(state.last_shown) <= set(topic.shown)
    finally:
        for app in replicas:
            app.corpus.store.engine.dispose()


# --- the digest fan-out across processes -----------------------------------------------------------------------
def digests_in(server, chat: int) -> int:
    return len([e for e in server.sent_messages(chat, methods=["sendMessage"])
                if (e.text or "").startswith(("Your briefing", "Nothing new"))])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def start_replica(server, name: str, data_dir: Path, database_url: str, port: int,
                        log_path: Path) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if k not in ("HTTP_PROXY", "HTTPS_PROXY")}
    env.update({
        "DATABASE_URL": database_url, "TELEGRAM_BOT_TOKEN": server.token, "TELEGRAM_API_BASE_URL": server.base_url,
        "WEBHOOK_URL": "https://bot.example.test/hook", "WEBHOOK_LISTEN": "127.0.0.1", "WEBHOOK_PORT": str(port),
        "WEBHOOK_SECRET": SECRET, "BRIEFBOT_OPS_PORT": "0", "BRIEFBOT_REPLICA_ID": name, "HF_HUB_OFFLINE": "1",
        "BRIEFBOT_FAKE_NOW": "1987-03-02T06:30:30+00:00", "BRIEFBOT_DIGEST_POLL_SECONDS": "1",
        "BRIEFBOT_DIGEST_MESSAGES_PER_SECOND": "8",  # 3 x 8: below Telegram's 30 a second for the one bot
        "BRIEFBOT_DIGEST_LEASE_SECONDS": str(LEASE_SECONDS), "NO_PROXY": "127.0.0.1",
    })
    log = log_path.open("ab")
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "run", "--data-dir", str(data_dir), cwd=REPO, env=env, stdout=log, stderr=log)


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), 20)
    except asyncio.TimeoutError:
        process.send_signal(signal.SIGKILL)
        await process.wait()


async def wait_listening(port: int, timeout: float) -> None:
    """Until something accepts connections on 127.0.0.1:port (a replica's webhook server is up)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on port {port} after {timeout} s") from None
            await asyncio.sleep(0.2)
            continue
        writer.close()
        await writer.wait_closed()
        return


async def post_update(port: int, update_id: int, text: str) -> None:
    update = {"update_id": update_id, "message": {"message_id": update_id, "date": 0, "text": text,
                                                  "chat": {"id": USER, "type": "private"},
                                                  "from": {"id": USER, "is_bot": False, "first_name": "U"}}}
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"http://127.0.0.1:{port}/hook", json=update,
                                   headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})
    assert answer.status_code == 200


async def test_three_replicas_send_each_of_300_digests_exactly_once_even_when_one_is_killed(reuters_app, tmp_path):
    service = reuters_app.digests
    service.clock = FakeClock(datetime(1987, 3, 2, 6, 0, tzinfo=timezone.utc))
    chats = list(range(FIRST, FIRST + SUBSCRIBERS))
    for chat in chats:
        service.subscribe(chat)
        service.set_time(chat, "06:30")  # UTC; the replicas start at 06:30:30
    store = reuters_app.corpus.store
    due = {s.id: (s.next_due_at, s.next_due_date) for s in store.list_subscribers()}
    store.set_schedules({i: (at + timedelta(days=1), day) for i, (at, day) in due.items()})  # due once all are up
    database_url = reuters_app.settings.resolved_database_url  # SQLite too: one file shared by every replica
    names = [f"replica-{n}" for n in range(1, REPLICAS + 1)]
    ports = [free_port() for _ in names]
    data_dirs = []
    for name in names:  # each replica has its own index files, as on its own machine; the database is shared
        data_dirs.append(tmp_path / name)
        shutil.copytree(reuters_app.settings.data_dir, data_dirs[-1], ignore=shutil.ignore_patterns("briefbot.db*"))
    victim = names[0]

    def sent_by(name: str) -> int:
        return len([d for d in store.deliveries_with_status(["sent", "sending", "pending"])
                    if (d.run_id or "").startswith(name + "/")])

    async with running_server() as server:
        for chat in chats + [USER]:
            server.add_user(chat)
            server.add_chat(chat, "private")
            server.known_chats.add(chat)
        delivered = lambda: [c for c in chats if digests_in(server, c)]  # noqa: E731

        launched = time.monotonic()
        processes = [await start_replica(server, name, data_dir, database_url, port, tmp_path / f"{name}.log")
                     for name, data_dir, port in zip(names, data_dirs, ports)]

        def logs() -> str:
            return "\n".join(f"--- {n}\n" + (tmp_path / f"{n}.log").read_text()[-3000:] for n in names)

        try:
            for port in ports:  # every replica serves its webhook: now the 300 digests come due for all at once
                await wait_listening(port, timeout=150)
            start_up_seconds = time.monotonic() - launched
            store.set_schedules(due)
            started = time.monotonic()
            await server.wait_for(delivered, 90, timeout=150)
            await server.wait_for(lambda: [1] * sent_by(victim), 10, timeout=30)
            processes[0].send_signal(signal.SIGKILL)
            await processes[0].wait()
            at_kill, victims = len(delivered()), sent_by(victim)
            assert 90 <= at_kill < SUBSCRIBERS, f"the kill came half-way through the fan-out ({at_kill})"

            await server.wait_for(delivered, SUBSCRIBERS, timeout=150)
            fan_out_seconds = time.monotonic() - started
            await asyncio.sleep(LEASE_SECONDS + 2)  # a second copy from a takeover would arrive now

            # any replica answers any update, and continues a conversation another replica began
            await post_update(ports[1], 1, "why did Manila offer debt bonds to the banks?")
            (answer,) = await server.wait_for_messages(USER, 1, timeout=60, methods=["sendMessage"])
            await post_update(ports[2], 2, "who said that?")
            replies = await server.wait_for_messages(USER, 2, timeout=60, methods=["sendMessage"])
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{logs()}") from None
        finally:
            for process in processes:
                await stop(process)

        counts = {chat: digests_in(server, chat) for chat in chats}
        assert sorted(set(counts.values())) == [1], ({c: n for c, n in counts.items() if n != 1}, logs())
        assert "MANILA" in (answer.text or "") or "Philippines" in (answer.text or ""), answer.text
        assert "Who said it" in (replies[1].text or ""), replies[1].text
        server.assert_no_violations()

    assert store.delivery_status_counts() == {"sent": SUBSCRIBERS}, logs()
    sent = store.deliveries_with_status(["sent"])
    by_replica = {name: len([d for d in sent if (d.run_id or "").startswith(name + "/")]) for name in names}
    taken_over = [d for d in sent if d.uncertain]
    assert all(by_replica[name] > 0 for name in names[1:]), by_replica
    assert victims > 0 and len(taken_over) <= reuters_app.settings.digest_send_concurrency, (victims, taken_over)
    print(f"\n{SUBSCRIBERS} digests by {REPLICAS} replicas in {fan_out_seconds:.1f} s after start-up "
          f"({start_up_seconds:.1f} s); "
          f"killed {victim} after {at_kill} arrived; sent per replica {by_replica}, {len(taken_over)} taken over")
