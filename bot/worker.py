"""`briefbot worker`: the single writer when the bot runs as several processes.

It ingests whatever appears in the watched folders and, if any feeds are followed, polls the due ones;
each cycle that changed the corpus ends with one new index snapshot published (bot/snapshots.py), which
the serving replicas swap in within a few seconds. Serving processes never ingest or build an index.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from bot.app import Briefbot
from bot.corpus import IngestReport
from index.parsers import iter_inputs

log = logging.getLogger(__name__)

SETTLE_SECONDS = 2.0  # a file modified more recently may still be being written; it is taken next cycle


class FolderWatch:
    """Files under the watched folders that are new or changed since they were last ingested.

    Remembered by (modification time, size) in memory: after a restart everything is looked at once more,
    and ingestion skips the articles it already has unchanged (by content hash)."""

    def __init__(self, folders: list[Path], settle_seconds: float = SETTLE_SECONDS):
        self.folders = folders
        self.settle_seconds = settle_seconds
        self._seen: dict[Path, tuple[int, int]] = {}

    def changed(self) -> dict[Path, tuple[int, int]]:
        """New or modified files that have stopped changing, with the stamp to `mark` once ingested."""
        found: dict[Path, tuple[int, int]] = {}
        now = time.time()
        for path in iter_inputs([f for f in self.folders if f.is_dir()]):
            try:
                stat = path.stat()
            except OSError:  # deleted meanwhile
                continue
            stamp = (stat.st_mtime_ns, stat.st_size)
            if self._seen.get(path) == stamp or now - stat.st_mtime < self.settle_seconds:
                continue
            found[path] = stamp
        return found

    def mark(self, files: dict[Path, tuple[int, int]]) -> None:
        self._seen.update(files)


class IngestWorker:
    """One cycle: watched folders, then due feeds; the corpus (a publisher) publishes once if anything changed."""

    def __init__(self, app: Briefbot, folders: list[Path], interval: float, poll_feeds: bool = True,
                 settle_seconds: float = SETTLE_SECONDS):
        if app.corpus.role != "publisher":
            raise ValueError(f"the worker must publish index snapshots (its corpus is {app.corpus.role})")
        self.app = app
        self.watch = FolderWatch(folders, settle_seconds)
        self.interval = interval
        self.poll_feeds = poll_feeds

    def run_once(self, keep_going=lambda: True) -> IngestReport:
        corpus = self.app.corpus
        report = IngestReport()
        files = self.watch.changed()
        if files:
            report.merge(corpus.ingest_paths(sorted(files), finish=False))
            self.watch.mark(files)
            for failure in report.failures:
                log.warning("skipped %s: %s", failure.origin, failure.reason)
        if self.poll_feeds and keep_going():
            run = self.app.feeds.poll_due(keep_going=keep_going)  # ends with corpus.finish_ingest()
            if run is not None:
                report.merge(run.report)
                for outcome in run.outcomes:
                    log.log(logging.DEBUG if outcome.state == "unchanged" else logging.INFO, "%s", outcome.line())
        corpus.finish_ingest()  # saves and publishes, once, if anything above changed the corpus
        if report.added or report.updated:
            log.info("worker: %s", report.summary())
        return report

    def run(self, stop: threading.Event) -> None:
        """Cycle every `interval` seconds until `stop` is set; a failed cycle is logged and retried."""
        log.info("worker: watching %s; feeds %s; every %.0f s",
                 ", ".join(map(str, self.watch.folders)) or "no folders", "on" if self.poll_feeds else "off",
                 self.interval)
        while not stop.is_set():
            try:
                self.run_once(keep_going=lambda: not stop.is_set())
            except Exception:  # noqa: BLE001 - the worker outlives one bad cycle (database restart, full disk)
                log.exception("worker cycle failed; trying again in %.0f s", self.interval)
            stop.wait(self.interval)
        log.info("worker stopped")
