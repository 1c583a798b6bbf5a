"""Bench results: one synthetic or dataset cell per model and batch size, and the report."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Union

from spanqa import __version__
from spanqa.settings import BenchSettings


def _range(values: Sequence[float]) -> dict[str, float]:
    return {"median": float(statistics.median(values)), "min": float(min(values)), "max": float(max(values))}


@dataclass(frozen=True)
class SyntheticResult:
    """One model at one batch size, synthetic inputs."""

    model: str  # the model's label
    target: str
    batch_size: int
    seq_len: int
    latencies_ms: tuple[float, ...]  # one per timed run, in order
    warmup_runs: int
    truncated: bool  # the time guard cut warm-up or timed runs short

    @property
    def latency_ms(self) -> dict[str, float]:
        return _range(self.latencies_ms) | {"mean": float(statistics.fmean(self.latencies_ms))}

    @property
    def fps(self) -> dict[str, float]:
        """Sequences per second: median from the median run, min from the slowest, max from the fastest."""
        lat = self.latency_ms
        per = self.batch_size * 1000.0
        return {"median": per / lat["median"], "min": per / lat["max"], "max": per / lat["min"]}

    @property
    def throughput(self) -> dict[str, float]:  # the plotted number
        return self.fps

    def to_json(self) -> dict:
        return {
            "model": self.model,
            "target": self.target,
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
            "warmup_runs": self.warmup_runs,
            "timed_runs": len(self.latencies_ms),
            "truncated": self.truncated,
            "fps": self.fps,
            "latency_ms": self.latency_ms,
            "latencies_ms": list(self.latencies_ms),
        }


@dataclass(frozen=True)
class DatasetResult:
    """One model at one batch-size cap, end to end on real questions."""

    model: str
    target: str
    batch_size: int  # the cap on rows per batch (the model's own batch when fixed)
    seq_len: int  # max_seq_length of the features (the model's own when fixed)
    questions: int
    features: int
    rows: int  # real model rows per pass (= features)
    batches: int  # batches per pass
    token_budget: int
    pass_s: tuple[float, ...]  # preprocess + inference + answers, per timed pass
    model_s: tuple[float, ...]  # time inside runtime.run, per timed pass
    stage_s: dict[str, float]  # median seconds per stage: preprocess_s, inference_s, answers_s
    exact_match: float
    f1: float
    warmup_runs: int
    truncated: bool

    @property
    def questions_per_s(self) -> dict[str, float]:
        s = _range(self.pass_s)
        return {"median": self.questions / s["median"], "min": self.questions / s["max"], "max": self.questions / s["min"]}

    @property
    def rows_per_s(self) -> dict[str, float]:
        s = _range(self.model_s)
        return {"median": self.rows / s["median"], "min": self.rows / s["max"], "max": self.rows / s["min"]}

    @property
    def rows_per_batch(self) -> float:
        return self.rows / self.batches if self.batches else 0.0

    @property
    def throughput(self) -> dict[str, float]:
        return self.questions_per_s

    def to_json(self) -> dict:
        return {
            "model": self.model,
            "target": self.target,
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
            "questions": self.questions,
            "features": self.features,
            "rows": self.rows,
            "batches": self.batches,
            "rows_per_batch": self.rows_per_batch,
            "token_budget": self.token_budget,
            "warmup_runs": self.warmup_runs,
            "timed_passes": len(self.pass_s),
            "truncated": self.truncated,
            "questions_per_s": self.questions_per_s,
            "rows_per_s": self.rows_per_s,
            "pass_s": list(self.pass_s),
            "model_s": list(self.model_s),
            "stage_s": self.stage_s,
            "exact_match": self.exact_match,
            "f1": self.f1,
        }


Result = Union[SyntheticResult, DatasetResult]


@dataclass(frozen=True)
class ModelInfo:
    label: str  # unique name in tables and plots
    path: str
    target: str
    precision: str
    fixed_batch: int | None
    fixed_seq: int | None
    batch_sizes: tuple[int, ...]  # what is benched
    seq_len: int
    note: str | None  # why the shape differs from the one asked for
    vocab_size: int  # synthetic ids are drawn below it
    runtime: dict = field(default_factory=dict)  # runtime_info(), filled once loaded


@dataclass
class BenchReport:
    settings: BenchSettings
    threads: int
    models: list[ModelInfo]
    results: list[Result] = field(default_factory=list)
    machine: dict = field(default_factory=dict)  # spanqa.infer.cpu_info()
    created: str = ""

    @property
    def mode(self) -> str:
        return self.settings.mode

    def to_json(self) -> dict:
        return {
            "spanqa_version": __version__,
            "mode": self.mode,
            "created": self.created,
            "machine": self.machine,
            "threads": self.threads,
            "settings": asdict(self.settings) | {"batch_sizes": list(self.settings.batch_sizes)},
            "models": [asdict(m) | {"batch_sizes": list(m.batch_sizes)} for m in self.models],
            "results": [r.to_json() for r in self.results],
        }
