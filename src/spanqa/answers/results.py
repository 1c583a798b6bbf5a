"""Result directories: predictions.json, nbest_predictions.json, extra files, then result.json,
all appearing at once."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from spanqa.errors import UsageError

PREDICTIONS_FILE = "predictions.json"
NBEST_FILE = "nbest_predictions.json"
RESULT_FILE = "result.json"


def _dump_json(obj: Any, path: Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def write_results(
    result_dir: str | os.PathLike,
    predictions: Mapping[str, str],
    nbest: Mapping[str, list[dict]],
    result: Mapping[str, Any] | None,
    extra_files: Mapping[str, Any] | None = None,
    extra_dirs: Mapping[str, Path] | None = None,
    *,
    overwrite: bool = False,
    inputs: tuple = (),
) -> Path:
    """Write predictions.json, nbest_predictions.json, any extra files, then result.json.

    The directory is built under a temporary name and renamed into place, so ``result_dir`` is
    either complete or untouched: an interrupted run never leaves a result.json behind.
    ``extra_files`` maps a plain file name to a JSON-able object (or str/bytes written as is);
    ``extra_dirs`` maps a plain name to an existing directory moved inside. ``result`` is None
    for questions without gold answers (nothing to score). An existing ``result_dir`` is
    replaced only when it is a spanqa result and ``overwrite`` is set.
    """
    from spanqa.fileutil import atomic_dir

    extra_files = dict(extra_files or {})
    reserved = {PREDICTIONS_FILE, NBEST_FILE, RESULT_FILE}
    for name in extra_files:
        if not name or name != Path(name).name or name in (".", "..") or name in reserved:
            raise UsageError(f"extra file name {name!r} must be a plain file name other than {sorted(reserved)}")
    final = Path(result_dir)
    with atomic_dir(final, "result", overwrite=overwrite, inputs=inputs) as tmp:
        _dump_json(dict(predictions), tmp / PREDICTIONS_FILE)
        _dump_json(dict(nbest), tmp / NBEST_FILE)
        for name, obj in extra_files.items():
            if isinstance(obj, bytes):
                (tmp / name).write_bytes(obj)
            elif isinstance(obj, str):
                (tmp / name).write_text(obj, encoding="utf-8")
            else:
                _dump_json(obj, tmp / name)
        for name, directory in (extra_dirs or {}).items():
            shutil.move(str(directory), tmp / name)
        if result is not None:
            _dump_json(dict(result), tmp / RESULT_FILE)
    return final
