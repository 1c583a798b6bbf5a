"""msame's output files: ``{key}_output_0.bin`` (start) / ``{key}_output_1.bin`` (end), float32
[batch, seq_len] (or ``.npy``), each written under a temp name and renamed, so a complete pair
proves a batch is done. The one module that writes and reads them."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from spanqa.errors import FeaturesError, InferenceError
from spanqa.offline.folders import npy_header

OUTPUT_FORMATS = ("bin", "npy")
SUMMARY_NAME = "summary.json"
LOG_NAME = "infer.log"
SETTINGS_NAME = "infer_settings.json"
_OUTPUT_RE = re.compile(r"^(?P<key>.+)_output_[01]\.(bin|npy)$")
_TEMP_RE = re.compile(r"^\.(.+_output_[01]\.(bin|npy)|summary\.json|infer\.log|infer_settings\.json)\..*\.tmp$")


def output_paths(output_dir: Path, key: str, fmt: str) -> tuple[Path, Path]:
    return output_dir / f"{key}_output_0.{fmt}", output_dir / f"{key}_output_1.{fmt}"


def write_output(path: Path, array: np.ndarray, fmt: str) -> None:
    from spanqa.fileutil import atomic_path

    array = np.ascontiguousarray(array, dtype="<f4")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            if fmt == "bin":
                array.tofile(f)
            else:
                np.save(f, array, allow_pickle=False)


def output_complete(path: Path, fmt: str, batch: int, seq: int) -> bool:
    try:
        size = path.stat().st_size
    except OSError:
        return False
    if fmt == "bin":
        return size == 4 * batch * seq
    try:
        shape, dtype, offset = npy_header(path)
    except FeaturesError:
        return False
    return shape == (batch, seq) and dtype == np.dtype("<f4") and size == offset + 4 * batch * seq


def read_outputs(
    output_dir: str | Path, key: str, batch_size: int, seq_len: int, fmt: str = "bin"
) -> tuple[np.ndarray, np.ndarray]:
    """Read one batch's start/end logits back (float32 [batch_size, seq_len])."""
    arrays = []
    for path in output_paths(Path(output_dir), key, fmt):
        if not output_complete(path, fmt, batch_size, seq_len):
            raise InferenceError(f"{path}: missing or not float32 [{batch_size}, {seq_len}]; re-run 'spanqa infer --resume'")
        a = np.fromfile(path, dtype="<f4") if fmt == "bin" else np.load(path, allow_pickle=False)
        arrays.append(a.reshape(batch_size, seq_len))
    return arrays[0], arrays[1]


def clean_output_dir(output_dir: Path, remove_outputs: bool) -> None:
    """Remove temp files a killed run left (SIGKILL skips cleanup) and, for a fresh run, old outputs."""
    if not output_dir.is_dir():
        return
    for p in output_dir.iterdir():
        if _TEMP_RE.match(p.name) or (remove_outputs and (_OUTPUT_RE.match(p.name) or p.name in (SUMMARY_NAME, LOG_NAME))):
            p.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# The msame step.
