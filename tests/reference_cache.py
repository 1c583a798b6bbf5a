"""Reference outputs of the held-out fixtures, cached on disk and keyed by content.

The held-out fixtures run the stand-in over every held-out feature (PyTorch, and `spanqa infer`
on the recipe's 512-padded files); that is most of the suite's time on 2 cores. Their results
depend only on what goes in (the model's bytes, the features' bytes, the library versions and
the spanqa source files on the path), so they are kept under a key of all of these: a change to
any of them computes them afresh, and an unchanged tree takes them from disk. The cache lives in
$SPANQA_TEST_CACHE (default ~/.cache/spanqa-tests); SPANQA_TEST_CACHE=off turns it off.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "spanqa"


def cache_root() -> Path | None:
    value = os.environ.get("SPANQA_TEST_CACHE", "")
    if value.lower() == "off":
        return None
    return Path(value).expanduser() if value else Path.home() / ".cache" / "spanqa-tests"


def content_key(*parts) -> str:
    """sha256 over parts: bytes, strings, numpy arrays, files (their bytes) and directories of
    source files (every .py under them, by name and bytes)."""
    import numpy as np

    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(str((part.dtype, part.shape)).encode())
            h.update(np.ascontiguousarray(part).tobytes())
        elif isinstance(part, Path) and part.is_dir():
            for f in sorted(part.rglob("*.py")):
                h.update(str(f.relative_to(part)).encode())
                h.update(f.read_bytes())
        elif isinstance(part, Path):
            h.update(part.read_bytes())
        elif isinstance(part, bytes):
            h.update(part)
        else:
            h.update(repr(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def cached_dir(name: str, key: str, build: Callable[[Path], None]) -> Path:
    """A directory that ``build(dir)`` fills, built once per key (a file lock keeps two test
    processes from building it twice) and moved into the cache only when complete."""
    from filelock import FileLock

    root = cache_root()
    if root is None:
        out = Path(tempfile.mkdtemp(prefix=f"{name}-"))
        build(out)
        return out
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{name}-{key}"
    with FileLock(str(root / f".{name}-{key}.lock")):
        if (final / ".complete").is_file():
            return final
        shutil.rmtree(final, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
        try:
            build(work)
            (work / ".complete").write_text(key)
            os.replace(work, final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return final
