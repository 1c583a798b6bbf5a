"""The offline inference engine (the recipe's msame step) and its performance log.

Three layers, so ``run`` and ``bench`` reuse what ``infer`` uses:

- ``run_batches(runtime, batches, ...)`` -> ``InferenceStats``: runs batches (in memory), times
  every run, hands each batch's logits to a callback. All latency and throughput arithmetic
  lives in ``InferenceStats``.
- ``infer_arrays(runtime, ids, types, mask, ...)``: whole in-memory feature arrays -> logits.
- ``infer_folders(model, inputs, output_dir, settings)``: msame's job. Feature folders
  (``input_ids/``, ``segment_ids/``, ``input_mask/``; one int64 file per batch) are checked
  against the model before anything runs, then each batch's start/end logits are written as
  ``{i}_output_0.bin`` / ``{i}_output_1.bin`` (float32 [batch, seq_len], or ``.npy``), each under
  a temp name and renamed, so a complete pair proves the batch is done and ``resume`` can skip
  it. ``infer_synthetic`` is msame's perf-only mode (no ``--input``).

Shapes of headerless ``.bin`` folders come from, in order: the features' ``manifest.json``
(written by ``spanqa preprocess``), the model's fixed axes, the caller's ``batch_size`` /
``seq_len``, and the file size once one of the two is known. ``.npy`` files carry their own
shape and dtype.

Throughput follows msame and the recipe's parse.py: ``fps = batch_size * 1000 / average ms``
with the average taken *without the first timed run* (it pays one-off allocation costs), and
over all runs when there is only one.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple, Sequence

import numpy as np

from spanqa import __version__
from spanqa.errors import FeaturesError, InferenceError, SpanQAError

# Model input -> folder names that feed it (the recipe's names first).
INPUT_FOLDERS: dict[str, tuple[str, ...]] = {
    "input_ids": ("input_ids",),
    "token_type_ids": ("segment_ids", "token_type_ids"),
    "attention_mask": ("input_mask", "attention_mask"),
}
MODEL_INPUTS = tuple(INPUT_FOLDERS)
OUTPUT_FORMATS = ("bin", "npy")
SUMMARY_NAME = "summary.json"
LOG_NAME = "infer.log"
SETTINGS_NAME = "infer_settings.json"
FEATURES_MANIFEST = "manifest.json"

_OUTPUT_RE = re.compile(r"^(?P<key>.+)_output_[01]\.(bin|npy)$")
_TEMP_RE = re.compile(r"^\.(.+_output_[01]\.(bin|npy)|summary\.json|infer\.log|infer_settings\.json)\..*\.tmp$")


# --------------------------------------------------------------------------------------------
# Statistics: the one place latency and throughput are computed.


@dataclass
class InferenceStats:
    """Timings of the runs ``run_batches`` made. Warm-up runs are not recorded."""

    warmup: int = 0
    loop: int = 1
    latencies_ms: list[float] = field(default_factory=list)  # one per timed run, in order
    run_rows: list[int] = field(default_factory=list)  # batch rows of each timed run (padding included)
    batches: int = 0  # batches run (each ``loop`` times)
    rows: int = 0  # real rows in those batches (attention mask not all zero)
    padded_rows: int = 0  # all-zero padding rows in those batches
    wall_s: float = 0.0  # wall time of the whole loop, reading inputs and writing outputs included

    def record(self, ms: float, rows: int) -> None:
        self.latencies_ms.append(float(ms))
        self.run_rows.append(int(rows))

    @property
    def timed_runs(self) -> int:
        return len(self.latencies_ms)

    @property
    def batch_size(self) -> int | None:
        """The batch size when every timed run had the same one, else None."""
        sizes = set(self.run_rows)
        return sizes.pop() if len(sizes) == 1 else None

    @property
    def average_ms(self) -> float | None:
        return float(np.mean(self.latencies_ms)) if self.latencies_ms else None

    @property
    def average_ms_without_first(self) -> float | None:
        """msame's "without first time" average (the plain average when there is one run)."""
        if len(self.latencies_ms) < 2:
            return self.average_ms
        return float(np.mean(self.latencies_ms[1:]))

    @property
    def throughput_rows_per_s(self) -> float | None:
        """Rows per second of inference, first run excluded: batch_size * 1000 / average ms
        when batches are equal (the recipe's fps), padding rows counted as msame counts them."""
        lat, rows = self.latencies_ms, self.run_rows
        if len(lat) >= 2:
            lat, rows = lat[1:], rows[1:]
        total = float(np.sum(lat)) if lat else 0.0
        return float(np.sum(rows)) * 1000.0 / total if total > 0 else None

    def latency_summary(self) -> dict[str, float] | None:
        """min/mean/median/p90/p99 over all timed runs, in ms."""
        if not self.latencies_ms:
            return None
        a = np.asarray(self.latencies_ms, dtype=np.float64)
        return {
            "min": float(a.min()),
            "mean": float(a.mean()),
            "median": float(np.median(a)),
            "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)),
            "max": float(a.max()),
        }

    def msame_lines(self) -> list[str]:
        """The two lines msame prints and the recipe's parse.py reads."""
        if not self.latencies_ms:
            return []
        return [
            f"Inference average time: {self.average_ms:.6f} ms",
            f"Inference average time without first time: {self.average_ms_without_first:.6f} ms",
        ]

    def to_json(self) -> dict:
        return {
            "batches": self.batches,
            "rows": self.rows,
            "padded_rows": self.padded_rows,
            "batch_size": self.batch_size,
            "warmup": self.warmup,
            "loop": self.loop,
            "timed_runs": self.timed_runs,
            "throughput_rows_per_s": self.throughput_rows_per_s,
            "latency_ms": self.latency_summary(),
            "average_ms": self.average_ms,
            "average_ms_without_first": self.average_ms_without_first,
            "inference_s": float(np.sum(self.latencies_ms)) / 1000.0 if self.latencies_ms else 0.0,
            "wall_s": self.wall_s,
        }


# --------------------------------------------------------------------------------------------
# The engine.


class Batch(NamedTuple):
    key: str  # names the batch in messages and output files (the input file's stem)
    input_ids: np.ndarray  # int64 [B, L]
    token_type_ids: np.ndarray
    attention_mask: np.ndarray


OutputSink = Callable[[Batch, np.ndarray, np.ndarray], None]


def _run_once(runtime, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
    try:
        start, end = runtime.run(batch.input_ids, batch.token_type_ids, batch.attention_mask)
    except (SpanQAError, KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InferenceError(f"batch {batch.key}: {runtime.name} failed ({first})") from None
    shape = batch.input_ids.shape
    start, end = np.asarray(start), np.asarray(end)
    if start.shape != shape or end.shape != shape:
        raise InferenceError(
            f"batch {batch.key}: {runtime.name} returned logits of shape {start.shape}/{end.shape} for inputs {shape}"
        )
    return start.astype(np.float32, copy=False), end.astype(np.float32, copy=False)


def run_batches(
    runtime,
    batches: Iterable[Batch],
    *,
    warmup: int = 0,
    loop: int = 1,
    on_output: OutputSink | None = None,
    total: int | None = None,
    desc: str = "infer",
    stats: InferenceStats | None = None,
) -> InferenceStats:
    """Run each batch ``loop`` times (each run timed), after ``warmup`` untimed runs of the first.

    ``on_output(batch, start, end)`` receives the logits of each batch's last run. Only
    ``runtime.run`` is inside the timer: reading inputs and writing outputs are not.
    """
    from spanqa import progress

    stats = stats if stats is not None else InferenceStats(warmup=warmup, loop=loop)
    began = time.perf_counter()
    warmed = warmup <= 0
    try:
        with progress.bar(total=total, desc=desc, unit="batch") as bar:
            for batch in batches:
                if not warmed:
                    for _ in range(warmup):
                        _run_once(runtime, batch)
                    warmed = True
                rows = int(batch.input_ids.shape[0])
                for _ in range(max(1, loop)):
                    t0 = time.perf_counter()
                    start, end = _run_once(runtime, batch)
                    stats.record((time.perf_counter() - t0) * 1000.0, rows)
                real = int(np.count_nonzero(batch.attention_mask.any(axis=1)))
                stats.batches += 1
                stats.rows += real
                stats.padded_rows += rows - real
                if on_output is not None:
                    on_output(batch, start, end)
                bar.update(1)
    finally:
        stats.wall_s += time.perf_counter() - began
    return stats


@dataclass
class InferenceResult:
    start_logits: np.ndarray  # float32 [N, L]
    end_logits: np.ndarray  # float32 [N, L]
    stats: InferenceStats


def _as_int64(name: str, a) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "iu":
        raise InferenceError(f"{name}: dtype {a.dtype}, expected integer token data (int64)")
    if a.ndim != 2:
        raise InferenceError(f"{name}: shape {a.shape}, expected 2-D [features, seq_len]")
    return np.ascontiguousarray(a, dtype=np.int64)


def infer_arrays(
    runtime,
    input_ids,
    token_type_ids,
    attention_mask,
    *,
    batch_size: int | None = None,
    warmup: int = 0,
    desc: str = "infer",
) -> InferenceResult:
    """Logits for in-memory features (the pipeline's path): batches of ``batch_size`` rows (the
    model's own when it is fixed; default 1), the last one zero-padded when the model's batch
    axis is fixed. Returns logits for the N real rows and the timing statistics."""
    ids = _as_int64("input_ids", input_ids)
    types = _as_int64("token_type_ids", token_type_ids)
    mask = _as_int64("attention_mask", attention_mask)
    if not (ids.shape == types.shape == mask.shape):
        raise InferenceError(f"input shapes differ: input_ids {ids.shape}, token_type_ids {types.shape}, attention_mask {mask.shape}")
    n, seq_len = ids.shape
    check_model_fit(runtime.batch_size, runtime.seq_len, None, batch_size or runtime.batch_size or 1, seq_len)
    bs = runtime.batch_size or batch_size or 1
    pad = runtime.batch_size is not None

    def batches() -> Iterator[Batch]:
        for lo in range(0, n, bs):
            parts = [a[lo : lo + bs] for a in (ids, types, mask)]
            if pad and parts[0].shape[0] < bs:
                parts = [np.concatenate([p, np.zeros((bs - p.shape[0], seq_len), np.int64)]) for p in parts]
            yield Batch(str(lo // bs), *parts)

    start = np.empty((n, seq_len), dtype=np.float32)
    end = np.empty((n, seq_len), dtype=np.float32)

    def sink(batch: Batch, s: np.ndarray, e: np.ndarray) -> None:
        lo = int(batch.key) * bs
        hi = min(n, lo + bs)
        start[lo:hi] = s[: hi - lo]
        end[lo:hi] = e[: hi - lo]

    stats = run_batches(runtime, batches(), warmup=warmup, on_output=sink, total=-(-n // bs), desc=desc)
    return InferenceResult(start, end, stats)


def check_model_fit(
    model_batch: int | None,
    model_seq: int | None,
    max_positions: int | None,
    batch_size: int,
    seq_len: int,
    where: str = "features",
) -> None:
    """One-line errors when inputs of [batch_size, seq_len] cannot run on the model."""
    if model_seq is not None and seq_len != model_seq:
        raise InferenceError(
            f"{where} have sequence length {seq_len} but the model is compiled for {model_seq}; "
            f"preprocess with --max-seq-length {model_seq} or compile the model with --seq-len {seq_len}"
        )
    if max_positions is not None and seq_len > max_positions:
        raise InferenceError(
            f"{where} have sequence length {seq_len} but the model has only {max_positions} positions; "
            f"preprocess with --max-seq-length {max_positions}"
        )
    if model_batch is not None and batch_size != model_batch:
        raise InferenceError(
            f"{where} have batch size {batch_size} but the model is compiled for batch size {model_batch}; "
            f"preprocess with --batch-size {model_batch} or compile the model with --batch-size {batch_size}"
        )


# --------------------------------------------------------------------------------------------
# Feature folders (msame's inputs).


@dataclass(frozen=True)
class FeatureFolders:
    """Validated input folders: every file exists, has the same name in every folder, and holds
    int64 [batch_size, seq_len]."""

    folders: dict[str, Path]  # model input name -> folder
    keys: tuple[str, ...]  # file stems in run order; also the output names' prefixes
    fmt: str  # "bin" or "npy"
    batch_size: int
    seq_len: int
    manifest: dict | None  # the features manifest, when there is one

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def num_features(self) -> int | None:
        return int(self.manifest["num_features"]) if self.manifest else None

    def path(self, name: str, key: str) -> Path:
        return self.folders[name] / f"{key}.{self.fmt}"

    def load(self, key: str) -> Batch:
        arrays = []
        for name in MODEL_INPUTS:
            path = self.path(name, key)
            try:
                if self.fmt == "bin":
                    a = np.fromfile(path, dtype="<i8")
                else:
                    a = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise FeaturesError(f"{path}: unreadable ({exc}); re-run 'spanqa preprocess'") from None
            if a.size != self.batch_size * self.seq_len:  # changed since it was checked
                raise FeaturesError(f"{path}: changed while running; expected int64 [{self.batch_size}, {self.seq_len}]")
            arrays.append(np.ascontiguousarray(a.reshape(self.batch_size, self.seq_len), dtype=np.int64))
        return Batch(key, *arrays)

    def batches(self, keys: Iterable[str] | None = None) -> Iterator[Batch]:
        for key in self.keys if keys is None else keys:
            yield self.load(key)


def _resolve_folders(inputs: str | Path | Sequence[str | Path]) -> tuple[dict[str, Path], Path | None]:
    """Map model inputs to folders; also return the directory that may hold manifest.json."""
    if isinstance(inputs, (str, Path)):
        text = str(inputs)
        parts = [p for p in text.split(",") if p.strip()] if "," in text else [text]
    else:
        parts = [str(p) for p in inputs]
    paths = [Path(p.strip()) for p in parts]
    if not paths:
        raise InferenceError("--input: no folder given")
    for p in paths:
        if not p.exists():
            raise InferenceError(f"{p}: no such input folder")
        if not p.is_dir():
            raise InferenceError(f"{p}: not a folder; --input takes a features directory or comma-separated folders")

    if len(paths) == 1 and paths[0].name not in {a for names in INPUT_FOLDERS.values() for a in names}:
        root = paths[0]
        folders = {}
        for name, aliases in INPUT_FOLDERS.items():
            found = [root / a for a in aliases if (root / a).is_dir()]
            if not found:
                raise InferenceError(
                    f"{root}: no {aliases[0]}/ folder (model input {name}); point --input at the directory "
                    "'spanqa preprocess' wrote, or list the folders: input_ids,segment_ids,input_mask"
                )
            if len(found) > 1:
                raise InferenceError(f"{root}: both {found[0].name}/ and {found[1].name}/ feed {name}; keep one")
            folders[name] = found[0]
        return folders, root

    # A list of folders: by name when every name is known, else by position (msame's rule).
    alias_of = {a: name for name, aliases in INPUT_FOLDERS.items() for a in aliases}
    known = [alias_of.get(p.name) for p in paths]
    if all(known):
        folders: dict[str, Path] = {}
        for name, p in zip(known, paths):
            if name in folders:
                raise InferenceError(f"--input: {folders[name]} and {p} both feed {name}; give each input once")
            folders[name] = p
        for name in MODEL_INPUTS:
            if name not in folders:
                raise InferenceError(
                    f"--input: no folder for model input {name} (expected one named {' or '.join(INPUT_FOLDERS[name])})"
                )
    elif not any(known) and len(paths) == len(MODEL_INPUTS):
        folders = dict(zip(MODEL_INPUTS, paths))
    elif len(paths) != len(MODEL_INPUTS):
        raise InferenceError(
            f"--input: {len(paths)} folder(s) for the model's {len(MODEL_INPUTS)} inputs "
            "(input_ids, segment_ids, input_mask)"
        )
    else:
        odd = [p.name for p, k in zip(paths, known) if not k]
        raise InferenceError(
            f"--input: cannot tell which model input {', '.join(odd)} feeds; name the folders "
            "input_ids, segment_ids, input_mask (or give all three unnamed, in that order)"
        )
    parents = {p.resolve().parent for p in folders.values()}
    return folders, (parents.pop() if len(parents) == 1 else None)


def _list_files(folder: Path) -> tuple[str, dict[str, Path]]:
    bins, npys = {}, {}
    for p in folder.iterdir():
        if p.name.startswith(".") or not p.is_file():
            continue
        if p.suffix == ".bin":
            bins[p.stem] = p
        elif p.suffix == ".npy":
            npys[p.stem] = p
    if bins and npys:
        raise FeaturesError(f"{folder}: holds both .bin and .npy files; keep one format")
    if not bins and not npys:
        raise FeaturesError(f"{folder}: no .bin or .npy files; make features with 'spanqa preprocess'")
    return ("bin", bins) if bins else ("npy", npys)


def _sort_keys(keys: Iterable[str]) -> list[str]:
    keys = list(keys)
    if all(k.isdigit() for k in keys):
        return sorted(keys, key=int)
    return sorted(keys)


def _npy_header(path: Path) -> tuple[tuple, np.dtype, int]:
    """Shape, dtype and data offset of a .npy file, read without loading it."""
    from numpy.lib import format as npf

    try:
        with open(path, "rb") as f:
            version = npf.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = npf.read_array_header_1_0(f)
            else:
                shape, _, dtype = npf.read_array_header_2_0(f)
            return shape, dtype, f.tell()
    except (OSError, ValueError) as exc:
        raise FeaturesError(f"{path}: not a readable .npy file ({str(exc).splitlines()[0]}); re-run 'spanqa preprocess'") from None


def _bin_size_error(path: Path, size: int, batch: int, seq: int) -> FeaturesError:
    expected = 8 * batch * seq
    hint = " (int32 data? the inputs must be int64)" if size * 2 == expected else ""
    return FeaturesError(
        f"{path}: {size} bytes, expected {expected} (int64 [{batch}, {seq}]){hint}; "
        "the file is truncated or not int64 token ids: re-run 'spanqa preprocess'"
    )


def open_features(
    inputs: str | Path | Sequence[str | Path],
    *,
    model_batch: int | None = None,
    model_seq: int | None = None,
    max_positions: int | None = None,
    batch_size: int | None = None,
    seq_len: int | None = None,
) -> FeatureFolders:
    """Find, list and check the feature files against the model before anything runs.

    ``inputs``: a features directory (with ``input_ids/``, ``segment_ids/``, ``input_mask/``;
    ``token_type_ids/`` and ``attention_mask/`` are accepted too) or a comma-separated list /
    sequence of folders. ``batch_size``/``seq_len`` describe headerless ``.bin`` folders that
    have no manifest.json when the model does not fix them.
    """
    folders, root = _resolve_folders(inputs)
    manifest = None
    if root is not None and (root / FEATURES_MANIFEST).is_file():
        from spanqa.squad import read_features_manifest

        manifest = read_features_manifest(root)

    listings = {name: _list_files(folder) for name, folder in folders.items()}
    fmts = {fmt for fmt, _ in listings.values()}
    if len(fmts) > 1:
        raise FeaturesError(
            "--input: "
            + ", ".join(f"{folders[n].name}/ holds .{listings[n][0]}" for n in MODEL_INPUTS)
            + "; all folders must use one format"
        )
    fmt = fmts.pop()
    counts = {name: len(files) for name, (_, files) in listings.items()}
    if len(set(counts.values())) > 1:
        raise FeaturesError(
            "unequal file counts: "
            + ", ".join(f"{folders[n]} has {counts[n]}" for n in MODEL_INPUTS)
            + "; every input folder needs one file per batch (re-run 'spanqa preprocess')"
        )
    first = listings["input_ids"][1]
    for name in MODEL_INPUTS[1:]:
        files = listings[name][1]
        missing = _sort_keys(set(first) - set(files))
        if missing:
            raise FeaturesError(
                f"{folders[name]}: no {missing[0]}.{fmt} to match {folders['input_ids'] / (missing[0] + '.' + fmt)}; "
                "the input folders must hold the same file names"
            )
    keys = tuple(_sort_keys(first))

    # Shapes: manifest first, then the caller's, then the model's, then the files themselves.
    if manifest is not None:
        m_batch, m_seq = int(manifest["batch_size"]), int(manifest["max_seq_length"])
        for opt, given, have in (("--batch-size", batch_size, m_batch), ("--seq-len", seq_len, m_seq)):
            if given is not None and given != have:
                raise InferenceError(f"{opt} {given}: the features' manifest.json says {have}; drop {opt}")
        if manifest.get("dtype", "int64") != "int64":
            raise FeaturesError(f"{root / FEATURES_MANIFEST}: dtype {manifest['dtype']}, expected int64; re-run 'spanqa preprocess'")
        if int(manifest.get("num_batches", len(keys))) != len(keys):
            raise FeaturesError(
                f"{root}: manifest.json lists {manifest['num_batches']} batches but the folders hold {len(keys)} files; re-run 'spanqa preprocess'"
            )
        batch_size, seq_len = m_batch, m_seq
    declared = {"batch size": batch_size, "sequence length": seq_len}  # by the manifest or the caller
    batch_size = batch_size or model_batch
    seq_len = seq_len or model_seq

    if fmt == "npy":
        shapes = {}
        for name in MODEL_INPUTS:
            for key in keys:
                path = folders[name] / f"{key}.npy"
                shape, dtype, offset = _npy_header(path)
                if dtype != np.dtype("<i8"):
                    raise FeaturesError(
                        f"{path}: dtype {dtype}, expected int64; write features with 'spanqa preprocess' or convert with .astype('int64')"
                    )
                if len(shape) != 2:
                    raise FeaturesError(f"{path}: shape {shape}, expected 2-D int64 [batch, seq_len]")
                size = path.stat().st_size
                if size < offset + 8 * shape[0] * shape[1]:
                    raise FeaturesError(f"{path}: truncated ({size} bytes for int64 {list(shape)}); re-run 'spanqa preprocess'")
                shapes.setdefault(shape, path)
                if len(shapes) > 1:
                    (s0, p0), (s1, p1) = list(shapes.items())[:2]
                    raise FeaturesError(f"{p1}: shape {list(s1)} differs from {p0}'s {list(s0)}; every batch must have one shape")
        file_batch, file_seq = next(iter(shapes))
        for what, have in (("batch size", file_batch), ("sequence length", file_seq)):
            want = declared[what]
            if want is not None and want != have:
                source = "the manifest" if manifest is not None else "--" + what.replace("sequence length", "seq-len").replace(" ", "-")
                raise FeaturesError(f"{shapes[(file_batch, file_seq)]}: {what} {have}, {source} says {want}")
        check_model_fit(model_batch, model_seq, max_positions, file_batch, file_seq)
        batch_size, seq_len = file_batch, file_seq
    else:
        sizes = {(name, key): (folders[name] / f"{key}.bin").stat().st_size for name in MODEL_INPUTS for key in keys}
        some = sizes[("input_ids", keys[0])]
        if batch_size is None and seq_len is None:
            raise InferenceError(
                f"{folders['input_ids']}: headerless .bin files, no manifest.json and a dynamic model: "
                "pass --seq-len (and --batch-size if the batch size is not 1)"
            )
        if seq_len is None:
            seq_len = some // (8 * batch_size) if some % (8 * batch_size) == 0 else None
            if not seq_len:
                raise _bin_size_error(folders["input_ids"] / f"{keys[0]}.bin", some, batch_size, max(1, some // (8 * batch_size)))
        elif batch_size is None:
            batch_size = some // (8 * seq_len) if some % (8 * seq_len) == 0 else None
            if not batch_size:
                raise _bin_size_error(folders["input_ids"] / f"{keys[0]}.bin", some, max(1, some // (8 * seq_len)), seq_len)
        # The shapes first: a wrong batch size or sequence length says more than a wrong file size.
        check_model_fit(model_batch, model_seq, max_positions, batch_size, seq_len)
        expected = 8 * batch_size * seq_len
        for (name, key), size in sizes.items():
            if size != expected:
                raise _bin_size_error(folders[name] / f"{key}.bin", size, batch_size, seq_len)
    return FeatureFolders(folders, keys, fmt, int(batch_size), int(seq_len), manifest)


# --------------------------------------------------------------------------------------------
# Outputs.


def output_paths(output_dir: Path, key: str, fmt: str) -> tuple[Path, Path]:
    return output_dir / f"{key}_output_0.{fmt}", output_dir / f"{key}_output_1.{fmt}"


def _write_output(path: Path, array: np.ndarray, fmt: str) -> None:
    from spanqa.fileutil import atomic_path

    array = np.ascontiguousarray(array, dtype="<f4")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            if fmt == "bin":
                array.tofile(f)
            else:
                np.save(f, array, allow_pickle=False)


def _output_complete(path: Path, fmt: str, batch: int, seq: int) -> bool:
    try:
        size = path.stat().st_size
    except OSError:
        return False
    if fmt == "bin":
        return size == 4 * batch * seq
    try:
        shape, dtype, offset = _npy_header(path)
    except FeaturesError:
        return False
    return shape == (batch, seq) and dtype == np.dtype("<f4") and size == offset + 4 * batch * seq


def read_outputs(output_dir: str | Path, key: str, batch_size: int, seq_len: int, fmt: str = "bin") -> tuple[np.ndarray, np.ndarray]:
    """Read one batch's start/end logits back (float32 [batch_size, seq_len])."""
    arrays = []
    for path in output_paths(Path(output_dir), key, fmt):
        if not _output_complete(path, fmt, batch_size, seq_len):
            raise InferenceError(f"{path}: missing or not float32 [{batch_size}, {seq_len}]; re-run 'spanqa infer --resume'")
        a = np.fromfile(path, dtype="<f4") if fmt == "bin" else np.load(path, allow_pickle=False)
        arrays.append(a.reshape(batch_size, seq_len))
    return arrays[0], arrays[1]


def _clean_output_dir(output_dir: Path, remove_outputs: bool) -> None:
    """Remove temp files a killed run left (SIGKILL skips cleanup) and, for a fresh run, old outputs."""
    if not output_dir.is_dir():
        return
    for p in output_dir.iterdir():
        if _TEMP_RE.match(p.name) or (remove_outputs and (_OUTPUT_RE.match(p.name) or p.name in (SUMMARY_NAME, LOG_NAME))):
            p.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# The msame step.


@dataclass(frozen=True)
class InferSettings:
    outfmt: str = "bin"  # "bin" or "npy"
    warmup: int = 0  # untimed runs of the first batch before timing starts
    loop: int = 1  # timed runs of each batch (outputs are written once)
    threads: int | None = None  # intra-op threads; None = every core this process may use
    device: str = "cpu"  # "cpu" or "cuda"
    batch_size: int | None = None  # for headerless .bin folders without manifest / synthetic runs
    seq_len: int | None = None  # likewise
    resume: bool = False  # skip batches whose outputs are complete


def cpu_info() -> dict:
    model = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    model = model or platform.processor() or platform.machine() or "unknown"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return {"model": model, "cores": cores}


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while the block runs, so `kill` unwinds like Ctrl-C:
    temp files are removed and finished outputs stay."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _check_settings(settings: InferSettings) -> None:
    if settings.outfmt not in OUTPUT_FORMATS:
        raise InferenceError(f"--outfmt {settings.outfmt}: use one of {', '.join(OUTPUT_FORMATS)}")
    if settings.warmup < 0 or settings.loop < 1:
        raise InferenceError(f"--warmup {settings.warmup} / --loop {settings.loop}: warm-up must be >= 0, loop >= 1")
    if settings.threads is not None and settings.threads < 1:
        raise InferenceError(f"--threads {settings.threads}: must be at least 1")


def _open_model(model, settings: InferSettings):
    from spanqa.fileutil import sha256_file
    from spanqa.package import ModelPackage, open_package
    from spanqa.runtime import RuntimeOptions, default_threads

    package = model if isinstance(model, ModelPackage) else open_package(model)
    threads = settings.threads or default_threads()
    max_positions = package.manifest.get("shapes", {}).get("max_positions") or package.manifest.get("model", {}).get("max_positions")
    return package, RuntimeOptions(threads=threads, device=settings.device), max_positions, sha256_file(package.model_path)


def _summary(package, runtime, options, model_sha256: str, stats: InferenceStats, extra: dict) -> dict:
    from spanqa.runtime import runtime_info

    info = runtime_info(runtime)
    summary = {
        "spanqa_version": __version__,
        "model": str((package.root if package.manifest.get("format") == "spanqa-model-package" else package.model_path).resolve()),
        "model_file": package.model_path.name,
        "model_sha256": model_sha256,
        "target": package.target,
        "precision": package.manifest.get("precision", "fp32"),
        "runtime": info["name"],
        "runtime_info": info,
        "device": options.device,
        "threads": options.threads,
        "cpu": cpu_info(),
    }
    summary.update(extra)
    stat_json = stats.to_json()
    if stat_json["batch_size"] is None:
        stat_json["batch_size"] = extra.get("batch_size")
    summary.update(stat_json)
    summary["finished"] = _now()
    return summary


def _header_lines(summary: dict) -> list[str]:
    lines = [
        f"[INFO] spanqa {__version__} infer",
        f"[INFO] model: {summary['model']} (target {summary['target']}, runtime {summary['runtime']}, sha256 {summary['model_sha256']})",
        f"[INFO] threads: {summary['threads']}, device: {summary['device']}, cpu: {summary['cpu']['model']} ({summary['cpu']['cores']} cores)",
    ]
    if summary.get("input"):
        lines.append(
            f"[INFO] input: {','.join(summary['input'])} ({summary['input_format']}, {summary['batches_total']} batches)"
        )
    else:
        lines.append("[INFO] input: synthetic (perf-only mode)")
    lines.append(f"[INFO] batch size: {summary['batch_size']}, sequence length: {summary['seq_len']}")
    return lines


def _footer_lines(summary: dict, stats: InferenceStats) -> list[str]:
    lines = []
    if summary.get("output") and summary.get("input"):
        resumed = summary.get("batches_resumed", 0)
        lines.append(
            f"[INFO] output data success: {summary['batches']} batches written to {summary['output']}"
            + (f" ({resumed} already complete)" if resumed else "")
        )
    lines += stats.msame_lines()
    if stats.throughput_rows_per_s is not None:
        lines.append(f"[INFO] throughput: {stats.throughput_rows_per_s:.3f} rows/s (batch size {summary['batch_size']})")
    return lines


def _finish(output_dir: Path | None, summary: dict, stats: InferenceStats, echo: Callable[[str], None]) -> dict:
    from spanqa.fileutil import atomic_path, write_json_atomic

    head, foot = _header_lines(summary), _footer_lines(summary, stats)
    for line in head + foot:
        echo(line)
    if output_dir is not None:
        timed = [f"Inference time: {ms:.6f} ms" for ms in stats.latencies_ms]
        with atomic_path(output_dir / LOG_NAME) as tmp:
            tmp.write_text("\n".join(head + timed + foot) + "\n", encoding="utf-8")
        write_json_atomic(output_dir / SUMMARY_NAME, summary)
    return summary


def infer_folders(
    model,
    inputs: str | Path | Sequence[str | Path],
    output_dir: str | Path,
    settings: InferSettings | None = None,
    *,
    echo: Callable[[str], None] | None = None,
) -> dict:
    """Run every batch of the feature folders and write msame-named outputs, ``infer.log`` and
    ``summary.json`` into ``output_dir``; returns the summary.

    Without ``resume`` a run starts fresh (old ``*_output_[01]`` files in ``output_dir`` are
    removed). With it, batches whose two outputs are complete are skipped, provided the
    directory was written for the same model file, shapes and output format.
    """
    with sigterm_as_interrupt():
        return _infer_folders(model, inputs, output_dir, settings or InferSettings(), echo or (lambda line: None))


def _infer_folders(model, inputs, output_dir, settings: InferSettings, echo: Callable[[str], None]) -> dict:
    from spanqa.fileutil import write_json_atomic
    from spanqa.runtime import open_runtime

    _check_settings(settings)
    started = _now()
    package, options, max_positions, model_sha256 = _open_model(model, settings)
    features = open_features(
        inputs,
        model_batch=package.batch_size,
        model_seq=package.seq_len,
        max_positions=max_positions,
        batch_size=settings.batch_size,
        seq_len=settings.seq_len,
    )
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise InferenceError(f"{output_dir}: exists and is not a directory; choose another --output")
    record = {
        "model_sha256": model_sha256,
        "batch_size": features.batch_size,
        "seq_len": features.seq_len,
        "batches": len(features),
        "outfmt": settings.outfmt,
    }
    settings_path = output_dir / SETTINGS_NAME
    if settings.resume and settings_path.is_file():
        try:
            previous = json.loads(settings_path.read_text(encoding="utf-8")).get("run", {})
        except (OSError, ValueError):
            previous = {}
        changed = [k for k in record if previous.get(k) != record[k]]
        if changed:
            k = changed[0]
            raise InferenceError(
                f"{output_dir}: holds outputs of another run ({k} {previous.get(k)!r}, now {record[k]!r}); "
                "drop --resume to start afresh or choose another --output"
            )
    runtime = open_runtime(package, options)
    check_model_fit(runtime.batch_size, runtime.seq_len, None, features.batch_size, features.seq_len)

    _clean_output_dir(output_dir, remove_outputs=not settings.resume)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(
        settings_path,
        {
            "spanqa_version": __version__,
            "settings": asdict(settings),
            "model": str(package.model_path.resolve()),
            "input": [str(features.folders[n].resolve()) for n in MODEL_INPUTS],
            "run": record,
        },
    )
    B, L, fmt = features.batch_size, features.seq_len, settings.outfmt
    todo = list(features.keys)
    if settings.resume:
        todo = [k for k in todo if not all(_output_complete(p, fmt, B, L) for p in output_paths(output_dir, k, fmt))]
    resumed = len(features) - len(todo)

    def sink(batch: Batch, start: np.ndarray, end: np.ndarray) -> None:
        p0, p1 = output_paths(output_dir, batch.key, fmt)
        _write_output(p0, start, fmt)
        _write_output(p1, end, fmt)

    stats = InferenceStats(warmup=settings.warmup, loop=settings.loop)
    run_batches(
        runtime,
        features.batches(todo),
        warmup=settings.warmup,
        loop=settings.loop,
        on_output=sink,
        total=len(todo),
        desc="infer",
        stats=stats,
    )
    summary = _summary(
        package,
        runtime,
        options,
        model_sha256,
        stats,
        {
            "mode": "features",
            "input": [str(features.folders[n].resolve()) for n in MODEL_INPUTS],
            "input_format": features.fmt,
            "output": str(output_dir.resolve()),
            "output_format": fmt,
            "batch_size": B,
            "seq_len": L,
            "batches_total": len(features),
            "batches_resumed": resumed,
            "num_features": features.num_features,
            "started": started,
        },
    )
    if resumed and not todo and (output_dir / SUMMARY_NAME).is_file():
        echo(f"[INFO] nothing to run: all {len(features)} batches in {output_dir} are complete")
        return json.loads((output_dir / SUMMARY_NAME).read_text(encoding="utf-8"))
    return _finish(output_dir, summary, stats, echo)


def synthetic_batch(batch_size: int, seq_len: int, vocab_size: int = 1000, seed: int = 0) -> Batch:
    """Realistic-looking inputs of the given shape: [CLS] q [SEP] context [SEP], no padding."""
    rng = np.random.default_rng(seed)
    low = 1000 if vocab_size > 2000 else 1
    ids = rng.integers(low, vocab_size, size=(batch_size, seq_len), dtype=np.int64)
    types = np.zeros((batch_size, seq_len), dtype=np.int64)
    types[:, min(seq_len - 1, max(1, seq_len // 8)) :] = 1
    mask = np.ones((batch_size, seq_len), dtype=np.int64)
    return Batch("synthetic", ids, types, mask)


def infer_synthetic(
    model,
    output_dir: str | Path | None = None,
    settings: InferSettings | None = None,
    *,
    echo: Callable[[str], None] | None = None,
) -> dict:
    """msame's perf-only mode: run one synthetic batch of the model's shape ``loop`` times.

    The shape is the model's where fixed, else ``settings.batch_size`` (default 1) and
    ``settings.seq_len`` (default the model's maximum positions, 512 if unknown). Writes
    ``infer.log`` and ``summary.json`` (no logits) when ``output_dir`` is given.
    """
    with sigterm_as_interrupt():
        return _infer_synthetic(model, output_dir, settings or InferSettings(), echo or (lambda line: None))


def _infer_synthetic(model, output_dir, settings: InferSettings, echo: Callable[[str], None]) -> dict:
    from spanqa.runtime import open_runtime

    _check_settings(settings)
    started = _now()
    package, options, max_positions, model_sha256 = _open_model(model, settings)
    B = settings.batch_size or package.batch_size or 1
    L = settings.seq_len or package.seq_len or max_positions or 512
    check_model_fit(package.batch_size, package.seq_len, max_positions, B, L, where="--batch-size/--seq-len")
    runtime = open_runtime(package, options)
    check_model_fit(runtime.batch_size, runtime.seq_len, None, B, L, where="--batch-size/--seq-len")
    vocab = int(package.manifest.get("model", {}).get("vocab_size") or 1000)
    batch = synthetic_batch(B, L, vocab)
    stats = InferenceStats(warmup=settings.warmup, loop=settings.loop)
    run_batches(runtime, [batch], warmup=settings.warmup, loop=settings.loop, total=1, desc="infer", stats=stats)
    output_dir = Path(output_dir) if output_dir is not None else None
    if output_dir is not None:
        if output_dir.exists() and not output_dir.is_dir():
            raise InferenceError(f"{output_dir}: exists and is not a directory; choose another --output")
        output_dir.mkdir(parents=True, exist_ok=True)
    summary = _summary(
        package,
        runtime,
        options,
        model_sha256,
        stats,
        {
            "mode": "synthetic",
            "input": None,
            "input_format": None,
            "output": str(output_dir.resolve()) if output_dir is not None else None,
            "output_format": None,
            "batch_size": B,
            "seq_len": L,
            "batches_total": 1,
            "batches_resumed": 0,
            "num_features": None,
            "started": started,
        },
    )
    return _finish(output_dir, summary, stats, echo)


# --------------------------------------------------------------------------------------------
# Reports (the recipe's parse.py).

_AVG_RE = re.compile(r"Inference average time\s*:\s*([0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)\s*ms")
_AVG_WO_RE = re.compile(r"Inference average time without first time\s*:\s*([0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)\s*ms")
_BS_RE = re.compile(r"\[INFO\] batch size\s*:\s*(\d+)")


@dataclass(frozen=True)
class PerfReport:
    source: str
    batch_size: int
    average_ms: float  # the average fps is computed from
    without_first: bool  # whether that average excludes the first run

    @property
    def fps(self) -> float:
        return self.batch_size * 1000.0 / self.average_ms

    def line(self) -> str:
        which = "without first time" if self.without_first else "all runs"
        return f"{self.source}: batch size {self.batch_size}, {self.average_ms:.3f} ms per batch ({which}), {self.fps:.3f} fps"


def perf_from_log(text: str, source: str = "log", batch_size: int | None = None) -> PerfReport:
    """fps from an msame or ``spanqa infer`` log: the last "without first time" average, else the
    last plain average. The batch size comes from ``batch_size`` or the log's "batch size" line."""
    without = _AVG_WO_RE.findall(text)
    plain = _AVG_RE.findall(text)
    if not without and not plain:
        raise InferenceError(f"{source}: no 'Inference average time' line; is this an msame or 'spanqa infer' log?")
    logged = _BS_RE.findall(text)
    logged_bs = int(logged[-1]) if logged else None
    if batch_size is not None and logged_bs is not None and batch_size != logged_bs:
        raise InferenceError(f"--batch-size {batch_size}: {source} was run with batch size {logged_bs}; drop --batch-size")
    bs = batch_size or logged_bs
    if bs is None:
        raise InferenceError(f"{source}: the log does not say the batch size; pass --batch-size N")
    avg = float(without[-1]) if without else float(plain[-1])
    if avg <= 0:
        raise InferenceError(f"{source}: average time {avg} ms; cannot compute fps")
    return PerfReport(source, bs, avg, bool(without))


def perf_from_summary(summary: dict, source: str = "summary.json", batch_size: int | None = None) -> PerfReport:
    bs = summary.get("batch_size")
    avg = summary.get("average_ms_without_first")
    if bs is None or avg is None:
        raise InferenceError(f"{source}: no timed runs recorded (batch_size/average_ms_without_first missing)")
    if batch_size is not None and batch_size != bs:
        raise InferenceError(f"--batch-size {batch_size}: {source} was run with batch size {bs}; drop --batch-size")
    return PerfReport(source, int(bs), float(avg), summary.get("timed_runs", 2) >= 2)


def accuracy_line(result: dict, source: str = "result.json") -> str:
    try:
        em, f1 = float(result["exact_match"]), float(result["f1"])
    except (KeyError, TypeError, ValueError):
        raise InferenceError(f"{source}: no exact_match/f1; is this a result.json from 'spanqa evaluate'?") from None
    total = result.get("total")
    return f"{source}: EM {em:.3f}, F1 {f1:.3f}" + (f" ({total} questions)" if total is not None else "")


def report_lines(path: str | Path, batch_size: int | None = None) -> list[str]:
    """What ``spanqa report`` prints for PATH: an infer log (or any msame log), a summary.json,
    a result.json, or a directory holding them."""
    path = Path(path)
    if path.is_dir():
        found = [path / n for n in (SUMMARY_NAME, LOG_NAME, "result.json") if (path / n).is_file()]
        if not found:
            raise InferenceError(f"{path}: no {SUMMARY_NAME}, {LOG_NAME} or result.json here; pass the file itself")
        # summary.json and infer.log describe the same run: report the summary when both exist.
        if path / SUMMARY_NAME in found and path / LOG_NAME in found:
            found.remove(path / LOG_NAME)
        return [line for f in found for line in report_lines(f, batch_size)]
    if not path.is_file():
        raise InferenceError(f"{path}: no such file or directory")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InferenceError(f"{path}: unreadable ({exc})") from None
    if path.suffix == ".json":
        try:
            obj = json.loads(text)
        except ValueError:
            raise InferenceError(f"{path}: not valid JSON") from None
        if not isinstance(obj, dict):
            raise InferenceError(f"{path}: not a summary.json or result.json")
        if "exact_match" in obj or "f1" in obj:
            return [accuracy_line(obj, str(path))]
        if "average_ms_without_first" in obj:
            return [perf_from_summary(obj, str(path), batch_size).line()]
        raise InferenceError(f"{path}: neither an infer summary.json nor an evaluate result.json")
    return [perf_from_log(text, str(path), batch_size).line()]
