"""benchmarks/loadgen_table.py's CPU-side part: the table and the targets it reads off the runs
(the runs themselves are the benchmark's, never the tests')."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import loadgen_table  # noqa: E402


def _report(scenario: str, **row) -> dict:
    return {"rows": [{"scenario": scenario, **row}], "peak": None}


def _peak(qps) -> dict:
    return {"rows": [], "peak": {"qps": qps, "bound": 100, "latency_ms": 130}}


def _result(model: str, offline: float, engine, serve, peer, p50_engine: float, p50_serve: float) -> dict:
    return {
        "model": model,
        "bound_ms": loadgen_table.BOUND_MS[model],
        "load": {"offline": 0.2, "peak_engine": 0.4},
        "offline": _report("Offline", samples_per_s=offline),
        "peak_engine": _peak(engine),
        "peak_serve": _peak(serve),
        "peak_peer": _peak(peer),
        "ss_engine": _report("SingleStream", p50_ms=p50_engine, p90_ms=p50_engine + 3),
        "ss_serve": _report("SingleStream", p50_ms=p50_serve, p90_ms=p50_serve + 3),
    }


MACHINE = {"cpu": "Test CPU", "flags": ["avx2"], "cores": 2, "threads": 2, "questions": 500, "loadgen": "6.0.17",
           "duration": 60.0, "min_queries": 512}  # fmt: skip


def test_targets_met_and_not_met_with_their_figures():
    results = [
        _result("base", offline=16.0, engine=15.0, serve=12.0, peer=2.0, p50_engine=300.0, p50_serve=305.0),
        _result("standin", offline=100.0, engine=90.0, serve=40.0, peer=None, p50_engine=10.0, p50_serve=31.0),
    ]
    text = loadgen_table.render(results, MACHINE)
    base, standin = loadgen_table.NAMES["base"], loadgen_table.NAMES["standin"]
    assert f"- {base}: in-process Server peak >= 90% of Offline: met (15 / 16)" in text
    assert f"- {base}: spanqa serve Server peak >= 80% of Offline: NOT met (12 / 16)" in text
    assert f"- {base}: spanqa serve >= 5x the peer: met (12 vs 2)" in text
    assert f"- {base}: SingleStream p50: serve within 10 ms of in process: met (305.0 vs 300.0 ms)" in text
    assert f"- {standin}: spanqa serve VALID at >= 50% of Offline (130 ms): NOT met (40 / 100)" in text
    assert f"- {standin}: SingleStream p50: serve within 10 ms of in process: NOT met (31.0 vs 10.0 ms)" in text
    row = next(line for line in text.splitlines() if line.startswith(f"| {standin}"))
    assert row == f"| {standin} | 100.00 | 90 | 40 | – | 130 ms | 10.0 / 13.0 | 31.0 / 34.0 | 0.20–0.40 |"


def test_a_failed_run_shows_as_missing_not_as_met():
    r = _result("base", offline=16.0, engine=None, serve=None, peer=None, p50_engine=300.0, p50_serve=301.0)
    text = loadgen_table.render([r], MACHINE)
    assert "in-process Server peak >= 90% of Offline: NOT met (– / 16)" in text
    assert "spanqa serve >= 5x the peer: NOT met (– vs –)" in text
