"""/healthz and /metrics of a webhook-mode bot, over HTTP on 127.0.0.1, against the Bot API test server."""

from __future__ import annotations

import contextlib

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine

from bot.app import Briefbot
from bot.ops import health
from bot.telegram_app import build_application, serve_operations
from tests.botapi import running_server

USER = 1001
SECRET = "s3cret"


@contextlib.asynccontextmanager
async def webhook_bot(briefbot: Briefbot, webhook_port: int, ops_port: int):
    """The application as `briefbot run` starts it with WEBHOOK_URL set: webhook server plus ops server."""
    async with running_server() as server:
        application = build_application(briefbot, server.application_builder(read_timeout=5))
        serve_operations(application, "127.0.0.1", ops_port)
        await application.initialize()
        await application.post_init(application)
        await application.start()
        await application.updater.start_webhook(listen="127.0.0.1", port=webhook_port, url_path="hook",
                                                secret_token=SECRET, webhook_url="https://bot.example.test/hook")
        server.add_chat(USER, "private")
        server.known_chats.add(USER)
        try:
            yield server
        finally:
            await application.updater.stop()
            await application.stop()
            await application.shutdown()
            await application.post_shutdown(application)


def update(update_id: int, text: str) -> dict:
    return {"update_id": update_id, "message": {"message_id": update_id, "date": 0, "text": text,
                                                "chat": {"id": USER, "type": "private"},
                                                "from": {"id": USER, "is_bot": False, "first_name": "U"}}}


def samples(exposition: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a Prometheus text exposition, keyed by (name, sorted labels)."""
    found = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.fixture
def follower(seeded_app, encoder):
    """A serving replica: a worker published a snapshot of the seeded corpus, this process follows it."""
    worker = Briefbot.open(seeded_app.settings, encoder=encoder, writer=True, publish=True)
    replica = Briefbot.open(seeded_app.settings, encoder=encoder)
    assert replica.corpus.role == "follower"
    yield replica
    replica.close()
    worker.close()


async def test_healthz_and_metrics_over_http_in_webhook_mode(follower, unused_tcp_port_factory):
    webhook_port, ops_port = unused_tcp_port_factory(), unused_tcp_port_factory()
    ops = f"http://127.0.0.1:{ops_port}"
    async with webhook_bot(follower, webhook_port, ops_port) as server, httpx.AsyncClient(timeout=10) as client:
        healthy = await client.get(f"{ops}/healthz")
        assert healthy.status_code == 200 and healthy.headers["content-type"].startswith("application/json")
        body = healthy.json()
        passages = len(follower.corpus.index)
        assert body["ok"] is True and body["database"] == "ok" and body["role"] == "follower"
        assert body["index_version"] == 1 and body["passages"] == passages > 0

        hook = f"http://127.0.0.1:{webhook_port}/hook"
        for n, text in enumerate(["why did Iran strike Pakistan?", "what is the recipe for banana bread?"], start=1):
            sent = await client.post(hook, json=update(n, text), headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})
            assert sent.status_code == 200
            await server.wait_for_messages(USER, n, timeout=30, methods=["sendMessage"])
        assert (await client.get(f"{ops}/metrics")).status_code == 200
        assert (await client.get(f"http://127.0.0.1:{webhook_port}/metrics")).status_code != 200, \
            "nothing but the webhook on the public port"

        scraped = await client.get(f"{ops}/metrics")
        assert scraped.headers["content-type"].startswith("text/plain")
        metrics = samples(scraped.text)
        assert metrics[("briefbot_questions_total", (("outcome", "answer"),))] == 1
        assert metrics[("briefbot_questions_total", (("outcome", "declined"),))] == 1
        assert metrics[("briefbot_answer_seconds_count", ())] == 2
        assert metrics[("briefbot_answer_seconds_bucket", (("le", "+Inf"),))] == 2
        assert 0 < metrics[("briefbot_answer_seconds_sum", ())] < 60
        assert metrics[("briefbot_digests_sent_total", ())] == 0
        assert metrics[("briefbot_index_passages", ())] == passages
        assert metrics[("briefbot_index_snapshot_version", ())] == 1
        assert metrics[("briefbot_index_snapshot_published_timestamp_seconds", ())] > 1.7e9


async def test_healthz_is_503_when_the_database_is_unreachable(follower, unused_tcp_port_factory, tmp_path):
    webhook_port, ops_port = unused_tcp_port_factory(), unused_tcp_port_factory()
    async with webhook_bot(follower, webhook_port, ops_port), httpx.AsyncClient(timeout=10) as client:
        assert (await client.get(f"http://127.0.0.1:{ops_port}/healthz")).status_code == 200
        store = follower.corpus.store
        working = store.engine
        store.engine = create_engine(f"sqlite:///{tmp_path / 'gone' / 'nowhere' / 'briefbot.db'}")  # no such folder
        try:
            down = await client.get(f"http://127.0.0.1:{ops_port}/healthz")
        finally:
            store.engine = working
        assert down.status_code == 503
        assert down.json()["ok"] is False and down.json()["database"] == "unreachable"
        assert "nowhere" not in down.text, "no connection details in the answer"
        assert (await client.get(f"http://127.0.0.1:{ops_port}/metrics")).status_code == 200
        assert (await client.get(f"http://127.0.0.1:{ops_port}/healthz")).status_code == 200, "and it recovers"


async def test_a_replica_without_a_snapshot_yet_is_not_healthy(settings, encoder):
    settings.index_snapshots = "follow"
    replica = Briefbot.open(settings, encoder=encoder)
    try:
        status, body = await health(replica)
    finally:
        replica.close()
    assert status == 503 and body["database"] == "ok" and body["index_version"] is None
    assert "worker" in body["waiting_for"]
