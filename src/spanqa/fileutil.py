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
    if not (Path(path) / MARKER).is_file() and (Path(path) / "infer_settings.json").is_file():
        return "infer run"  # an infer run from before the marker: --resume may continue it
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


def _refuse_inputs(final: Path, resolved: Path, kind: str, inputs: tuple, option: str) -> None:
    """An output may not be an input, hold one (replacing it would delete it) or lie inside one."""
    for item in inputs:
        if item is None or (isinstance(item, str) and "://" in item):
            continue
        inp = Path(item).expanduser().resolve()
        if inp == resolved or resolved in inp.parents:
            raise OutputError(f"{option} {final}: that is (or holds) the input {item}; write the {kind} somewhere else")
        if inp in resolved.parents:
            raise OutputError(f"{option} {final}: that is inside the input {item}; write the {kind} somewhere else")


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
    _refuse_inputs(final, resolved, kind, inputs, option)
    if final.is_symlink() or (final.exists() and not final.is_dir()):
        raise OutputError(f"{option} {final}: exists and is not a directory; name a new directory")
    if final.is_dir() and any(final.iterdir()):
        found = artifact_kind(final)
        if found != kind:
            what = f"a spanqa {found}" if found else "files spanqa did not write"
            raise OutputError(f"{option} {final}: the directory holds {what}; name a new or empty directory for the {kind}")
        if not overwrite:
            raise OutputError(f"{option} {final}: {_a(kind)} is already there; pass --overwrite to replace it")
    return final


def _a(kind: str) -> str:
    return f"{'an' if kind[:1].lower() in 'aeiou' else 'a'} {kind}"


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


# A single file cannot carry a marker inside it (ONNX, JSON, PNG, HTML), so spanqa records what
# it wrote in a hidden sidecar beside it: the kind and the sha256 of the bytes it wrote. A file
# whose bytes changed since (the user edited or replaced it) is no longer spanqa's to replace.


def file_marker(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}{MARKER}")


def file_artifact_kind(path: str | os.PathLike) -> str | None:
    """The kind spanqa recorded for the file it wrote at ``path``; None when it did not write
    these bytes."""
    try:
        record = json.loads(file_marker(path).read_text(encoding="utf-8"))
        if isinstance(record, dict) and record.get("sha256") == sha256_file(path):
            kind = record.get("kind")
            return kind if isinstance(kind, str) else None
    except (OSError, ValueError):
        pass
    return None


def check_output_file(
    final: str | os.PathLike,
    kind: str,
    *,
    overwrite: bool = False,
    inputs: tuple = (),
    option: str = "-o",
) -> Path:
    """Refuse an output file that would destroy what spanqa did not write: an existing file is
    replaced only when spanqa wrote these very bytes as a ``kind`` and ``overwrite`` is set; a
    directory, an input, and a path inside an input are refused."""
    final = Path(final)
    resolved = final.expanduser().resolve()
    _refuse_inputs(final, resolved, kind, inputs, option)
    if final.is_dir():
        raise OutputError(f"{option} {final}: is a directory; name a file for the {kind}")
    if final.exists() or final.is_symlink():
        found = None if final.is_symlink() else file_artifact_kind(final)
        if found != kind:
            what = f"a spanqa {found}" if found else "a file spanqa did not write"
            raise OutputError(f"{option} {final}: already exists and is {what}; name a new file for the {kind}")
        if not overwrite:
            raise OutputError(f"{option} {final}: {_a(kind)} is already there; pass --overwrite to replace it")
    parent = final.parent if str(final.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"{option} {final}: {parent} is not a directory; name a file in a directory")
    if parent.is_dir() and not os.access(parent, os.W_OK):
        raise OutputError(f"{option} {final}: {parent} is not writable; choose another place")
    return final


def mark_file(path: str | os.PathLike, kind: str) -> None:
    """Record that spanqa wrote ``path``'s current bytes as a ``kind``."""
    write_json_atomic(file_marker(path), {"kind": kind, "sha256": sha256_file(path)})


@contextmanager
def atomic_file(
    final: str | os.PathLike, kind: str, *, overwrite: bool = False, inputs: tuple = (), option: str = "-o"
) -> Iterator[Path]:
    """Write a file under a temp name beside ``final``, checked by ``check_output_file`` first;
    on success it replaces ``final`` and its sidecar records that spanqa wrote it."""
    final = check_output_file(final, kind, overwrite=overwrite, inputs=inputs, option=option)
    try:
        with atomic_path(final) as tmp:
            yield tmp
    except OSError as exc:
        if exc.filename is None:
            raise
        raise OutputError(f"{option} {final}: cannot write it ({exc.strerror or exc}); choose a writable place") from None
    mark_file(final, kind)


def prepare_dir(
    final: str | os.PathLike,
    kind: str,
    *,
    overwrite: bool = False,
    resume: bool = False,
    inputs: tuple = (),
    option: str = "-o",
) -> Path:
    """A directory that is written in place (work that resumes batch by batch): checked like
    ``check_output``, its own earlier artifact taken again only with ``resume`` (continue) or
    ``overwrite`` (start afresh); created and marked before the work writes into it."""
    final = check_output(final, kind, overwrite=overwrite or resume, inputs=inputs, option=option)
    try:
        final.mkdir(parents=True, exist_ok=True)
        marker = final / MARKER
        if not marker.is_file():
            marker.write_text(json.dumps({"kind": kind}) + "\n", encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"{option} {final}: cannot create it ({exc.strerror or exc}); choose a writable place") from None
    return final
