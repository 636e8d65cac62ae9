"""Sentence vectors from a passage's own encoder pass, so the bold sentence needs no encoding at question time.

The encoder's token states for the whole passage are averaged over each sentence's tokens and normalised
("late chunking"). They come from the pass that makes the passage vector, so ingestion pays nothing more, and
a question only takes dot products. On dev-qa passages that hold the answer in one of several sentences, the
sentence chosen this way held the answer as often as encoding each sentence alone (11 of 18 each; the same
sentence in 16 of 18; docs/speed.md).

Stored as float16 rows, one per sentence of `split_sentences(passage text)`, for passages of several
sentences (empty for the others). A passage without them (stored before this existed, or truncated by the
model's 256 tokens before its last sentence) has its sentences encoded at question time, as before.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

STORED_DTYPE = np.float16


def pool_sentences(states: np.ndarray, offsets: Sequence[tuple[int, int]],
                   spans: Sequence[tuple[int, int]]) -> np.ndarray | None:
    """One L2-normalised row per span: the mean of the token states whose characters start inside it.

    `offsets` are each token's (start, end) characters in the encoded text ((0, 0) for special tokens).
    None when a span has no token (the text was truncated before it)."""
    starts = np.array([start if end > start else -1 for start, end in offsets], dtype=np.int64)
    rows = []
    for begin, end in spans:
        chosen = (starts >= begin) & (starts < end)
        if not chosen.any():
            return None
        pooled = states[chosen].mean(axis=0)
        rows.append(pooled / max(float(np.linalg.norm(pooled)), 1e-12))
    return np.asarray(rows, dtype=np.float32)


def to_bytes(vectors: np.ndarray | None) -> bytes:
    """Empty for a passage that needs none (one sentence) or can't have them (truncated): NULL in the database
    means "not computed yet" (`briefbot reindex --sentences`)."""
    if vectors is None:
        return b""
    return np.ascontiguousarray(vectors, dtype=STORED_DTYPE).tobytes()


def from_bytes(blob: bytes | None, dim: int) -> np.ndarray | None:
    if not blob:
        return None
    return np.frombuffer(blob, dtype=STORED_DTYPE).reshape(-1, dim).astype(np.float32)


def encode_passages(encoder, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]]
                    ) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """Passage vectors and their sentence vectors from one pass; an encoder without token states gives None."""
    method = getattr(encoder, "encode_with_sentences", None)
    if method is None:
        return encoder.encode(texts), [None] * len(texts)
    return method(texts, spans)
