"""The vector backend: FAISS behind one narrow interface, saved atomically with the ids it holds.

The index is derived data. Whatever is on disk can be thrown away and rebuilt from the embeddings
stored in the database, so saving only has to guarantee one thing: a reader never sees half a file.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import faiss
import numpy as np

log = logging.getLogger(__name__)


class IndexCorrupt(Exception):
    """The file on disk is not a readable index; rebuild it from the database."""


class VectorIndex:
    """Inner-product search over L2-normalised vectors, keyed by passage id."""

    def __init__(self, dim: int, index: faiss.Index | None = None):
        self.dim = dim
        self._index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    @property
    def kind(self) -> str:
        inner = faiss.downcast_index(self._index.index) if hasattr(self._index, "index") else self._index
        return type(inner).__name__

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def ids(self) -> set[int]:
        """The passage ids the index holds (what start-up compares with the database)."""
        return set(faiss.vector_to_array(self._index.id_map).tolist())

    def add(self, ids: np.ndarray | list[int], vectors: np.ndarray) -> None:
        ids_array = np.asarray(ids, dtype=np.int64)
        if len(ids_array) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(ids_array), self.dim):
            raise ValueError(f"expected {len(ids_array)} vectors of dimension {self.dim}, got {vectors.shape}")
        self._index.add_with_ids(vectors, ids_array)

    def remove(self, ids: list[int] | set[int]) -> int:
        if not ids:
            return 0
        return int(self._index.remove_ids(np.asarray(sorted(ids), dtype=np.int64)))

    def vectors(self, ids: list[int]) -> np.ndarray:
        """The stored vectors of these passage ids (all must be in the index), from memory."""
        if not ids:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.vstack([self._index.reconstruct(int(i)) for i in ids]).astype(np.float32, copy=False)

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Best `k` (passage id, cosine) pairs for one query vector, best first."""
        if len(self) == 0 or k <= 0:
            return []
        query = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        scores, ids = self._index.search(query, min(k, len(self)))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    def save(self, path: Path) -> None:
        """Write to a temporary file in the same folder, fsync, then rename over the old one."""
        path.parent.mkdir(parents=True, exist_ok=True)
        data = faiss.serialize_index(self._index)
        fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data.tobytes())
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp_name, 0o644)  # mkstemp makes it private; the index holds nothing secret
            os.replace(tmp_name, path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)

    @classmethod
    def load(cls, path: Path, dim: int) -> "VectorIndex":
        try:
            raw = np.fromfile(path, dtype=np.uint8)
            index = faiss.deserialize_index(raw)
        except Exception as exc:  # faiss raises RuntimeError with C++ text for any damage
            raise IndexCorrupt(f"{path}: {exc}") from exc
        if index.d != dim or not hasattr(index, "id_map"):
            raise IndexCorrupt(f"{path}: dimension {index.d}, expected {dim}")
        return cls(dim, index)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
