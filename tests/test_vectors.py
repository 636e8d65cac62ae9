"""The FAISS wrapper: search by passage id, removal, atomic save, and a damaged file detected."""

from pathlib import Path

import numpy as np
import pytest

from index.vectors import IndexCorrupt, VectorIndex


def unit_vectors(count: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_search_returns_passage_ids_best_first():
    vectors = unit_vectors(20)
    index = VectorIndex(8)
    index.add(list(range(100, 120)), vectors)
    hits = index.search(vectors[7], 3)
    assert hits[0][0] == 107
    assert hits[0][1] == pytest.approx(1.0, abs=1e-5)
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)


def test_removed_passages_are_never_returned():
    vectors = unit_vectors(10)
    index = VectorIndex(8)
    index.add(list(range(10)), vectors)
    assert index.remove({3, 4}) == 2
    assert index.ids() == set(range(10)) - {3, 4}
    assert all(pid not in (3, 4) for pid, _ in index.search(vectors[3], 10))


def test_save_is_atomic_and_round_trips(tmp_path: Path):
    index = VectorIndex(8)
    index.add([5, 6, 7], unit_vectors(3))
    path = tmp_path / "index" / "passages.faiss"
    index.save(path)
    index.add([8], unit_vectors(1, seed=1))
    index.save(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["passages.faiss"], "no temporary file is left behind"
    assert VectorIndex.load(path, 8).ids() == {5, 6, 7, 8}


def test_damaged_file_is_reported_as_corrupt(tmp_path: Path):
    path = tmp_path / "passages.faiss"
    path.write_bytes(b"this is not a faiss index")
    with pytest.raises(IndexCorrupt):
        VectorIndex.load(path, 8)


def test_wrong_shape_is_refused():
    with pytest.raises(ValueError):
        VectorIndex(8).add([1, 2], unit_vectors(1))
