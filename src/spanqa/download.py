"""Downloadable assets (fine-tuned SpanBERT checkpoints, the SQuAD v1.1 dev set) and their cache.

Every download streams into a temp file beside its destination, is checksummed, and only then is
moved (file) or safely extracted (archive) into place, so a refused, corrupt or interrupted
download never leaves anything at the destination or outside it.

Where a file comes from, first match wins: an explicit ``url`` (an http(s) URL, a ``file://`` URL
or a local path: the way out for air-gapped machines), a mirror base URL (argument or
``$SPANQA_MIRROR``; the file is ``{mirror}/{filename}``), the asset's official URL.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from spanqa import __version__
from spanqa.archive import CHECKPOINT_FILES, RECORD_NAME, extract_checkpoint, safe_extract
from spanqa.errors import DownloadError, one_line
from spanqa.fileutil import atomic_path, check_output, check_output_file, mark_file, sha256_file
from spanqa.paths import HOME_ENV, cache_home

MIRROR_ENV = "SPANQA_MIRROR"
TIMEOUT_S = 30.0
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Asset:
    name: str
    filename: str
    url: str
    sha256: str | None  # None: not pinned (unknown upstream); what was fetched is still recorded
    kind: Literal["checkpoint", "file"]
    subpath: str  # default location, relative to cache_home()
    required: tuple[str, ...] = ()  # files a complete checkpoint directory holds
    description: str = ""


_SPANBERT_RELEASE = "https://dl.fbaipublicfiles.com/fairseq/models"
_SQUAD_DATASET = "https://rajpurkar.github.io/SQuAD-explorer/dataset"
ASSETS: dict[str, Asset] = {
    "squad1": Asset(
        name="squad1",
        filename="spanbert_squad1.tar.gz",
        url=f"{_SPANBERT_RELEASE}/spanbert_squad1.tar.gz",
        sha256=None,
        kind="checkpoint",
        subpath="models/spanbert-squad1",
        required=CHECKPOINT_FILES,
        description="SpanBERT (cased, large) fine-tuned on SQuAD v1.1",
    ),
    "squad2": Asset(
        name="squad2",
        filename="spanbert_squad2.tar.gz",
        url=f"{_SPANBERT_RELEASE}/spanbert_squad2.tar.gz",
        sha256=None,
        kind="checkpoint",
        subpath="models/spanbert-squad2",
        required=CHECKPOINT_FILES,
        description="SpanBERT (cased, large) fine-tuned on SQuAD v2.0",
    ),
    "squad-v1.1-dev": Asset(
        name="squad-v1.1-dev",
        filename="dev-v1.1.json",
        url=f"{_SQUAD_DATASET}/dev-v1.1.json",
        sha256="95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9",
        kind="file",
        subpath="data/dev-v1.1.json",
        description="SQuAD v1.1 dev set",
    ),
}


DATASET_KIND = "dataset"  # what the output rule records for a downloaded data file


def get_asset(name: str) -> Asset:
    try:
        return ASSETS[name]
    except KeyError:
        raise DownloadError(f"unknown asset {name!r}; choose one of: {', '.join(ASSETS)}") from None


def default_path(name: str, home: str | os.PathLike | None = None) -> Path:
    """Where an asset lives in the cache: a checkpoint directory or a data file."""
    asset = get_asset(name)
    return (Path(home).expanduser() if home is not None else cache_home()) / asset.subpath


def source_url(name: str, url: str | None = None, mirror: str | None = None) -> str:
    """The URL or local path an asset is fetched from: ``url``, else mirror, else official."""
    asset = get_asset(name)
    if url:
        return str(url)
    mirror = mirror or os.environ.get(MIRROR_ENV) or None
    if mirror:
        return f"{mirror.rstrip('/')}/{asset.filename}"
    return asset.url


def is_complete(name: str, path: str | os.PathLike) -> bool:
    """A cache entry counts only when whole: a checkpoint dir with its files, a file that checks out."""
    asset = get_asset(name)
    path = Path(path)
    if asset.kind == "checkpoint":
        if not path.is_dir() or not all((path / f).is_file() for f in asset.required):
            return False
        if asset.sha256 is not None:
            record = read_record(path)
            return record is not None and record.get("sha256") == asset.sha256
        return True
    if not path.is_file():
        return False
    return asset.sha256 is None or sha256_file(path) == asset.sha256


def read_record(checkpoint_dir: str | os.PathLike) -> dict | None:
    import json

    try:
        return json.loads((Path(checkpoint_dir) / RECORD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def ensure_asset(name: str, *, mirror: str | None = None, home: str | os.PathLike | None = None) -> Path:
    """The cached asset's path, downloading it on first use and reusing the cache afterwards."""
    dest = default_path(name, home)
    if is_complete(name, dest):
        return dest
    return download(name, dest=dest, mirror=mirror, cache=True)


def ensure_assets(dataset, model, *, mirror: str | None = None) -> tuple[Path, Path]:
    """``spanqa run``'s defaults: the SQuAD v1.1 dev set and the SpanBERT squad1 checkpoint for
    whichever of ``dataset`` / ``model`` is None. Both are tried before failing, so an offline
    first run names everything it needs in one message."""
    wanted = {"squad-v1.1-dev": dataset, "squad1": model}
    found: dict[str, Path] = {}
    failed: list[Asset] = []
    for name, given in wanted.items():
        if given is not None:
            found[name] = Path(given)
            continue
        try:
            found[name] = ensure_asset(name, mirror=mirror)
        except DownloadError:
            if len([v for v in wanted.values() if v is None]) == 1:
                raise
            failed.append(get_asset(name))
    if failed:
        names = " and ".join(f"{a.name} ({a.filename})" for a in failed)
        installs = "; ".join(f"'spanqa download {a.name} --url /path/to/{a.filename}'" for a in failed)
        raise DownloadError(
            f"cannot fetch {names}: offline? Download them elsewhere and install them with {installs}, "
            f"or set --mirror / {MIRROR_ENV}, or pass DATASET and --model"
        )
    return found["squad-v1.1-dev"], found["squad1"]


def download(
    name: str,
    dest: str | os.PathLike | None = None,
    url: str | None = None,
    mirror: str | None = None,
    *,
    timeout: float = TIMEOUT_S,
    cache: bool = False,
) -> Path:
    """Fetch, verify and install one asset at ``dest`` (checkpoint dir or file path); return it.

    ``dest`` defaults to the asset's place in the cache. Whatever is at ``dest`` is replaced only
    once the new content is complete and verified, and only when spanqa put it there (or
    ``cache``: ``dest`` is spanqa's own cache entry, where a damaged copy is simply fetched again).
    """
    asset = get_asset(name)
    dest = Path(dest).expanduser() if dest is not None else default_path(name)
    dest = dest.absolute()
    src = source_url(name, url=url, mirror=mirror)
    local = _local_path(asset, src)
    # Temp files live beside the destination: same filesystem for the final rename, and a
    # multi-GB archive goes to the disk the user chose, not to /tmp.
    # Only what spanqa installed may be replaced: never a directory of other files, never a
    # data file of the user's (the official one is "already there" before this point).
    if asset.kind == "checkpoint":
        check_output(dest, "checkpoint", overwrite=True, inputs=(local,), option="--dir")
    else:
        if not (cache or dest == default_path(name).absolute()):
            check_output_file(dest, DATASET_KIND, overwrite=True, inputs=(local,), option="--dir")
    created = _missing_parents(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_file: Path | None = None
    ok = False
    try:
        if local is not None:
            archive, digest, size = local, *_hash_local(asset, local)
        else:
            fd, tmp = tempfile.mkstemp(prefix=f".{asset.filename}.", suffix=".part", dir=dest.parent)
            os.close(fd)
            tmp_file = archive = Path(tmp)
            digest, size = _fetch(asset, src, archive, timeout)
        if asset.sha256 is not None and digest != asset.sha256:
            raise DownloadError(
                f"checksum mismatch for {asset.filename} from {src}: sha256 is {digest}, "
                f"expected {asset.sha256}; the file is corrupt or not the official one, "
                "nothing was kept"
            )
        record = {
            "asset": asset.name,
            "filename": asset.filename,
            "source": src,
            "sha256": digest,
            "pinned_sha256": asset.sha256,
            "size": size,
            "downloaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "spanqa_version": __version__,
        }
        if asset.kind == "file":
            _install_file(archive, dest, move=tmp_file is not None)
        else:
            extract_checkpoint(archive, dest, asset=asset, record=record)
        ok = True
    finally:
        if tmp_file is not None:
            tmp_file.unlink(missing_ok=True)
        if not ok:
            # A failed first download leaves no empty cache directories behind either.
            for parent in created:
                try:
                    parent.rmdir()
                except OSError:
                    break
    return dest


def _missing_parents(path: Path) -> list[Path]:
    """The not-yet-existing ancestors of ``path``, deepest first."""
    missing = []
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    return missing


# --- fetching --------------------------------------------------------------------------------


def _local_path(asset: Asset, src: str) -> Path | None:
    """A local path for a local source (plain path or file:// URL), None for http(s)."""
    from urllib.parse import urlsplit
    from urllib.request import url2pathname

    parts = urlsplit(src)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return None
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise DownloadError(f"cannot use {src}: a file:// URL must name a local file (file:///path)")
        path = Path(url2pathname(parts.path))
    elif "://" in src:
        raise DownloadError(f"cannot download {src}: only http://, https:// and file:// URLs or local paths work")
    else:
        path = Path(src).expanduser()
    if path.is_dir():
        raise DownloadError(f"{path} is a directory; pass the file itself, e.g. --url {path / asset.filename}")
    if not path.is_file():
        raise DownloadError(
            f"{path} does not exist; pass the path of {asset.filename} downloaded elsewhere with --url /path/to/{asset.filename}"
        )
    return path


def _way_out(asset: Asset) -> str:
    return (
        f"download {asset.filename} elsewhere and install it with "
        f"'spanqa download {asset.name} --url /path/to/{asset.filename}', or set --mirror / {MIRROR_ENV}"
    )


def _reason(exc: BaseException) -> str:
    from urllib.error import HTTPError, URLError

    if isinstance(exc, HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, URLError):
        exc_reason = exc.reason
        if isinstance(exc_reason, BaseException):
            return _reason(exc_reason)
        return str(exc_reason)
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _fetch(asset: Asset, url: str, out: Path, timeout: float) -> tuple[str, int]:
    """Stream ``url`` into ``out`` with a progress bar; return (sha256, size)."""
    from http.client import HTTPException
    from urllib.error import HTTPError
    from urllib.request import Request, urlopen

    from spanqa import progress

    request = Request(url, headers={"User-Agent": f"spanqa/{__version__}"})
    try:
        response = urlopen(request, timeout=timeout)
    except HTTPError as exc:
        raise DownloadError(
            one_line(f"cannot download {url}: {_reason(exc)}. Check the URL or mirror, or " + _way_out(asset))
        ) from None
    except (OSError, HTTPException, ValueError) as exc:
        raise DownloadError(one_line(f"cannot reach {url}: {_reason(exc)}. You seem to be offline: " + _way_out(asset))) from None
    h = hashlib.sha256()
    size = 0
    with response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        with open(out, "wb") as f, progress.bar(total=total, desc=asset.filename, unit="B", unit_scale=True) as bar:
            while True:
                try:
                    block = response.read(_CHUNK)
                except (OSError, HTTPException) as exc:
                    raise DownloadError(
                        one_line(
                            f"download of {url} broke off after {size} bytes: {_reason(exc)}. Try again, or " + _way_out(asset)
                        )
                    ) from None
                if not block:
                    break
                f.write(block)
                h.update(block)
                size += len(block)
                bar.update(len(block))
    if total is not None and size != total:
        raise DownloadError(f"download of {url} is incomplete: got {size} of {total} bytes. Try again, or " + _way_out(asset))
    return h.hexdigest(), size


def _hash_local(asset: Asset, path: Path) -> tuple[str, int]:
    from spanqa import progress

    h = hashlib.sha256()
    size = 0
    try:
        with (
            open(path, "rb") as f,
            progress.bar(total=path.stat().st_size, desc=f"checking {asset.filename}", unit="B", unit_scale=True) as bar,
        ):
            while block := f.read(_CHUNK):
                h.update(block)
                size += len(block)
                bar.update(len(block))
    except OSError as exc:
        raise DownloadError(f"cannot read {path}: {_reason(exc)}") from None
    return h.hexdigest(), size


def _install_file(src: Path, dest: Path, move: bool) -> None:
    if dest.is_dir():
        raise DownloadError(f"{dest} is a directory; pass a directory to put {src.name} in with --dir")
    if move:
        os.replace(src, dest)
    else:
        with atomic_path(dest) as tmp:
            shutil.copyfile(src, tmp)
    mark_file(dest, DATASET_KIND)


__all__ = ["HOME_ENV", "cache_home", "extract_checkpoint", "safe_extract"]
