"""The bench table (the recipe's fps per batch size, side by side) and its plot."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from spanqa import __version__
from spanqa.bench.results import BenchReport, DatasetResult, Result
from spanqa.errors import missing_backend


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


def plot(report: BenchReport, path: str | Path, *, overwrite: bool = False) -> Path:
    """Throughput against batch size, one line per model (min-max as error bars), written as PNG."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import FixedLocator, NullLocator
    except ImportError:
        raise missing_backend("matplotlib", "plot") from None
    from spanqa.fileutil import atomic_file

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
    with atomic_file(path, "bench plot", overwrite=overwrite, option="--plot") as tmp:
        fig.savefig(tmp, format="png")
    return path
