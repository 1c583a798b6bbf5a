"""``spanqa loadgen`` on the tiny random model: each scenario finishes and its figures are
LoadGen's own; Server VALID at a low rate and INVALID under an impossible bound; accuracy runs
answer exactly as ``spanqa run``; find-peak's bisection. Runs are short (a second or so each);
speed is never asserted."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from spanqa.cli import main

pytest.importorskip("mlperf_loadgen")

LOG_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt", "mlperf_log_accuracy.json")
HELDOUT = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad" / "dev-v1.1-heldout.json"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """40 held-out questions (every 25th) when ../shared is there, else the five tiny ones."""
    from squad_files import tiny_squad_json

    root = tmp_path_factory.mktemp("loadgen-data")
    if not HELDOUT.is_file():
        return tiny_squad_json(root / "tiny.json")
    src = json.loads(HELDOUT.read_text(encoding="utf-8"))
    kept, n = [], 0
    for article in src["data"]:
        paragraphs = []
        for p in article["paragraphs"]:
            qas = []
            for qa in p["qas"]:
                if n % 25 == 0 and n < 1000:
                    qas.append(qa)
                n += 1
            if qas:
                paragraphs.append({"context": p["context"], "qas": qas})
        if paragraphs:
            kept.append({"title": article["title"], "paragraphs": paragraphs})
    path = root / "heldout40.json"
    path.write_text(json.dumps({"version": "1.1", "data": kept}), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """Five short questions: the cheapest to answer, for the Server run that must keep up."""
    from squad_files import tiny_squad_json

    return tiny_squad_json(tmp_path_factory.mktemp("loadgen-tiny") / "tiny.json")


def loadgen(*args) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["loadgen", *map(str, args)])
    return result.exit_code, result.stdout, result.stderr


def run_json(*args) -> dict:
    code, out, err = loadgen(*args, "--json")
    assert code == 0, (code, out, err)
    return json.loads(out)


def summary(out: Path) -> str:
    return (out / "mlperf_log_summary.txt").read_text(encoding="utf-8")


def summary_number(text: str, label: str) -> float:
    return float(re.search(rf"^{re.escape(label)}\s*:\s*([0-9.]+)", text, re.M).group(1))


# ----------------------------------------------------------------------------------------------
# The scenarios


def test_offline_finishes_with_loadgens_own_figures(tiny_package, data, tmp_path):
    out = tmp_path / "offline"
    report = run_json(data, "--model", tiny_package, "--duration", "1", "--min-queries", "300", "--out", out)
    assert all((out / name).is_file() for name in LOG_FILES)
    assert json.loads((out / "loadgen.json").read_text())["rows"] == report["rows"]
    [row] = report["rows"]
    text = summary(out)
    assert row["scenario"] == "Offline" and row["sut"] == "engine (in process)"
    assert row["samples_per_s"] == pytest.approx(summary_number(text, "Samples per second"), rel=1e-3)
    assert f"Result is : {row['result']}" in text
    assert row["samples"] >= 300 and row["failed"] == 0
    assert row["p50_ms"] is None  # one query: no per-user latency
    assert report["package"]["target"] == "cpu-fp32" and report["machine"]["threads"] >= 1


def test_singlestream_p90_is_loadgens(tiny_package, data, tmp_path):
    out = tmp_path / "ss"
    report = run_json(
        data, "--model", tiny_package, "--scenario", "singlestream", "--duration", "1", "--min-queries", "100", "--out", out
    )
    [row] = report["rows"]
    text = summary(out)
    assert row["scenario"] == "SingleStream"
    assert row["p90_ms"] == pytest.approx(summary_number(text, "90.0th percentile latency (ns)") / 1e6, rel=1e-6)
    assert row["queries"] >= 100 and row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]


def test_server_at_a_low_rate_is_valid(tiny_package, tiny, tmp_path):
    # 470 queries: LoadGen's early stopping wants at least 459 to call a p99 VALID. A low rate
    # and a generous bound, so that a busy 2-core machine passes too (the tiny model answers in a
    # few ms); the impossible bound is the next test.
    out = tmp_path / "server"
    code, stdout, _ = loadgen(tiny, "--model", tiny_package, "--scenario", "server", "--target-qps", "20",
                              "--latency-ms", "2000", "--duration", "1", "--min-queries", "470", "--out", out)  # fmt: skip
    assert code == 0, stdout
    report = json.loads((out / "loadgen.json").read_text())
    [row] = report["rows"]
    assert row["result"] == "VALID", row["reasons"]
    assert "Result is : VALID" in summary(out)
    assert row["target_qps"] == 20 and row["queries"] >= 470 and row["p99_ms"] <= 2000
    line = next(line for line in stdout.splitlines() if line.startswith("Server"))
    assert line.split()[-6] == "VALID"  # the table's result column


def test_an_impossible_bound_is_invalid_and_says_why(tiny_package, data, tmp_path):
    out = tmp_path / "invalid"
    code, stdout, _ = loadgen(data, "--model", tiny_package, "--scenario", "server", "--target-qps", "20",
                              "--latency-ms", "0.01", "--duration", "1", "--min-queries", "40", "--out", out)  # fmt: skip
    assert code == 0
    row = json.loads((out / "loadgen.json").read_text())["rows"][0]
    assert row["result"] == "INVALID"
    assert "latency over the bound" in row["reasons"]
    assert "Result is : INVALID" in summary(out)
    assert "Server at 20 q/s INVALID: latency over the bound" in stdout


# ----------------------------------------------------------------------------------------------
# Accuracy: LoadGen's accuracy log holds the answers; they equal `spanqa run`'s


@pytest.fixture(scope="module")
def run_result(tiny_package, data, tmp_path_factory):
    def run(*extra) -> tuple[dict, dict]:
        out = tmp_path_factory.mktemp("run") / "r"
        result = CliRunner().invoke(main, ["run", str(data), "--model", str(tiny_package), "-o", str(out), *extra])
        assert result.exit_code == 0, result.output
        return json.loads((out / "predictions.json").read_text()), json.loads((out / "result.json").read_text())

    return run


@pytest.mark.parametrize("scenario", ["offline", "server", "singlestream"])
def test_accuracy_answers_equal_spanqa_runs(scenario, tiny_package, data, run_result, tmp_path):
    """The same questions through LoadGen, batched however its arrivals fell: the same answers."""
    out = tmp_path / "acc"
    report = run_json(data, "--model", tiny_package, "--mode", "accuracy", "--scenario", scenario, "--out", out)
    predictions, result = run_result()
    assert json.loads((out / "predictions.json").read_text(encoding="utf-8")) == predictions
    logged = json.loads((out / "mlperf_log_accuracy.json").read_text())
    assert len(logged) == len(predictions)  # every sample once, its answer as response data
    scores = json.loads((out / "accuracy.json").read_text())
    assert (scores["exact_match"], scores["f1"]) == (result["exact_match"], result["f1"])
    assert report["accuracy"]["f1"] == result["f1"]


def test_features_accuracy_equals_run_at_384(tiny_package, data, run_result, tmp_path):
    """--features: a sample is a 384/128/64 window answered with its logits; the answers made
    from the logged logits equal `spanqa run` at the same windowing."""
    out = tmp_path / "feat"
    run_json(data, "--model", tiny_package, "--mode", "accuracy", "--features", "--out", out)
    predictions, _ = run_result("--max-seq-length", "384", "--doc-stride", "128", "--max-query-length", "64")
    assert json.loads((out / "predictions.json").read_text(encoding="utf-8")) == predictions
    logged = json.loads((out / "mlperf_log_accuracy.json").read_text())
    assert len(logged) >= len(predictions)  # one entry per window


# ----------------------------------------------------------------------------------------------
# find-peak


def test_find_peak_bisects_full_server_runs(tiny_package, data, tmp_path):
    out = tmp_path / "peak"
    report = run_json(data, "--model", tiny_package, "--mode", "find-peak", "--target-qps", "40", "--peak-steps", "1",
                      "--latency-ms", "1000", "--duration", "0.5", "--min-queries", "20", "--out", out)  # fmt: skip
    rows = report["rows"]
    # 20 queries are too few for early stopping's p99: every step INVALID, so the search halves.
    assert [(r["scenario"], r["target_qps"], r["result"]) for r in rows] == [("Server", 40, "INVALID"), ("Server", 20, "INVALID")]
    assert report["peak"] == {"qps": None, "bound": 40, "latency_ms": 1000}
    assert all((out / r["log_dir"] / "mlperf_log_summary.txt").is_file() for r in rows)


def test_find_peak_converges_on_the_highest_valid_rate(tmp_path):
    from spanqa.loadgen import run as lgrun
    from spanqa.loadgen.run import LoadgenReport
    from spanqa.settings import LoadgenSettings

    tried = []

    def fake_test(target, spec, tmp, where, say):
        tried.append(spec.target_qps)
        return {"result": "VALID" if spec.target_qps <= 13 else "INVALID", "target_qps": spec.target_qps}

    class Target:
        def warm(self, singles):
            return 100.0, 0.01

    report = LoadgenReport([], tmp_path, {}, None)
    original = lgrun._test
    lgrun._test = fake_test
    try:
        lgrun._find_peak(Target(), LoadgenSettings(mode="find-peak", target_qps=40), tmp_path, report, lambda m: None)
    finally:
        lgrun._test = original
    assert tried == [40, 20, 10, 15, 12.5, 13.75, 13.125]
    assert report.peak["qps"] == 12.5  # within 5% of the true 13


# ----------------------------------------------------------------------------------------------
# Usage


@pytest.mark.parametrize(
    "args,message",
    [
        (["--url", "http://127.0.0.1:9"], "give --model MODEL (the engine in this process) or --url URL (a server)"),
        ([], "give --model MODEL (the engine in this process) or --url URL (a server)"),
        (["--url", "http://127.0.0.1:9", "--threads", "2"], "--threads is for --model"),
        (["--scenario", "server"], "--scenario server needs --target-qps (the arrival rate), or use --mode find-peak"),
    ],
)
def test_usage_errors(args, message, tiny_package, data, tmp_path):
    if args and args[0] == "--url" and "--threads" not in args:
        args = ["--model", str(tiny_package), *args]
    elif not args or args[0] == "--scenario":
        args = (["--model", str(tiny_package)] if args else []) + args
    code, out, err = loadgen(data, *args, "--out", tmp_path / "o")
    assert code == 2, (code, out, err)
    assert message in err
    assert not (tmp_path / "o").exists()


def test_features_need_the_engine(data, tmp_path):
    code, _, err = loadgen(data, "--url", "http://127.0.0.1:9", "--features", "--out", tmp_path / "o")
    assert code == 2
    assert "--features runs pre-tokenised windows through the engine in this process" in err


def test_a_server_that_is_not_there(data, tmp_path):
    code, _, err = loadgen(data, "--url", "http://127.0.0.1:9", "--out", tmp_path / "o")
    assert code == 2
    assert (
        err.strip().splitlines()[-1].startswith("Error: --url http://127.0.0.1:9: no answer from POST /v1/answer (ConnectError")
    )
    assert not (tmp_path / "o").exists()


def test_without_loadgen_installed(tiny_package, data, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "mlperf_loadgen", None)
    code, _, err = loadgen(data, "--model", tiny_package, "--out", tmp_path / "o")
    assert code == 1
    assert "mlcommons-loadgen is not installed; install it with: pip install 'spanqa[loadgen]'" in err


# ----------------------------------------------------------------------------------------------
# Interrupted


@pytest.mark.parametrize("scenario", ["offline", "server"])
def test_sigterm_mid_run_leaves_nothing_and_exits_130(scenario, tiny_package, tiny, tmp_path):
    """LoadGen cannot be stopped mid-test: the output goes, the process leaves at once (130)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    src = Path(__file__).resolve().parents[1] / "src"
    env = dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "spanqa", "loadgen", str(tiny), "--model", str(tiny_package), "--scenario", scenario,
           "--target-qps", "2000" if scenario == "offline" else "20", "--duration", "60", "--out", str(out)]  # fmt: skip
    err = tmp_path / "stderr.txt"
    with open(err, "w") as f:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=f, env=env)
    deadline = time.monotonic() + 120
    while "warm-up:" not in err.read_text() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(1.5)  # LoadGen's test is under way
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 130, err.read_text()
    assert err.read_text().strip().splitlines()[-1] == "Interrupted."
    assert list(tmp_path.iterdir()) == [err]  # no output, no temp directory beside it
