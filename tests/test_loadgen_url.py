"""``spanqa loadgen --url``: LoadGen driving a real ``spanqa serve`` (a subprocess on 127.0.0.1,
the tiny model, an API key) over HTTP, one question a request."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from spanqa.cli import main

pytest.importorskip("mlperf_loadgen")
pytest.importorskip("ray.serve")
httpx = pytest.importorskip("httpx")

KEY = "loadgen-test-key"
SRC = Path(__file__).resolve().parents[1] / "src"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from squad_files import tiny_squad_json

    return tiny_squad_json(tmp_path_factory.mktemp("loadgen-url") / "tiny.json")


@pytest.fixture(scope="module")
def server(tiny_package, tmp_path_factory):
    """`spanqa serve` on a free loopback port with SPANQA_API_KEY set; yields its base URL."""
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = dict(os.environ, SPANQA_API_KEY=KEY, PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    cmd = [sys.executable, "-m", "spanqa", "serve", "--model", str(tiny_package), "--port", str(port)]
    cmd += ["--replicas", "1", "--threads-per-replica", "1"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while True:
        if proc.poll() is not None:
            pytest.fail(f"spanqa serve exited {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/readyz", headers={"Authorization": f"Bearer {KEY}"}, timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"spanqa serve not ready in 240 s:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)
    yield url
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def keyed(monkeypatch):
    monkeypatch.setenv("SPANQA_API_KEY", KEY)


def loadgen(*args) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["loadgen", *map(str, args)])
    return result.exit_code, result.stdout, result.stderr


def test_server_scenario_over_http(server, data, keyed, tmp_path):
    out = tmp_path / "server"
    code, stdout, stderr = loadgen(data, "--url", server, "--scenario", "server", "--target-qps", "10",
                                   "--latency-ms", "5000", "--duration", "1", "--min-queries", "30", "--out", out, "--json")  # fmt: skip
    assert code == 0, (stdout, stderr)
    report = json.loads(stdout)
    [row] = report["rows"]
    assert row["sut"] == server and row["failed"] == 0 and row["queries"] >= 30
    text = (out / "mlperf_log_summary.txt").read_text()
    completed = float(re.search(r"Completed samples per second\s*:\s*([0-9.]+)", text).group(1))
    assert row["samples_per_s"] == pytest.approx(completed, rel=1e-3)
    assert report["package"] is None and report["machine"]["threads"] is None


def test_singlestream_over_http(server, data, keyed, tmp_path):
    out = tmp_path / "ss"
    code, stdout, stderr = loadgen(
        data, "--url", server, "--scenario", "singlestream", "--duration", "1", "--min-queries", "20", "--out", out
    )
    assert code == 0, (stdout, stderr)
    row = json.loads((out / "loadgen.json").read_text())["rows"][0]
    assert row["scenario"] == "SingleStream" and row["failed"] == 0
    assert 0 < row["p50_ms"] <= row["p90_ms"]
    assert f"SingleStream  {server}" in stdout


def test_accuracy_over_http_equals_the_engines_answers(server, data, keyed, tiny_package, tmp_path):
    from spanqa.data.squad import read_squad
    from spanqa.engine import Engine, Question

    out = tmp_path / "acc"
    code, stdout, stderr = loadgen(data, "--url", server, "--mode", "accuracy", "--out", out)
    assert code == 0, (stdout, stderr)
    got = json.loads((out / "predictions.json").read_text(encoding="utf-8"))
    examples = read_squad(data)
    with Engine.load(tiny_package, threads=1) as engine:
        answers = engine.answer_many([Question(ex.question_text, ex.context, ex.qas_id) for ex in examples])
    assert got == {ex.qas_id: a[0].text for ex, a in zip(examples, answers)}
    assert "accuracy: exact match" in stdout


def test_without_the_key_the_server_refuses(server, data, monkeypatch, tmp_path):
    monkeypatch.delenv("SPANQA_API_KEY", raising=False)
    code, _, stderr = loadgen(data, "--url", server, "--out", tmp_path / "o")
    assert code == 2
    assert f"--url {server}: the server answered HTTP 401" in stderr
    assert "set SPANQA_API_KEY to the server's key" in stderr
    assert not (tmp_path / "o").exists()
