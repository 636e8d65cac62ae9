"""The vector backend: FAISS behind one narrow interface, saved atomically with the ids it holds.

The index is derived data. Whatever is on disk can be thrown away and rebuilt from the embeddings
stored in the database, so saving only has to guarantee one thing: a reader never sees half a file.

The kind of index follows the corpus size (measured on this machine kind, see
../shared/notes/encoder-and-index-measurements.md): exact Flat search while it is cheap, HNSW when
Flat's linear scan starts to cost milliseconds, IVF with 8-bit scalar quantisation when HNSW's
memory (about 1.7 GB per million passages) would be too much.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import threading
from pathlib import Path

import faiss
import numpy as np

from index.atomic import write_atomically

log = logging.getLogger(__name__)


@contextlib.contextmanager
def one_omp_thread():
    """One query has nothing to share among threads, and OpenMP's team costs more than the search: on two busy
    cores an HNSW query took 8 ms with two threads and 0.5 ms with one (p50 at 91k passages). Only this
    thread's setting changes, and only for the call; builds keep every core."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)

FLAT_MAX = 20_000  # exact search under ~2 ms a question
HNSW_MAX = 400_000  # above this HNSW's graph and full vectors cost more memory than we want
HNSW_M = 32
HNSW_EF_SEARCH = 256  # recall@10 against Flat: 0.993 on the 91k real reuters-dev embeddings (ties counted)
HNSW_EF_CONSTRUCTION = 80
IVF_NPROBE_SHARE = 0.17  # lists probed, as a share of all lists (bounded below). On the 91k real reuters-dev
# embeddings (1,209 lists) recall@10 against Flat was 0.94 at 3%, 0.965 at 6%, 0.976 at 10%, 0.985 at 16.5%
# (`briefbot bench` prints it at every size; ties between identical wire copies count as found)
KINDS = ("flat", "hnsw", "ivf-sq8")


class IndexCorrupt(Exception):
    """The file on disk is not a readable index; rebuild it from the database."""


def choose_kind(count: int) -> str:
    """The index kind for a corpus of `count` passages."""
    if count <= FLAT_MAX:
        return "flat"
    if count <= HNSW_MAX:
        return "hnsw"
    return "ivf-sq8"


def _new_faiss(kind: str, dim: int, training: np.ndarray | None = None) -> faiss.Index:
    if kind == "flat":
        inner = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        inner.hnsw.efSearch = HNSW_EF_SEARCH
    elif kind == "ivf-sq8":
        if training is None or len(training) == 0:
            raise ValueError("an IVF index needs vectors to train on")
        lists = max(16, min(int(4 * math.sqrt(len(training))), len(training) // 39))
        quantizer = faiss.IndexFlatIP(dim)
        inner = faiss.IndexIVFScalarQuantizer(quantizer, dim, lists, faiss.ScalarQuantizer.QT_8bit,
                                              faiss.METRIC_INNER_PRODUCT)
        inner.own_fields = True
        sample = training[np.random.default_rng(0).permutation(len(training))[: lists * 64]]
        inner.train(np.ascontiguousarray(sample, dtype=np.float32))
        inner.nprobe = max(16, int(lists * IVF_NPROBE_SHARE))
        inner.set_direct_map_type(faiss.DirectMap.Hashtable)  # reconstruct and remove by passage id
        quantizer.this.disown()
        return inner  # IVF keeps external ids itself
    else:
        raise ValueError(f"unknown index kind {kind!r}; expected one of {KINDS}")
    return faiss.IndexIDMap2(inner)


def _stored_ids(index: faiss.Index) -> set[int]:
    """Every id physically in a FAISS index (IDMap2 or IVF)."""
    if hasattr(index, "id_map"):
        return set(faiss.vector_to_array(index.id_map).tolist())
    ivf = faiss.extract_index_ivf(index)
    ids: set[int] = set()
    for lst in range(ivf.nlist):
        size = ivf.invlists.list_size(lst)
        if size:
            ids.update(faiss.rev_swig_ptr(ivf.invlists.get_ids(lst), size).tolist())
    return ids


class VectorIndex:
    """Inner-product search over L2-normalised vectors, keyed by passage id.

    HNSW cannot delete, so removed ids of an HNSW index are kept as tombstones and filtered from results
    until the next rebuild; they are saved with it.
    """

    def __init__(self, dim: int, index: faiss.Index | None = None, kind: str = "flat",
                 deleted: set[int] | None = None):
        self.dim = dim
        self.kind = kind
        self._index = index if index is not None else _new_faiss(kind, dim)
        self._deleted: set[int] = set(deleted or ())
        # The bot ingests feeds in a worker thread while questions search in others; FAISS releases the
        # GIL, so an add that reallocates must never run beside a search.
        self._lock = threading.RLock()

    @classmethod
    def build(cls, dim: int, ids: list[int], vectors: np.ndarray, kind: str | None = None) -> "VectorIndex":
        """A fresh index of the kind that suits this many passages (or the kind asked for)."""
        kind = kind or choose_kind(len(ids))
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        index = cls(dim, _new_faiss(kind, dim, vectors if kind == "ivf-sq8" else None), kind)
        index.add(ids, vectors)
        return index

    def __len__(self) -> int:
        return int(self._index.ntotal) - len(self._deleted)

    def ids(self) -> set[int]:
        """The passage ids the index holds (what start-up compares with the database)."""
        with self._lock:
            return _stored_ids(self._index) - self._deleted

    def add(self, ids: np.ndarray | list[int], vectors: np.ndarray) -> None:
        ids_array = np.asarray(ids, dtype=np.int64)
        if len(ids_array) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(ids_array), self.dim):
            raise ValueError(f"expected {len(ids_array)} vectors of dimension {self.dim}, got {vectors.shape}")
        with self._lock:
            revived = self._deleted.intersection(ids_array.tolist())
            if revived:  # an id coming back after deletion (HNSW): physically drop the stale copy first
                self._rebuild_without(revived)
            self._index.add_with_ids(vectors, ids_array)

    def remove(self, ids: list[int] | set[int]) -> int:
        with self._lock:
            present = set(ids) & self.ids()
            if not present:
                return 0
            if self.kind == "hnsw":
                self._deleted |= present
                return len(present)
            return int(self._index.remove_ids(np.asarray(sorted(present), dtype=np.int64)))

    def vectors(self, ids: list[int]) -> np.ndarray:
        """The stored vectors of these passage ids, from memory.

        Exact for Flat and HNSW; IVF-SQ8 gives them back 8-bit quantised (cosine error ~1e-3). An id the
        index no longer holds (an article replaced by an ingest running meanwhile, while BM25 still knows
        its old passages) gives a zero vector, so the stale candidate ranks last instead of failing."""
        if not ids:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            return np.vstack([self._reconstruct(int(i)) for i in ids]).astype(np.float32, copy=False)

    def _reconstruct(self, passage_id: int) -> np.ndarray:
        try:
            return self._index.reconstruct(passage_id)
        except RuntimeError:  # faiss: "key ... not found"
            return np.zeros(self.dim, dtype=np.float32)

    def all_vectors(self) -> tuple[list[int], np.ndarray]:
        ids = sorted(self.ids())
        return ids, self.vectors(ids)

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Best `k` (passage id, cosine) pairs for one query vector, best first."""
        if len(self) == 0 or k <= 0:
            return []
        query = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        with self._lock, one_omp_thread():
            want = min(k + len(self._deleted), int(self._index.ntotal))
            scores, ids = self._index.search(query, want)
            hits = [(int(i), float(s)) for i, s in zip(ids[0], scores[0])
                    if i >= 0 and int(i) not in self._deleted]
        return hits[:k]

    def _rebuild_without(self, drop: set[int]) -> None:
        keep = sorted(_stored_ids(self._index) - self._deleted - drop)
        vectors = self.vectors(keep)
        rebuilt = VectorIndex.build(self.dim, keep, vectors, self.kind)
        self._index, self._deleted = rebuilt._index, set()

    # --- persistence ------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """One file (FAISS bytes, kind, tombstones), replaced atomically."""
        buffer = io.BytesIO()
        with self._lock:
            np.savez(buffer, faiss=faiss.serialize_index(self._index), kind=np.array(self.kind),
                     deleted=np.asarray(sorted(self._deleted), dtype=np.int64))
        write_atomically(path, lambda handle: handle.write(buffer.getbuffer()))

    @classmethod
    def load(cls, path: Path, dim: int) -> "VectorIndex":
        try:
            with np.load(path, allow_pickle=False) as saved:
                index = faiss.deserialize_index(saved["faiss"])
                kind = str(saved["kind"])
                deleted = set(saved["deleted"].tolist())
        except Exception as exc:  # numpy, zip or faiss errors all mean the same: rebuild
            raise IndexCorrupt(f"{path}: {exc}") from exc
        if index.d != dim or kind not in KINDS or (kind != "ivf-sq8" and not hasattr(index, "id_map")):
            raise IndexCorrupt(f"{path}: dimension {index.d} or kind {kind!r} unexpected")
        if kind == "hnsw":
            faiss.downcast_index(index.index).hnsw.efSearch = HNSW_EF_SEARCH
        return cls(dim, index, kind, deleted)

