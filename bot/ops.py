"""Operations: Prometheus metrics and a health check, served on their own small port (BRIEFBOT_OPS_PORT).

Why a port of their own rather than handlers on PTB's webhook server: the webhook port is the one exposed
to Telegram (usually through a public reverse proxy), and metrics and health belong on an internal
address; PTB's webhook server also offers no public way to add routes. The ops server is a tornado app
on the bot's own event loop, started and stopped with the PTB application in webhook mode.

    GET /healthz  200 {"ok": true, "database": "ok", "index_version": 7, "passages": 1234, ...}
                  503 with the same body when the database is unreachable, or when a replica that follows
                  snapshots has none loaded yet (so a load balancer sends it nothing until it can answer)
    GET /metrics  Prometheus text format (names below)

Metrics live in a registry of their own per application (no process-wide state), so tests and several
applications in one process never see each other's numbers.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import text

if TYPE_CHECKING:
    from tornado.httpserver import HTTPServer

    from bot.app import Briefbot
    from bot.corpus import Corpus

log = logging.getLogger(__name__)

DB_TIMEOUT_SECONDS = 3.0  # /healthz answers within about this long even when the database hangs
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class BotMetrics:
    """Counters and histograms the bot updates, and gauges read from the corpus at scrape time.

    briefbot_questions_total{outcome}       messages answered: answer, declined, more, attribution,
                                            neighbour, notice; bad (unanswerable input), error
    briefbot_answer_seconds                 histogram: message received -> reply ready (search included)
    briefbot_digests_sent_total             digests delivered completely (all their messages)
    briefbot_digests_failed_total{kind}     failed digest sends: blocked, refused, ambiguous, safe (retried)
    briefbot_index_passages                 passages in the index in use
    briefbot_index_snapshot_version         the snapshot in use (0: not following or publishing snapshots)
    briefbot_index_snapshot_published_timestamp_seconds   when that snapshot was published
    """

    def __init__(self, corpus: "Corpus"):
        self.registry = CollectorRegistry()
        self.questions = Counter("briefbot_questions", "Messages answered, by outcome.", ["outcome"],
                                 registry=self.registry)
        self.answer_seconds = Histogram("briefbot_answer_seconds", "Time from a message to its reply being ready.",
                                        buckets=LATENCY_BUCKETS, registry=self.registry)
        self.digests_sent = Counter("briefbot_digests_sent", "Daily digests delivered completely.",
                                    registry=self.registry)
        self.digests_failed = Counter("briefbot_digests_failed", "Digest sends that failed, by kind.", ["kind"],
                                      registry=self.registry)
        self.registry.register(_IndexCollector(corpus))

    def observe_question(self, outcome: str, seconds: float) -> None:
        self.questions.labels(outcome).inc()
        self.answer_seconds.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _IndexCollector:
    """The index in use, read when Prometheus scrapes (a follower swaps snapshots in behind our back)."""

    def __init__(self, corpus: "Corpus"):
        self.corpus = corpus

    def collect(self) -> Iterator[Metric]:
        snapshot = self.corpus.snapshot
        yield GaugeMetricFamily("briefbot_index_passages", "Passages in the index in use.", value=len(snapshot.index))
        yield GaugeMetricFamily("briefbot_index_snapshot_version", "Index snapshot in use (0: none).",
                                value=snapshot.version or 0)
        if snapshot.published_at is not None:
            yield GaugeMetricFamily("briefbot_index_snapshot_published_timestamp_seconds",
                                    "When the index snapshot in use was published.",
                                    value=snapshot.published_at.timestamp())


def database_reachable(app: "Briefbot") -> bool:
    """One trivial query; any error means unreachable (the reason goes to the log, not to the caller)."""
    try:
        with app.corpus.store.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except Exception as exc:  # noqa: BLE001 - every driver error means the same here
        log.warning("health check: database unreachable: %s", type(exc).__name__)
        log.debug("health check failure", exc_info=True)
        return False


async def health(app: "Briefbot") -> tuple[int, dict]:
    """The status code and body of /healthz."""
    try:
        db_ok = await asyncio.wait_for(asyncio.to_thread(database_reachable, app), DB_TIMEOUT_SECONDS)
    except asyncio.TimeoutError:
        log.warning("health check: database did not answer within %.0f s", DB_TIMEOUT_SECONDS)
        db_ok = False
    corpus = app.corpus
    snapshot = corpus.snapshot
    waiting = corpus.role == "follower" and snapshot.version is None
    body = {
        "ok": db_ok and not waiting,
        "database": "ok" if db_ok else "unreachable",
        "role": corpus.role,
        "index_version": snapshot.version,
        "index_published_at": snapshot.published_at.isoformat() if snapshot.published_at else None,
        "index_kind": snapshot.index.kind,
        "passages": len(snapshot.index),
    }
    if waiting:
        body["waiting_for"] = "the first index snapshot from `briefbot worker`"
    return (200 if body["ok"] else 503), body


class OpsServer:
    """/healthz and /metrics over HTTP on `listen:port`, on the event loop it is started from."""

    def __init__(self, app: "Briefbot", listen: str, port: int):
        self.app = app
        self.listen = listen
        self.port = port
        self._server: "HTTPServer | None" = None

    async def start(self) -> None:
        import tornado.web
        from tornado.httpserver import HTTPServer

        app = self.app

        class HealthHandler(tornado.web.RequestHandler):
            async def get(self) -> None:
                status, body = await health(app)
                self.set_status(status)
                self.set_header("Content-Type", "application/json")
                self.set_header("Cache-Control", "no-store")
                self.finish(json.dumps(body))

        class MetricsHandler(tornado.web.RequestHandler):
            def get(self) -> None:
                self.set_header("Content-Type", CONTENT_TYPE_LATEST)
                self.finish(app.metrics.exposition())

        web = tornado.web.Application([(r"/healthz", HealthHandler), (r"/metrics", MetricsHandler)],
                                      log_function=_quiet)
        self._server = HTTPServer(web)
        self._server.listen(self.port, address=self.listen)
        log.info("health and metrics on http://%s:%d/healthz and /metrics", self.listen, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            await self._server.close_all_connections()
            self._server = None


def _quiet(handler) -> None:
    """Probes and scrapes every few seconds would drown the log; only errors are worth a line."""
    if handler.get_status() >= 500 and handler.request.path != "/healthz":
        log.warning("%s %s -> %d", handler.request.method, handler.request.path, handler.get_status())

