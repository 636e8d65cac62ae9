"""The ONNX Runtime encoder: same vectors as sentence-transformers, cached exports, and `auto`'s choice."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from index.embeddings import AUTO_ORDER, PACKAGED_SLUG, SentenceTransformerEncoder, make_encoder, packaged_model_path
from index.onnx_encoder import ModelFiles, OnnxEncoder, OnnxModelCache, OnnxUnavailable, default_threads

REPO = Path(__file__).resolve().parents[1]
SENTENCES = [
    "Iran said it struck militant bases in Pakistan, which retaliated two days later.",
    "who won the robotics competition?",
    "Shares fell 12 pct after the company reported a first-quarter loss of 4.5 mln dlrs, analysts said.",
    "Iran",
    "The central bank left rates unchanged. " * 60,  # far past 256 tokens: truncated like sentence-transformers
    "Heavy rain flooded roads across the region; officials urged residents to stay home.",
]


@pytest.fixture(scope="module")
def built(onnx_models_dir, encoder) -> Path:
    """Both variants exported once into the run's shared models folder (torch is loaded, so in-process)."""
    for variant in ("fp32", "int8"):
        OnnxEncoder(packaged_model_path(), onnx_models_dir, variant, slug=PACKAGED_SLUG)
    return onnx_models_dir


def onnx(cache: Path, variant: str, **kwargs) -> OnnxEncoder:
    return OnnxEncoder(packaged_model_path(), cache, variant, slug=PACKAGED_SLUG, **kwargs)


def copy_cache(built: Path, target: Path) -> Path:
    target.mkdir()
    for path in built.glob(f"{PACKAGED_SLUG}-*.onnx*"):
        shutil.copy2(path, target / path.name)
    return target


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_fp32_matches_sentence_transformers(built, encoder):
    vectors = onnx(built, "fp32").encode(SENTENCES)
    assert vectors.dtype == np.float32 and vectors.shape == (len(SENTENCES), 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert cosines(vectors, encoder.encode(SENTENCES)).min() >= 0.999


def test_int8_stays_close_to_sentence_transformers(built, encoder):
    vectors = onnx(built, "int8").encode(SENTENCES)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert cosines(vectors, encoder.encode(SENTENCES)).min() >= 0.97


def test_rows_come_back_in_input_order_despite_length_sorting(built):
    model = onnx(built, "fp32", batch_size=2)
    texts = [SENTENCES[i] for i in (4, 3, 0, 1, 5, 2, 3)]
    together = model.encode(texts)
    one_by_one = np.vstack([model.encode([t]) for t in texts])
    assert np.allclose(together, one_by_one, atol=1e-5)


def test_empty_input_gives_an_empty_matrix(built):
    vectors = onnx(built, "int8").encode([])
    assert vectors.shape == (0, 384) and vectors.dtype == np.float32


def test_threads_are_set_deliberately(built):
    default = onnx(built, "int8")
    assert default.threads == default_threads()
    options = onnx(built, "int8", threads=1)._session.get_session_options()
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1


def test_concurrent_calls_give_the_same_vectors(built):
    model = onnx(built, "int8")
    expected = model.encode(SENTENCES)
    results, errors = [], []

    def work():
        try:
            for _ in range(5):
                results.append(model.encode(SENTENCES))
        except Exception as exc:  # noqa: BLE001 — reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 15
    assert all(np.allclose(r, expected, atol=1e-6) for r in results)


def test_second_construction_reuses_the_cached_file(built, tmp_path, monkeypatch):
    cache = copy_cache(built, tmp_path / "models")
    before = (cache / f"{PACKAGED_SLUG}-int8.onnx").stat().st_mtime_ns

    def no_build(self):
        raise AssertionError("rebuilt a valid cache")

    monkeypatch.setattr(OnnxModelCache, "build", no_build)
    onnx(cache, "int8")
    onnx(cache, "int8")
    assert (cache / f"{PACKAGED_SLUG}-int8.onnx").stat().st_mtime_ns == before


@pytest.mark.parametrize("damage", ["garbage", "truncated", "sidecar", "missing", "unloadable"])
def test_damaged_cache_is_noticed_and_rebuilt(built, tmp_path, monkeypatch, damage):
    cache = copy_cache(built, tmp_path / "models")
    target = cache / f"{PACKAGED_SLUG}-int8.onnx"
    sidecar = cache / f"{PACKAGED_SLUG}-int8.onnx.json"
    if damage in ("garbage", "unloadable"):
        target.write_bytes(os.urandom(target.stat().st_size))
    elif damage == "truncated":
        target.write_bytes(target.read_bytes()[:1000])
    elif damage == "sidecar":
        sidecar.write_text("{not json")
    else:
        target.unlink()
    if damage == "unloadable":  # checksum made to agree: only onnxruntime itself can tell
        meta = json.loads(sidecar.read_text())
        data = target.read_bytes()
        meta.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
        sidecar.write_text(json.dumps(meta))
    else:
        model = ModelFiles.from_folder(packaged_model_path(), PACKAGED_SLUG)
        assert isinstance(OnnxModelCache(model, cache).read("int8"), str), "the damage goes unnoticed"

    builds = []

    def rebuild(self):  # the real export runs in the `built` fixture; here it is restoring the good files
        builds.append(self.cache_dir)
        copy_cache(built, tmp_path / "fresh")
        for path in (tmp_path / "fresh").iterdir():
            os.replace(path, self.cache_dir / path.name)

    monkeypatch.setattr(OnnxModelCache, "build", rebuild)
    vectors = onnx(cache, "int8").encode(SENTENCES[:2])
    assert builds == [cache]
    assert np.allclose(vectors, onnx(built, "int8").encode(SENTENCES[:2]), atol=1e-6)


def test_a_stale_export_from_another_model_is_not_used(built, tmp_path):
    cache = copy_cache(built, tmp_path / "models")
    meta = cache / f"{PACKAGED_SLUG}-fp32.onnx.json"
    meta.write_text(meta.read_text().replace('"max_seq_length": 256', '"max_seq_length": 128'))
    model = ModelFiles.from_folder(packaged_model_path(), PACKAGED_SLUG)
    assert "another model" in OnnxModelCache(model, cache).read("fp32")


def test_auto_takes_the_fastest_variant_that_passed_and_says_why(built, caplog):
    with caplog.at_level(logging.INFO, logger="index.embeddings"):
        chosen = make_encoder("auto", cache_dir=built)
    assert chosen.name == f"{AUTO_ORDER[0]}:{PACKAGED_SLUG}"
    assert "auto: fastest variant that passed the quality bar" in caplog.text


def test_auto_passes_over_a_variant_whose_build_check_failed(built, tmp_path, monkeypatch, caplog):
    cache = copy_cache(built, tmp_path / "models")
    sidecar = cache / f"{PACKAGED_SLUG}-int8.onnx.json"
    meta = json.loads(sidecar.read_text())
    meta["check_vs_torch"]["mean_cosine"] = 0.9
    sidecar.write_text(json.dumps(meta))
    monkeypatch.setattr("index.embeddings.AUTO_ORDER", ("onnx-int8", "onnx-fp32"))
    with caplog.at_level(logging.INFO, logger="index.embeddings"):
        chosen = make_encoder("auto", cache_dir=cache)
    assert chosen.name == f"onnx-fp32:{PACKAGED_SLUG}"
    assert "onnx-int8 failed its build-time check" in caplog.text


def test_auto_falls_back_to_torch_when_onnxruntime_is_missing(tmp_path, monkeypatch, caplog, encoder):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    with caplog.at_level(logging.INFO, logger="index.embeddings"):
        chosen = make_encoder("auto", cache_dir=tmp_path / "models")
    assert isinstance(chosen, SentenceTransformerEncoder)
    assert "sentence-transformers fallback" in caplog.text and "onnxruntime is not importable" in caplog.text
    assert not (tmp_path / "models").exists(), "nothing exported without a runtime to run it"


def test_an_explicit_onnx_choice_that_cannot_be_met_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(OnnxUnavailable, match="onnxruntime"):
        make_encoder("onnx-int8", cache_dir=tmp_path / "models")


def test_auto_with_a_hub_model_id_falls_back_with_a_reason(tmp_path, monkeypatch, caplog):
    created = []
    monkeypatch.setattr("index.embeddings.SentenceTransformerEncoder",
                        lambda *a, **k: created.append((a, k)) or "reference")
    with caplog.at_level(logging.WARNING, logger="index.embeddings"):
        chosen = make_encoder("auto", model="someone/some-model", cache_dir=tmp_path / "models")
    assert chosen == "reference" and created[0][0] == ("someone/some-model",)
    assert "not a local model folder" in caplog.text


def test_corpus_uses_the_setting(settings, built):
    from bot.corpus import Corpus

    settings.encoder = "onnx-fp32"
    assert settings.models_dir == built  # conftest points every data directory at the run's export
    assert Corpus(settings).encoder.name == f"onnx-fp32:{PACKAGED_SLUG}"


def test_serving_does_not_import_torch(built):
    code = (
        "import sys; from pathlib import Path; from index.embeddings import make_encoder;"
        f"e = make_encoder('onnx-int8', cache_dir=Path({str(built)!r})); v = e.encode(['a question?']);"
        "assert v.shape == (1, 384), v.shape; print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_bold_sentences_are_chosen_with_int8_beside_fp32_questions_and_match_fp32s_choice(
        built, seeded_dir, tmp_path, monkeypatch):
    """The bold sentence is the largest per-question cost; int8 ranks a passage's few sentences as fp32 does."""
    from bot.app import Briefbot
    from bot.settings import Settings

    monkeypatch.delenv("DATABASE_URL", raising=False)
    shutil.copytree(seeded_dir, tmp_path / "data")
    questions = ["why did Iran strike?", "how many people were killed in the Kerman bombing?",
                 "who founded FIRST Global?", "what did Pakistan say after the strikes?",
                 "why are the borderlands unstable?", "what happened at the robotics challenge?"]
    bold = {}
    for choice in ("auto", "same"):
        settings = Settings(BRIEFBOT_DATA_DIR=tmp_path / "data", DATABASE_URL=None, BRIEFBOT_HIGHLIGHT_ENCODER=choice)
        app = Briefbot.open(settings, encoder=onnx(built, "fp32"))
        expected = "onnx-int8" if choice == "auto" else "onnx-fp32"
        assert app.corpus.highlight_encoder.name.startswith(expected)
        bold[choice] = [r.highlight for q in questions for r in app.service.ask(q).results]
        app.corpus.store.engine.dispose()
    agreeing = sum(a == b for a, b in zip(bold["auto"], bold["same"]))
    assert len(bold["auto"]) >= 12 and agreeing >= 0.9 * len(bold["auto"]), (agreeing, len(bold["auto"]))


def test_without_an_int8_export_the_question_encoder_chooses_the_bold_sentence_and_nothing_is_built(
        built, tmp_path, monkeypatch):
    from bot.corpus import Corpus
    from bot.settings import Settings

    monkeypatch.delenv("DATABASE_URL", raising=False)
    only_fp32 = tmp_path / "models"
    only_fp32.mkdir()
    for path in built.glob(f"{PACKAGED_SLUG}-fp32.onnx*"):
        shutil.copy2(path, only_fp32 / path.name)
    corpus = Corpus(Settings(BRIEFBOT_DATA_DIR=tmp_path / "data", DATABASE_URL=None), encoder=onnx(only_fp32, "fp32"))
    assert corpus.highlight_encoder is corpus.encoder
    assert not list(only_fp32.glob("*int8*")), "a question must never wait for an export"
