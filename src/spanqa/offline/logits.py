"""Logits read back from msame-style output folders, for the evaluate step (any batch layout:
the files of `spanqa infer`, of `run --keep-files`, or of the recipe's own msame)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from spanqa.errors import FeaturesError, InferenceError, UsageError


def _output_file(directory: Path, batch: int, output: int) -> Path | None:
    for suffix in (".bin", ".npy"):
        p = directory / f"{batch}_output_{output}{suffix}"
        if p.is_file():
            return p
    return None


def _outputs_root(outputs_dir: Path) -> Path:
    """``outputs_dir`` itself, or msame's single timestamped sub-folder inside it."""
    if _output_file(outputs_dir, 0, 0) is not None:
        return outputs_dir
    subdirs = [d for d in outputs_dir.iterdir() if d.is_dir() and _output_file(d, 0, 0) is not None]
    if len(subdirs) == 1:
        return subdirs[0]
    return outputs_dir


def _read_array(path: Path, rows_options: Iterable[int], min_width: int, max_width: int) -> np.ndarray:
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InferenceError(f"{path} is not a readable .npy file ({exc}); rerun inference") from None
        if arr.dtype != np.float32:
            raise InferenceError(f"{path} holds {arr.dtype}, expected float32 logits")
        if arr.ndim == 2:
            if arr.shape[0] not in rows_options or not min_width <= arr.shape[1] <= max_width:
                raise InferenceError(
                    f"{path} has shape {tuple(arr.shape)}, expected [{' or '.join(map(str, rows_options))}, "
                    f"{min_width}..{max_width}]; were the outputs made from these features?"
                )
            return arr
        flat = arr.reshape(-1)
    else:
        flat = np.fromfile(path, dtype=np.uint8)
        if flat.size % 4:
            raise InferenceError(
                f"{path} is {flat.size} bytes, not a whole number of float32 values; it is truncated, rerun inference"
            )
        flat = flat.view(np.float32)
    for rows in rows_options:
        if rows and flat.size % rows == 0 and min_width <= flat.size // rows <= max_width:
            return flat.reshape(rows, flat.size // rows)
    raise InferenceError(
        f"{path} holds {flat.size} float32 values, which is not "
        f"{' or '.join(map(str, rows_options))} rows of {min_width}..{max_width} logits; "
        "it is truncated or was made from other features, rerun inference"
    )


def read_logits(
    outputs_dir: str | os.PathLike,
    batch_size: int,
    lengths: np.ndarray,
    max_seq_length: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Start and end logits [num_features, W] from msame-style output files.

    Batch i is ``{i}_output_0`` (start) and ``{i}_output_1`` (end), ``.bin`` (raw float32) or
    ``.npy``, with ``batch_size`` rows (the last batch padded with rows that are dropped) of up
    to ``max_seq_length`` logits. Batches narrower than the widest are padded with -inf, which
    never enters a feature's top-n ahead of a real logit and is never a valid position.
    """
    outputs_dir = Path(outputs_dir)
    if not outputs_dir.is_dir():
        raise UsageError(f"--outputs {outputs_dir}: no such directory; run 'spanqa infer' first and pass its -o")
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    num_features = int(lengths.shape[0])
    if batch_size < 1:
        raise FeaturesError(f"features batch_size is {batch_size}; rebuild the features")
    root = _outputs_root(outputs_dir)
    num_batches = -(-num_features // batch_size)
    starts: list[np.ndarray] = []
    ends: list[np.ndarray] = []
    for i in range(num_batches):
        lo, hi = i * batch_size, min((i + 1) * batch_size, num_features)
        real = hi - lo
        need = int(lengths[lo:hi].max())
        rows_options = (batch_size,) if real == batch_size else (batch_size, real)
        pair = []
        for k in (0, 1):
            path = _output_file(root, i, k)
            if path is None:
                raise InferenceError(
                    f"{root / f'{i}_output_{k}.bin'} is missing ({num_batches} batches of {batch_size} expected); rerun inference"
                )
            pair.append(_read_array(path, rows_options, need, max_seq_length)[:real])
        if pair[0].shape != pair[1].shape:
            raise InferenceError(f"batch {i} start logits {pair[0].shape} and end logits {pair[1].shape} differ; rerun inference")
        starts.append(pair[0])
        ends.append(pair[1])
    if _output_file(root, num_batches, 0) is not None:
        raise InferenceError(
            f"{root} has more output batches than the {num_batches} the features make; were the outputs made from these features?"
        )
    width = max((a.shape[1] for a in starts), default=0)

    def stack(parts: list[np.ndarray]) -> np.ndarray:
        out = np.full((num_features, width), -np.inf, dtype=np.float32)
        row = 0
        for a in parts:
            out[row : row + a.shape[0], : a.shape[1]] = a
            row += a.shape[0]
        return out

    return stack(starts), stack(ends)
