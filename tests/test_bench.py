"""spanqa bench (spanqa.bench: run, results, table): tables, JSON, fixed shapes, the time guard,
dataset mode and the plot.

Nothing here asserts on speed: only on what was run, and on the arithmetic that turns
latencies into the reported numbers.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from spanqa.bench import BenchReport, ModelInfo, footer_lines, plot, row_line
from spanqa.bench.run import time_synthetic
from spanqa.bench.table import _num
from spanqa.cli import main
from spanqa.errors import MissingBackendError
from spanqa.settings import BenchSettings

TINY = ("--batch-sizes", "1,2", "--seq-len", "32", "--warmup", "0", "--repeat", "2", "--threads", "1")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def invoke(*args):
    return CliRunner().invoke(main, ["bench", *[str(a) for a in args]])


def table_rows(output: str) -> list[list[str]]:
    """The data rows of a printed table (between the dashed rule and the first blank line)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("-----")) + 1
    rows = []
    for line in lines[start:]:
        if not line.strip():
            break
        rows.append(line.split())
    return rows


@pytest.fixture(scope="module")
def fixed_package(tiny_package, tmp_path_factory) -> Path:
    """The tiny model compiled for one shape, in a directory also named 'pkg' (label clash)."""
    from spanqa.settings import CompileSettings
    from spanqa.targets.compile import compile_model

    out = tmp_path_factory.mktemp("fixedshape") / "pkg"
    compile_model(tiny_package / "exported.onnx", out, CompileSettings(batch_size=2, seq_len=96))
    return out


# --------------------------------------------------------------------------------------------
# Synthetic mode


def test_json_numbers_follow_from_the_latencies(tiny_package):
    from spanqa import __version__
    from spanqa.sysinfo import cpu_info

    r = invoke("--model", tiny_package, *TINY, "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["mode"] == "synthetic" and data["spanqa_version"] == __version__
    assert data["machine"] == cpu_info() and data["threads"] == 1
    assert data["settings"]["batch_sizes"] == [1, 2] and data["settings"]["seq_len"] == 32
    assert [m["label"] for m in data["models"]] == ["pkg"]
    assert data["models"][0]["runtime"]["name"] == "onnxruntime-cpu" and data["models"][0]["runtime"]["intra_op_threads"] == 1
    results = data["results"]
    assert [(c["model"], c["target"], c["batch_size"], c["seq_len"]) for c in results] == [
        ("pkg", "cpu-fp32", 1, 32),
        ("pkg", "cpu-fp32", 2, 32),
    ]
    for cell in results:
        lat = cell["latencies_ms"]
        assert cell["timed_runs"] == len(lat) == 2 and cell["warmup_runs"] == 0 and cell["truncated"] is False
        assert cell["latency_ms"]["median"] == pytest.approx(statistics.median(lat))
        assert cell["latency_ms"]["min"] == min(lat) and cell["latency_ms"]["max"] == max(lat)
        b = cell["batch_size"]
        assert cell["fps"]["median"] == pytest.approx(b * 1000 / cell["latency_ms"]["median"])
        assert cell["fps"]["min"] == pytest.approx(b * 1000 / max(lat))
        assert cell["fps"]["max"] == pytest.approx(b * 1000 / min(lat))


def test_table_rows_match_the_saved_json(tiny_package, tmp_path):
    out = tmp_path / "bench.json"
    r = invoke("--model", tiny_package, *TINY, "-o", out)
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0].startswith("spanqa ") and "synthetic inputs, seq len 32; 1 threads" in r.stdout
    header = next(line for line in r.stdout.splitlines() if line.startswith("model"))
    assert header.split() == ["model", "target", "batch", "seq", "fps", "median", "fps", "min-max", "latency", "ms", "runs"]
    data = json.loads(out.read_text())
    rows = table_rows(r.stdout)
    assert len(rows) == len(data["results"]) == 2
    for row, cell in zip(rows, data["results"]):
        fps, lat = cell["fps"], cell["latency_ms"]
        assert row == [
            "pkg",
            "cpu-fp32",
            str(cell["batch_size"]),
            "32",
            _num(fps["median"]),
            f"{_num(fps['min'])}-{_num(fps['max'])}",
            _num(lat["median"]),
            "2",
        ]
    assert "note:" not in r.stdout and "*" not in r.stdout


def test_fixed_shape_package_is_benched_at_its_own_shape_only(tiny_package, fixed_package):
    r = invoke("--model", fixed_package, "--batch-sizes", "1,4", "--seq-len", "64", "--warmup", "1", "--repeat", "2", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert [(c["batch_size"], c["seq_len"], c["timed_runs"], c["warmup_runs"]) for c in data["results"]] == [(2, 96, 2, 1)]
    model = data["models"][0]
    assert (model["fixed_batch"], model["fixed_seq"], model["batch_sizes"]) == (2, 96, [2])
    assert model["note"] == "pkg is fixed-shape (batch 2, seq 96): benched batch 2 at seq 96 only (asked: batch 1,4 at seq 64)"
    # Side by side with a dynamic package of the same directory name: both get distinct labels.
    r = invoke("--model", tiny_package, "--model", fixed_package, *TINY)
    assert r.exit_code == 0, r.output
    rows = table_rows(r.stdout)
    labels = [row[0] for row in rows]
    assert [(row[2], row[3]) for row in rows] == [("1", "32"), ("2", "32"), ("2", "96")]
    assert labels[0] == labels[1] != labels[2] and labels[0].endswith("/pkg") and labels[2].endswith("/pkg")
    assert f"note: {labels[2]} is fixed-shape (batch 2, seq 96): benched batch 2 at seq 96 only" in r.stdout


class CountingRuntime:
    """A dynamic runtime that counts its runs and takes ``delay`` seconds each."""

    name = "counting"
    batch_size = None
    seq_len = None

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.shapes: list[tuple[int, int]] = []

    def run(self, input_ids, token_type_ids, attention_mask):
        self.shapes.append(input_ids.shape)
        assert input_ids.dtype == np.int64 and (attention_mask == 1).all()
        if self.delay:
            time.sleep(self.delay)
        zeros = np.zeros(input_ids.shape, np.float32)
        return zeros, zeros


def _info(seq: int = 16) -> ModelInfo:
    return ModelInfo("m", "/m", "cpu-fp32", "fp32", None, None, (3,), seq, None, vocab_size=100)


def test_warmup_runs_are_not_timed():
    runtime = CountingRuntime()
    result = time_synthetic(runtime, _info(), 3, BenchSettings(warmup=2, repeat=3, seq_len=16))
    assert runtime.shapes == [(3, 16)] * 5
    assert result.warmup_runs == 2 and len(result.latencies_ms) == 3 and not result.truncated


def test_max_seconds_cuts_a_slow_cell_short_but_runs_it_once():
    runtime = CountingRuntime(delay=0.05)
    result = time_synthetic(runtime, _info(), 3, BenchSettings(warmup=3, repeat=5, max_seconds=0.01))
    assert len(runtime.shapes) == 2  # one warm-up, one timed run
    assert result.warmup_runs == 1 and len(result.latencies_ms) == 1 and result.truncated
    report = BenchReport(BenchSettings(max_seconds=0.01), 1, [_info()], [result], {"model": "x", "cores": 1})
    assert row_line(report, result).endswith(" 1*")
    assert "* fewer runs than asked: the cell reached --max-seconds 0.01" in footer_lines(report)


# --------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    "value, message",
    [
        ("1,x", "Invalid value for '--batch-sizes': 'x' is not an integer; give comma-separated batch sizes, e.g. 1,4,8"),
        ("4,0", "Invalid value for '--batch-sizes': 0 is not a positive batch size; give e.g. 1,4,8"),
        (",", "Invalid value for '--batch-sizes': give at least one batch size, e.g. 1,4,8"),
    ],
)
def test_bad_batch_sizes(tiny_package, value, message):
    r = invoke("--model", tiny_package, "--batch-sizes", value)
    assert r.exit_code == 2 and message in r.output


def test_one_line_errors(tiny_package, tmp_path):
    r = invoke("--model", tiny_package, "--seq-len", "1000")
    assert r.exit_code == 2 and r.output == "Error: --seq-len 1000: pkg has only 512 positions; use --seq-len 512 or less\n"
    r = invoke("--model", tmp_path / "nope")
    assert r.exit_code == 3 and r.output == f"Error: {tmp_path / 'nope'}: no such model package or .onnx file\n"
    r = invoke("--model", tiny_package, "--questions", "5")
    assert r.exit_code == 2 and "--questions needs --dataset" in r.output
    squad = tmp_path / "s.json"
    squad.write_text(json.dumps({"version": "1.1", "data": []}))
    r = invoke("--model", tiny_package, "--dataset", squad, "--seq-len", "32")
    assert r.exit_code == 1 and r.output == "Error: --seq-len 32: too short for SQuAD features; use at least 68 with --dataset\n"
    r = invoke("--model", tiny_package, "--dataset", squad, "--seq-len", "128")
    assert r.exit_code == 3 and r.output == f"Error: {squad}: no questions found; pass a SQuAD file with 'qas'\n"


# --------------------------------------------------------------------------------------------
# Dataset mode


def test_dataset_mode_end_to_end(standin_package, heldout_json):
    r = invoke(
        "--model", standin_package, "--dataset", heldout_json, "--questions", "10",
        "--batch-sizes", "1,4", "--seq-len", "384", "--warmup", "1", "--repeat", "1", "--json",
        "--token-budget", "4096",  # room for 4 rows: the batch size, not the budget, caps them
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["mode"] == "dataset" and data["settings"]["questions"] == 10
    one, four = data["results"]
    assert (one["batch_size"], four["batch_size"]) == (1, 4)
    for cell in (one, four):
        assert cell["questions"] == 10 and cell["seq_len"] == 384 and cell["token_budget"] == 4096
        assert cell["rows"] == cell["features"] >= 10
        assert cell["timed_passes"] == 1 and cell["warmup_runs"] == 1
        (pass_s,), (model_s,) = cell["pass_s"], cell["model_s"]
        assert cell["questions_per_s"]["median"] == pytest.approx(10 / pass_s)
        assert cell["rows_per_s"]["median"] == pytest.approx(cell["rows"] / model_s)
        assert pass_s == pytest.approx(sum(cell["stage_s"].values()))
        assert 0 < model_s <= cell["stage_s"]["inference_s"]
    assert one["batches"] == one["features"]
    assert four["batches"] == -(-four["features"] // 4) and four["rows_per_batch"] == pytest.approx(
        four["features"] / four["batches"]
    )
    # Batching never changes the answers: the same scores at every batch size, and real ones.
    assert (one["exact_match"], one["f1"]) == (four["exact_match"], four["f1"]) and one["f1"] > 30


def test_dataset_mode_table(standin_package, heldout_json):
    r = invoke(
        "--model", standin_package, "--dataset", heldout_json, "--questions", "3",
        "--batch-sizes", "2", "--seq-len", "256", "--warmup", "0", "--repeat", "1",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "first 3 questions" in r.stdout.splitlines()[0]
    (row,) = table_rows(r.stdout)
    assert row[1:4] == ["cpu-fp32", "2", "256"] and row[-1] == "1" and re.fullmatch(r"[0-9.]+-[0-9.]+", row[5])
    assert "questions/s: end to end (preprocess + inference + answers)" in r.stdout


# --------------------------------------------------------------------------------------------
# Plot


def test_plot_writes_a_png(tiny_package, fixed_package, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib not installed (pip install 'spanqa[plot]')")
    png = tmp_path / "out" / "bench.png"  # its directory is made, as for every output file
    r = invoke("--model", tiny_package, "--model", fixed_package, *TINY, "--plot", png)
    assert r.exit_code == 0, r.output
    data = png.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 1000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (960, 600)  # 8 x 5 inches at 120 dpi
    # no temp file left; the sidecar records that spanqa wrote these bytes (the output rule)
    assert sorted(p.name for p in png.parent.iterdir()) == [".bench.png.spanqa-artifact", "bench.png"]


def test_plot_without_matplotlib_fails_before_benchmarking(tiny_package, tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)  # import matplotlib(.anything) -> ImportError
    r = invoke("--model", tiny_package, *TINY, "--plot", tmp_path / "b.png")
    assert r.exit_code == 1
    assert r.output == "Error: matplotlib is not installed; install it with: pip install 'spanqa[plot]'\n"
    with pytest.raises(MissingBackendError):
        plot(BenchReport(BenchSettings(), 1, []), tmp_path / "b.png")
    assert not (tmp_path / "b.png").exists()
