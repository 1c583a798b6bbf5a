"""spanqa infer / spanqa report on the command line, including runs killed midway and resumed."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from spanqa.cli import main
from squad_files import tiny_squad_json

SEQ = 64
BATCH = 2


@pytest.fixture(scope="module")
def features(tiny_package, tmp_path_factory) -> Path:
    """Tiny-model features written by preprocess: [2, 64] batches, the last one padded."""
    from spanqa.data.features import build_features
    from spanqa.data.folders import write_features
    from spanqa.data.squad import read_squad
    from spanqa.models.package import open_package
    from spanqa.settings import FeatureSettings

    root = tmp_path_factory.mktemp("clifeatures")
    f = build_features(
        read_squad(tiny_squad_json(root / "tiny.json")), open_package(tiny_package).tokenizer, FeatureSettings(SEQ, 16, 16)
    )
    assert len(f) % BATCH
    write_features(f, root / "features", BATCH)
    return root / "features"


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_infer_writes_outputs_log_and_summary(tiny_package, features, tmp_path):
    out = tmp_path / "out"
    r = invoke("infer", "--model", tiny_package, "--input", features, "-o", out, "--warmup", "2", "--loop", "2", "--threads", "1")
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    n_batches = len(list((features / "input_ids").iterdir()))
    assert summary["batches"] == n_batches and summary["timed_runs"] == 2 * n_batches
    assert summary["warmup"] == 2 and summary["loop"] == 2 and summary["threads"] == 1
    assert (
        summary["batch_size"] == BATCH and summary["rows"] == json.loads((features / "manifest.json").read_text())["num_features"]
    )
    for key in ("throughput_rows_per_s", "latency_ms", "runtime", "target", "model_sha256", "spanqa_version", "cpu"):
        assert summary[key], key
    # stdout carries msame's lines, so `spanqa infer ... > msame.txt` feeds parse.py / report.
    avg = float(re.search(r"^Inference average time: ([0-9.]+) ms$", r.stdout, re.M).group(1))
    wo = float(re.search(r"^Inference average time without first time: ([0-9.]+) ms$", r.stdout, re.M).group(1))
    assert avg == pytest.approx(summary["average_ms"], abs=1e-6) and wo == pytest.approx(
        summary["average_ms_without_first"], abs=1e-6
    )
    assert f"[INFO] batch size: {BATCH}, sequence length: {SEQ}" in r.stdout
    assert len(list(out.glob("*_output_0.bin"))) == len(list(out.glob("*_output_1.bin"))) == n_batches
    assert (out / "0_output_0.bin").stat().st_size == 4 * BATCH * SEQ

    # report: the fps the log implies, from the log, the summary, stdout saved as a file and the dir.
    fps = BATCH * 1000 / wo
    (tmp_path / "stdout.txt").write_text(r.stdout)
    for path in (out / "infer.log", out / "summary.json", out, tmp_path / "stdout.txt"):
        rr = invoke("report", path)
        assert rr.exit_code == 0, rr.output
        got = float(re.search(r", ([0-9.]+) fps$", rr.stdout.strip()).group(1))
        assert got == pytest.approx(fps, rel=1e-5), (path, rr.stdout)
    assert summary["throughput_rows_per_s"] == pytest.approx(fps, rel=1e-5)


def test_infer_npy_and_perf_only(tiny_package, features, tmp_path):
    r = invoke("infer", "--model", tiny_package, "--input", features, "-o", tmp_path / "o", "--outfmt", "NPY", "-q")
    assert r.exit_code == 0, r.output
    a = np.load(tmp_path / "o" / "0_output_1.npy")
    assert a.shape == (BATCH, SEQ) and a.dtype == np.float32
    r = invoke("infer", "--model", tiny_package / "model.onnx", "--loop", "3", "--seq-len", "32")
    assert r.exit_code == 0, r.output
    assert "[INFO] input: synthetic (perf-only mode)" in r.stdout and "batch size: 1, sequence length: 32" in r.stdout
    assert re.search(r"^Inference average time without first time: [0-9.]+ ms$", r.stdout, re.M)


@pytest.mark.parametrize(
    "args,code,message",
    [
        (["--input", "{f}"], 2, "Error: --input needs -o/--output for the logits"),
        (["--resume"], 2, "Error: --resume needs --input (synthetic runs write no outputs)"),
        (
            ["--input", "{f}/nope", "-o", "{o}"],
            2,
            "Error: --input {f}/nope: no such folder; pass the features directory from 'spanqa preprocess'",
        ),
        (
            ["--input", "{f}", "-o", "{o}", "--batch-size", "4"],
            2,
            "Error: --batch-size 4: the features' manifest.json says 2; drop --batch-size",
        ),
    ],
)
def test_usage_errors_are_one_line(args, code, message, tiny_package, features, tmp_path):
    args = [a.format(f=features, o=tmp_path / "o") for a in args]
    r = invoke("infer", "--model", tiny_package, *args)
    assert r.exit_code == code
    assert r.stderr.strip().splitlines()[-1] == message.format(f=features)
    assert "Traceback" not in r.output


def test_mismatches_are_one_line_errors(tiny_package, features, tmp_path):
    """Each input mismatch through the CLI: one 'Error:' line naming the file, exit 3 for bad
    feature files and 1 for folders that do not fit the model's inputs."""
    import shutil

    cases = {}
    work = tmp_path / "cases"
    for name in ("dtype", "truncated", "counts", "missing"):
        shutil.copytree(features, work / name)
    p = work / "dtype" / "input_ids" / "0.bin"
    np.fromfile(p, "<i8").astype("<i4").tofile(p)
    cases["dtype"] = (3, f"{p}: {4 * BATCH * SEQ} bytes, expected {8 * BATCH * SEQ} (int64 [{BATCH}, {SEQ}]) (int32 data?")
    p = work / "truncated" / "segment_ids" / "1.bin"
    p.write_bytes(p.read_bytes()[:100])
    cases["truncated"] = (3, f"{p}: 100 bytes, expected {8 * BATCH * SEQ} (int64 [{BATCH}, {SEQ}]); the file is truncated")
    (work / "counts" / "input_mask" / "0.bin").unlink()
    cases["counts"] = (3, "unequal file counts: ")
    shutil.rmtree(work / "missing" / "input_mask")
    cases["missing"] = (1, f"{work / 'missing'}: no input_mask/ folder (model input attention_mask)")
    for name, (code, start) in cases.items():
        r = invoke("infer", "--model", tiny_package, "--input", work / name, "-o", tmp_path / "out" / name)
        assert r.exit_code == code, (name, r.output)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: " + start), (name, lines)
        assert not (tmp_path / "out" / name).exists()  # checked before anything ran


def test_resume_into_outputs_of_unknown_origin(tiny_package, features, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "0_output_0.bin").write_bytes(b"\0" * (4 * BATCH * SEQ))
    r = invoke("infer", "--model", tiny_package, "--input", features, "-o", out, "--resume")
    assert r.exit_code == 4
    assert r.stderr == (
        f"Error: -o {out}: the directory holds files spanqa did not write; name a new or empty directory for the infer run\n"
    )
    assert sorted(p.name for p in out.iterdir()) == ["0_output_0.bin"]


# ---------------------------------------------------------------------------------------------
# Killed midway, resumed.


@pytest.fixture(scope="module")
def many_batches(tiny_package, tmp_path_factory) -> Path:
    """200 msame-style [2, 64] batches (random tokens), far more than a run does before it is killed."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("many") / "features"
    for name in ("input_ids", "segment_ids", "input_mask"):
        (root / name).mkdir(parents=True)
    for b in range(200):
        ids = rng.integers(1000, 28000, size=(BATCH, SEQ)).astype("<i8")
        types = np.zeros_like(ids)
        types[:, 10:] = 1
        mask = np.ones_like(ids)
        mask[:, 50:] = 0
        for name, a in (("input_ids", ids), ("segment_ids", types), ("input_mask", mask)):
            a.tofile(root / name / f"{b}.bin")
    return root


@pytest.fixture(scope="module")
def uninterrupted(tiny_package, many_batches, tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("full") / "out"
    r = invoke("infer", "--model", tiny_package, "--input", many_batches, "-o", out, "--seq-len", SEQ, "--threads", "1")
    assert r.exit_code == 0, r.output
    return {p.name: p.read_bytes() for p in out.glob("*_output_*.bin")}


def _kill_midway(cmd: list[str], out: Path, sig: int) -> subprocess.CompletedProcess:
    """Start the run, wait for its first outputs, send ``sig``; meanwhile check that every file
    under a final name is complete."""
    size = 4 * BATCH * SEQ
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            done = list(out.glob("*_output_*.bin")) if out.is_dir() else []
            for p in done:
                try:
                    assert p.stat().st_size == size, f"{p} is incomplete under its final name"
                except FileNotFoundError:
                    pass
            if len(done) >= 4:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.01)
        else:
            pytest.fail("no outputs appeared")
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=["SIGTERM", "SIGINT", "SIGKILL"])
def test_killed_run_resumes_to_the_same_outputs(sig, tiny_package, many_batches, uninterrupted, tmp_path):
    out = tmp_path / "out"
    # --loop makes each batch slow enough (tens of ms) to be caught midway.
    cmd = [sys.executable, "-m", "spanqa", "infer", "--model", str(tiny_package), "--input", str(many_batches)]
    cmd += ["-o", str(out), "--seq-len", str(SEQ), "--threads", "1", "--loop", "100"]
    done = _kill_midway(cmd, out, sig)
    if sig == signal.SIGKILL:
        assert done.returncode == -signal.SIGKILL
    else:
        assert done.returncode == 130, done.stderr
        assert done.stderr.strip().splitlines()[-1] == (
            f"Interrupted. Finished batches are kept: rerun with --resume to complete {out}."
        )
        assert "Traceback" not in done.stderr
        assert not list(out.glob(".*.tmp"))  # cleaned up on the way out
    finished = {p.name: p.read_bytes() for p in out.glob("*_output_*.bin")}
    assert 4 <= len(finished) < len(uninterrupted), "the run was not caught midway"
    assert all(uninterrupted[name] == data for name, data in finished.items())
    assert not (out / "summary.json").exists()

    r = invoke(
        "infer", "--model", tiny_package, "--input", many_batches, "-o", out, "--seq-len", SEQ, "--threads", "1", "--resume"
    )
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["batches_resumed"] >= len(finished) // 2 and summary["batches"] + summary["batches_resumed"] == 200
    assert {p.name: p.read_bytes() for p in out.glob("*_output_*.bin")} == uninterrupted
    assert [p.name for p in out.glob(".*")] == [".spanqa-artifact"]  # no temp file; the output rule's marker
    assert f"({summary['batches_resumed']} already complete)" in r.stdout


def test_report_cli_errors(tmp_path):
    (tmp_path / "log.txt").write_text("Inference average time: 10.0 ms\n")
    r = invoke("report", tmp_path / "log.txt")
    assert r.exit_code == 1
    assert r.stderr.strip() == f"Error: {tmp_path / 'log.txt'}: the log does not say the batch size; pass --batch-size N"
    r = invoke("report", tmp_path / "log.txt", "--batch-size", "4")
    assert (
        r.exit_code == 0
        and r.stdout.strip() == f"{tmp_path / 'log.txt'}: batch size 4, 10.000 ms per batch (all runs), 400.000 fps"
    )
    (tmp_path / "result.json").write_text(json.dumps({"exact_match": 80.0, "f1": 88.25, "total": 10}))
    r = invoke("report", tmp_path / "result.json")
    assert r.stdout.strip() == f"{tmp_path / 'result.json'}: EM 80.000, F1 88.250 (10 questions)"
