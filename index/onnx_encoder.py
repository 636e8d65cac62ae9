"""The same sentence encoder on ONNX Runtime: no torch at serving time, 2-4x faster on a small CPU.

The model is exported once from the packaged sentence-transformers folder (offline), its graph fused by
onnxruntime's transformer optimizer (fp32) and dynamically quantised to int8, and cached in the data
directory (`<data_dir>/models/minilm-<variant>.onnx` plus a `.json` sidecar saying what it was built from
and its sha256). A cache file that is missing, stale or damaged is rebuilt. The export needs torch; run
from a process that has not imported it, it happens in a child process so the serving process never does.

Mean pooling and L2 normalisation are part of the exported graph, so `encode` returns what
`SentenceTransformer.encode(..., normalize_embeddings=True)` returns, to float precision (fp32) or within
~1% cosine (int8).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from index.atomic import fsync_dir, write_atomically
from index.sentence_vectors import pool_sentences

log = logging.getLogger(__name__)

VARIANTS = ("fp32", "int8")
# Bump when the export recipe changes, so caches built by older code are rebuilt.
EXPORT_FORMAT = 2  # 2: the token states are a second output (index/sentence_vectors.py)
EXPORT_TIMEOUT_SECONDS = 900
# Graph checks at build time: fp32 must reproduce torch; int8's agreement is recorded for `auto`.
FP32_MIN_COSINE = 0.9999
CHECK_SENTENCES = (
    "Iran said on Tuesday it had struck militant bases inside Pakistan, drawing a sharp protest from Islamabad.",
    "The central bank left interest rates unchanged, citing slowing inflation and a weaker labour market.",
    "Shares of the company fell 12 pct after it reported a first-quarter loss of 4.5 mln dlrs.",
    "\"We are not going to negotiate under threat,\" the minister told reporters in Geneva.",
    "Why did the strike end?",
    "who won the robotics competition",
    "Heavy rain flooded roads across the region, and officials urged residents to stay at home.",
    "The agreement, signed after three years of talks, cuts tariffs on farm goods by half over a decade.",
)


class OnnxUnavailable(RuntimeError):
    """The ONNX path cannot be used here (runtime missing, model not exportable, export failed)."""


@dataclass(frozen=True)
class ModelFiles:
    """Where a sentence-transformers model folder keeps what the ONNX path needs."""

    root: Path
    slug: str
    max_seq_length: int
    hidden_size: int
    num_heads: int

    @classmethod
    def from_folder(cls, folder: str | Path, slug: str | None = None) -> "ModelFiles":
        """Read the folder's configs; only BERT-style models with mean pooling are supported."""
        root = Path(folder)
        if not (root / "config.json").is_file() or not (root / "tokenizer.json").is_file():
            raise OnnxUnavailable(f"{root} is not a local model folder with config.json and tokenizer.json")
        config = json.loads((root / "config.json").read_text(encoding="utf-8"))
        if config.get("model_type") != "bert":
            raise OnnxUnavailable(f"model type {config.get('model_type')!r} is not supported by the ONNX export (bert only)")
        pooling_file = root / "1_Pooling" / "config.json"
        if pooling_file.is_file():
            pooling = json.loads(pooling_file.read_text(encoding="utf-8"))
            others = [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v and k != "pooling_mode_mean_tokens"]
            if not pooling.get("pooling_mode_mean_tokens") or others:
                raise OnnxUnavailable(f"pooling {others or 'without mean'} is not supported (mean pooling only)")
        max_len = int(config.get("max_position_embeddings", 512))
        sbert = root / "sentence_bert_config.json"
        if sbert.is_file():
            max_len = min(max_len, int(json.loads(sbert.read_text(encoding="utf-8")).get("max_seq_length") or max_len))
        return cls(root, slug or _slug(root), max_len, int(config["hidden_size"]), int(config["num_attention_heads"]))

    def fingerprint(self) -> dict:
        """What a cached export must have been built from: the files' sizes and times, and the recipe."""
        files = {}
        for name in ("config.json", "tokenizer.json", "sentence_bert_config.json", "1_Pooling/config.json",
                     "model.safetensors", "pytorch_model.bin"):
            path = self.root / name
            if path.is_file():
                stat = path.stat()
                files[name] = [stat.st_size, stat.st_mtime_ns]
        return {"format": EXPORT_FORMAT, "model": str(self.root.resolve()), "files": files,
                "max_seq_length": self.max_seq_length}


def _slug(root: Path) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", root.name.lower()).strip("-") or "model"
    return f"{name}-{hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:8]}"


def default_threads() -> int:
    """Cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


# --- the cache ---------------------------------------------------------------------------------------
class OnnxModelCache:
    """The exported variants of one model in one folder: checked on load, rebuilt when missing or damaged."""

    def __init__(self, model: ModelFiles, cache_dir: Path):
        self.model = model
        self.cache_dir = Path(cache_dir)

    def path(self, variant: str) -> Path:
        return self.cache_dir / f"{self.model.slug}-{variant}.onnx"

    def meta_path(self, variant: str) -> Path:
        return self.cache_dir / f"{self.model.slug}-{variant}.onnx.json"

    def read(self, variant: str) -> dict | str:
        """The cached model's sidecar if the file is the one that was built, or why it can't be used.

        The checksum is streamed, so checking a 90 MB model does not hold a second copy of it in memory.
        """
        path, meta_path = self.path(variant), self.meta_path(variant)
        if not path.exists():
            return "not built yet"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            size, digest = _file_digest(path)
        except (OSError, ValueError) as exc:
            return f"unreadable ({exc.__class__.__name__}: {exc})"
        if not isinstance(meta, dict) or meta.get("source") != self.model.fingerprint():
            return "built from another model or by an older recipe"
        if meta.get("bytes") != size or meta.get("sha256") != digest:
            return "damaged (size or checksum differs from when it was built)"
        return meta

    def load_or_build(self, variant: str, force: bool = False) -> dict:
        """The variant's sidecar once its file is good, building both variants first if needed.

        One builder at a time per folder (a file lock); the others wait and then use its files.

        `force` rebuilds a file that checks out but that this onnxruntime cannot load.
        """
        if variant not in VARIANTS:
            raise ValueError(f"unknown ONNX variant {variant!r} (expected one of {VARIANTS})")
        found = "rebuild requested" if force else self.read(variant)
        if not isinstance(found, str):
            return found
        with self._build_lock():
            if not force:
                found = self.read(variant)  # someone else may have built it while we waited
            if isinstance(found, str):
                log.info("ONNX model %s: %s; exporting %s (takes ~10-30 s, once)", self.path(variant).name, found,
                         self.model.root)
                self.build()
                found = self.read(variant)
                if isinstance(found, str):
                    raise OnnxUnavailable(f"{self.path(variant)} still unusable after a rebuild: {found}")
        return found

    def build(self) -> None:
        """Export in this process if torch is already loaded (cheap), otherwise in a child process."""
        started = time.perf_counter()
        if "torch" in sys.modules:
            try:
                build_variants(self.model, self.cache_dir)
            except OnnxUnavailable:
                raise
            except Exception as exc:  # ImportError for onnx/onnxscript, exporter errors: all mean "no ONNX here"
                raise OnnxUnavailable(f"ONNX export failed: {exc.__class__.__name__}: {exc}") from exc
        else:
            command = [sys.executable, "-m", "index.onnx_encoder", "--model-dir", str(self.model.root),
                       "--cache-dir", str(self.cache_dir), "--slug", self.model.slug]
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_SECONDS,
                                      env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise OnnxUnavailable(f"ONNX export did not finish: {exc}") from exc
            if done.returncode != 0:
                tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
                raise OnnxUnavailable(f"ONNX export failed (exit {done.returncode}): {tail}")
        log.info("ONNX models for %s built in %.1f s", self.model.slug, time.perf_counter() - started)

    @contextlib.contextmanager
    def _build_lock(self) -> Iterator[None]:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with open(self.cache_dir / f".{self.model.slug}.lock", "a+") as handle:
            try:
                import fcntl

                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            except ImportError:  # not POSIX: concurrent builds just do the work twice, each write is atomic
                pass
            yield


# --- serving -----------------------------------------------------------------------------------------
class OnnxEncoder:
    """all-MiniLM-L6-v2 (or another BERT sentence model) on ONNX Runtime's CPU provider, torch-free.

    Texts are tokenized once, sorted by token count and cut into batches, so a batch pads to similar
    lengths; rows come back in input order. Intra-op threads default to the cores available; inter-op
    is 1 (the graph is a chain, parallel branches buy nothing). The session and the tokenizer are safe
    to call from several threads, so a question is not queued behind an ingest batch.
    """

    def __init__(self, model_dir: str | Path, cache_dir: Path, variant: str = "int8", batch_size: int = 32,
                 threads: int = 0, slug: str | None = None):
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise OnnxUnavailable(f"onnxruntime or tokenizers not importable ({exc})") from exc
        self.model = ModelFiles.from_folder(model_dir, slug)
        self.variant = variant
        self.cache = OnnxModelCache(self.model, cache_dir)
        self.threads = threads if threads > 0 else default_threads()
        self.batch_size = max(1, batch_size)

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # warnings about unused initialisers etc. are noise
        self.meta = self.cache.load_or_build(variant)
        path = str(self.cache.path(variant))
        try:
            self._session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # a file that hashes right but this onnxruntime can't run: rebuild once
            log.warning("ONNX model %s did not load (%s); rebuilding", self.cache.path(variant), exc)
            self.meta = self.cache.load_or_build(variant, force=True)
            try:
                self._session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            except Exception as again:
                raise OnnxUnavailable(f"ONNX model does not load even after a rebuild: {again}") from again
        self._inputs = {i.name for i in self._session.get_inputs()}
        output = self._session.get_outputs()[0]
        self._output = output.name
        self._states = "token_embeddings" if "token_embeddings" in {o.name for o in self._session.get_outputs()} else None
        self.dim = output.shape[-1] if isinstance(output.shape[-1], int) else self.model.hidden_size

        self._tokenizer = Tokenizer.from_file(str(self.model.root / "tokenizer.json"))
        # The packaged tokenizer.json pads and truncates to 128; sentence-transformers uses max_seq_length.
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=self.model.max_seq_length)
        self.name = f"onnx-{variant}:{self.model.slug}"
        log.info("ONNX encoder %s ready: %s, %d intra-op thread(s)", self.name, self.cache.path(variant), self.threads)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 rows, one per text, in input order."""
        return self._encode(texts, None)[0]

    def encode_with_sentences(self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]]
                              ) -> tuple[np.ndarray, list[np.ndarray | None]]:
        """`encode(texts)` and, from the same pass, each text's sentence vectors for `spans` (None for a text of
        one span, or one truncated before its last span)."""
        if not self._states:
            return self.encode(texts), [None] * len(texts)
        return self._encode(texts, spans)

    def _encode(self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]] | None
                ) -> tuple[np.ndarray, list[np.ndarray | None]]:
        sentences: list[np.ndarray | None] = [None] * len(texts)
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32), sentences
        encodings = self._tokenizer.encode_batch(list(texts))
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        order = np.argsort(lengths, kind="stable")  # length-sorted batches waste less padding
        out = np.empty((len(encodings), self.dim), dtype=np.float32)
        wanted = [self._output] if spans is None else [self._output, self._states]
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            width = int(lengths[rows].max())
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                n = int(lengths[i])
                ids[r, :n] = encodings[i].ids
                mask[r, :n] = 1
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            results = self._session.run(wanted, {k: v for k, v in feeds.items() if k in self._inputs})
            out[rows] = results[0]
            if spans is not None:
                for r, i in enumerate(rows):
                    if len(spans[i]) > 1:
                        sentences[i] = pool_sentences(results[1][r, : int(lengths[i])], encodings[i].offsets, spans[i])
        return out, sentences


# --- building (imports torch; runs once per cache) ----------------------------------------------------
def build_variants(model: ModelFiles, cache_dir: Path) -> dict[str, dict]:
    """Export, fuse, quantise and check; write both variants atomically. Returns their sidecars."""
    import onnx
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer
    from transformers import AutoModel

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Eager attention: the SDPA graph is not recognised by the optimizer, which then fuses no Attention.
    bert = AutoModel.from_pretrained(str(model.root), attn_implementation="eager", local_files_only=True).eval()

    class MeanPooled(torch.nn.Module):
        """The transformer plus sentence-transformers' mean pooling and Normalize, in one graph."""

        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.inner(input_ids=input_ids, attention_mask=attention_mask,
                                token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            # The token states too: sentence vectors are pooled from them (index/sentence_vectors.py).
            return torch.nn.functional.normalize(pooled, p=2, dim=1), hidden

    wrapped = MeanPooled(bert).eval()
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model.root / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=model.max_seq_length)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    batch = tokenizer.encode_batch(list(CHECK_SENTENCES))
    ids = np.array([e.ids for e in batch], dtype=np.int64)
    mask = np.array([e.attention_mask for e in batch], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}

    with tempfile.TemporaryDirectory(prefix=".export-", dir=cache_dir) as scratch_name:
        scratch = Path(scratch_name)
        raw, fp32, int8 = scratch / "raw.onnx", scratch / "fp32.onnx", scratch / "int8.onnx"
        axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                "token_type_ids": {0: "batch", 1: "tokens"}, "sentence_embedding": {0: "batch"},
                "token_embeddings": {0: "batch", 1: "tokens"}}
        with torch.no_grad(), _quiet_export():
            reference = wrapped(*(torch.from_numpy(feeds[k]) for k in ("input_ids", "attention_mask", "token_type_ids")))[0]
            # The TorchScript exporter: its BERT graph is the one the transformer optimizer fully fuses.
            torch.onnx.export(wrapped, tuple(torch.from_numpy(feeds[k][:2, :8]) for k in feeds), str(raw),
                              input_names=list(feeds), output_names=["sentence_embedding", "token_embeddings"], dynamic_axes=axes,
                              opset_version=17, dynamo=False)
        reference = reference.numpy()
        fused = optimizer.optimize_model(str(raw), model_type="bert", num_heads=model.num_heads,
                                         hidden_size=model.hidden_size, opt_level=0, use_gpu=False)
        stats = {k: v for k, v in fused.get_fused_operator_statistics().items() if v}
        if not stats.get("Attention"):
            log.warning("the optimizer fused no Attention nodes (%s); the fp32 graph will be slower", stats)
        fused.save_model_to_file(str(fp32))
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})

        outputs = {}
        for name, path in (("fp32", fp32), ("int8", int8)):
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            outputs[name] = session.run(None, feeds)[0]
        checks = {name: _cosines(vectors, reference) for name, vectors in outputs.items()}
        if checks["fp32"]["min_cosine"] < FP32_MIN_COSINE:
            raise OnnxUnavailable(f"exported fp32 graph disagrees with torch: {checks['fp32']}")

        sidecars = {}
        for name, path in (("fp32", fp32), ("int8", int8)):
            size, digest = _file_digest(path)
            sidecars[name] = {
                "source": model.fingerprint(), "variant": name, "bytes": size, "sha256": digest,
                "check_vs_torch": checks[name], "fused": stats, "onnxruntime": ort.__version__,
                "torch": torch.__version__, "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            target = cache_dir / f"{model.slug}-{name}.onnx"
            os.chmod(path, 0o644)
            os.replace(path, target)  # same folder, so the rename is atomic: readers see old or new, never half
            _write_atomic(cache_dir / f"{model.slug}-{name}.onnx.json", json.dumps(sidecars[name], indent=2))
        fsync_dir(cache_dir)
    log.info("exported %s: fused %s; cosine to torch fp32 %s, int8 %s", model.slug, stats, checks["fp32"], checks["int8"])
    return sidecars


def _file_digest(path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def _cosines(vectors: np.ndarray, reference: np.ndarray) -> dict:
    cos = (vectors * reference).sum(1) / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference, axis=1))
    return {"min_cosine": round(float(cos.min()), 6), "mean_cosine": round(float(cos.mean()), 6)}


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """The exporter warns about tracing and deprecation at length; none of it is actionable here."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _write_atomic(path: Path, text: str) -> None:
    write_atomically(path, lambda handle: handle.write(text.encode("utf-8")))


def main(argv: list[str] | None = None) -> int:
    """Child-process entry point: `python -m index.onnx_encoder --model-dir M --cache-dir C`."""
    parser = argparse.ArgumentParser(description="export a sentence-transformers model to ONNX (fp32 and int8)")
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--slug")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        build_variants(ModelFiles.from_folder(args.model_dir, args.slug), Path(args.cache_dir))
    except Exception as exc:
        log.error("export failed: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG))
        print(f"export failed: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
