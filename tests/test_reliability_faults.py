"""Faults: a full disk, SIGTERM and SIGKILL in the middle of the work, two processes converting
the same model at once. Every artifact is complete or absent; interrupted inference resumes."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spanqa.fileutil import MARKER
from test_reliability_cli import squad


def spanqa(*args, home: Path, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, SPANQA_HOME=str(home))
    return subprocess.Popen(
        [sys.executable, "-m", "spanqa", "-q", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def wait_for(pattern: str, where: Path, proc: subprocess.Popen, timeout: float = 120.0) -> bool:
    """Wait until a path matching ``pattern`` appears under ``where`` (the work is under way)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list(where.glob(pattern)):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    return False


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


# ---------------------------------------------------------------------------------------------
# A full disk


def test_disk_full_while_writing_features(tmp_path, monkeypatch):
    import spanqa.data.folders
    from spanqa.data.folders import preprocess
    from spanqa.data.vocab import TokenizerSettings, default_vocab_path

    # The batch files are written; the metadata that follows them finds the disk full.
    monkeypatch.setattr(spanqa.data.folders.np, "savez_compressed", no_space)
    with pytest.raises(OSError, match="No space left"):
        preprocess(squad(tmp_path / "d.json"), tmp_path / "feats", TokenizerSettings(default_vocab_path(), False))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.json"]


def test_disk_full_while_writing_outputs(tiny_package, tmp_path, monkeypatch):
    import spanqa.offline.outputs
    from spanqa.data.folders import preprocess
    from spanqa.models.package import open_package
    from spanqa.offline.infer import infer_folders
    from spanqa.settings import InferSettings

    preprocess(squad(tmp_path / "d.json"), tmp_path / "feats", open_package(tiny_package).tokenizer)
    calls = {"n": 0}
    original = spanqa.offline.outputs.write_output

    def second_fails(path, array, fmt):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(path, array, fmt)

    monkeypatch.setattr(spanqa.offline.infer, "write_output", second_fails)
    with pytest.raises(OSError):
        infer_folders(tiny_package, tmp_path / "feats", tmp_path / "out", InferSettings())
    # The pair of batch 0 is incomplete: neither half may look done, and no temp file remains.
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [MARKER, "0_output_0.bin", "infer_settings.json"]
    summary = infer_folders(tiny_package, tmp_path / "feats", tmp_path / "out", InferSettings(resume=True))
    assert summary["batches_resumed"] == 0 and summary["batches_total"] == 3


def test_disk_full_while_writing_a_package(tiny_package, tmp_path, monkeypatch):
    import spanqa.targets.compile
    from spanqa.targets.compile import compile_model

    monkeypatch.setattr(spanqa.targets.compile, "write_tokenizer_files", no_space)
    with pytest.raises(OSError):
        compile_model(tiny_package / "exported.onnx", tmp_path / "pkg")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Signals


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_signal_during_preprocess(heldout_json, tmp_path, sig):
    proc = spanqa("preprocess", heldout_json, "-o", tmp_path / "feats", home=tmp_path / "home")
    assert wait_for(".feats.*.tmp", tmp_path, proc), proc.communicate()
    proc.send_signal(sig)
    proc.wait(60)
    assert proc.returncode != 0
    assert not (tmp_path / "feats").exists()
    if sig == signal.SIGTERM:  # cleaned up on the way out
        assert not list(tmp_path.glob(".feats.*"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_signal_during_convert(tiny_checkpoint, tmp_path, sig):
    proc = spanqa("convert", tiny_checkpoint, "-o", tmp_path / "pkg", home=tmp_path / "home")
    assert wait_for(".pkg.*", tmp_path, proc), proc.communicate()
    proc.send_signal(sig)
    proc.wait(60)
    assert proc.returncode != 0
    assert not (tmp_path / "pkg").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_signal_during_run(standin_package, heldout_json, tmp_path, sig):
    proc = spanqa("run", heldout_json, "--model", standin_package, "-o", tmp_path / "res", home=tmp_path / "home")
    time.sleep(4.0)  # reading, features, inference under way
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(sig)
    proc.wait(60)
    assert proc.returncode != 0
    assert not (tmp_path / "res").exists()


@pytest.fixture
def article_slice(heldout_json, tmp_path) -> Path:
    """A slice of one held-out article (about 110 questions, 14 padded batches of 8): the whole
    set at 512 tokens takes many minutes here."""
    data = json.loads(heldout_json.read_text())
    article = dict(data["data"][0], paragraphs=data["data"][0]["paragraphs"][:15])
    path = tmp_path / "two.json"
    path.write_text(json.dumps({"version": data.get("version", "1.1"), "data": [article]}))
    return path


def test_sigkill_during_infer_then_resume(standin_package, article_slice, tmp_path):
    home = tmp_path / "home"
    prep = spanqa(
        "preprocess", article_slice, "-o", tmp_path / "feats", "--model", standin_package, "--batch-size", "8", home=home
    )
    assert prep.wait(300) == 0, prep.communicate()
    proc = spanqa("infer", "--model", standin_package, "--input", tmp_path / "feats", "-o", tmp_path / "out", home=home)
    assert wait_for("3_output_1.bin", tmp_path / "out", proc), proc.communicate()
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    done = sorted((tmp_path / "out").glob("*_output_*.bin"))
    assert done, "nothing finished before the kill"
    for path in done:  # every file under a final name is complete: float32 [8, 512]
        assert path.stat().st_size == 4 * 8 * 512
    resume = spanqa(
        "infer", "--model", standin_package, "--input", tmp_path / "feats", "-o", tmp_path / "out", "--resume", home=home
    )
    out, err = resume.communicate(timeout=600)
    assert resume.returncode == 0, err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["batches_resumed"] >= len(done) // 2
    assert summary["batches_resumed"] + summary["batches"] == summary["batches_total"]
    assert [p.name for p in (tmp_path / "out").glob(".*")] == [MARKER]  # no temp file is left


def test_sigterm_during_infer_says_how_to_resume(standin_package, article_slice, tmp_path):
    home = tmp_path / "home"
    prep = spanqa(
        "preprocess", article_slice, "-o", tmp_path / "feats", "--model", standin_package, "--batch-size", "8", home=home
    )
    assert prep.wait(300) == 0
    proc = spanqa("infer", "--model", standin_package, "--input", tmp_path / "feats", "-o", tmp_path / "out", home=home)
    assert wait_for("1_output_1.bin", tmp_path / "out", proc), proc.communicate()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert (
        err.strip().splitlines()[-1]
        == f"Interrupted. Finished batches are kept: rerun with --resume to complete {tmp_path / 'out'}."
    )


# ---------------------------------------------------------------------------------------------
# Two processes, one conversion


def test_two_concurrent_runs_build_once(tiny_checkpoint, tmp_path):
    ckpt = tmp_path / "fresh"
    shutil.copytree(tiny_checkpoint, ckpt)
    data = squad(tmp_path / "d.json")
    home = tmp_path / "home"
    procs = [spanqa("run", data, "--model", ckpt, "-o", tmp_path / f"r{i}", home=home) for i in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert sum(err.count("Converted ") for _, err in outputs) == 1
    packages = [p for p in (home / "packages").iterdir() if p.is_dir() and p.name != ".locks"]
    assert len(packages) == 1
    first, second = (json.loads((tmp_path / f"r{i}" / "predictions.json").read_text()) for i in range(2))
    assert first == second and sorted(first) == ["q1", "q2", "q3"]
