"""From the workers' results to the table: FLOPs, each row's figures, spanqa's best and the
targets, and the Markdown the script prints."""

from __future__ import annotations

import math
from typing import Any

from .base import WARMUP_QUESTIONS

F1_RATIO = 0.995  # a reduced-precision target must keep 99.5% of spanqa fp32's F1 on the stand-in
CEILING_TARGET = {"int8": 85.0, "bf16": 85.0, "fp32": 85.0}  # % of the precision's matmul ceiling
E2E_TARGET = 0.95  # end-to-end questions/s over model-only rows/s


def flops(cfg: dict, calls: list) -> tuple[float, float, int, int]:
    """(executed, useful) FLOPs of metered calls; also padded and real token counts."""
    layers, h, i = cfg["num_hidden_layers"], cfg["hidden_size"], cfg["intermediate_size"]
    p = layers * (4 * h * h + 2 * h * i) + 2 * h
    executed = useful = 0.0
    padded = real = 0
    for rows, length, real_tokens, real_sq in calls:
        executed += rows * (2 * p * length + 4 * layers * h * length * length)
        useful += 2 * p * real_tokens + 4 * layers * h * real_sq
        padded += rows * length
        real += real_tokens
    return executed, useful, padded, real


def measured_row(row: dict, result: dict, cfg: dict, gold) -> None:
    """Fill ``row`` from a worker's result: speed, model time and FLOP rates, F1/EM on ``gold``."""
    from spanqa.answers.scoring import score

    med = result["median"]
    executed, useful, padded, real = flops(cfg, med["calls"])
    row.update(
        precision=result["info"].get("precision") or row["precision"],
        info=result["info"],
        questions=result["questions"],
        seconds=med["seconds"],
        passes=result["passes"],
        load_s=result["load_s"],
        questions_per_s=result["questions"] / med["seconds"],
        model_s=med["model_s"],
        model_share=med["model_s"] / med["seconds"],
        sequences=sum(c[0] for c in med["calls"]),
        padded_tokens=padded,
        real_tokens=real,
        model_gflops=executed / med["model_s"] / 1e9 if med["model_s"] else None,
        useful_gflops=useful / med["model_s"] / 1e9 if med["model_s"] else None,
    )
    if result.get("model_only_s"):
        row["model_only_rows_per_s"] = result["model_only_rows"] / result["model_only_s"]
        row["e2e_vs_model_only"] = row["questions_per_s"] / row["model_only_rows_per_s"]
    row.update(score(gold, result["predictions"]))


def best_ceilings(runs: list[dict]) -> dict[str, Any]:
    """Per precision and kernel the best of the ceiling runs, and per precision the best kernel.
    Other work on the machine lowers a measurement, never raises it."""
    best: dict[str, dict[str, float]] = {}
    for r in runs:
        for prec, kernels in r["gflops"].items():
            for kernel, g in kernels.items():
                best.setdefault(prec, {})[kernel] = max(g, best.get(prec, {}).get(kernel, 0.0))
    return {"gflops": best, "ceiling": {prec: max(v.values()) for prec, v in best.items() if v}}


def add_ceilings(report: dict) -> None:
    """Each row's matmul ceiling (its precision's) and its share of it."""
    for block in report["models"].values():
        for row in block["rows"]:
            row["ceiling_gflops"] = report["matmul"]["ceiling"].get(row["precision"])
            if row.get("model_gflops") and row["ceiling_gflops"]:
                row["ceiling_pct"] = 100 * row["model_gflops"] / row["ceiling_gflops"]


def finish(report: dict) -> None:
    """spanqa's best per model (the fastest target that keeps F1 >= 99.5% of spanqa fp32's on the
    stand-in), each row's ratio to it, and the issue's targets."""
    standin = report["models"].get("standin")
    passing = None
    if standin:
        by_name = {r["system"]: r for r in standin["rows"] if "f1" in r}
        fp32 = by_name.get("spanqa cpu-fp32")
        if fp32:
            passing = {n for n, r in by_name.items() if r["spanqa"] and r["f1"] >= F1_RATIO * fp32["f1"]}
            for r in standin["rows"]:
                if "f1" in r:
                    r["f1_vs_spanqa_fp32"] = r["f1"] / fp32["f1"] if fp32["f1"] else None
    checks = {}
    for model, block in report["models"].items():
        rows = [r for r in block["rows"] if "questions_per_s" in r]
        candidates = [r for r in rows if r["spanqa"] and (passing is None or r["system"] in passing)]
        if not candidates:
            continue
        best = max(candidates, key=lambda r: r["questions_per_s"])
        block["spanqa_best"] = best["system"]
        for r in rows:
            r["vs_spanqa_best"] = r["questions_per_s"] / best["questions_per_s"]
        by_name = {r["system"]: r for r in rows}
        c = {"spanqa_best": best["system"], "f1_guard_from": "standin" if passing is not None else "not measured"}
        for peer, key, need in (
            ("HF pipeline (PyTorch eager)", "x_hf_pipeline", None),
            ("Optimum ORT int8 (dynamic, avx512_vnni)", "x_optimum_int8", 1.5),
            ("optimum-intel OpenVINO", "x_optimum_openvino", 2.5),
        ):
            if peer in by_name:
                c[key] = best["questions_per_s"] / by_name[peer]["questions_per_s"]
                c[key + "_target"] = need
        c["best_ceiling_pct"] = best.get("ceiling_pct")
        c["best_precision"] = best.get("precision")
        c["e2e_vs_model_only"] = best.get("e2e_vs_model_only")
        fastest = max((r for r in rows if r["spanqa"]), key=lambda r: r["questions_per_s"])
        if fastest is not best:
            c["fastest"] = fastest["system"]
            for peer, key in (
                ("HF pipeline (PyTorch eager)", "fastest_x_hf_pipeline"),
                ("Optimum ORT int8 (dynamic, avx512_vnni)", "fastest_x_optimum_int8"),
            ):
                if peer in by_name:
                    c[key] = fastest["questions_per_s"] / by_name[peer]["questions_per_s"]
        checks[model] = c
    report["targets"] = checks


def render(report: dict) -> str:
    m = report["machine"]
    out = [
        f"# spanqa vs peers — {m['cpu']}, {m['cores']} cores, {report['threads']} threads for every system",
        "",
        f"ISA: {', '.join(m['isa'])}; load average at start {m['load_avg'][0]:.2f}, at end {m['load_avg_end'][0]:.2f}. "
        f"Timing: one warm-up pass over {WARMUP_QUESTIONS} questions, then "
        + ("one timed pass" if report["repeats"] == 1 else f"the median of {report['repeats']} timed passes")
        + " over the subset, end to end (strings in, answers out).",
        "",
        "Matmul ceilings (2048³; per kernel the median of 7, best of the runs at start and end): "
        + "; ".join(
            f"**{prec} {v:.0f} G{'OP' if prec == 'int8' else 'FLOP'}/s** ("
            + ", ".join(f"{k} {g:.0f}" for k, g in report["matmul"]["gflops"][prec].items())
            + ")"
            for prec, v in report["matmul"]["ceiling"].items()
        ),
        "",
        "Model FLOPs per sequence of length L: 2·P·L + 4·layers·hidden·L², P = layers·(4·hidden² + 2·hidden·intermediate) + 2·hidden. "
        "*model GFLOP/s*: the shapes each system ran (padding included) over its time inside the model; "
        "*useful*: real tokens only; *% ceil*: model GFLOP/s over the matmul ceiling of its precision.",
    ]
    for model, block in report["models"].items():
        title = "stand-in (MiniLM-L6, 6 × 384)" if model == "standin" else "random SpanBERT-base shape (12 × 768; F1 meaningless)"
        out += ["", f"## {title} — {block['questions']} held-out questions", ""]
        out.append(
            "| system | precision | questions/s | × spanqa best | F1 | EM | F1 / spanqa fp32 | model share | model GFLOP/s | useful GFLOP/s | % ceil | e2e % of model-only |"
        )
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in block["rows"]:
            if "unavailable" in r:
                out.append(f"| {r['system']} | {r['precision']} | unavailable: {r['unavailable']} | | | | | | | | | |")
                continue
            mark = " **(best)**" if block.get("spanqa_best") == r["system"] else ""
            out.append(
                f"| {r['system']}{mark} | {r['precision']} | {r['questions_per_s']:.2f} | {fmt(r.get('vs_spanqa_best'))} | "
                f"{r['f1']:.2f} | {r['exact_match']:.2f} | {floor(r.get('f1_vs_spanqa_fp32') and 100 * r['f1_vs_spanqa_fp32'])}{'%' if r.get('f1_vs_spanqa_fp32') else ''} | {100 * r['model_share']:.0f}% | {fmt(r['model_gflops'], '.0f')} | "
                f"{fmt(r['useful_gflops'], '.0f')} | {floor(r.get('ceiling_pct'), 1)} | {floor(r.get('e2e_vs_model_only') and 100 * r['e2e_vs_model_only'], 1)} |"
            )
    if report.get("targets"):
        out += ["", "## Targets", ""]
        for model, c in report["targets"].items():
            parts = [f"spanqa best = {c['spanqa_best']} (F1 guard: {c['f1_guard_from']})"]
            for key, label in (
                ("x_hf_pipeline", "HF pipeline"),
                ("x_optimum_int8", "Optimum ORT int8"),
                ("x_optimum_openvino", "optimum-intel OpenVINO"),
            ):
                if key in c and c[key + "_target"] is None:
                    parts.append(f"{floor(c[key])}× {label}")
                elif key in c:
                    ok = "met" if c[key] >= c[key + "_target"] else "NOT met"
                    parts.append(f"{floor(c[key])}× {label} (target ≥ {c[key + '_target']}×: {ok})")
            if c.get("best_ceiling_pct") is not None:
                need = CEILING_TARGET.get(c.get("best_precision"), 0)
                ok = "met" if c["best_ceiling_pct"] >= need else "NOT met"
                parts.append(
                    f"model compute {floor(c['best_ceiling_pct'], 1)}% of its precision's ceiling (target ≥ {need}%: {ok})"
                )
            if c.get("e2e_vs_model_only") is not None:
                ok = "met" if c["e2e_vs_model_only"] >= E2E_TARGET else "NOT met"
                parts.append(
                    f"end-to-end questions/s {floor(100 * c['e2e_vs_model_only'], 1)}% of model-only rows/s "
                    f"(target ≥ {100 * E2E_TARGET:.0f}%: {ok})"
                )
            out.append(f"- **{model}**: " + "; ".join(parts))
            if "fastest" in c:
                extra = ", ".join(
                    f"{c[k]:.2f}× {label}"
                    for k, label in (("fastest_x_hf_pipeline", "HF pipeline"), ("fastest_x_optimum_int8", "Optimum ORT int8"))
                    if k in c
                )
                out.append(f"  - fastest spanqa target, F1 guard aside: {c['fastest']} ({extra})")
        standin = report["models"].get("standin", {})
        f1s = [
            f"{r['system']} {floor(100 * r['f1_vs_spanqa_fp32'])}%"
            for r in standin.get("rows", [])
            if r.get("spanqa") and r.get("f1_vs_spanqa_fp32")
        ]
        if f1s:
            out.append(f"- F1 relative to spanqa cpu-fp32 on the stand-in (guard ≥ {100 * F1_RATIO:.1f}%): " + ", ".join(f1s))
    return "\n".join(out)


def fmt(x, spec=".2f", missing="–"):
    return missing if x is None else format(x, spec)


def floor(x, digits: int = 2, missing: str = "–") -> str:
    """``x`` cut (not rounded) to ``digits`` decimals: a figure under a bar never prints at or
    over it (99.46% is not 99.5%)."""
    if x is None:
        return missing
    scale = 10**digits
    return f"{math.floor(x * scale) / scale:.{digits}f}"
