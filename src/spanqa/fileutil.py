"""Atomic writes: nothing half-written ever sits under a final name."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from spanqa.errors import OutputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``final``; rename it over ``final`` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file private; give it the permissions a plain open() would.
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, final)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes_atomic(final: str | os.PathLike, data: bytes) -> None:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(final: str | os.PathLike, obj: Any) -> None:
    with atomic_path(final) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")


MARKER = ".spanqa-artifact"  # in every directory spanqa writes: what kind of artifact it is


def artifact_kind(path: str | os.PathLike) -> str | None:
    """The kind recorded in a directory's marker, None when spanqa did not write it."""
    if (Path(path) / "spanqa-download.json").is_file():  # a checkpoint from before the marker
        return "checkpoint"
    for name in (MARKER, "manifest.json"):  # packages and features from before the marker
        try:
            data = json.loads((Path(path) / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            kind = data.get("kind") or _LEGACY_KINDS.get(data.get("format"))
            if isinstance(kind, str):
                return _LEGACY_KINDS.get(kind, kind)
    return None


_LEGACY_KINDS = {"spanqa-features": "features", "spanqa-model-package": "model package"}


def check_output(
    final: str | os.PathLike,
    kind: str,
    *,
    overwrite: bool = False,
    inputs: tuple = (),
    option: str = "-o",
) -> Path:
    """Refuse an output directory that would destroy what spanqa did not write.

    ``final`` may be absent or an empty directory; an existing one is replaced only when its
    marker says it is a ``kind`` artifact and ``overwrite`` is set. The current or home
    directory, a file, and a path that is or contains one of ``inputs`` are refused.
    """
    final = Path(final)
    resolved = final.expanduser().resolve()
    if resolved in (Path.cwd().resolve(), Path.home().resolve(), Path(resolved.anchor)):
        raise OutputError(
            f"{option} {final}: refusing to write into {resolved} itself; name a new directory, e.g. {option} {final / kind}"
        )
    for item in inputs:
        if item is None:
            continue
        inp = Path(item).expanduser().resolve()
        if inp == resolved or resolved in inp.parents:
            raise OutputError(f"{option} {final}: that is (or holds) the input {item}; write the {kind} somewhere else")
    if final.is_symlink() or (final.exists() and not final.is_dir()):
        raise OutputError(f"{option} {final}: exists and is not a directory; name a new directory")
    if final.is_dir() and any(final.iterdir()):
        found = artifact_kind(final)
        if found != kind:
            what = f"a spanqa {found}" if found else "files spanqa did not write"
            raise OutputError(f"{option} {final}: the directory holds {what}; name a new or empty directory for the {kind}")
        if not overwrite:
            raise OutputError(f"{option} {final}: a {kind} is already there; pass --overwrite to replace it")
    return final


@contextmanager
def atomic_dir(
    final: str | os.PathLike, kind: str, *, overwrite: bool = False, inputs: tuple = (), option: str = "-o"
) -> Iterator[Path]:
    """Build a directory under a temp name beside ``final`` and move it into place on success.

    ``check_output`` decides first whether ``final`` may be replaced (never a directory spanqa
    did not write). On any failure (including KeyboardInterrupt) the temp directory is removed,
    so ``final`` is either the complete old content, the complete new content, or absent.
    """
    final = check_output(final, kind, overwrite=overwrite, inputs=inputs, option=option)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    except OSError as exc:
        raise OutputError(f"{option} {final}: cannot create it ({exc.strerror or exc}); choose a writable place") from None
    try:
        yield tmp
        (tmp / MARKER).write_text(json.dumps({"kind": kind}) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
