"""The report's figures, drawn with matplotlib as inline SVG (text as paths: no font to fetch)."""

from __future__ import annotations

import io
import re

from spanqa.errors import missing_backend

COLORS = ("#1f6feb", "#e8590c", "#2f9e44", "#9c36b5", "#c92a2a", "#0c8599")
_PROLOG = re.compile(r"^.*?(?=<svg)", re.S)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)
_XMLNS = re.compile(r'\s+xmlns(:\w+)?="[^"]*"')


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise missing_backend("matplotlib", "plot") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def svg(fig, prefix: str) -> str:
    """The figure as an ``<svg>`` element for HTML: no XML prolog, doctype or metadata, no
    namespace declarations (HTML parsing puts <svg> in its namespace), and ids prefixed so
    that several figures in one page never share one."""
    plt = _pyplot()
    buf = io.StringIO()
    with plt.rc_context({"svg.hashsalt": prefix, "svg.fonttype": "path"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    text = _METADATA.sub("", _PROLOG.sub("", buf.getvalue(), count=1))
    text = _XMLNS.sub("", text)
    text = re.sub(r'\bid="', f'id="{prefix}-', text)
    text = re.sub(r'(href=")#', rf"\1#{prefix}-", text)
    text = re.sub(r"url\(#", f"url(#{prefix}-", text)
    return re.sub(r"<svg\b", '<svg role="img" class="plot"', text, count=1)


def _figure(width: float = 7.5, height: float = 3.2, ncols: int = 1):
    plt = _pyplot()
    fig, axes = plt.subplots(1, ncols, figsize=(width, height), squeeze=False)
    return fig, axes[0]


def accuracy(blocks: list[dict]) -> str:
    """EM and F1 of each result with their 95% intervals."""
    fig, (ax,) = _figure(width=max(4.5, 1.6 + 1.3 * len(blocks)))
    width = 0.8 / max(1, len(blocks))
    for k, block in enumerate(blocks):
        acc = block["accuracy"]
        xs = [m + (k - (len(blocks) - 1) / 2) * width for m in range(2)]
        values = [acc["exact_match"], acc["f1"]]
        errs = [[v - acc[f"{n}_ci95"][0] for v, n in zip(values, ("exact_match", "f1"))]]
        errs.append([acc[f"{n}_ci95"][1] - v for v, n in zip(values, ("exact_match", "f1"))])
        ax.bar(xs, values, width * 0.9, yerr=errs, capsize=4, color=COLORS[k % len(COLORS)], label=block["name"])
    ax.set_xticks(range(2), ["exact match", "F1"])
    ax.set_ylim(0, 100)
    ax.set_ylabel("percent (95% interval)")
    ax.legend(loc="lower right", fontsize=8)
    return svg(fig, "fig-accuracy")


def buckets(blocks: list[dict], key: str, xlabel: str, prefix: str) -> str:
    """F1 and EM per bucket, one bar per result side by side; question counts under the bars."""
    fig, axes = _figure(width=9.5, height=3.4, ncols=2)
    labels = list(dict.fromkeys(b["bucket"] for block in blocks for b in block[key]))
    width = 0.8 / max(1, len(blocks))
    for ax, metric, title in zip(axes, ("f1", "exact_match"), ("F1", "exact match")):
        for k, block in enumerate(blocks):
            got = {b["bucket"]: b for b in block[key]}
            xs = [i + (k - (len(blocks) - 1) / 2) * width for i, lab in enumerate(labels) if lab in got]
            ys = [got[lab][metric] for lab in labels if lab in got]
            ax.bar(xs, ys, width * 0.9, color=COLORS[k % len(COLORS)], label=block["name"])
        counts = {b["bucket"]: b["questions"] for b in blocks[0][key]}
        ax.set_xticks(range(len(labels)), [f"{lab}\n(n={counts.get(lab, 0)})" for lab in labels], fontsize=7)
        ax.set_ylim(0, 100)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel, fontsize=8)
    axes[0].set_ylabel("percent")
    if len(blocks) > 1:
        axes[0].legend(fontsize=7, loc="lower left")
    return svg(fig, prefix)


def latency(blocks: list[dict]) -> str | None:
    """Batch latency over the run, each batch a point, with the median as a line."""
    series = [(k, b) for k, b in enumerate(blocks) if b["speed"]["batches"]]
    if not series:
        return None
    fig, (ax,) = _figure()
    for k, block in series:
        batches = block["speed"]["batches"]
        color = COLORS[k % len(COLORS)]
        ax.plot(batches["done_s"], batches["latency_ms"], ".", ms=3, color=color, label=block["name"])
        ax.axhline(block["speed"]["latency_ms"]["p50"], color=color, lw=0.8, ls="--")
    ax.set_xlabel("seconds into the run")
    ax.set_ylabel("batch latency (ms)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    return svg(fig, "fig-latency")


def throughput(blocks: list[dict]) -> str | None:
    series = [(k, b) for k, b in enumerate(blocks) if b["speed"]["throughput_over_time"]]
    if not series:
        return None
    fig, (ax,) = _figure()
    for k, block in series:
        over = block["speed"]["throughput_over_time"]
        ax.step(over["t_s"], over["rows_per_s"], where="mid", color=COLORS[k % len(COLORS)], label=block["name"])
    ax.set_xlabel("seconds into the run")
    ax.set_ylabel("rows (windows) per second")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    return svg(fig, "fig-throughput")


def threshold(blocks: list[dict]) -> str | None:
    """SQuAD 2.0: F1 against the null-score threshold, the chosen and the best marked."""
    series = [(k, b) for k, b in enumerate(blocks) if (b["squad2"] or {}).get("threshold_curve")]
    if not series:
        return None
    import numpy as np

    fig, (ax,) = _figure()
    for k, block in series:
        s2 = block["squad2"]
        t = np.asarray(s2["threshold_curve"]["threshold"], dtype=float)
        f = np.asarray(s2["threshold_curve"]["f1"], dtype=float)
        keep = np.abs(t) < 1e5  # questions with no span at all sit at 1e6: off the scale
        color = COLORS[k % len(COLORS)]
        ax.step(t[keep], f[keep], where="post", color=color, label=block["name"])
        if s2.get("chosen_threshold") is not None:
            ax.axvline(s2["chosen_threshold"], color=color, ls="--", lw=1, label=f"chosen {s2['chosen_threshold']:.3g}")
        if s2.get("best_f1_thresh") is not None:
            ax.plot([s2["best_f1_thresh"]], [s2["best_f1"]], "o", color=color, label=f"best {s2['best_f1_thresh']:.3g}")
    ax.set_xlabel("null score difference threshold")
    ax.set_ylabel("F1")
    ax.legend(fontsize=7)
    return svg(fig, "fig-threshold")


def differences(comparison: dict) -> str | None:
    """Each result's F1 minus the baseline's with the paired 95% interval."""
    pairs = [p for p in comparison["pairs"] if "f1_difference" in p]
    if not pairs:
        return None
    fig, (ax,) = _figure(height=max(1.6, 0.6 + 0.5 * len(pairs)))
    for i, p in enumerate(pairs):
        low, high = p["f1_difference_ci95"]
        ax.errorbar([p["f1_difference"]], [i], xerr=[[p["f1_difference"] - low], [high - p["f1_difference"]]], fmt="o", capsize=4)
    ax.axvline(0, color="#555", lw=0.8)
    ax.set_yticks(range(len(pairs)), [f"{p['other']} - {p['baseline']}" for p in pairs], fontsize=8)
    ax.set_xlabel("F1 difference (points, paired 95% interval)")
    ax.set_ylim(-0.8, len(pairs) - 0.2)
    return svg(fig, "fig-difference")
