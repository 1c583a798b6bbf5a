"""Throughput tables: the recipe's fps per batch size, for any model package, side by side.

Two modes, both timed through ``spanqa.runtimes.loop.run_batches`` (the one timing code path):

- synthetic (default): for every batch size, one batch of random in-vocabulary ids at a fixed
  sequence length with a full attention mask; ``warmup`` untimed runs, then ``repeat`` timed
  runs. ``fps = batch_size * 1000 / median ms``; the min-max range comes from the slowest and
  fastest run.
- dataset: the real job on the first ``questions`` questions of a SQuAD file, through
  the answering engine (``Engine.evaluate``: preprocess -> length-aware batched inference ->
  answers), ``warmup`` untimed runs of the cell's first (longest) batch, then ``repeat`` timed
  passes per batch size (the batch size caps the rows per batch under the token budget). Reports end-to-end questions/s (preprocess + inference + answers, the median
  pass) and model rows/s (real rows / time inside ``runtime.run``).

Machines are noisy: compare models within one run (``bench([a, b], ...)``), never across runs.

Time guard: each cell (one model at one batch size) stops starting new runs once
``max_seconds`` have passed since the cell began, warm-up included. A cell always makes at
least one warm-up run (when ``warmup`` > 0) and one timed run (dataset mode: one pass), so the
worst case is about two runs of the largest batch; cells cut short are flagged (``truncated``).

A fixed-shape model (compiled with ``--batch-size``/``--seq-len``) runs only its own shape: a
fixed batch axis gives one cell at that batch size, a fixed sequence axis replaces ``seq_len``.
"""

from __future__ import annotations

import datetime as _dt
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from spanqa.bench.results import BenchReport, DatasetResult, ModelInfo, Result, SyntheticResult
from spanqa.errors import InferenceError, UsageError
from spanqa.settings import BenchSettings


def _labels(packages) -> list[str]:
    """Short unique names: the package directory (or .onnx file), with parents added on clashes."""
    paths = [p.root if p.is_package else p.model_path for p in packages]
    labels = [p.name for p in paths]
    for depth in range(2, 6):
        if len(set(labels)) == len(labels):
            break
        labels = ["/".join(p.parts[-depth:]) for p in paths]
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label}#{seen[label]}")
    return out


def plan_model(package, label: str, settings: BenchSettings) -> ModelInfo:
    """The shapes to bench ``package`` at; one-line errors when the asked length cannot run."""
    fixed_batch, fixed_seq = package.batch_size, package.seq_len
    max_positions = package.max_positions
    seq = fixed_seq or settings.seq_len
    if fixed_seq is None and max_positions and seq > max_positions:
        raise UsageError(f"--seq-len {seq}: {label} has only {max_positions} positions; use --seq-len {max_positions} or less")
    sizes = (fixed_batch,) if fixed_batch else tuple(settings.batch_sizes)
    note = None
    if fixed_batch or fixed_seq:
        asked = ",".join(map(str, settings.batch_sizes))
        if sizes != tuple(settings.batch_sizes) or seq != settings.seq_len:
            note = (
                f"{label} is fixed-shape (batch {fixed_batch or 'dynamic'}, seq {fixed_seq or 'dynamic'}): "
                f"benched batch {','.join(map(str, sizes))} at seq {seq} only (asked: batch {asked} at seq {settings.seq_len})"
            )
    return ModelInfo(
        label=label,
        path=str((package.root if package.is_package else package.model_path).resolve()),
        target=package.target,
        precision=package.precision,
        fixed_batch=fixed_batch,
        fixed_seq=fixed_seq,
        batch_sizes=sizes,
        seq_len=seq,
        note=note,
        vocab_size=int(package.manifest.model.get("vocab_size") or 1000),
    )


# --------------------------------------------------------------------------------------------
# Timing


def _guarded(item, count: int, deadline: float):
    """``item`` up to ``count`` times, the first always, later ones only before ``deadline``."""
    for i in range(count):
        if i > 0 and time.perf_counter() > deadline:
            return
        yield item


def _warm_up(runtime, batch, count: int, deadline: float, desc: str) -> int:
    """Untimed runs (through run_batches, for its error handling); returns how many ran."""
    from spanqa.runtimes.loop import run_batches
    from spanqa.runtimes.stats import InferenceStats

    if count <= 0:
        return 0
    stats = run_batches(runtime, _guarded(batch, count, deadline), total=count, desc=f"{desc} warm-up", stats=InferenceStats())
    return stats.batches


def time_synthetic(runtime, info: ModelInfo, batch_size: int, settings: BenchSettings) -> SyntheticResult:
    """Warm-up, then timed runs of one synthetic [batch_size, info.seq_len] batch."""
    from spanqa.offline.infer import synthetic_batch
    from spanqa.runtimes.loop import check_model_fit, run_batches
    from spanqa.runtimes.stats import InferenceStats

    seq = info.seq_len
    check_model_fit(runtime.batch_size, runtime.seq_len, None, batch_size, seq, where="--batch-sizes/--seq-len")
    batch = synthetic_batch(batch_size, seq, info.vocab_size, seed=settings.seed)
    deadline = time.perf_counter() + settings.max_seconds
    desc = f"{info.label} b{batch_size}"
    warm = _warm_up(runtime, batch, settings.warmup, deadline, desc)
    stats = InferenceStats(warmup=warm, loop=1)
    run_batches(runtime, _guarded(batch, settings.repeat, deadline), total=settings.repeat, desc=desc, stats=stats)
    return SyntheticResult(
        model=info.label,
        target=info.target,
        batch_size=batch_size,
        seq_len=seq,
        latencies_ms=tuple(stats.latencies_ms),
        warmup_runs=warm,
        truncated=warm < settings.warmup or stats.timed_runs < settings.repeat,
    )


def _engine(package, runtime, info: ModelInfo, batch_size: int, settings: BenchSettings):
    from spanqa.engine import Engine
    from spanqa.settings import BatchingSettings, EngineSettings, FeatureSettings

    batching = BatchingSettings(token_budget=settings.token_budget) if settings.token_budget else BatchingSettings()
    engine_settings = EngineSettings(
        features=FeatureSettings(max_seq_length=info.seq_len),
        batching=batching,
        batch_size=batch_size,
        warmup=0,  # bench warms up itself, outside the timed passes
    )
    return Engine(package, threads=settings.threads, settings=engine_settings, runtime=runtime)


def time_dataset(engine, info: ModelInfo, batch_size: int, examples, settings: BenchSettings, features=None) -> DatasetResult:
    """Warm-up on the first (longest) batch, then ``repeat`` timed end-to-end passes
    (preprocess, inference, answers) over ``examples``. ``features``: those examples' features
    for the warm-up batch, when already built (they are not part of any timed pass)."""
    from spanqa.engine.batching import gather
    from spanqa.runtimes.loop import Batch

    runtime = engine.runtime
    deadline = time.perf_counter() + settings.max_seconds
    warm = 0
    if settings.warmup > 0:
        features = features if features is not None else engine.features(examples)
        first = engine.plan(features)[0]
        batch = Batch("warm-up", *gather(features.input_ids, features.segment_ids, features.input_mask, first))
        warm = _warm_up(runtime, batch, settings.warmup, deadline, f"{info.label} b{batch_size}")
    stages: dict[str, list[float]] = {"preprocess_s": [], "inference_s": [], "answers_s": []}
    passes: list[float] = []
    model_s: list[float] = []
    evaluation = None
    for _ in _guarded(None, settings.repeat, deadline):
        evaluation = engine.evaluate(examples, desc=f"{info.label} b{batch_size}")
        for k in stages:
            stages[k].append(evaluation.timings[k])
        passes.append(evaluation.timings["wall_s"])  # the stages overlap on large inputs
        model_s.append(evaluation.stats.to_json()["inference_s"])  # streams counted once
    assert evaluation is not None  # _guarded always yields once
    stats = evaluation.stats
    return DatasetResult(
        model=info.label,
        target=info.target,
        batch_size=runtime.batch_size or batch_size,
        seq_len=info.seq_len,
        questions=len(examples),
        features=len(evaluation.features),
        rows=stats.rows,
        batches=stats.batches,
        token_budget=engine.settings.batching.token_budget,
        pass_s=tuple(passes),
        model_s=tuple(model_s),
        stage_s={k: float(statistics.median(v)) for k, v in stages.items()},
        exact_match=float(evaluation.scores.get("exact_match", evaluation.scores.get("exact"))),  # 1.1 / 2.0 keys
        f1=float(evaluation.scores["f1"]),
        warmup_runs=warm,
        truncated=warm < settings.warmup or len(passes) < settings.repeat,
    )


# --------------------------------------------------------------------------------------------
# The whole run


def bench(
    models: Sequence[str | Path],
    settings: BenchSettings = BenchSettings(),
    *,
    on_result: Callable[[BenchReport, Result], None] | None = None,
) -> BenchReport:
    """Bench every model at every batch size (model by model). Every package is opened and its
    shapes checked before anything runs, so a bad ``--seq-len`` fails at once.
    ``on_result(report, result)`` sees each cell as it finishes (the CLI prints rows as they come)."""
    from spanqa.models.package import open_package
    from spanqa.runtimes import RuntimeOptions, open_runtime, runtime_info
    from spanqa.sysinfo import cpu_info, default_threads

    settings.check()
    if not models:
        raise UsageError("--model: give at least one model package or .onnx file")
    packages = [open_package(m) for m in models]
    labels = _labels(packages)
    infos = [plan_model(p, label, settings) for p, label in zip(packages, labels)]
    examples = None
    if settings.dataset:
        from spanqa.data.squad import read_squad
        from spanqa.settings import FeatureSettings

        shortest = FeatureSettings().min_seq_length
        for info in infos:
            if info.seq_len < shortest:
                if info.fixed_seq:
                    raise InferenceError(
                        f"{info.label} is compiled for seq len {info.seq_len}, too short for SQuAD features "
                        f"(at least {shortest}); bench it without --dataset"
                    )
                raise InferenceError(
                    f"--seq-len {info.seq_len}: too short for SQuAD features; use at least {shortest} with --dataset"
                )
        examples = read_squad(settings.dataset)[: settings.questions or None]
    threads = settings.threads or default_threads()
    report = BenchReport(
        settings=settings,
        threads=threads,
        models=infos,
        machine=cpu_info(),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    for package, info in zip(packages, infos):
        # The real job runs as `spanqa run` does (several batches in flight where the runtime
        # has streams); the recipe's fps table times one batch at a time, as msame does.
        runtime = open_runtime(package, RuntimeOptions(threads=threads, throughput=examples is not None))
        info.runtime.update(runtime_info(runtime))
        features = None  # built once per model, for the warm-up batches only
        if examples is not None and settings.warmup > 0:
            features = _engine(package, runtime, info, 1, settings).features(examples)
        for batch_size in info.batch_sizes:
            if examples is not None:
                engine = _engine(package, runtime, info, batch_size, settings)
                result: Result = time_dataset(engine, info, batch_size, examples, settings, features)
            else:
                result = time_synthetic(runtime, info, batch_size, settings)
            report.results.append(result)
            if on_result is not None:
                on_result(report, result)
        runtime.close()  # free the session before the next model loads
    return report
