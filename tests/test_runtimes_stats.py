"""Inference statistics (spanqa.runtimes.stats): msame's averages and the recipe's fps."""

from __future__ import annotations

from spanqa.runtimes.stats import InferenceStats


def test_stats_arithmetic():
    s = InferenceStats()
    for ms in (10.0, 4.0, 6.0, 5.0, 5.0):
        s.record(ms, 8)
    assert s.average_ms == 6.0
    assert s.average_ms_without_first == 5.0
    assert s.throughput_rows_per_s == 8 * 1000 / 5.0
    assert s.latency_summary() == {"min": 4.0, "mean": 6.0, "median": 5.0, "p90": 8.4, "p99": 9.84, "max": 10.0}
    assert s.msame_lines() == [
        "Inference average time: 6.000000 ms",
        "Inference average time without first time: 5.000000 ms",
    ]
    one = InferenceStats()
    one.record(7.0, 2)
    assert one.average_ms_without_first == 7.0 and one.throughput_rows_per_s == 2 * 1000 / 7.0
    assert InferenceStats().msame_lines() == [] and InferenceStats().throughput_rows_per_s is None


def test_stats_json_and_padding_rows():
    s = InferenceStats(warmup=1, loop=2)
    for ms, rows in ((4.0, 8), (2.0, 8), (3.0, 5)):
        s.record(ms, rows)
    s.batches, s.rows, s.padded_rows, s.wall_s = 2, 13, 3, 0.5
    out = s.to_json()
    assert out["batch_size"] is None  # runs of 8 and 5 rows: no single batch size
    assert out["throughput_rows_per_s"] == (8 + 5) * 1000 / (2.0 + 3.0)
    assert (out["timed_runs"], out["inference_s"], out["wall_s"]) == (3, 0.009, 0.5)
    assert (out["batches"], out["rows"], out["padded_rows"], out["warmup"], out["loop"]) == (2, 13, 3, 1, 2)
