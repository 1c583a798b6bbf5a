"""benchmarks/gpu_check.py: its CPU-side parts (argument checks, model building, the fp32
reference package and its verification), runnable without a GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--batch-sizes", "1,x"], "--batch-sizes 1,x: give comma-separated integers, e.g. 1,4,8"),
        (["--batch-sizes", "0"], "--batch-sizes: give positive batch sizes, e.g. 1,4,8"),
        (["--seq-len", "10"], "--seq-len 10: must lie between 68 and 512"),
    ],
)
def test_bad_arguments(tmp_path, args, message):
    r = run("--out", str(tmp_path), *args)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].endswith(message)


def test_cpu_side_builds_and_verifies(tmp_path, monkeypatch):
    monkeypatch.setenv("SPANQA_HOME", str(tmp_path / "home"))
    r = run("--out", str(tmp_path / "out"), "--cpu-only", "--small")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    row = report["models"]["random-base"]["targets"]["cpu-fp32"]
    assert row["verification_max_abs_diff"] <= 1e-3
    assert (tmp_path / "out" / "random-base" / "config.json").is_file()
    assert json.loads((tmp_path / "out" / "random-base" / "config.json").read_text())["num_hidden_layers"] == 2
    table = (tmp_path / "out" / "gpu_check.md").read_text()
    assert "| random-base | cpu-fp32 |" in table and "Recipe's figures: Ascend 310P: 45.5 fps" in table
