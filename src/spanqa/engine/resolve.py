"""From what a user names to a model package: a package as it is, or a checkpoint / .onnx
built once for a target into spanqa's package cache.

The cache key covers everything the built package depends on, by content: weights, config,
vocab and tokenizer settings, the calibration and guard data, the target's settings and the
spanqa version. Two processes converting the same model at once build it once: the second waits
on a file lock and then finds the package.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path

from spanqa import __version__
from spanqa.errors import UsageError
from spanqa.settings import CompileSettings, GuardSettings

TOKENIZER_FILES = ("vocab.txt", "tokenizer_config.json")


def _sha(path: Path | str | None) -> str | None:
    from spanqa.fileutil import sha256_file

    return sha256_file(path) if path is not None and Path(path).is_file() else None


def source_key(path: Path) -> str:
    """The content hash of a checkpoint directory or .onnx with its tokenizer files."""
    h = hashlib.sha256()
    if path.suffix == ".onnx":
        h.update((_sha(path) or "").encode())
        root = path.parent
    else:
        from spanqa.models.checkpoint import inspect_checkpoint

        h.update(inspect_checkpoint(path).weights_sha256.encode())
        h.update((_sha(path / "config.json") or "").encode())
        root = path
    for name in TOKENIZER_FILES:
        h.update(f"|{name}:{_sha(root / name)}".encode())
    return h.hexdigest()


def cache_key(source: str, settings: CompileSettings) -> str:
    """The package cache key: the source's content, the target's settings (data files by their
    sha256, not their path) and the spanqa version."""
    fields = asdict(settings)
    if fields.get("squad_version") is None:
        del fields["squad_version"]  # keys of packages cached before 2.0 support stay valid
    for name in ("calibration", "guard"):
        fields[name] = _sha(fields[name])
    blob = json.dumps({"source": source, "settings": fields, "spanqa": __version__}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def resolve_model(
    model: str | Path,
    target: str | None = None,
    *,
    cache: Path | None = None,
    guard: GuardSettings | None = None,
    calibration: str | Path | None = None,
    unguarded: bool = False,
    threads: int | None = None,
):
    """A model package for ``model`` and ``target``; returns (ModelPackage, built: bool).

    A model package is used as it is (``target`` must be None or its own). A ``.onnx`` runs as
    it is unless a target is named. A checkpoint directory (default target cpu-fp32), or a
    ``.onnx`` with a target, is built once into the cache. A reduced-precision target needs
    ``guard`` (the accuracy guard's settings) or ``unguarded``.
    """
    from spanqa.models.manifest import MANIFEST_NAME
    from spanqa.models.package import open_package

    path = Path(model)
    is_package = path.is_dir() and (path / MANIFEST_NAME).is_file()
    if is_package or (path.suffix == ".onnx" and path.is_file() and target is None):
        package = open_package(path)
        if is_package and target not in (None, package.target):
            raise UsageError(
                f"--target {target}: {path} is a {package.target} model package, which runs as it is; drop --target "
                f"(or pass --target {package.target}), or for {target} pass the checkpoint or its exported .onnx"
                + (f" ({path / 'exported.onnx'})" if (path / "exported.onnx").is_file() else "")
            )
        return package, False
    is_onnx = path.suffix == ".onnx" and path.is_file()
    if not is_onnx and not (path.is_dir() and (path / "config.json").is_file()):
        what = (
            "does not exist"
            if not path.exists()
            else "is neither a model package, a .onnx file nor a checkpoint directory (config.json + weights)"
        )
        raise UsageError(f"{path}: {what}; pass a model package, a .onnx or a checkpoint directory")
    target = target or "cpu-fp32"
    from spanqa.targets.compile import check_buildable

    entry = check_buildable(target)
    from spanqa.answers.squad2 import detect_squad_version

    squad_version = detect_squad_version(path)  # recorded: the package then knows it answers 2.0
    settings = CompileSettings(target=target, unguarded=unguarded and entry.guarded, squad_version=squad_version)
    if entry.guarded:
        if guard is not None and not unguarded:
            settings = replace(settings, guard=str(guard.dataset), guard_questions=guard.questions)
        cal = calibration or (guard.dataset if guard is not None else None)
        settings = replace(settings, calibration=str(cal) if cal else None)
    return _build(path, is_onnx, settings, cache, guard, threads)


def _build(path: Path, is_onnx: bool, settings: CompileSettings, cache, guard, threads):
    from filelock import FileLock

    from spanqa.engine.guard import Guard
    from spanqa.models.manifest import MANIFEST_NAME
    from spanqa.models.package import open_package
    from spanqa.paths import cache_home
    from spanqa.targets.compile import compile_model, convert_checkpoint, require_guard

    if not settings.guard:
        require_guard(settings, None)  # a reduced-precision target without a guard needs --no-guard
    key = cache_key(source_key(path), settings)
    root = cache or (cache_home() / "packages")
    out = root / f"{path.stem if is_onnx else path.name}-{settings.target}-{key}"
    if (out / MANIFEST_NAME).is_file():  # cached: no guard questions to read, no lock to take
        return open_package(out), False
    # The guard reads and checks its questions before anything is built or locked: a set too small
    # is a usage error, known at once. Lock files live apart, never beside the packages.
    check = Guard(guard, threads) if settings.guard else None
    locks = root / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / f"{out.name}.lock")):
        if (out / MANIFEST_NAME).is_file():
            return open_package(out), False
        if is_onnx:
            compile_model(path, out, settings, guard=check)
        else:
            convert_checkpoint(path, out, settings, guard=check)
    return open_package(out), True
