"""Index snapshots: one writer publishes the indexes, serving processes follow them.

One process (`briefbot worker`) ingests and embeds; every time the corpus changed it writes the FAISS and
BM25 indexes of that moment into `<data_dir>/index/snapshots/<version>/`, under a hidden temporary name
that is renamed into place only once every file is complete, and then names that version in the database
(the `Meta` row `index_snapshot`). Serving processes read that row every few seconds (one primary-key
lookup), load a newer version beside the one in use and swap it in with one assignment; a question that
started on the old snapshot finishes on it (`Corpus.reading`). The row is written last, so a reader never
sees a version whose files are not all there; old versions are kept for a while and then pruned.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from bot.catalog import PassageCatalog
from bot.storage import Store
from index.lexical import LexicalCorrupt, LexicalIndex
from index.atomic import fsync_dir
from index.vectors import IndexCorrupt, VectorIndex

log = logging.getLogger(__name__)

SNAPSHOT_KEY = "index_snapshot"  # the Meta row naming the current version
INDEX_FILE = "passages.faiss"
LEXICAL_FILE = "passages.bm25.npz"
MANIFEST_FILE = "manifest.json"
TEMP_PREFIX = ".tmp-"
# A superseded snapshot stays at least this long (beyond the newest `keep`): a follower that read the row
# just before a newer version was published still finds the files it was told about.
PRUNE_GRACE_SECONDS = 120.0
STALE_TEMP_SECONDS = 3600.0  # a temporary folder this old was left by a publisher that died


class SnapshotUnavailable(Exception):
    """The named snapshot's files are missing or unreadable (not published completely, pruned, damaged)."""


@dataclass(frozen=True)
class IndexSnapshot:
    """The indexes one question reads together. Replaced as a whole; a follower never changes one in place.

    `version` is None for the index files of a process that neither follows nor publishes snapshots.
    """

    version: int | None
    index: VectorIndex
    lexical: LexicalIndex
    catalog: PassageCatalog
    published_at: datetime | None = None


@dataclass(frozen=True)
class Published:
    """What the database says about the current snapshot."""

    version: int
    passages: int
    kind: str
    published_at: datetime

    def to_meta(self) -> str:
        return json.dumps({"version": self.version, "passages": self.passages, "kind": self.kind,
                           "published_at": self.published_at.isoformat()})

    @classmethod
    def from_meta(cls, text: str | None) -> "Published | None":
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls(int(data["version"]), int(data["passages"]), str(data["kind"]),
                       datetime.fromisoformat(data["published_at"]))
        except (ValueError, KeyError, TypeError) as exc:
            log.error("the database's %s row is unreadable (%s): %r", SNAPSHOT_KEY, exc, text[:200])
            return None


def read_published(store: Store) -> Published | None:
    """The current snapshot as the database names it; None before the first publication."""
    return Published.from_meta(store.get_meta(SNAPSHOT_KEY))


def version_name(version: int) -> str:
    return f"{version:08d}"


class SnapshotDir:
    """The snapshot folders under `<data_dir>/index/snapshots`: written whole, read, pruned."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, version: int) -> Path:
        return self.root / version_name(version)

    def versions(self) -> list[int]:
        """Complete snapshots on disk, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(int(p.name) for p in self.root.iterdir() if p.is_dir() and p.name.isdigit())

    def write(self, version: int, index: VectorIndex, lexical: LexicalIndex) -> Path:
        """Write both indexes and a manifest into a hidden folder, fsync, then rename it to the version.

        Raises FileExistsError when that version already exists (another publisher got there first)."""
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.path(version)
        if target.exists():
            raise FileExistsError(target)
        temp = self.root / f"{TEMP_PREFIX}{version_name(version)}-{os.getpid()}-{secrets.token_hex(4)}"
        temp.mkdir()
        try:
            index.save(temp / INDEX_FILE)
            lexical.save(temp / LEXICAL_FILE)
            manifest = {"version": version, "passages": len(index), "kind": index.kind,
                        "written_at": datetime.now(timezone.utc).isoformat()}
            with open(temp / MANIFEST_FILE, "w", encoding="utf-8") as handle:
                json.dump(manifest, handle)
                handle.flush()
                os.fsync(handle.fileno())
            fsync_dir(temp)
            os.rename(temp, target)  # atomic; fails rather than replace an existing, non-empty folder
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        fsync_dir(self.root)
        return target

    def load(self, version: int, dim: int) -> tuple[VectorIndex, LexicalIndex]:
        folder = self.path(version)
        try:
            manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
            index = VectorIndex.load(folder / INDEX_FILE, dim)
            lexical = LexicalIndex.load(folder / LEXICAL_FILE)
        except (OSError, ValueError, IndexCorrupt, LexicalCorrupt) as exc:
            raise SnapshotUnavailable(f"snapshot {version_name(version)}: {exc}") from exc
        if len(index) != manifest.get("passages"):
            raise SnapshotUnavailable(f"snapshot {version_name(version)}: {len(index)} passages, manifest says "
                                      f"{manifest.get('passages')}")
        return index, lexical

    def prune(self, keep: int, current: int | None, grace_seconds: float = PRUNE_GRACE_SECONDS) -> list[int]:
        """Delete snapshots older than the newest `keep`, once superseded for `grace_seconds`; never `current`.

        Returns the versions deleted. Temporary folders of a publisher that died are removed too."""
        now = time.time()
        versions = self.versions()
        removed: list[int] = []
        for older, newer in zip(versions, versions[1:]):
            if older in versions[-keep:] or older == current:
                continue
            try:
                superseded_at = (self.path(newer) / MANIFEST_FILE).stat().st_mtime
            except OSError:
                continue
            if now - superseded_at < grace_seconds:
                continue
            shutil.rmtree(self.path(older), ignore_errors=True)
            removed.append(older)
        for temp in self.root.glob(f"{TEMP_PREFIX}*") if self.root.is_dir() else ():
            try:
                if now - temp.stat().st_mtime > STALE_TEMP_SECONDS:
                    shutil.rmtree(temp, ignore_errors=True)
            except OSError:
                pass
        if removed:
            log.info("pruned index snapshot(s) %s", ", ".join(version_name(v) for v in removed))
        return removed


class SnapshotWatcher:
    """A daemon thread that asks for a newer snapshot every `interval` seconds until stopped."""

    def __init__(self, refresh: Callable[[], object], interval: float):
        self._refresh = refresh
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="snapshot-watcher", daemon=True)
        self._failing = False

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._refresh()
                if self._failing:
                    log.info("index snapshots can be checked again")
                self._failing = False
            except Exception:  # noqa: BLE001 - a database hiccup must not end the watching; said once
                if not self._failing:
                    log.warning("could not check for a new index snapshot; still serving the one in use",
                                exc_info=True)
                self._failing = True
