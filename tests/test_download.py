"""spanqa download (spanqa.download) and the asset cache, against a local HTTP server on 127.0.0.1
only; archives extracted safely (spanqa.archive) or refused."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import tarfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from spanqa import download as dl
from spanqa.archive import RECORD_NAME
from spanqa.cli import main
from spanqa.errors import DownloadError
from spanqa.fileutil import MARKER

CONFIG = {"hidden_size": 8, "num_attention_heads": 2, "vocab_size": 28996}
WEIGHTS = b"\x80\x02fake-weights" * 100


def _closed_port() -> int:
    """A port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """Own cache home, no inherited mirror, and official URLs that can only fail locally.

    Official URLs are redirected to a closed local port so that a test which forgot --mirror/--url
    fails instead of contacting a real download host.
    """
    monkeypatch.setenv("SPANQA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SPANQA_MIRROR", raising=False)
    dead = f"http://127.0.0.1:{_closed_port()}/official"
    patched = {name: dl.Asset(**{**asset.__dict__, "url": f"{dead}/{asset.filename}"}) for name, asset in dl.ASSETS.items()}
    monkeypatch.setattr(dl, "ASSETS", patched)


class _Server:
    def __init__(self, root: Path):
        self.root = root
        self.requests: list[str] = []
        self.truncate: set[str] = set()
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):
                server.requests.append(self.path)
                if self.path in server.truncate:
                    self.send_response(200)
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    self.wfile.write(b"only a little")
                    self.wfile.flush()
                    self.close_connection = True
                    return
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def count(self, filename: str) -> int:
        return sum(1 for p in self.requests if p.endswith("/" + filename))


@pytest.fixture
def server(tmp_path_factory):
    # Outside tmp_path, so tests can assert that tmp_path holds nothing but their own results.
    root = tmp_path_factory.mktemp("served")
    srv = _Server(root)
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def _add(tar: tarfile.TarFile, name: str, data: bytes = b"", **attrs) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data) if attrs.get("type", tarfile.REGTYPE) == tarfile.REGTYPE else 0
    for key, value in attrs.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if info.size else None)


def make_archive(path: Path, extra=None, top: str = "spanbert_squad1", files=True) -> Path:
    """A SpanBERT-shaped tar.gz: top/config.json + top/pytorch_model.bin, then ``extra`` members."""
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f"{top}/" if top else ""
    with tarfile.open(path, "w:gz") as tar:
        if top:
            _add(tar, top, type=tarfile.DIRTYPE, mode=0o755)
        if files:
            _add(tar, prefix + "config.json", json.dumps(CONFIG).encode())
            _add(tar, prefix + "pytorch_model.bin", WEIGHTS)
        for member in extra or []:
            _add(tar, **member)
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(*args, env=None):
    return CliRunner().invoke(main, ["download", *args], env=env)


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ")
    return lines[0]


# --- registry and settings -------------------------------------------------------------------


def test_registry_names_official_sources(monkeypatch):
    monkeypatch.undo()  # the real registry, not the redirected one
    squad1, squad2, dev = (dl.ASSETS[n] for n in ("squad1", "squad2", "squad-v1.1-dev"))
    assert squad1.url == "https://dl.fbaipublicfiles.com/fairseq/models/spanbert_squad1.tar.gz"
    assert squad2.url == "https://dl.fbaipublicfiles.com/fairseq/models/spanbert_squad2.tar.gz"
    assert (squad1.kind, squad1.sha256, squad1.subpath) == ("checkpoint", None, "models/spanbert-squad1")
    assert (squad2.filename, squad2.sha256) == ("spanbert_squad2.tar.gz", None)
    assert dev.url == "https://rajpurkar.github.io/SQuAD-explorer/dataset/dev-v1.1.json"
    assert dev.sha256 == "95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9"
    assert (dev.kind, dev.subpath) == ("file", "data/dev-v1.1.json")
    from spanqa.cli.download import ASSET_NAMES

    assert set(ASSET_NAMES) == set(dl.ASSETS)


def test_cache_home_and_default_paths(monkeypatch, tmp_path):
    monkeypatch.delenv("SPANQA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert dl.cache_home() == tmp_path / "user" / ".cache" / "spanqa"
    assert dl.default_path("squad1") == tmp_path / "user/.cache/spanqa/models/spanbert-squad1"
    monkeypatch.setenv("SPANQA_HOME", str(tmp_path / "h"))
    assert dl.default_path("squad-v1.1-dev") == tmp_path / "h/data/dev-v1.1.json"
    assert dl.default_path("squad2", home=tmp_path / "x") == tmp_path / "x/models/spanbert-squad2"


def test_source_url_precedence(monkeypatch):
    assert dl.source_url("squad1", mirror="http://m/base/") == "http://m/base/spanbert_squad1.tar.gz"
    monkeypatch.setenv("SPANQA_MIRROR", "http://env")
    assert dl.source_url("squad-v1.1-dev") == "http://env/dev-v1.1.json"
    assert dl.source_url("squad1", mirror="http://flag") == "http://flag/spanbert_squad1.tar.gz"
    assert dl.source_url("squad1", url="/x/a.tar.gz", mirror="http://flag") == "/x/a.tar.gz"


def test_unknown_asset():
    with pytest.raises(DownloadError, match=r"unknown asset 'squad3'; choose one of: squad1, squad2"):
        dl.ensure_asset("squad3")


# --- good downloads --------------------------------------------------------------------------


def test_download_checkpoint_cli(server, tmp_path):
    archive = make_archive(server.root / "spanbert_squad1.tar.gz")
    dest = tmp_path / "ckpt"
    result = run("squad1", "--dir", str(dest), "--mirror", server.url)
    assert result.exit_code == 0, result.output
    assert result.output == f"squad1: checkpoint ready in {dest}\n"
    assert sorted(p.name for p in dest.iterdir()) == [MARKER, "config.json", "pytorch_model.bin", RECORD_NAME]
    assert json.loads((dest / MARKER).read_text()) == {"kind": "checkpoint"}
    assert json.loads((dest / "config.json").read_text()) == CONFIG
    assert (dest / "pytorch_model.bin").read_bytes() == WEIGHTS
    record = json.loads((dest / RECORD_NAME).read_text())
    assert record["sha256"] == sha(archive)
    assert record["size"] == archive.stat().st_size
    assert record["source"] == f"{server.url}/spanbert_squad1.tar.gz"
    assert record["pinned_sha256"] is None
    # Nothing else was left beside the destination (no temp files or staging dirs).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert server.count("spanbert_squad1.tar.gz") == 1
    # A second run finds the complete copy and does not download again.
    again = run("squad1", "--dir", str(dest), "--mirror", server.url)
    assert again.output == f"squad1 is already in {dest} (use --force to download it again)\n"
    assert server.count("spanbert_squad1.tar.gz") == 1
    forced = run("squad1", "--dir", str(dest), "--mirror", server.url, "--force", "-q")
    assert forced.exit_code == 0, forced.output
    assert server.count("spanbert_squad1.tar.gz") == 2


def test_archive_without_top_directory(server, tmp_path):
    make_archive(server.root / "spanbert_squad2.tar.gz", top="")
    dest = dl.download("squad2", dest=tmp_path / "c", mirror=server.url)
    assert (dest / "config.json").is_file() and (dest / "pytorch_model.bin").read_bytes() == WEIGHTS


def test_download_replaces_only_a_spanqa_checkpoint(server, tmp_path):
    make_archive(server.root / "spanbert_squad1.tar.gz")
    dest = tmp_path / "c"
    dl.download("squad1", dest=dest, mirror=server.url)
    (dest / "stale.txt").write_text("old")
    dl.download("squad1", dest=dest, mirror=server.url)
    assert not (dest / "stale.txt").exists()
    assert (dest / "pytorch_model.bin").read_bytes() == WEIGHTS
    # A directory of files spanqa did not write is never replaced, not even by --force.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("keep me")
    result = run("squad1", "--dir", str(mine), "--mirror", server.url, "--force")
    assert result.exit_code == 4
    assert result.output == (
        f"Error: --dir {mine}: the directory holds files spanqa did not write; name a new or empty directory for the checkpoint\n"
    )
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]
    assert server.count("spanbert_squad1.tar.gz") == 2  # refused before downloading


def test_mirror_from_env_var(server, tmp_path):
    make_archive(server.root / "mirror" / "spanbert_squad1.tar.gz")
    result = run("squad1", env={"SPANQA_MIRROR": f"{server.url}/mirror/"})
    assert result.exit_code == 0, result.output
    dest = tmp_path / "home" / "models" / "spanbert-squad1"
    assert result.output == f"squad1: checkpoint ready in {dest}\n"
    assert server.requests == ["/mirror/spanbert_squad1.tar.gz"]
    assert dl.is_complete("squad1", dest)


def test_mirror_flag_beats_env_var(server, tmp_path):
    make_archive(server.root / "flag" / "spanbert_squad1.tar.gz")
    result = run("squad1", "--mirror", f"{server.url}/flag", env={"SPANQA_MIRROR": f"{server.url}/env"})
    assert result.exit_code == 0, result.output
    assert server.requests == ["/flag/spanbert_squad1.tar.gz"]


def test_dev_set_download_verified(server, tmp_path, monkeypatch):
    data = json.dumps({"version": "1.1", "data": []}).encode()
    (server.root / "dev-v1.1.json").write_bytes(data)
    monkeypatch.setitem(
        dl.ASSETS,
        "squad-v1.1-dev",
        dl.Asset(**{**dl.ASSETS["squad-v1.1-dev"].__dict__, "sha256": hashlib.sha256(data).hexdigest()}),
    )
    result = run("squad-v1.1-dev", "--dir", str(tmp_path / "data"), "--mirror", server.url)
    assert result.exit_code == 0, result.output
    target = tmp_path / "data" / "dev-v1.1.json"
    assert result.output == f"squad-v1.1-dev: dev-v1.1.json ready in {target}\n"
    assert target.read_bytes() == data
    # the file and the record that spanqa wrote it (the output rule's sidecar)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [".dev-v1.1.json.spanqa-artifact", "dev-v1.1.json"]


def test_url_with_local_archive_path_and_file_url(tmp_path):
    archive = make_archive(tmp_path / "offline" / "spanbert_squad1.tar.gz")
    dest = tmp_path / "c"
    result = run("squad1", "--dir", str(dest), "--url", str(archive))
    assert result.exit_code == 0, result.output
    assert (dest / "pytorch_model.bin").read_bytes() == WEIGHTS
    assert json.loads((dest / RECORD_NAME).read_text())["sha256"] == sha(archive)
    assert archive.is_file()  # the user's file is read, never moved
    dest2 = dl.download("squad1", dest=tmp_path / "c2", url=archive.as_uri())
    assert (dest2 / "config.json").is_file()


def test_url_with_full_http_url(server, tmp_path):
    make_archive(server.root / "renamed.tgz")
    dest = dl.download("squad1", dest=tmp_path / "c", url=f"{server.url}/renamed.tgz")
    assert (dest / "config.json").is_file()
    assert server.requests == ["/renamed.tgz"]


def test_url_local_path_missing(tmp_path):
    line = one_line_error(run("squad1", "--dir", str(tmp_path / "c"), "--url", str(tmp_path / "nope.tar.gz")))
    assert line == (
        f"Error: {tmp_path / 'nope.tar.gz'} does not exist; pass the path of spanbert_squad1.tar.gz "
        "downloaded elsewhere with --url /path/to/spanbert_squad1.tar.gz"
    )
    assert not (tmp_path / "c").exists()


# --- the cache -------------------------------------------------------------------------------


def test_ensure_asset_downloads_once_then_reuses_cache(server, tmp_path):
    make_archive(server.root / "spanbert_squad1.tar.gz")
    home = tmp_path / "cache"
    first = dl.ensure_asset("squad1", mirror=server.url, home=home)
    assert first == home / "models" / "spanbert-squad1"
    assert (first / "pytorch_model.bin").read_bytes() == WEIGHTS
    second = dl.ensure_asset("squad1", mirror=server.url, home=home)
    assert second == first
    assert server.count("spanbert_squad1.tar.gz") == 1


def test_ensure_asset_redownloads_incomplete_entry(server, tmp_path):
    make_archive(server.root / "spanbert_squad1.tar.gz")
    home = tmp_path / "cache"
    partial = home / "models" / "spanbert-squad1"
    partial.mkdir(parents=True)
    (partial / MARKER).write_text(json.dumps({"kind": "checkpoint"}))
    (partial / "config.json").write_text("{}")  # a spanqa checkpoint without weights: not complete
    path = dl.ensure_asset("squad1", mirror=server.url, home=home)
    assert server.count("spanbert_squad1.tar.gz") == 1
    assert (path / "pytorch_model.bin").read_bytes() == WEIGHTS


def test_ensure_asset_file_checks_sha(server, tmp_path, monkeypatch):
    data = b'{"version": "1.1", "data": []}'
    (server.root / "dev-v1.1.json").write_bytes(data)
    monkeypatch.setitem(
        dl.ASSETS,
        "squad-v1.1-dev",
        dl.Asset(**{**dl.ASSETS["squad-v1.1-dev"].__dict__, "sha256": hashlib.sha256(data).hexdigest()}),
    )
    home = tmp_path / "cache"
    cached = home / "data" / "dev-v1.1.json"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"truncated")  # wrong sha: not a cache hit
    assert dl.ensure_asset("squad-v1.1-dev", mirror=server.url, home=home) == cached
    assert cached.read_bytes() == data and server.count("dev-v1.1.json") == 1
    dl.ensure_asset("squad-v1.1-dev", mirror=server.url, home=home)
    assert server.count("dev-v1.1.json") == 1


def test_pinned_checkpoint_sha_is_verified(server, tmp_path, monkeypatch):
    archive = make_archive(server.root / "spanbert_squad1.tar.gz")
    asset = dl.ASSETS["squad1"]
    monkeypatch.setitem(dl.ASSETS, "squad1", dl.Asset(**{**asset.__dict__, "sha256": "0" * 64}))
    with pytest.raises(DownloadError) as err:
        dl.download("squad1", dest=tmp_path / "c", mirror=server.url)
    assert str(err.value) == (
        f"checksum mismatch for spanbert_squad1.tar.gz from {server.url}/spanbert_squad1.tar.gz: "
        f"sha256 is {sha(archive)}, expected {'0' * 64}; the file is corrupt or not the official "
        "one, nothing was kept"
    )
    assert not (tmp_path / "c").exists()
    monkeypatch.setitem(dl.ASSETS, "squad1", dl.Asset(**{**asset.__dict__, "sha256": sha(archive)}))
    dest = dl.ensure_asset("squad1", mirror=server.url, home=tmp_path / "h")
    assert dl.read_record(dest)["pinned_sha256"] == sha(archive)
    assert dl.is_complete("squad1", dest)


# --- failures --------------------------------------------------------------------------------


def test_sha_mismatch_for_dev_set_refused(server, tmp_path):
    (server.root / "dev-v1.1.json").write_bytes(b'{"version": "1.1", "data": ["tampered"]}')
    line = one_line_error(run("squad-v1.1-dev", "--dir", str(tmp_path / "d"), "--mirror", server.url))
    got = hashlib.sha256(b'{"version": "1.1", "data": ["tampered"]}').hexdigest()
    assert line == (
        f"Error: checksum mismatch for dev-v1.1.json from {server.url}/dev-v1.1.json: sha256 is {got}, "
        "expected 95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9; "
        "the file is corrupt or not the official one, nothing was kept"
    )
    assert not (tmp_path / "d").exists()  # not even the directory is left


def test_sha_mismatch_for_local_dev_file_refused(tmp_path):
    local = tmp_path / "dev-v1.1.json"
    local.write_text("{}")
    line = one_line_error(run("squad-v1.1-dev", "--dir", str(tmp_path / "d"), "--url", str(local)))
    assert "Error: checksum mismatch for dev-v1.1.json from " in line
    assert not (tmp_path / "d").exists()
    assert local.read_text() == "{}"


def test_server_down_one_line_error_names_way_out(tmp_path):
    mirror = f"http://127.0.0.1:{_closed_port()}"
    line = one_line_error(run("squad1", "--dir", str(tmp_path / "c"), "--mirror", mirror))
    assert line == (
        f"Error: cannot reach {mirror}/spanbert_squad1.tar.gz: Connection refused. You seem to be "
        "offline: download spanbert_squad1.tar.gz elsewhere and install it with "
        "'spanqa download squad1 --url /path/to/spanbert_squad1.tar.gz', or set --mirror / SPANQA_MIRROR"
    )
    assert not (tmp_path / "c").exists()
    assert list(tmp_path.iterdir()) == []


def test_default_source_unreachable_names_official_url(tmp_path):
    line = one_line_error(run("squad2"))
    assert line.startswith("Error: cannot reach http://127.0.0.1:")
    assert "/official/spanbert_squad2.tar.gz: Connection refused. You seem to be offline: " in line
    assert "--url /path/to/spanbert_squad2.tar.gz" in line
    assert not (tmp_path / "home").exists()


def test_http_404(server, tmp_path):
    line = one_line_error(run("squad1", "--dir", str(tmp_path / "c"), "--mirror", server.url))
    assert line == (
        f"Error: cannot download {server.url}/spanbert_squad1.tar.gz: HTTP 404 File not found. "
        "Check the URL or mirror, or download spanbert_squad1.tar.gz elsewhere and install it with "
        "'spanqa download squad1 --url /path/to/spanbert_squad1.tar.gz', or set --mirror / SPANQA_MIRROR"
    )
    assert not (tmp_path / "c").exists()


def test_truncated_download(server, tmp_path):
    server.truncate.add("/spanbert_squad1.tar.gz")
    with pytest.raises(DownloadError) as err:
        dl.download("squad1", dest=tmp_path / "c", mirror=server.url)
    message = str(err.value)
    assert message.startswith(f"download of {server.url}/spanbert_squad1.tar.gz ")
    assert "--url /path/to/spanbert_squad1.tar.gz" in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_not_a_tar_archive(server, tmp_path):
    (server.root / "spanbert_squad1.tar.gz").write_bytes(b"<html>captive portal</html>")
    line = one_line_error(run("squad1", "--dir", str(tmp_path / "c"), "--mirror", server.url))
    assert line.startswith("Error: cannot extract spanbert_squad1.tar.gz: ")
    assert line.endswith("it is not a complete tar archive, download it again")
    assert list(tmp_path.iterdir()) == []


def test_archive_without_checkpoint_files(server, tmp_path):
    make_archive(server.root / "spanbert_squad1.tar.gz", files=False, extra=[{"name": "spanbert_squad1/README", "data": b"hi"}])
    line = one_line_error(run("squad1", "--dir", str(tmp_path / "c"), "--mirror", server.url))
    assert line == (
        "Error: spanbert_squad1.tar.gz does not hold a checkpoint: config.json, pytorch_model.bin "
        "missing; pass an archive with config.json and pytorch_model.bin"
    )
    assert list(tmp_path.iterdir()) == []


# --- unsafe archives -------------------------------------------------------------------------


def _refused(server, tmp_path, extra, fragment):
    """Serve an archive with ``extra`` members; it must be refused and leave nothing behind."""
    make_archive(server.root / "spanbert_squad1.tar.gz", extra=extra)
    parent = tmp_path / "work" / "models"
    parent.mkdir(parents=True)
    dest = parent / "ckpt"
    line = one_line_error(run("squad1", "--dir", str(dest), "--mirror", server.url))
    assert line.startswith("Error: refusing to extract spanbert_squad1.tar.gz: "), line
    assert fragment in line, line
    assert line.endswith("the archive is corrupt or malicious, nothing was kept")
    assert not dest.exists()
    assert list(parent.iterdir()) == []  # no temp or staging dirs left beside it
    return parent


def test_refuses_parent_traversal(server, tmp_path):
    parent = _refused(
        server,
        tmp_path,
        [{"name": "../evil", "data": b"x"}],
        "member '../evil' has an absolute path or '..' and would land outside the destination",
    )
    for where in (parent / "evil", parent.parent / "evil", tmp_path / "evil"):
        assert not where.exists()


def test_refuses_nested_parent_traversal(server, tmp_path):
    parent = _refused(
        server,
        tmp_path,
        [{"name": "spanbert_squad1/../../evil", "data": b"x"}],
        "member 'spanbert_squad1/../../evil' has an absolute path or '..'",
    )
    assert not (parent / "evil").exists() and not (parent.parent / "evil").exists()


def test_refuses_absolute_member(server, tmp_path):
    target = tmp_path / "outside" / "abs-evil"
    _refused(server, tmp_path, [{"name": str(target), "data": b"x"}], f"member '{target}' has an absolute path or '..'")
    assert not target.exists() and not target.parent.exists()


def test_refuses_symlink_outside(server, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    extra = [
        {"name": "spanbert_squad1/link", "type": tarfile.SYMTYPE, "linkname": str(outside)},
        {"name": "spanbert_squad1/link/pwned", "data": b"x"},
    ]
    _refused(server, tmp_path, extra, f"symlink 'spanbert_squad1/link' -> '{outside}' points outside the destination")
    assert list(outside.iterdir()) == []


def test_refuses_symlink_to_etc(server, tmp_path):
    _refused(
        server,
        tmp_path,
        [{"name": "spanbert_squad1/etc", "type": tarfile.SYMTYPE, "linkname": "/etc"}],
        "symlink 'spanbert_squad1/etc' -> '/etc' points outside the destination",
    )


def test_refuses_relative_symlink_climbing_out(server, tmp_path):
    extra = [
        {"name": "spanbert_squad1/up", "type": tarfile.SYMTYPE, "linkname": "../../.."},
        {"name": "spanbert_squad1/up/evil", "data": b"x"},
    ]
    parent = _refused(server, tmp_path, extra, "symlink 'spanbert_squad1/up' -> '../../..' points outside")
    assert not (parent.parent / "evil").exists() and not (tmp_path / "evil").exists()


def test_refuses_hardlink_outside(server, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("original")
    extra = [
        {"name": "spanbert_squad1/h", "type": tarfile.LNKTYPE, "linkname": str(victim)},
        {"name": "spanbert_squad1/h", "data": b"pwned"},
    ]
    _refused(server, tmp_path, extra, f"hardlink 'spanbert_squad1/h' -> '{victim}' points outside")
    assert victim.read_text() == "original"


def test_refuses_relative_hardlink_outside(server, tmp_path):
    extra = [{"name": "spanbert_squad1/h", "type": tarfile.LNKTYPE, "linkname": "../victim.txt"}]
    _refused(server, tmp_path, extra, "hardlink 'spanbert_squad1/h' -> '../victim.txt' points outside")


def test_refuses_device_file(server, tmp_path):
    _refused(
        server,
        tmp_path,
        [{"name": "spanbert_squad1/null", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}],
        "member 'spanbert_squad1/null' is a device file or FIFO",
    )


def test_refuses_fifo(server, tmp_path):
    _refused(
        server,
        tmp_path,
        [{"name": "spanbert_squad1/pipe", "type": tarfile.FIFOTYPE}],
        "member 'spanbert_squad1/pipe' is a device file or FIFO",
    )


def test_refused_local_archive_leaves_old_checkpoint_untouched(tmp_path):
    dest = tmp_path / "c"
    dl.download("squad1", dest=dest, url=str(make_archive(tmp_path / "good.tar.gz")))
    bad = make_archive(tmp_path / "bad.tar.gz", extra=[{"name": "../evil", "data": b"x"}])
    with pytest.raises(DownloadError, match=r"^refusing to extract spanbert_squad1\.tar\.gz: member '\.\./evil'"):
        dl.download("squad1", dest=dest, url=str(bad))
    assert (dest / "pytorch_model.bin").read_bytes() == WEIGHTS
    assert not (tmp_path / "evil").exists()


def test_internal_links_are_allowed(tmp_path):
    extra = [
        {"name": "spanbert_squad1/vocab", "type": tarfile.DIRTYPE, "mode": 0o755},
        {"name": "spanbert_squad1/vocab/vocab.txt", "data": b"[PAD]\n"},
        {"name": "spanbert_squad1/vocab.txt", "type": tarfile.SYMTYPE, "linkname": "vocab/vocab.txt"},
        {"name": "spanbert_squad1/weights.bin", "type": tarfile.LNKTYPE, "linkname": "spanbert_squad1/pytorch_model.bin"},
    ]
    dest = dl.download("squad1", dest=tmp_path / "c", url=str(make_archive(tmp_path / "a.tar.gz", extra=extra)))
    assert (dest / "vocab.txt").read_bytes() == b"[PAD]\n"
    assert (dest / "weights.bin").read_bytes() == WEIGHTS
