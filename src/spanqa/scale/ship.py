"""``--ship-model``: a model package carried to every node through Ray's object store.

The driver reads the package's files once into one object (``ray.put``); each actor writes them
into a directory of its node's temp dir named by the package digest, checking every file's
sha256, and opens the package from there. Actors on one node share the copy: whoever finishes
first renames a complete directory into place, the others find it there.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from spanqa.errors import PackageError

CACHE_ENV = "SPANQA_RAY_MODEL_DIR"  # where actors put shipped packages (default: the temp dir)


@dataclass(frozen=True)
class ShippedPackage:
    """A package's files (relative path -> bytes) and their sha256 digests."""

    name: str
    files: dict[str, bytes]
    sha256: dict[str, str]

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for rel in sorted(self.sha256):
            h.update(f"{rel}\0{self.sha256[rel]}\n".encode())
        return h.hexdigest()[:16]


def pack(root: str | Path) -> ShippedPackage:
    """The files under the package directory ``root`` that running it needs."""
    root = Path(root)
    if not root.is_dir():
        raise PackageError(f"{root}: --ship-model needs a model package directory")
    files, sums = {}, {}
    skip = _reference_files(root)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel in skip:
            continue
        data = path.read_bytes()
        files[rel] = data
        sums[rel] = hashlib.sha256(data).hexdigest()
    if not files:
        raise PackageError(f"{root}: an empty model package")
    return ShippedPackage(root.name, files, sums)


def _reference_files(root: Path) -> set[str]:
    """The exported .onnx a package keeps as its verification reference: as large as the model
    and never run, so not worth a copy per node."""
    try:
        manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
        source = manifest["source"]["onnx"]
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    if not isinstance(source, str) or source == manifest.get("model_file", "model.onnx"):
        return set()
    return {source, source + ".json"}


def materialise(package: ShippedPackage, base: str | Path | None = None) -> Path:
    """The package as a directory on this node (written once per node, verified)."""
    base = Path(base or os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "spanqa-ray-models")
    final = base / f"{package.name}-{package.digest}"
    if final.is_dir() and _verified(final, package.sha256):
        return final
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=base))
    try:
        for rel, data in package.files.items():
            out = staging / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
        # Check what landed on disk, not what arrived: a full disk truncates silently.
        bad = _mismatches(staging, package.sha256)
        if bad:
            raise PackageError(f"shipped model {package.name}: sha256 mismatch after writing {bad[0]} on this node")
        if final.is_dir() and not _verified(final, package.sha256):
            # A damaged copy (a disk that filled up, a hand edit): set it aside, then replace it.
            stale = Path(tempfile.mkdtemp(prefix=f".{final.name}.stale.", dir=base))
            try:
                final.rename(stale / "old")
            except OSError:
                pass  # another actor on this node moved it first
            shutil.rmtree(stale, ignore_errors=True)
        try:
            staging.rename(final)
        except OSError:  # another actor on this node was first: use its copy
            if not _verified(final, package.sha256):
                raise PackageError(f"shipped model {package.name}: {final} exists but does not match the package") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _mismatches(root: Path, sums: dict[str, str]) -> list[str]:
    bad = []
    for rel, expected in sums.items():
        path = root / rel
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != expected:
            bad.append(rel)
    return bad


def _verified(root: Path, sums: dict[str, str]) -> bool:
    return not _mismatches(root, sums)
