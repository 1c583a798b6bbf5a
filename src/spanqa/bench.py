"""Throughput tables: the recipe's fps per batch size, for any model package, side by side.

Two modes, both timed through ``spanqa.infer.run_batches`` (the one timing code path):

- synthetic (default): for every batch size, one batch of random in-vocabulary ids at a fixed
  sequence length with a full attention mask; ``warmup`` untimed runs, then ``repeat`` timed
  runs. ``fps = batch_size * 1000 / median ms``; the min-max range comes from the slowest and
  fastest run.
- dataset: the real job on the first ``questions`` questions of a SQuAD file, through
  ``spanqa.pipeline.evaluate_runtime`` (preprocess -> length-aware batched inference ->
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
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence, Union

from spanqa import __version__
from spanqa.errors import InferenceError, missing_backend

DEFAULT_BATCH_SIZES = (1, 4, 8, 16, 32, 64)
DEFAULT_SEQ_LEN = 512
DEFAULT_MAX_SECONDS = 60.0


@dataclass(frozen=True)
class BenchSettings:
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    seq_len: int = DEFAULT_SEQ_LEN  # synthetic length; max_seq_length of the features in dataset mode
    warmup: int = 2  # untimed runs per cell (dataset mode: of the cell's first, longest batch)
    repeat: int = 5  # timed runs per cell (dataset mode: timed end-to-end passes over the questions)
    max_seconds: float = DEFAULT_MAX_SECONDS  # per cell; see the module docstring
    threads: int | None = None  # None: every core this process may use
    dataset: str | None = None  # SQuAD JSON: dataset mode
    questions: int | None = None  # dataset mode: the first N questions (None: all)
    token_budget: int | None = None  # dataset mode: rows x padded length per batch (None: run's default)
    seed: int = 0

    def check(self) -> None:
        if not self.batch_sizes:
            raise InferenceError("--batch-sizes: give at least one batch size, e.g. 1,4,8")
        bad = [b for b in self.batch_sizes if b < 1]
        if bad:
            raise InferenceError(f"--batch-sizes: {bad[0]} is not a positive batch size")
        for name, value, low in (
            ("--seq-len", self.seq_len, 1),
            ("--warmup", self.warmup, 0),
            ("--repeat", self.repeat, 1),
            ("--threads", self.threads, 1),
            ("--questions", self.questions, 1),
            ("--token-budget", self.token_budget, 1),
        ):
            if value is not None and value < low:
                raise InferenceError(f"{name} {value}: must be at least {low}")
        if not self.max_seconds > 0:
            raise InferenceError(f"--max-seconds {self.max_seconds}: must be more than 0")

    @property
    def mode(self) -> str:
        return "dataset" if self.dataset else "synthetic"


# --------------------------------------------------------------------------------------------
# Results


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


# --------------------------------------------------------------------------------------------
# Planning: which shapes each model runs, checked before anything is timed.


def _labels(packages) -> list[str]:
    """Short unique names: the package directory (or .onnx file), with parents added on clashes."""
    paths = [p.root if p.manifest.get("format") == "spanqa-model-package" else p.model_path for p in packages]
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
    manifest = package.manifest
    max_positions = manifest.get("shapes", {}).get("max_positions") or manifest.get("model", {}).get("max_positions")
    seq = fixed_seq or settings.seq_len
    if fixed_seq is None and max_positions and seq > max_positions:
        raise InferenceError(
            f"--seq-len {seq}: {label} has only {max_positions} positions; use --seq-len {max_positions} or less"
        )
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
        path=str((package.root if manifest.get("format") == "spanqa-model-package" else package.model_path).resolve()),
        target=package.target,
        precision=manifest.get("precision", "fp32"),
        fixed_batch=fixed_batch,
        fixed_seq=fixed_seq,
        batch_sizes=sizes,
        seq_len=seq,
        note=note,
        vocab_size=int(manifest.get("model", {}).get("vocab_size") or 1000),
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
    from spanqa.infer import InferenceStats, run_batches

    if count <= 0:
        return 0
    stats = run_batches(runtime, _guarded(batch, count, deadline), total=count, desc=f"{desc} warm-up", stats=InferenceStats())
    return stats.batches


def time_synthetic(runtime, info: ModelInfo, batch_size: int, settings: BenchSettings) -> SyntheticResult:
    """Warm-up, then timed runs of one synthetic [batch_size, info.seq_len] batch."""
    from spanqa.infer import InferenceStats, check_model_fit, run_batches, synthetic_batch

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


def _dataset_settings(info: ModelInfo, batch_size: int, settings: BenchSettings):
    from spanqa.batching import BatchingSettings
    from spanqa.pipeline import RunSettings
    from spanqa.squad import FeatureSettings

    batching = BatchingSettings(token_budget=settings.token_budget) if settings.token_budget else BatchingSettings()
    return RunSettings(
        target=info.target,
        batch_size=batch_size,
        threads=settings.threads,
        warmup=0,  # bench warms up itself, outside the timed passes
        features=FeatureSettings(max_seq_length=info.seq_len),
        batching=batching,
    )


def time_dataset(runtime, info: ModelInfo, batch_size: int, examples, tokenizer, settings: BenchSettings, features=None) -> DatasetResult:
    """Warm-up on the first (longest) batch, then ``repeat`` timed end-to-end passes
    (preprocess, inference, answers) over ``examples``. ``features``: those examples' features
    for the warm-up batch, when already built (they are not part of any timed pass)."""
    from spanqa.batching import gather
    from spanqa.infer import Batch
    from spanqa.pipeline import evaluate_runtime, plan_for
    from spanqa.squad import build_features

    run_settings = _dataset_settings(info, batch_size, settings)
    deadline = time.perf_counter() + settings.max_seconds
    warm = 0
    if settings.warmup > 0:
        features = features if features is not None else build_features(examples, tokenizer, run_settings.features)
        first = plan_for(runtime, features, run_settings)[0]
        batch = Batch("warm-up", *gather(features.input_ids, features.segment_ids, features.input_mask, first))
        warm = _warm_up(runtime, batch, settings.warmup, deadline, f"{info.label} b{batch_size}")
    stages: dict[str, list[float]] = {"preprocess_s": [], "inference_s": [], "answers_s": []}
    passes: list[float] = []
    model_s: list[float] = []
    evaluation = None
    for _ in _guarded(None, settings.repeat, deadline):
        evaluation = evaluate_runtime(runtime, examples, tokenizer, run_settings)
        for k in stages:
            stages[k].append(evaluation.timings[k])
        passes.append(sum(evaluation.timings[k] for k in stages))
        model_s.append(sum(evaluation.stats.latencies_ms) / 1000.0)
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
        token_budget=run_settings.batching.token_budget,
        pass_s=tuple(passes),
        model_s=tuple(model_s),
        stage_s={k: float(statistics.median(v)) for k, v in stages.items()},
        exact_match=float(evaluation.scores["exact_match"]),
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
    from spanqa.infer import cpu_info
    from spanqa.package import open_package
    from spanqa.runtime import RuntimeOptions, default_threads, open_runtime, runtime_info

    settings.check()
    if not models:
        raise InferenceError("--model: give at least one model package or .onnx file")
    packages = [open_package(m) for m in models]
    labels = _labels(packages)
    infos = [plan_model(p, label, settings) for p, label in zip(packages, labels)]
    examples = None
    if settings.dataset:
        from spanqa.squad import FeatureSettings, read_squad

        shortest = FeatureSettings().max_query_length + 4  # [CLS] question [SEP] context [SEP]
        for info in infos:
            if info.seq_len < shortest:
                if info.fixed_seq:
                    raise InferenceError(
                        f"{info.label} is compiled for seq len {info.seq_len}, too short for SQuAD features "
                        f"(at least {shortest}); bench it without --dataset"
                    )
                raise InferenceError(f"--seq-len {info.seq_len}: too short for SQuAD features; use at least {shortest} with --dataset")
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
        runtime = open_runtime(package, RuntimeOptions(threads=threads))
        info.runtime.update(runtime_info(runtime))
        features = None  # built once per model, for the warm-up batches only
        if examples is not None and settings.warmup > 0:
            from spanqa.squad import build_features

            features = build_features(examples, package.tokenizer, _dataset_settings(info, 1, settings).features)
        for batch_size in info.batch_sizes:
            if examples is not None:
                result: Result = time_dataset(runtime, info, batch_size, examples, package.tokenizer, settings, features)
            else:
                result = time_synthetic(runtime, info, batch_size, settings)
            report.results.append(result)
            if on_result is not None:
                on_result(report, result)
        del runtime  # free the session before the next model loads
    return report


# --------------------------------------------------------------------------------------------
# Text table


def _num(x: float) -> str:
    if not math.isfinite(x):
        return "-"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _columns(report: BenchReport) -> list[tuple[str, int, str]]:
    """(title, width, align) per column; model/target widths fit every label up front so rows
    can be printed as cells finish."""
    wm = max([len("model")] + [len(m.label) for m in report.models])
    wt = max([len("target")] + [len(m.target) for m in report.models])
    common = [("model", wm, "<"), ("target", wt, "<"), ("batch", 5, ">"), ("seq", 4, ">")]
    if report.mode == "dataset":
        return common + [
            ("questions/s", 11, ">"),
            ("q/s min-max", 13, ">"),
            ("rows/s", 8, ">"),
            ("rows/batch", 10, ">"),
            ("F1", 6, ">"),
            ("passes", 6, ">"),
        ]
    return common + [("fps median", 10, ">"), ("fps min-max", 15, ">"), ("latency ms", 10, ">"), ("runs", 5, ">")]


def _line(cells: Sequence[str], columns) -> str:
    return "  ".join(f"{c:{align}{width}}" for c, (_, width, align) in zip(cells, columns)).rstrip()


def header_lines(report: BenchReport) -> list[str]:
    s = report.settings
    m = report.machine
    what = (
        f"dataset {s.dataset}, {'first ' + str(s.questions) + ' questions' if s.questions else 'all questions'}"
        if report.mode == "dataset"
        else f"synthetic inputs, seq len {s.seq_len}"
    )
    cols = _columns(report)
    return [
        f"spanqa {__version__} bench: {what}; {report.threads} threads on {m.get('model', '?')} ({m.get('cores', '?')} cores)",
        f"warm-up {s.warmup}, repeat {s.repeat} (medians), at most {s.max_seconds:g} s per cell",
        "",
        _line([c[0] for c in cols], cols),
        _line(["-" * c[1] for c in cols], cols),
    ]


def row_line(report: BenchReport, r: Result) -> str:
    cols = _columns(report)
    star = "*" if r.truncated else ""
    if isinstance(r, DatasetResult):
        q = r.questions_per_s
        cells = [
            r.model,
            r.target,
            str(r.batch_size),
            str(r.seq_len),
            _num(q["median"]),
            f"{_num(q['min'])}-{_num(q['max'])}",
            _num(r.rows_per_s["median"]),
            f"{r.rows_per_batch:.1f}",
            f"{r.f1:.1f}",
            f"{len(r.pass_s)}{star}",
        ]
    else:
        f = r.fps
        cells = [
            r.model,
            r.target,
            str(r.batch_size),
            str(r.seq_len),
            _num(f["median"]),
            f"{_num(f['min'])}-{_num(f['max'])}",
            _num(r.latency_ms["median"]),
            f"{len(r.latencies_ms)}{star}",
        ]
    return _line(cells, cols)


def footer_lines(report: BenchReport) -> list[str]:
    lines = []
    if any(r.truncated for r in report.results):
        unit = "passes" if report.mode == "dataset" else "runs"
        lines.append(f"* fewer {unit} than asked: the cell reached --max-seconds {report.settings.max_seconds:g}")
    lines += [f"note: {m.note}" for m in report.models if m.note]
    if report.mode == "dataset":
        lines.append(
            "questions/s: end to end (preprocess + inference + answers); rows/s: model rows per second "
            "inside the runtime; batch caps the rows per batch under the token budget"
        )
    return ([""] + lines) if lines else []


def format_table(report: BenchReport) -> str:
    return "\n".join(header_lines(report) + [row_line(report, r) for r in report.results] + footer_lines(report))


# --------------------------------------------------------------------------------------------
# Plot


def plot(report: BenchReport, path: str | Path) -> Path:
    """Throughput against batch size, one line per model (min-max as error bars), written as PNG."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import FixedLocator, NullLocator
    except ImportError:
        raise missing_backend("matplotlib", "plot") from None
    from spanqa.fileutil import atomic_path

    # The object API with the Agg canvas: no pyplot, no global backend switch in the caller's process.
    fig = Figure(figsize=(8, 5), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    sizes: set[int] = set()
    for info in report.models:
        rows = sorted((r for r in report.results if r.model == info.label), key=lambda r: r.batch_size)
        if not rows:
            continue
        xs = [r.batch_size for r in rows]
        mid = [r.throughput["median"] for r in rows]
        lo = [r.throughput["min"] for r in rows]
        hi = [r.throughput["max"] for r in rows]
        sizes.update(xs)
        ax.errorbar(
            xs,
            mid,
            yerr=[[m - a for m, a in zip(mid, lo)], [b - m for m, b in zip(mid, hi)]],
            marker="o",
            linewidth=2,
            capsize=4,
            elinewidth=1,
            label=f"{info.label} ({info.target})",
        )
        ax.annotate(_num(mid[-1]), (xs[-1], mid[-1]), textcoords="offset points", xytext=(6, 0), va="center", fontsize=8)
    ax.set_xscale("log", base=2)
    ticks = sorted(sizes)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(t) for t in ticks])
    if len(ticks) == 1:
        ax.set_xlim(ticks[0] / 2, ticks[0] * 2)
    else:
        ax.set_xlim(ticks[0] / 1.3, ticks[-1] * 1.3)  # room for the end labels
    tops = [r.throughput["max"] for r in report.results if math.isfinite(r.throughput["max"])]
    ax.set_ylim(0, max(tops) * 1.12 if tops else None)  # headroom for the top labels
    ax.grid(True, alpha=0.3)
    s = report.settings
    if report.mode == "dataset":
        ax.set_xlabel("batch size (cap on rows per batch)")
        ax.set_ylabel("questions / s (end to end)")
        what = f"{Path(s.dataset).name}, {report.results[0].questions if report.results else '?'} questions, max seq len"
    else:
        ax.set_xlabel("batch size")
        ax.set_ylabel("sequences / s (fps, median)")
        what = "synthetic, seq len"
    seqs = sorted({m.seq_len for m in report.models})
    ax.set_title(
        f"spanqa bench: {what} {','.join(map(str, seqs))}; {report.threads} threads\n"
        f"{report.machine.get('model', '')}; bars = min-max over {'passes' if report.mode == 'dataset' else 'runs'}",
        fontsize=10,
    )
    ax.legend(loc="best", fontsize=9)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
