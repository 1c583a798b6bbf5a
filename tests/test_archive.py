"""Safe extraction (spanqa.archive): which tar members are refused, and checkpoint archives
extracted into place with or without a top-level directory. The refusals through 'spanqa download'
are in test_download.py."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from spanqa.archive import check_member, extract_checkpoint, safe_extract
from spanqa.errors import DownloadError
from spanqa.fileutil import MARKER


def test_check_member_unit():
    def info(name, **attrs):
        i = tarfile.TarInfo(name)
        for k, v in attrs.items():
            setattr(i, k, v)
        return i

    assert check_member(info("a/b.txt")) is None
    assert check_member(info("./a/b.txt")) is None
    assert check_member(info("a/../../b")) is not None
    assert check_member(info("C:/windows")) is not None
    assert check_member(info("a\\..\\..\\b")) is not None
    assert check_member(info("l", type=tarfile.SYMTYPE, linkname="sub/x")) is None
    assert check_member(info("l", type=tarfile.SYMTYPE, linkname="")) is not None
    assert check_member(info("l", type=tarfile.SYMTYPE, linkname="sub/../../x")) is not None
    assert check_member(info("b", type=tarfile.BLKTYPE)) == "member 'b' is a device file or FIFO"


def _archive(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_extract_checkpoint_takes_the_top_directory_s_contents(tmp_path):
    archive = _archive(tmp_path / "a.tar.gz", [("top/config.json", b"{}"), ("top/pytorch_model.bin", b"w")])
    dest = extract_checkpoint(archive, tmp_path / "ckpt", record={"sha256": "x"})
    assert sorted(p.name for p in dest.iterdir()) == [MARKER, "config.json", "pytorch_model.bin", "spanqa-download.json"]
    assert json.loads((dest / "spanqa-download.json").read_text()) == {"sha256": "x"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz", "ckpt"]  # no staging left
    flat = _archive(tmp_path / "b.tar.gz", [("config.json", b"{}"), ("pytorch_model.bin", b"w"), ("vocab.txt", b"v")])
    assert sorted(p.name for p in extract_checkpoint(flat, tmp_path / "flat").iterdir()) == [
        MARKER,
        "config.json",
        "pytorch_model.bin",
        "vocab.txt",
    ]


def test_extract_checkpoint_refuses_an_archive_without_one(tmp_path):
    archive = _archive(tmp_path / "a.tar.gz", [("top/README", b"hi")])
    with pytest.raises(DownloadError) as exc:
        extract_checkpoint(archive, tmp_path / "ckpt")
    assert str(exc.value) == (
        "a.tar.gz does not hold a checkpoint: config.json, pytorch_model.bin missing; "
        "pass an archive with config.json and pytorch_model.bin"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz"]


def test_safe_extract_refuses_traversal_and_leaves_nothing_outside(tmp_path):
    archive = _archive(tmp_path / "a.tar.gz", [("ok.txt", b"x"), ("../evil", b"x")])
    with pytest.raises(
        DownloadError, match=r"^refusing to extract a\.tar\.gz: member '\.\./evil' has an absolute path or '\.\.'"
    ):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "evil").exists()
