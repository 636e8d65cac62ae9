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


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf-sq8"])
def test_every_kind_searches_removes_and_round_trips(kind, tmp_path: Path):
    vectors = unit_vectors(2000, dim=16, seed=3)
    index = VectorIndex.build(16, list(range(2000)), vectors, kind)
    assert index.kind == kind and len(index) == 2000
    assert index.search(vectors[42], 1)[0][0] == 42
    index.remove({42, 43})
    assert all(pid not in (42, 43) for pid, _ in index.search(vectors[42], 10))
    index.save(tmp_path / "i.npz")
    loaded = VectorIndex.load(tmp_path / "i.npz", 16)
    assert loaded.kind == kind and loaded.ids() == set(range(2000)) - {42, 43}, "removals survive a restart"
    loaded.add([42], vectors[42:43])
    assert loaded.search(vectors[42], 1)[0][0] == 42 and len(loaded) == 1999


def test_kind_follows_corpus_size():
    from index.vectors import FLAT_MAX, HNSW_MAX, choose_kind

    assert choose_kind(1000) == "flat"
    assert choose_kind(FLAT_MAX + 1) == "hnsw"
    assert choose_kind(HNSW_MAX + 1) == "ivf-sq8"


def test_growing_corpus_switches_kind_without_losing_passages(make_app, tmp_path, monkeypatch):
    import json

    import index.vectors as vectors_module

    monkeypatch.setattr(vectors_module, "FLAT_MAX", 3)
    lines = [{"id": f"g{i}", "title": f"T{i}", "text": f"Story number {i} about harbour cranes."} for i in range(6)]
    source = tmp_path / "g.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    app = make_app()
    app.corpus.ingest_paths([source])
    assert app.corpus.index.kind == "hnsw"
    assert app.corpus.index.ids() == app.corpus.store.passage_ids() and len(app.corpus.index) == 6
    assert make_app().corpus.index.kind == "hnsw"
