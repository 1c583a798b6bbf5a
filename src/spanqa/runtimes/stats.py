"""Inference statistics: the one place latency and throughput are computed.

Throughput follows msame and the recipe's parse.py: ``fps = batch_size * 1000 / average ms``
with the average taken *without the first timed run* (it pays one-off allocation costs), and
over all runs when there is only one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class InferenceStats:
    """Timings of the runs ``run_batches`` made. Warm-up runs are not recorded."""

    warmup: int = 0
    loop: int = 1
    latencies_ms: list[float] = field(default_factory=list)  # one per timed run, in order
    run_rows: list[int] = field(default_factory=list)  # batch rows of each timed run (padding included)
    done_at: list[float] = field(default_factory=list)  # perf_counter() when each timed run was recorded
    batches: int = 0  # batches run (each ``loop`` times)
    rows: int = 0  # real rows in those batches (attention mask not all zero)
    padded_rows: int = 0  # all-zero padding rows in those batches
    wall_s: float = 0.0  # wall time of the whole loop, reading inputs and writing outputs included
    # Batches the runtime ran at once (OpenVINO streams): each latency is one stream's, so the
    # model's busy time is their sum over this, and its rows/s that many times one stream's.
    streams: int = 1

    def record(self, ms: float, rows: int) -> None:
        self.latencies_ms.append(float(ms))
        self.run_rows.append(int(rows))
        self.done_at.append(time.perf_counter())

    def per_batch(self) -> dict[str, list[float]]:
        """Every timed run over the run (``spanqa report`` plots them): its latency, its rows
        and when it was recorded, in seconds from the start of the first."""
        if not self.latencies_ms:
            return {"done_s": [], "latency_ms": [], "rows": []}
        began = self.done_at[0] - self.latencies_ms[0] / 1000.0
        return {
            "done_s": [round(t - began, 6) for t in self.done_at],
            "latency_ms": [round(ms, 4) for ms in self.latencies_ms],
            "rows": list(self.run_rows),
        }

    @property
    def timed_runs(self) -> int:
        return len(self.latencies_ms)

    @property
    def batch_size(self) -> int | None:
        """The batch size when every timed run had the same one, else None."""
        sizes = set(self.run_rows)
        return sizes.pop() if len(sizes) == 1 else None

    @property
    def average_ms(self) -> float | None:
        return float(np.mean(self.latencies_ms)) if self.latencies_ms else None

    @property
    def average_ms_without_first(self) -> float | None:
        """msame's "without first time" average (the plain average when there is one run)."""
        if len(self.latencies_ms) < 2:
            return self.average_ms
        return float(np.mean(self.latencies_ms[1:]))

    @property
    def throughput_rows_per_s(self) -> float | None:
        """Rows per second of inference, first run excluded: batch_size * 1000 / average ms
        when batches are equal (the recipe's fps), padding rows counted as msame counts them."""
        lat, rows = self.latencies_ms, self.run_rows
        if len(lat) >= 2:
            lat, rows = lat[1:], rows[1:]
        total = float(np.sum(lat)) if lat else 0.0
        return float(np.sum(rows)) * 1000.0 * self.streams / total if total > 0 else None

    def latency_summary(self) -> dict[str, float] | None:
        """min/mean/median/p90/p99 over all timed runs, in ms."""
        if not self.latencies_ms:
            return None
        a = np.asarray(self.latencies_ms, dtype=np.float64)
        return {
            "min": float(a.min()),
            "mean": float(a.mean()),
            "median": float(np.median(a)),
            "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)),
            "max": float(a.max()),
        }

    def msame_lines(self) -> list[str]:
        """The two lines msame prints and the recipe's parse.py reads."""
        if not self.latencies_ms:
            return []
        return [
            f"Inference average time: {self.average_ms:.6f} ms",
            f"Inference average time without first time: {self.average_ms_without_first:.6f} ms",
        ]

    def to_json(self) -> dict:
        return {
            "batches": self.batches,
            "rows": self.rows,
            "padded_rows": self.padded_rows,
            "batch_size": self.batch_size,
            "warmup": self.warmup,
            "loop": self.loop,
            "timed_runs": self.timed_runs,
            "throughput_rows_per_s": self.throughput_rows_per_s,
            "latency_ms": self.latency_summary(),
            "average_ms": self.average_ms,
            "average_ms_without_first": self.average_ms_without_first,
            "inference_s": float(np.sum(self.latencies_ms)) / 1000.0 / self.streams if self.latencies_ms else 0.0,
            "wall_s": self.wall_s,
            "streams": self.streams,
        }


# --------------------------------------------------------------------------------------------
# The engine.
