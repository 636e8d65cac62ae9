"""The corpus: the database plus the FAISS index derived from it, kept in agreement.

Order of writes on ingest: database first (one transaction per article, embeddings included), index
second. A crash in between leaves passages the index lacks; `open()` notices and adds them from the
stored embeddings, so the two never disagree for long and nothing needs re-embedding.

A corpus plays one of three roles (`choose_role`). *local* (the default, one process): as above. *publisher*
(`briefbot worker`, or any ingest once a worker has published): the same, and after every change it publishes
an index snapshot (bot/snapshots.py). *follower* (serving replicas): it loads the published snapshot, swaps
in newer ones as they appear, and never writes or rebuilds an index itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from bot.catalog import PassageCatalog
from bot.settings import Settings
from bot.snapshots import (
    SNAPSHOT_KEY,
    IndexSnapshot,
    Published,
    SnapshotDir,
    SnapshotUnavailable,
    SnapshotWatcher,
    read_published,
    version_name,
)
from bot.storage import Article, Passage, Store, bytes_to_matrix, vector_to_bytes
from index.attribution import attribute_chunks
from index.chunker import chunk_article, split_sentences
from index.embeddings import EMBEDDING_DIM, Encoder, SentenceTransformerEncoder
from index.lexical import LexicalCorrupt, LexicalIndex
from index.parsers import ParseFailure, iter_inputs, parse_path
from index.sentence_vectors import encode_passages
from index.sentence_vectors import to_bytes as sentences_to_bytes
from index.types import ParsedArticle
from index.vectors import IndexCorrupt, VectorIndex, choose_kind

log = logging.getLogger(__name__)

INDEX_FILE = "passages.faiss"
LEXICAL_FILE = "passages.bm25.npz"
SAVE_EVERY_ARTICLES = 500
# The longest real article we have is ~10k characters (~20 passages). A 1 MB junk "article" from a feed would be
# ~800 passages: minutes of the (shared) encoder while questions wait. Beyond this, passages are not indexed.
MAX_PASSAGES_PER_ARTICLE = 200
EMBED_BATCH_PASSAGES = 256
SNAPSHOTS_DIR = "snapshots"
RETRY_UNREADABLE_SECONDS = 30.0  # a snapshot that could not be loaded is tried again after this long


class ReadOnlyCorpus(RuntimeError):
    """This process follows the snapshots a worker publishes; it must not write the corpus or its index."""


@dataclass
class _Prepared:
    """An article cut into attributed passages, waiting for its embeddings."""

    parsed: ParsedArticle
    key: str
    digest: str
    replace_id: int | None
    chunks: list


@dataclass
class IngestReport:
    """What an ingest run did, for the summary line and for scripts."""

    files: int = 0
    pages: int = 0  # web pages and feed entries (ingest_articles)
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    passages: int = 0
    failures: list[ParseFailure] = field(default_factory=list)

    def summary(self) -> str:
        inputs = f"{self.files} file(s)" if self.files or not self.pages else ""
        if self.pages:
            inputs += (", " if inputs else "") + f"{self.pages} page(s)"
        text = (
            f"{inputs}: {self.added} new article(s), {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.passages} passage(s) indexed"
        )
        if self.failures:
            text += f", {len(self.failures)} skipped"
        return text

    def merge(self, other: "IngestReport") -> "IngestReport":
        """Add another run's counts to this one (files and URLs given to one command)."""
        for name in ("files", "pages", "added", "updated", "unchanged", "passages"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failures.extend(other.failures)
        return self


def article_key(parsed: ParsedArticle) -> str:
    """A stable identity so the same article ingested twice is recognised and a changed one replaced."""
    if parsed.external_id:
        return f"id:{parsed.external_id}"[:512]
    if parsed.url:
        return f"url:{parsed.url}"[:512]
    title = re.sub(r"\W+", " ", parsed.title.lower()).strip()
    return f"title:{title}|{(parsed.source or '').lower()}"[:512]


def content_hash(parsed: ParsedArticle) -> str:
    fields = [parsed.title, parsed.text, parsed.source, parsed.author, parsed.dateline, parsed.url,
              parsed.published.isoformat() if parsed.published else None]
    return hashlib.sha256(json.dumps(fields, ensure_ascii=False).encode("utf-8")).hexdigest()


class Corpus:
    """Owns the store, the vector index and (lazily) the encoder for one data directory."""

    def __init__(self, settings: Settings, encoder: Encoder | None = None):
        self.settings = settings
        self.store = Store(settings.resolved_database_url)
        self._encoder = encoder
        self._encoder_lock = threading.Lock()  # the first questions arrive together: load the model once
        self._highlight_encoder: Encoder | None = None
        self.index_path = settings.index_dir / INDEX_FILE
        self.lexical_path = settings.index_dir / LEXICAL_FILE
        self.snapshots = SnapshotDir(settings.index_dir / SNAPSHOTS_DIR)
        self.role = "local"
        # Everything a question reads, in one reference: replacing it is one assignment (atomic), and a
        # question pinned to the old one by `reading()` keeps it until it is answered.
        self._current = IndexSnapshot(None, VectorIndex(encoder.dim if encoder else EMBEDDING_DIM), LexicalIndex(),
                                      PassageCatalog(self.store))
        self._pins = threading.local()
        self._refreshing = threading.Lock()
        self._retry_at: dict[int, float] = {}
        self._watcher: SnapshotWatcher | None = None
        self._dirty = False
        self._unpublished = False
        self._always_publish = False

    # --- the indexes in use -----------------------------------------------------------------------
    @property
    def snapshot(self) -> IndexSnapshot:
        """The indexes this thread reads: the ones pinned by `reading()`, otherwise the current ones."""
        return getattr(self._pins, "snapshot", None) or self._current

    @property
    def index(self) -> VectorIndex:
        return self.snapshot.index

    @index.setter
    def index(self, value: VectorIndex) -> None:
        self._current = replace(self._current, index=value)

    @property
    def lexical(self) -> LexicalIndex:
        return self.snapshot.lexical

    @lexical.setter
    def lexical(self, value: LexicalIndex) -> None:
        self._current = replace(self._current, lexical=value)

    @property
    def catalog(self) -> PassageCatalog:
        return self.snapshot.catalog

    @contextmanager
    def reading(self) -> Iterator[IndexSnapshot]:
        """Pin the current indexes to this thread for the duration of one question (re-entrant).

        A follower may swap in a newer snapshot meanwhile; this question still finishes on the one it
        started on, so its dense hits, BM25 scores and catalog lookups always agree with each other."""
        pinned = getattr(self._pins, "snapshot", None)
        if pinned is not None:
            yield pinned
            return
        self._pins.snapshot = self._current
        try:
            yield self._pins.snapshot
        finally:
            self._pins.snapshot = None

    # --- roles: local, publisher, follower ----------------------------------------------------------
    def choose_role(self, writer: bool = False, publish: bool = False) -> str:
        """Decide how this process treats the index (see the module docstring).

        `publish`: the worker, which always publishes. Otherwise snapshots are in use when
        BRIEFBOT_INDEX_SNAPSHOTS=follow, or (auto) once the database names one: a `writer` (ingest,
        reindex) then publishes after its changes, anything else follows. With `off`, always local."""
        mode = self.settings.index_snapshots
        self._always_publish = publish
        if publish:
            if mode == "off":
                raise ValueError("BRIEFBOT_INDEX_SNAPSHOTS=off: this process may not publish index snapshots")
            self.role = "publisher"
        elif mode == "off":
            self.role = "local"
        elif mode == "follow" or read_published(self.store) is not None:
            self.role = "publisher" if writer else "follower"
        else:
            self.role = "local"
        return self.role

    def close(self) -> None:
        """Stop watching for snapshots (the follower's thread)."""
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None

    @property
    def encoder(self) -> Encoder:
        """Loaded on first use: listing sources or rebuilding the index should not pay for the model."""
        if self._encoder is not None:
            return self._encoder
        with self._encoder_lock:
            if self._encoder is not None:
                return self._encoder
            from index.embeddings import make_encoder

            self._encoder = make_encoder(
                self.settings.encoder,
                model=self.settings.embedding_model,
                allow_download=self.settings.allow_model_download,
                batch_size=self.settings.embedding_batch_size,
                threads=self.settings.encoder_threads,
                torch_threads=self.settings.torch_threads,
                cache_dir=self.settings.models_dir,
            )
        return self._encoder

    @property
    def highlight_encoder(self) -> Encoder:
        """The model that encodes a shown passage's sentences for the bold one, for passages stored without
        sentence vectors (index/sentence_vectors.py); loaded on first need.

        With questions on ONNX fp32 it is the int8 variant of the same export (same best sentence, half the
        time); otherwise, or when int8 can't be loaded, the question encoder itself."""
        if self._highlight_encoder is not None:
            return self._highlight_encoder
        encoder = self.encoder
        with self._encoder_lock:
            if self._highlight_encoder is None:
                self._highlight_encoder = encoder
                # Only an int8 file exported beside the fp32 one: building it here would hold a question up.
                if (self.settings.highlight_encoder == "auto" and getattr(encoder, "variant", None) == "fp32"
                        and not isinstance(encoder.cache.read("int8"), str)):
                    try:
                        from index.onnx_encoder import OnnxEncoder

                        self._highlight_encoder = OnnxEncoder(
                            encoder.model.root, encoder.cache.cache_dir, "int8", batch_size=encoder.batch_size,
                            threads=encoder.threads, slug=encoder.model.slug)
                    except Exception as exc:  # noqa: BLE001 - the question encoder does the job too
                        log.warning("highlighting with %s (int8 unavailable: %s)", encoder.name, exc)
                log.info("bold sentences chosen with %s", self._highlight_encoder.name)
        return self._highlight_encoder

    # --- keeping the index in agreement with the database ---------------------------------------
    def open(self) -> None:
        """Local and publisher: load the saved indexes and repair them against the database (add the missing,
        drop the extra), the publisher then publishing a snapshot. Follower: load the published snapshot."""
        if self.role == "follower":
            self._follow()
            return
        self._open_local()
        first = self._always_publish and self._current.version is None
        if self.role == "publisher" and (self._unpublished or first):
            self.publish()  # the worker publishes on start, whatever a crash may have left unpublished

    def _open_local(self) -> None:
        if self.lexical_path.exists():
            try:
                self.lexical = LexicalIndex.load(self.lexical_path)
            except LexicalCorrupt as exc:
                log.warning("lexical index unreadable (%s); rebuilding from the database", exc)
        if self.index_path.exists():
            try:
                self.index = VectorIndex.load(self.index_path, self.index.dim)
            except IndexCorrupt as exc:
                log.warning("index unreadable (%s); rebuilding from the database", exc)
                self.reindex()
                return
        self.sync()

    def sync(self) -> tuple[int, int]:
        """Make both indexes hold exactly the database's passages. Returns (added, removed) for FAISS."""
        self._embed_missing()
        stored = self.store.passage_ids()
        if self.lexical.ids() != stored:
            self.rebuild_lexical()
        held = self.index.ids()
        extra = held - stored
        missing = stored - held
        removed = self.index.remove(extra)
        added = self._add_from_store(missing)
        if added or removed:
            log.info("index repaired: %d passage(s) added, %d removed", added, removed)
            self.catalog.invalidate()
            self._unpublished = True
        if self.resize_if_needed() or added or removed:
            self.save_index()
        return added, removed

    def reindex(self, kind: str | None = None) -> int:
        """Rebuild the index from the stored embeddings (and embed any passage that has none), of the
        kind that suits the corpus size unless one is asked for."""
        self._writable()
        self._embed_missing()
        self._rebuild_vectors(kind)
        self.save_index()
        self.rebuild_lexical()
        log.info("index rebuilt with %d passage(s) (%s)", len(self.index), self.index.kind)
        if self.role == "publisher":
            self.publish()
        return len(self.index)

    def _rebuild_vectors(self, kind: str | None = None) -> None:
        ids: list[int] = []
        blobs: list[bytes] = []
        for batch_ids, batch_blobs in self.store.iter_embeddings(None):
            for passage_id, blob in zip(batch_ids, batch_blobs):
                if blob is not None:
                    ids.append(passage_id)
                    blobs.append(blob)
        self.index = VectorIndex.build(self.index.dim, ids, bytes_to_matrix(blobs, self.index.dim), kind)

    def resize_if_needed(self) -> bool:
        """Switch Flat -> HNSW -> IVF-SQ8 as the corpus grows; the database's embeddings make it lossless."""
        wanted = choose_kind(len(self.index))
        if wanted == self.index.kind:
            return False
        log.info("corpus of %d passages: switching the index from %s to %s", len(self.index), self.index.kind, wanted)
        self._rebuild_vectors(wanted)
        self._unpublished = True
        return True

    def rebuild_lexical(self) -> None:
        """BM25 has no cheap incremental add, so it is rebuilt from the stored texts (seconds for 100k passages)."""
        ids, texts = self.store.passage_texts()
        self.lexical = LexicalIndex.build(ids, texts)
        self.lexical.save(self.lexical_path)
        self._unpublished = True
        log.info("lexical index built over %d passage(s)", len(ids))

    def save_index(self) -> None:
        self.index.save(self.index_path)
        self._dirty = False

    def _add_from_store(self, ids: set[int] | None) -> int:
        if ids is not None and not ids:
            return 0
        added = 0
        for batch_ids, blobs in self.store.iter_embeddings(ids):
            pairs = [(i, b) for i, b in zip(batch_ids, blobs) if b is not None]
            if not pairs:
                continue
            self.index.add([i for i, _ in pairs], bytes_to_matrix([b for _, b in pairs], self.index.dim))
            added += len(pairs)
        return added

    def _embed_missing(self) -> None:
        """Passages stored without an embedding (an interrupted run of an older version) get one now."""
        while True:
            pending = self.store.passages_missing_embeddings()
            if not pending:
                return
            vectors, sentences = encode_passages(self.encoder, [p.text for p in pending],
                                                 [split_sentences(p.text) for p in pending])
            self.store.set_embeddings({p.id: vector_to_bytes(v) for p, v in zip(pending, vectors)},
                                      {p.id: sentences_to_bytes(s) for p, s in zip(pending, sentences)})

    def add_sentence_vectors(self, progress: Callable[[int], None] | None = None) -> int:
        """Sentence vectors for passages stored before they existed (their sentences are otherwise encoded each
        time they are shown). Re-runs the encoder over those passages; their vectors and the index stay as they are."""
        self._writable()
        done = 0
        while True:
            pending = self.store.passages_without_sentence_vectors(limit=self.settings.embedding_batch_size * 16)
            if not pending:
                return done
            _, sentences = encode_passages(self.encoder, [p.text for p in pending],
                                           [split_sentences(p.text) for p in pending])
            self.store.set_sentence_vectors({p.id: sentences_to_bytes(s) for p, s in zip(pending, sentences)})
            done += len(pending)
            if progress:
                progress(done)

    # --- ingestion ------------------------------------------------------------------------------
    def ingest_paths(self, paths: Iterable[Path], progress: Callable[[int], None] | None = None,
                     finish: bool = True) -> IngestReport:
        """Parse, chunk, attribute, embed and store every article under `paths`; bad files are reported, not fatal.

        Passages of several articles are embedded in one batch (the encoder is the cost of everything),
        then each article is stored in its own transaction. `finish=False` as for `ingest_articles`.
        """
        report = IngestReport()

        def items() -> Iterable[ParsedArticle | ParseFailure]:
            for path in iter_inputs(list(paths)):
                report.files += 1
                yield from parse_path(path)

        self._ingest(items(), report, progress, EMBED_BATCH_PASSAGES)
        if finish:
            self.finish_ingest()
        return report

    def ingest_articles(self, articles: Iterable[ParsedArticle | ParseFailure],
                        progress: Callable[[int], None] | None = None, batch_passages: int = EMBED_BATCH_PASSAGES,
                        finish: bool = True) -> IngestReport:
        """The same pipeline for articles parsed elsewhere (web pages, feed entries); counted as pages.

        A small `batch_passages` keeps each encoder call short, so a bot answering questions while it
        ingests a feed never waits long for the (shared, serialised) encoder. With `finish=False` the
        index save and the BM25 rebuild are left to one `finish_ingest()` after several calls.
        """
        report = IngestReport()

        def counted() -> Iterable[ParsedArticle | ParseFailure]:
            for item in articles:
                report.pages += 1
                yield item

        self._ingest(counted(), report, progress, batch_passages)
        if finish:
            self.finish_ingest()
        return report

    def finish_ingest(self) -> None:
        """After ingesting: resize and save the vector index and rebuild BM25, if anything changed (and the
        publisher publishes a snapshot of them)."""
        if self._dirty:
            self.resize_if_needed()
            self.save_index()
            self.rebuild_lexical()
        if self.role == "publisher" and self._unpublished:
            self.publish()

    def _ingest(self, items: Iterable[ParsedArticle | ParseFailure], report: IngestReport,
                progress: Callable[[int], None] | None, batch_passages: int) -> None:
        """Prepare each article, embed in batches of about `batch_passages`, store; failures are reported."""
        self._writable()
        pending: list[_Prepared] = []
        since_save = 0
        for item in items:
            if isinstance(item, ParseFailure):
                log.warning("skipped %s: %s", item.origin, item.reason)
                report.failures.append(item)
                continue
            if any(p.key == article_key(item) for p in pending):
                self._store_batch(pending, report)  # the same article twice in a row: store the first first
            prepared = self._prepare(item, report)
            if prepared is not None:
                pending.append(prepared)
            if sum(len(p.chunks) for p in pending) >= batch_passages:
                self._store_batch(pending, report)
            since_save += 1
            if progress:
                progress(1)
            if since_save >= SAVE_EVERY_ARTICLES and self._dirty:
                self._store_batch(pending, report)
                self.save_index()
                since_save = 0
        self._store_batch(pending, report)

    def _prepare(self, parsed: ParsedArticle, report: IngestReport) -> "_Prepared | None":
        """Skip what is stored unchanged; otherwise cut the article into attributed passages."""
        key = article_key(parsed)
        digest = content_hash(parsed)
        existing = self.store.find_article(key)
        if existing is not None and existing.content_hash == digest:
            report.unchanged += 1
            return None
        chunks = chunk_article(parsed.text, max_words=self.settings.passage_max_words)
        if len(chunks) > MAX_PASSAGES_PER_ARTICLE:
            log.warning("%s: %d passages; only the first %d are indexed", parsed.origin, len(chunks),
                        MAX_PASSAGES_PER_ARTICLE)
            chunks = chunks[:MAX_PASSAGES_PER_ARTICLE]
        chunks = attribute_chunks(chunks)
        if not chunks:
            report.failures.append(ParseFailure(parsed.origin, "no text left after cleaning"))
            return None
        return _Prepared(parsed, key, digest, existing.id if existing else None, chunks)

    def _store_batch(self, pending: list["_Prepared"], report: IngestReport) -> None:
        """Embed every pending passage in one call, then store each article and add it to the index."""
        if not pending:
            return
        texts = [c.text for p in pending for c in p.chunks]
        vectors, sentences = encode_passages(self.encoder, texts, [split_sentences(text) for text in texts])
        offset = 0
        for prepared in pending:
            end = offset + len(prepared.chunks)
            self._store(prepared, vectors[offset:end], sentences[offset:end], report)
            offset = end
        pending.clear()

    def _store(self, prepared: "_Prepared", vectors: np.ndarray, sentences: list[np.ndarray | None],
               report: IngestReport) -> None:
        parsed = prepared.parsed
        article = Article(
            article_key=prepared.key, external_id=parsed.external_id, title=parsed.title, source=parsed.source,
            author=parsed.author, dateline=parsed.dateline, published=parsed.published, url=parsed.url,
            text=parsed.text, content_hash=prepared.digest,
        )
        passages = [
            Passage(
                position=c.position, text=c.text, start=c.start, end=c.end,
                speakers_json=json.dumps([s.as_dict() for s in c.speakers]), embedding=vector_to_bytes(v),
                sentence_vectors=sentences_to_bytes(sv), article_id=0,
            )
            for c, v, sv in zip(prepared.chunks, vectors, sentences)
        ]
        removed = self.store.save_article(article, passages, replace_id=prepared.replace_id)
        self.catalog.invalidate()
        self.index.remove(set(removed))
        self.index.add([p.id for p in passages], vectors)
        self._dirty = True
        report.passages += len(passages)
        if prepared.replace_id is None:
            report.added += 1
        else:
            report.updated += 1

    # --- snapshots: publishing (the worker) and following (serving replicas) ------------------------
    def publish(self) -> Published:
        """Write the indexes as a new snapshot, complete before it is named, then name it in the database.

        The publisher's own indexes stay in memory and go on changing with the next ingest; the snapshot
        on disk never changes once written. Old snapshots are pruned to BRIEFBOT_SNAPSHOT_KEEP."""
        if self.role != "publisher":
            raise ReadOnlyCorpus(f"only the publisher publishes index snapshots (this process is {self.role})")
        # Another writer (`briefbot ingest` beside the worker) may have stored articles since this process
        # last looked: publish the database as it is now, not as this process last saw it.
        self.sync()
        published = read_published(self.store)
        version = max([published.version if published else 0, *self.snapshots.versions()]) + 1
        while True:
            try:
                self.snapshots.write(version, self.index, self.lexical)
                break
            except FileExistsError:  # a second writer took this number meanwhile
                version += 1
        info = Published(version, len(self.index), self.index.kind, datetime.now(timezone.utc))
        self.store.set_meta(SNAPSHOT_KEY, info.to_meta())
        self._current = replace(self._current, version=version, published_at=info.published_at)
        self._unpublished = False
        log.info("index snapshot %s published: %d passage(s) (%s)", version_name(version), info.passages, info.kind)
        self.snapshots.prune(self.settings.snapshot_keep, current=version)
        return info

    def _follow(self) -> None:
        """Serve the published snapshot and watch for newer ones; never build or save an index here."""
        if not self.refresh_snapshot():
            log.info("no index snapshot loaded yet: waiting for `briefbot worker` to publish one "
                     "(checked every %.0f s)", self.settings.snapshot_poll_seconds)
        if self._watcher is None:
            self._watcher = SnapshotWatcher(self.refresh_snapshot, self.settings.snapshot_poll_seconds)
            self._watcher.start()

    def refresh_snapshot(self) -> bool:
        """Swap in the published snapshot when it is not the one in use; True when one was swapped in.

        The new indexes and catalog are loaded beside the current ones and replace them in one assignment;
        questions in flight keep the snapshot they pinned. One primary-key read when nothing changed."""
        if self.role != "follower":
            return False
        with self._refreshing:
            published = read_published(self.store)
            if published is None or published.version == self._current.version:
                return False
            retry_at = self._retry_at.get(published.version)
            if retry_at is not None and time.monotonic() < retry_at:
                return False
            try:
                index, lexical = self.snapshots.load(published.version, self._current.index.dim)
            except SnapshotUnavailable as exc:
                log.error("%s; still serving %s", exc, _describe(self._current))
                self._retry_at = {published.version: time.monotonic() + RETRY_UNREADABLE_SECONDS}
                return False
            catalog = PassageCatalog(self.store).load()
            previous = self._current
            self._current = IndexSnapshot(published.version, index, lexical, catalog, published.published_at)
            self._retry_at = {}
            log.info("index snapshot %s in use: %d passage(s) (%s); was %s", version_name(published.version),
                     len(index), index.kind, _describe(previous))
            return True

    def _writable(self) -> None:
        if self.role == "follower":
            raise ReadOnlyCorpus("this process serves the index snapshots `briefbot worker` publishes; "
                                 "ingest with the worker (or `briefbot ingest`), not here")

    # --- search -----------------------------------------------------------------------------------
    def embed_query(self, text: str) -> np.ndarray:
        return self.encoder.encode([text])[0]

    def dense_search(self, query_vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        return self.index.search(query_vector, k)

    def lexical_search(self, question: str, k: int) -> list[tuple[int, float]]:
        return self.lexical.search(question, k)


def _describe(snapshot: IndexSnapshot) -> str:
    if snapshot.version is None:
        return "no snapshot"
    return f"snapshot {version_name(snapshot.version)}"
