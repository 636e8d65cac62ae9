"""Kill -9 the real bot half-way through a fan-out to 200 subscribers, restart it: exactly one digest each."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from bot.subscriptions import FakeClock
from tests.botapi import running_server

REPO = Path(__file__).resolve().parents[1]
SUBSCRIBERS = 200
FIRST = 500_000


def digests_in(server, chat: int) -> int:
    return len([e for e in server.sent_messages(chat, methods=["sendMessage"])
                if (e.text or "").startswith(("Your briefing", "Nothing new"))])


async def start_bot(server, data_dir: Path, log_path: Path,
                    database_url: str | None = None) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "WEBHOOK_URL", "HTTP_PROXY", "HTTPS_PROXY")}
    if database_url:
        env["DATABASE_URL"] = database_url
    env.update({
        "TELEGRAM_BOT_TOKEN": server.token, "TELEGRAM_API_BASE_URL": server.base_url, "HF_HUB_OFFLINE": "1",
        "BRIEFBOT_FAKE_NOW": "1987-03-02T06:30:30+00:00", "BRIEFBOT_DIGEST_POLL_SECONDS": "1",
        "BRIEFBOT_DIGEST_MESSAGES_PER_SECOND": "20", "NO_PROXY": "127.0.0.1",
    })
    log = log_path.open("ab")
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "run", "--data-dir", str(data_dir), cwd=REPO, env=env,
        stdout=log, stderr=log,
    )


async def test_killed_mid_fan_out_and_restarted_every_subscriber_has_exactly_one_digest(reuters_app, tmp_path):
    service = reuters_app.digests
    service.clock = FakeClock(datetime(1987, 3, 2, 6, 0, tzinfo=timezone.utc))
    chats = list(range(FIRST, FIRST + SUBSCRIBERS))
    for chat in chats:
        service.subscribe(chat)
        service.set_time(chat, "06:30")  # UTC; the bot starts at 06:30:30
    reuters_app.corpus.store.engine.dispose()
    data_dir, database_url = reuters_app.settings.data_dir, reuters_app.settings.database_url
    log_path = tmp_path / "bot.log"

    async with running_server() as server:
        for chat in chats:
            server.add_user(chat)
            server.add_chat(chat, "private")
            server.known_chats.add(chat)
        delivered = lambda: [c for c in chats if digests_in(server, c)]  # noqa: E731

        bot = await start_bot(server, data_dir, log_path, database_url)
        try:
            await server.wait_for(delivered, 80, timeout=90)
        finally:
            bot.send_signal(signal.SIGKILL)
            await bot.wait()
        at_kill = len(delivered())
        assert 80 <= at_kill < SUBSCRIBERS, f"the kill came half-way through the fan-out ({at_kill})"
        await asyncio.sleep(0.5)  # requests that reached the server before the kill are carried out

        bot = await start_bot(server, data_dir, log_path, database_url)
        try:
            await server.wait_for(delivered, SUBSCRIBERS, timeout=90)
            await asyncio.sleep(3)  # a duplicate would arrive now
        finally:
            bot.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(bot.wait(), 20)
            except asyncio.TimeoutError:
                bot.send_signal(signal.SIGKILL)
                await bot.wait()

        counts = {chat: digests_in(server, chat) for chat in chats}
        assert sorted(set(counts.values())) == [1], {c: n for c, n in counts.items() if n != 1}
        server.assert_no_violations()

    store = reuters_app.corpus.store
    statuses = store.delivery_status_counts()
    assert statuses == {"sent": SUBSCRIBERS}, (statuses, log_path.read_text()[-3000:])
    uncertain = [d for d in store.deliveries_with_status(["sent"]) if d.uncertain]
    assert len(uncertain) <= reuters_app.settings.digest_send_concurrency
