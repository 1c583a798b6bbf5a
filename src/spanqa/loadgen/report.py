"""The rows of a LoadGen run and the one table ``spanqa loadgen`` ends with."""

from __future__ import annotations

import os
from collections import Counter

SCENARIO_NAMES = {"offline": "Offline", "server": "Server", "singlestream": "SingleStream"}


def machine_info(threads: int | None) -> dict:
    """The CPU (model, the flags that decide the targets), its usable cores, the threads."""
    from spanqa.sysinfo import cpu_info

    cpu = cpu_info()
    return {
        "cpu": cpu["model"],
        "flags": cpu["flags"],
        "cores": cpu["cores"],
        "threads": threads,
        "load_1min": round(os.getloadavg()[0], 2),
    }


def row_from_log(log, spec, sut: str, failures: Counter, load: float) -> dict:
    """One table row from a test's logs. Failed requests make a VALID LoadGen run INVALID:
    LoadGen timed an answer that never came."""
    failed = sum(failures.values())
    reasons = list(log.reasons)
    result = {True: "VALID", False: "INVALID", None: "n/a"}[log.valid]
    if failed:
        reasons.append(f"{failed} samples failed ({', '.join(f'{k} x{v}' for k, v in failures.most_common(3))})")
        result = "INVALID"
    offline = spec.scenario == "offline"
    row = {
        "scenario": SCENARIO_NAMES[spec.scenario],
        "mode": "accuracy" if spec.accuracy else "performance",
        "sut": sut,
        "target_qps": spec.target_qps if spec.scenario == "server" else None,
        "latency_bound_ms": spec.latency_ms if spec.scenario == "server" else None,
        "result": result if not spec.accuracy else "accuracy",
        "reasons": reasons if not spec.accuracy else [],
        "samples_per_s": log.samples_per_s,
        # Offline is one query: its latency is the run's length, not a user's wait.
        "p50_ms": None if offline else log.latency_ms("50.00"),
        "p90_ms": None if offline else log.latency_ms("90.00"),
        "p99_ms": None if offline else log.latency_ms("99.00"),
        "queries": log.values.get("result_query_count"),
        "samples": log.values.get("effective_samples_per_query", 1) * (log.values.get("result_query_count") or 0),
        "failed": failed,
        "load_1min": round(load, 2),
    }
    if spec.scenario == "singlestream" and "early_stopping_latency_ss" in log.values:
        row["early_stopping_p90_ms"] = log.values["early_stopping_latency_ss"] / 1e6
    return row


def _num(value, spec: str = ".1f") -> str:
    return "–" if value is None else format(value, spec)


def _label(row: dict, rate: bool = False) -> str:
    step = f" #{row['step']}" if "step" in row else ""
    target = f" at {row['target_qps']:.4g} q/s" if rate and row["target_qps"] is not None else ""
    return f"{row['scenario']}{step}{target}"


def table(report) -> str:
    """The rows as one plain table, the machine and the package under it."""
    head = ["scenario", "SUT", "target q/s", "result", "samples/s", "p50 ms", "p90 ms", "p99 ms", "load"]
    lines = []
    for r in report.rows:
        lines.append(
            [
                _label(r),
                r["sut"],
                _num(r["target_qps"], ".4g"),
                r["result"],
                _num(r["samples_per_s"], ".2f"),
                _num(r["p50_ms"]),
                _num(r["p90_ms"]),
                _num(r["p99_ms"]),
                _num(r["load_1min"], ".2f"),
            ]
        )
    widths = [max(len(h), *(len(row[i]) for row in lines)) if lines else len(h) for i, h in enumerate(head)]
    out = ["  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths)))]
    out.append("-" * len(out[0]))
    for row in lines:
        out.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    out.append("-" * len(out[0]))
    for r in report.rows:
        if r["reasons"]:
            out.append(f"{_label(r, rate=True)} INVALID: {'; '.join(r['reasons'])}")
    m = report.machine
    threads = f"{m['threads']} threads" if m["threads"] else "the server's threads"
    out.append(f"machine: {m['cpu']} ({', '.join(m['flags']) or 'no AVX flags'}), {m['cores']} cores, {threads}")
    if report.package:
        p = report.package
        out.append(f"package: {p['target']} ({p['precision']}), {p['model']}")
    if report.peak is not None:
        peak = report.peak
        found = "none VALID" if peak["qps"] is None else f"{peak['qps']:.4g} q/s"
        out.append(f"Server peak within a {peak['latency_ms']:g} ms p99: {found} (searched below {peak['bound']:.4g} q/s)")
    if report.accuracy:
        a = report.accuracy
        em, f1 = (a["exact_match"], a["f1"]) if "exact_match" in a else (a["exact"], a["f1"])
        out.append(f"accuracy: exact match {em:.2f}, F1 {f1:.2f} (from LoadGen's accuracy log)")
    return "\n".join(out)
