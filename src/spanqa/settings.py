"""Every settings dataclass, and so every default the CLI shows.

Stages take these frozen dataclasses; the CLI reads its option defaults from them (``default``)
instead of repeating numbers, and artifacts save them as JSON beside themselves. This module
imports nothing heavy, so ``--help`` stays instant.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from spanqa.errors import FeaturesError, UsageError

# The shortest window in which a question of max_query_length pieces leaves room for context:
# [CLS] + question + [SEP] + at least one context piece + [SEP].
MIN_CONTEXT_PIECES = 1


@dataclass(frozen=True)
class FeatureSettings:
    """run_squad.py's windowing (SpanBERT's defaults for SQuAD 1.1)."""

    max_seq_length: int = 512
    doc_stride: int = 128
    max_query_length: int = 64
    do_lower_case: bool = False

    def check(self) -> None:
        """Refuse settings under which run_squad.py's window would never advance."""
        if self.doc_stride < 1:
            raise FeaturesError(f"doc_stride={self.doc_stride}: must be at least 1")
        if self.max_query_length < 0:
            raise FeaturesError(f"max_query_length={self.max_query_length}: must be 0 or more")
        if self.max_seq_length < self.min_seq_length:
            raise FeaturesError(
                f"max_seq_length={self.max_seq_length} leaves no room for the context after "
                f"[CLS] + {self.max_query_length} question tokens + 2 [SEP]; use at least "
                f"{self.min_seq_length} or a smaller max_query_length"
            )

    @property
    def min_seq_length(self) -> int:
        return self.max_query_length + 3 + MIN_CONTEXT_PIECES

    @classmethod
    def for_model(cls, fixed_seq_len: int | None, max_positions: int | None, **given: Any) -> FeatureSettings:
        """The windowing a model runs with: its own fixed length, else the default length within
        its positions; ``given`` (the user's values, None for unset) override either."""
        given = {k: v for k, v in given.items() if v is not None}
        length = fixed_seq_len or min(cls.max_seq_length, max_positions or cls.max_seq_length)
        return cls(**{"max_seq_length": length, **given})


@dataclass(frozen=True)
class AnswerSettings:
    n_best_size: int = 20
    max_answer_length: int = 30
    # run_squad.py ranks the top-n over all max_seq_length positions, padding included, so a
    # padding position can push a real candidate out of the n-best. By default spanqa ranks
    # only a feature's real tokens, which makes answers independent of how much padding a
    # batch carries (length-aware batching); True reproduces the reference on padded logits.
    rank_padding: bool = False
    # SQuAD 2.0: the null answer ([CLS]) is a candidate, and a question answers "" when its
    # null score minus its best span's score exceeds the threshold (Google BERT / Hugging Face).
    # None: decided from the dataset / model package (spanqa.answers.squad2.resolve_version_2).
    version_2_with_negative: bool | None = None
    null_score_diff_threshold: float = 0.0

    def __post_init__(self) -> None:
        if self.n_best_size < 1:
            raise UsageError(f"n_best_size must be at least 1, got {self.n_best_size}")
        if self.max_answer_length < 1:
            raise UsageError(f"max_answer_length must be at least 1, got {self.max_answer_length}")
        if not math.isfinite(self.null_score_diff_threshold):
            raise UsageError(f"null_score_diff_threshold must be a finite number, got {self.null_score_diff_threshold}")


@dataclass(frozen=True)
class BatchingSettings:
    # max rows x padded length per batch. Measured on 2 cores (dataset mode, 1,024 vs 4,096):
    # +8-12% fp32 and +0-5% int8 on both the stand-in and SpanBERT-base: small batches keep the
    # activations in cache and carry less padding.
    token_budget: int = 1024
    max_batch_size: int = 64
    multiple: int = 8  # pad lengths up to a multiple of this
    length_aware: bool = True


@dataclass(frozen=True)
class EngineSettings:
    """How the engine turns questions into answers. ``features=None`` means SpanBERT's
    defaults, with max_seq_length taken from a fixed-shape model's own length."""

    features: FeatureSettings | None = None
    answers: AnswerSettings = AnswerSettings()
    batching: BatchingSettings = BatchingSettings()
    batch_size: int | None = None  # rows per batch (a cap for length-aware batching)
    warmup: int = 0  # untimed runs of the first batch before timing
    stream_questions: int = 512  # questions per chunk in ``Engine.stream`` (bounds memory)


@dataclass(frozen=True)
class GuardSettings:
    """The accuracy guard: a reduced-precision model must keep ``ratio`` of fp32's F1."""

    dataset: str | None = None
    questions: int = 1000
    ratio: float = 0.995
    # Below this many questions a single flipped answer moves F1 by more than the margin the
    # guard tests (0.5%), so the decision would be noise.
    min_questions: int = 200


@dataclass(frozen=True)
class CompileSettings:
    target: str = "cpu-fp32"
    batch_size: int | None = None  # fixed batch axis (None = dynamic)
    seq_len: int | None = None  # fixed sequence axis (None = dynamic)
    seed: int = 0
    calibration: str | None = None  # SQuAD JSON whose features calibrate static int8
    calibration_size: int = 300  # features used for calibration
    guard: str | None = None  # SQuAD JSON on which the new model must keep 99.5% of fp32's F1
    guard_questions: int = 1000
    unguarded: bool = False  # --no-guard: build a reduced-precision model nobody measured
    # The SQuAD version the model was fine-tuned for (2: it answers "no answer"); None: detect
    # from the checkpoint's name and config, else 1.
    squad_version: int | None = None


@dataclass(frozen=True)
class ExportSettings:
    opset: int = 17
    tolerance: float = 1e-4
    verify_shapes: tuple[tuple[int, int], ...] = ((1, 512), (4, 384), (3, 37))
    seed: int = 0


@dataclass(frozen=True)
class InferSettings:
    outfmt: str = "bin"  # "bin" or "npy"
    warmup: int = 0  # untimed runs of the first batch before timing starts
    loop: int = 1  # timed runs of each batch (outputs are written once)
    threads: int | None = None  # intra-op threads; None = the machine's usable cores
    device: str = "cpu"  # "cpu" or "cuda"
    batch_size: int | None = None  # for headerless .bin folders without manifest / synthetic runs
    seq_len: int | None = None  # likewise
    resume: bool = False  # skip batches whose outputs are complete
    overwrite: bool = False  # replace this command's own earlier outputs (never a directory it did not write)


@dataclass(frozen=True)
class RunSettings:
    """``spanqa run``: which model and threads, around the engine's settings (the difference
    from ``EngineSettings``: a job also chooses the model's target and the inference threads,
    and warms the runtime up with one untimed batch before timing)."""

    # None: a model package runs as it is (its own target); a checkpoint or .onnx as cpu-fp32.
    target: str | None = None
    threads: int | None = None  # None: the machine's usable cores
    engine: EngineSettings = EngineSettings(warmup=1)


@dataclass(frozen=True)
class BenchSettings:
    batch_sizes: tuple[int, ...] = (1, 4, 8, 16, 32, 64)
    seq_len: int = 512  # synthetic length; max_seq_length of the features in dataset mode
    warmup: int = 2  # untimed runs per cell (dataset mode: of the cell's first, longest batch)
    repeat: int = 5  # timed runs per cell (dataset mode: timed end-to-end passes over the questions)
    max_seconds: float = 60.0  # per cell; see the module docstring
    threads: int | None = None  # None: every core this process may use
    dataset: str | None = None  # SQuAD JSON: dataset mode
    questions: int | None = None  # dataset mode: the first N questions (None: all)
    token_budget: int | None = None  # dataset mode: rows x padded length per batch (None: run's default)
    seed: int = 0

    def check(self) -> None:
        if not self.batch_sizes:
            raise UsageError("--batch-sizes: give at least one batch size, e.g. 1,4,8")
        bad = [b for b in self.batch_sizes if b < 1]
        if bad:
            raise UsageError(f"--batch-sizes: {bad[0]} is not a positive batch size")
        for name, value, low in (
            ("--seq-len", self.seq_len, 1),
            ("--warmup", self.warmup, 0),
            ("--repeat", self.repeat, 1),
            ("--threads", self.threads, 1),
            ("--questions", self.questions, 1),
            ("--token-budget", self.token_budget, 1),
        ):
            if value is not None and value < low:
                raise UsageError(f"{name} {value}: must be at least {low}")
        if not self.max_seconds > 0:
            raise UsageError(f"--max-seconds {self.max_seconds}: must be more than 0")

    @property
    def mode(self) -> str:
        return "dataset" if self.dataset else "synthetic"


@dataclass(frozen=True)
class ServeSettings:
    """``spanqa serve``: the HTTP service, its batching and its limits."""

    target: str | None = None  # None: a package's own target; cpu-fp32 for a checkpoint
    host: str = "127.0.0.1"  # loopback unless asked: the API has no TLS
    port: int = 8000
    replicas: int = 1
    threads_per_replica: int | None = None  # None: the usable cores split between the replicas
    # Serve's batch size, counted in padded tokens (see spanqa.serve.service.request_cost). A
    # batch of this many tokens is 4 of the engine's 1,024-token model batches: enough to sort
    # requests of mixed length, small enough that a batch takes tens of milliseconds.
    max_batch_tokens: int = 4096
    max_wait_ms: float = 5.0  # how long a batch waits to fill once its first request is in
    # Requests each replica takes at once (in its batch queue or its running batch); more wait
    # in Serve's queue in spanqa's ingress, up to max_queued, then get 503 + Retry-After.
    max_ongoing: int = 64
    max_queued: int = 128
    # Admission by work: padded tokens admitted and not yet answered, per ready replica; beyond
    # it 503 with Retry-After from the measured seconds per token (spanqa.serve.admission).
    max_queued_tokens: int = 32768
    max_body_bytes: int = 4 * 1024 * 1024  # a larger request body is 413 before it is parsed
    retry_after_s: int = 1  # Retry-After while loading or draining, and before any batch is timed
    request_timeout_s: float = 30.0
    drain_timeout_s: float = 30.0  # SIGTERM: how long in-flight requests may take to finish
    access_log: bool = True  # one JSON line per request on stdout
    address: str | None = None  # a running Ray cluster; None starts a local one
    # Limits of one request (413 beyond them).
    max_context_chars: int = 50_000
    max_windows: int = 64  # windows of one question at its max_seq_len / doc_stride
    max_inputs: int = 64  # questions in one list request
    max_top_k: int = 20

    def check(self) -> None:
        for name in (
            "port",
            "replicas",
            "max_batch_tokens",
            "max_ongoing",
            "max_queued",
            "max_queued_tokens",
            "max_body_bytes",
            "retry_after_s",
            "max_context_chars",
            "max_windows",
            "max_inputs",
            "max_top_k",
        ):
            if getattr(self, name) < 1:
                raise UsageError(f"{name}={getattr(self, name)}: must be at least 1")
        if self.threads_per_replica is not None and self.threads_per_replica < 1:
            raise UsageError(f"threads_per_replica={self.threads_per_replica}: must be at least 1")
        if self.max_wait_ms < 0 or self.request_timeout_s <= 0 or self.drain_timeout_s < 0:
            raise UsageError("max_wait_ms and drain_timeout_s must be 0 or more, request_timeout_s more than 0")


@dataclass(frozen=True)
class RaySettings:
    """``spanqa run --engine ray``: how the job spreads over a Ray cluster (spanqa.scale)."""

    address: str | None = None  # "auto" or HOST:PORT; None starts a local Ray for the run
    workers: int | None = None  # actors; None: the cluster's CPUs // threads_per_worker
    threads_per_worker: int = 1  # each actor's num_cpus and its runtime's intra-op threads
    batch_questions: int = 64  # questions per actor call: features, model and answers of a batch
    ship_model: bool = False  # put the package into the object store instead of a shared path
    nbest: bool = True  # write nbest_predictions.json (as a local run does; 2-4 KB a question)
    max_restarts: int = 3  # per actor: a dead actor is restarted this many times
    max_task_retries: int = 3  # per batch on a dead actor (application errors are not retried)
    actor_start_timeout_s: int = 600  # the whole pool must be up (model loaded) within this
    local_cpus: int | None = None  # CPUs of the local Ray started without --address (None: all)


@dataclass(frozen=True)
class LoadgenSettings:
    """``spanqa loadgen``: MLPerf LoadGen's scenarios driving the engine or a server (spanqa.loadgen)."""

    scenario: str = "offline"  # offline | server | singlestream
    mode: str = "performance"  # performance | accuracy | find-peak
    latency_ms: float = 130.0  # Server: the bound on the 99th-percentile latency (MLPerf BERT's)
    latency_percentile: float = 0.99  # Server (MLPerf BERT's)
    # Server: the Poisson arrival rate. Offline: the rate LoadGen sizes its one query by (None:
    # measured in the warm-up). find-peak: the highest rate tried (None: an Offline run's rate).
    target_qps: float | None = None
    # A run lasts at least this long and this many queries. MLPerf's own runs last 600 s; early
    # stopping needs at least 459 queries for a VALID p99 and 64 for a p90.
    duration_s: float = 30.0
    min_queries: int = 512
    warmup_questions: int = 64  # answered before each run (untimed): runtime warm-up and rate estimate
    # The online batcher (Server): a batch closes at this many padded tokens, when the oldest
    # query's deadline leaves no room for more, or this long after its first query when no
    # more are waiting.
    token_budget: int = 1024
    max_wait_ms: float = 2.0
    peak_steps: int = 6  # find-peak: full Server runs of the bisection after the first
    peak_tolerance: float = 0.05  # find-peak: stop when the VALID/INVALID interval is this narrow (relative)
    # --features: a sample is one pre-tokenised window, as MLPerf BERT's sample library makes them.
    feature_seq_length: int = 384
    feature_doc_stride: int = 128
    feature_query_length: int = 64
    # --url: requests in flight at most; more wait in the client (an Offline query would
    # otherwise arrive as one burst and measure the server's admission control, not its work).
    http_connections: int = 64
    http_timeout_s: float = 120.0

    def check(self) -> None:
        if self.scenario not in ("offline", "server", "singlestream"):
            raise UsageError(f"--scenario {self.scenario}: use offline, server or singlestream")
        if self.mode not in ("performance", "accuracy", "find-peak"):
            raise UsageError(f"--mode {self.mode}: use performance, accuracy or find-peak")
        if not self.latency_ms > 0:
            raise UsageError(f"--latency-ms {self.latency_ms}: must be more than 0")
        if self.target_qps is not None and not self.target_qps > 0:
            raise UsageError(f"--target-qps {self.target_qps}: must be more than 0")
        if not self.duration_s > 0:
            raise UsageError(f"--duration {self.duration_s}: must be more than 0")
        if self.min_queries < 1:
            raise UsageError(f"--min-queries {self.min_queries}: must be at least 1")


def default(cls: type, name: str) -> Any:
    """The default of one field of a settings dataclass: what the CLI shows and uses."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:  # pragma: no cover - none today
                return f.default_factory()
    raise KeyError(f"{cls.__name__} has no field {name!r}")


__all__ = [
    "AnswerSettings",
    "BatchingSettings",
    "BenchSettings",
    "CompileSettings",
    "EngineSettings",
    "ExportSettings",
    "FeatureSettings",
    "GuardSettings",
    "InferSettings",
    "LoadgenSettings",
    "RaySettings",
    "RunSettings",
    "ServeSettings",
    "default",
]
