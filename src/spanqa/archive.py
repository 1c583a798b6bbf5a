"""Safe extraction of checkpoint archives: absolute paths, `..`, links out of the directory and
device files are refused; the destination appears complete or not at all."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from spanqa.errors import DownloadError, one_line
from spanqa.fileutil import atomic_dir, write_json_atomic

CHECKPOINT_FILES = ("config.json", "pytorch_model.bin")
RECORD_NAME = "spanqa-download.json"  # what was fetched, from where, its sha256


def _member_parts(name: str) -> tuple[str, ...] | None:
    """The path components of an archive member name, or None when it is absolute or climbs up."""
    if not name or name.startswith(("/", "\\")) or "\\" in name or "\x00" in name:
        return None
    if len(name) >= 2 and name[1] == ":":  # Windows drive ("C:...")
        return None
    parts = tuple(p for p in PurePosixPath(name).parts if p not in ("", "."))
    if any(p == ".." for p in parts):
        return None
    return parts


def check_member(member: tarfile.TarInfo) -> str | None:
    """Why extracting ``member`` would be unsafe, or None when it is safe.

    Links are allowed only when their target is relative and has no ``..``: a link can then only
    point at or below its own directory, so no chain of links can lead out of the destination.
    """
    parts = _member_parts(member.name)
    if parts is None:
        return f"member {member.name!r} has an absolute path or '..' and would land outside the destination"
    if not parts:
        return None if member.isdir() else f"member {member.name!r} has an empty name"
    if member.issym() or member.islnk():
        kind = "symlink" if member.issym() else "hardlink"
        if _member_parts(member.linkname) is None or not member.linkname:
            return f"{kind} {member.name!r} -> {member.linkname!r} points outside the destination"
        return None
    if member.isdev():
        return f"member {member.name!r} is a device file or FIFO"
    if not (member.isfile() or member.isdir()):
        return f"member {member.name!r} has an unsupported type"
    return None


def safe_extract(archive: str | os.PathLike, target: str | os.PathLike, label: str | None = None) -> None:
    """Extract a tar archive (any compression) into the existing directory ``target``.

    Every member is checked before it is written; the first unsafe one raises DownloadError.
    The caller extracts into a fresh temp directory and discards it on failure.
    """
    archive = Path(archive)
    target = Path(target)
    label = label or archive.name
    use_filter = hasattr(tarfile, "data_filter")
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            for member in tar:
                problem = check_member(member)
                if problem is not None:
                    raise DownloadError(
                        f"refusing to extract {label}: {problem}; the archive is corrupt or malicious, nothing was kept"
                    )
                if member.isdir():
                    # Directories get safe permissions regardless of what the archive says.
                    (target / member.name).mkdir(parents=True, exist_ok=True)
                    continue
                if use_filter:
                    tar.extract(member, target, set_attrs=False, filter="data")
                else:  # pragma: no cover - Python without extraction filters
                    tar.extract(member, target, set_attrs=False)
    except DownloadError:
        raise
    except tarfile.FilterError as exc:
        raise DownloadError(
            f"refusing to extract {label}: {exc}; the archive is corrupt or malicious, nothing was kept"
        ) from None
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise DownloadError(
            f"cannot extract {label}: {one_line(str(exc)) or type(exc).__name__}; "
            "it is not a complete tar archive, download it again"
        ) from None


def extract_checkpoint(
    archive: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    asset=None,
    record: dict | None = None,
) -> Path:
    """Safely extract a checkpoint archive so that ``dest`` holds config.json etc. directly.

    An archive with one top-level directory contributes that directory's contents. ``dest`` is
    replaced atomically, and only when the archive is safe and holds the required files.
    """
    archive = Path(archive)
    dest = Path(dest)
    required = asset.required if asset is not None else CHECKPOINT_FILES
    label = asset.filename if asset is not None else archive.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".extract", dir=dest.parent))
    try:
        safe_extract(archive, stage, label=label)
        root = stage
        entries = list(stage.iterdir())
        if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
            root = entries[0]
        missing = [f for f in required if not (root / f).is_file()]
        if missing:
            raise DownloadError(
                f"{label} does not hold a checkpoint: {', '.join(missing)} missing; "
                "pass an archive with config.json and pytorch_model.bin"
            )
        with atomic_dir(dest, "checkpoint", overwrite=True, option="--dir") as out:
            for entry in root.iterdir():
                os.replace(entry, out / entry.name)
            if record is not None:
                write_json_atomic(out / RECORD_NAME, record)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return dest
