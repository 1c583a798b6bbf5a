"""A local run against ``spanqa run --engine ray`` at equal cores, fixed costs apart (issue #23).

    python benchmarks/ray_bench.py [--model ../shared/models/standin-minilm-squad]
        [--datasets heldout,dev] [--cpus 1,2] [--rounds 2] [--batch-questions 64] [--json out.json]

Rows, for each dataset (the whole file):
  local, T threads      ``spanqa run`` in this process (spanqa.jobs.run.run) with T threads
  ray, N x T            ``spanqa run --engine ray`` (spanqa.scale.report.run_job): a local Ray of
                        N x T CPUs started by the job itself, N actors of T threads
Columns, from each run's own summary.json:
  fixed s               what does not grow with the questions. local: reading the file and
                        loading the model; ray: cluster start + actor start (process, imports)
                        + model load + the first block (reading and parsing the first file once
                        the pool is up), each also listed apart
  answering q/s         questions / answering wall time (fixed costs excluded). local: the
                        engine's predict; ray: first actor call's start to the last one's end
  per question ms       1000 / answering q/s: the cost that grows with the questions
  job s                 the whole run's wall time, end to end (the user's wait)
  vs local              answering q/s and job s against the local run at the same CPUs
Rows run interleaved for --rounds rounds and each keeps its median. Every Ray run's
predictions.json must equal the local run's byte for byte before anything is reported.

Measure on a quiet machine: the load average (``uptime``) is printed first, and a load above
0.5 marks every figure "not a result". Targets (issue #23): answering q/s within 10% of local
at equal cores; the whole dev set end to end within 15%.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATASETS = {
    "heldout": SHARED / "data" / "squad" / "dev-v1.1-heldout.json",
    "dev": SHARED / "data" / "squad" / "dev-v1.1.json",
}


def cpu_flags() -> str:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    return " ".join(f for f in wanted if f in flags) or "none of AVX2/AVX-512/AMX"


def load_average() -> float:
    return os.getloadavg()[0]


def local_row(dataset: Path, package, engine, threads: int, out: Path) -> dict:
    from spanqa.jobs.run import run
    from spanqa.settings import RunSettings

    t0 = time.perf_counter()
    report = run(dataset, package, out, RunSettings(target=package.target, threads=threads, engine=engine))
    job = time.perf_counter() - t0
    t = report.summary["timings_s"]
    return {
        "run": f"local, {threads} thread(s)",
        "cpus": threads,
        "fixed_s": t["read_s"] + t["load_s"],
        "fixed": {"read": t["read_s"], "load": t["load_s"]},
        "answering_qps": report.summary["questions"] / t["wall_s"],
        "job_s": job,
        "predictions": (out / "predictions.json").read_bytes(),
    }


def ray_row(dataset: Path, package, engine, workers: int, threads: int, batch: int, out: Path) -> dict:
    from spanqa.scale.report import run_job
    from spanqa.settings import RaySettings

    settings = RaySettings(workers=workers, threads_per_worker=threads, batch_questions=batch, local_cpus=workers * threads)
    t0 = time.perf_counter()
    report = run_job([str(dataset)], package, out, engine, settings, quiet=True)
    job = time.perf_counter() - t0
    s = report.summary
    fixed = s["fixed_costs_s"]
    return {
        "run": f"ray, {workers} x {threads}",
        "cpus": workers * threads,
        "fixed_s": sum(fixed.values()),
        "fixed": {
            "cluster": fixed["cluster_start_s"],
            "actors": fixed["actor_start_s"],
            "load": fixed["model_load_s"],
            "first block": fixed["first_block_s"],
        },
        "answering_qps": s["end_to_end_questions_per_s"],
        "job_s": job,
        "workers_qps": sum(w["questions_per_s"] for w in s["workers"].values()),
        "predictions": (out / "predictions.json").read_bytes(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(SHARED / "models" / "standin-minilm-squad"))
    ap.add_argument("--datasets", default="heldout,dev", help="comma-separated: heldout, dev, or paths to SQuAD files")
    ap.add_argument("--batch-questions", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds; each row reports its median")
    ap.add_argument("--cpus", default=None, help="comma-separated CPU counts to compare at (default: 1 and all cores)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from spanqa.engine.resolve import resolve_model
    from spanqa.settings import FeatureSettings, RunSettings
    from spanqa.sysinfo import default_threads

    load = load_average()
    cores = default_threads()
    quiet = load < 0.5
    print(f"load average {load:.2f} before the runs ({'quiet' if quiet else 'NOT quiet: figures are not a result'})")
    print(f"{platform.processor() or platform.machine()}, {cores} cores, CPU flags: {cpu_flags()}")
    package, _ = resolve_model(args.model, "cpu-fp32")  # converted once, cached
    features = FeatureSettings.for_model(package.seq_len, package.max_positions)
    engine = replace(RunSettings().engine, features=features)
    shapes = []
    for c in sorted({int(x) for x in args.cpus.split(",")} if args.cpus else {1, cores}):
        shapes += [("local", 1, c), ("ray", c, 1)] + ([("ray", 1, c)] if c > 1 else [])
    report = {"load_average_before": load, "cores": cores, "cpu_flags": cpu_flags(), "datasets": {}}
    for name in args.datasets.split(","):
        dataset = DATASETS.get(name, Path(name))
        rows: dict[str, list[dict]] = {}
        with tempfile.TemporaryDirectory(prefix="ray-bench-") as tmp:
            for r in range(args.rounds):  # interleaved, so drift in the machine's load hits every row alike
                for kind, workers, threads in shapes:
                    out = Path(tmp) / f"{kind}-{workers}x{threads}-{r}"
                    if kind == "local":
                        row = local_row(dataset, package, engine, threads, out)
                    else:
                        row = ray_row(dataset, package, engine, workers, threads, args.batch_questions, out)
                    rows.setdefault(row["run"], []).append(row)
        reference = next(iter(rows.values()))[0]["predictions"]  # a local run's
        for runs in rows.values():
            assert all(x["predictions"] == reference for x in runs), f"{runs[0]['run']}: predictions differ from the local run's"
        table = [_median(runs) for runs in rows.values()]
        report["datasets"][str(dataset)] = table
        _print(dataset, table)
    report["load_average_after"] = load_average()
    print(f"load average {report['load_average_after']:.2f} after the runs")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


def _median(runs: list[dict]) -> dict:
    out = {k: v for k, v in runs[0].items() if k != "predictions"}
    for key in ("fixed_s", "answering_qps", "job_s", "workers_qps"):
        if key in out:
            out[key] = statistics.median(x[key] for x in runs)
    out["fixed"] = {k: statistics.median(x["fixed"][k] for x in runs) for k in out["fixed"]}
    return out


def _print(dataset: Path, table: list[dict]) -> None:
    local = {r["cpus"]: r for r in table if r["run"].startswith("local")}
    print(f"\n{dataset.name}")
    head = f"{'run':<20}{'fixed s':>9}  {'(cluster/actors/load/1st block)':<33}{'answering q/s':>14}{'per q ms':>10}"
    print(head + f"{'vs local':>10}{'job s':>9}{'vs local':>10}")
    for r in table:
        base = local.get(r["cpus"])
        parts = " / ".join(f"{v:.1f}" for v in r["fixed"].values())
        qps_rel = f"{100 * (r['answering_qps'] / base['answering_qps'] - 1):+.1f}%" if base else ""
        job_rel = f"{100 * (r['job_s'] / base['job_s'] - 1):+.1f}%" if base else ""
        print(
            f"{r['run']:<20}{r['fixed_s']:>9.1f}  {parts:<33}{r['answering_qps']:>14.2f}{1000 / r['answering_qps']:>10.2f}"
            f"{qps_rel:>10}{r['job_s']:>9.1f}{job_rel:>10}"
        )


if __name__ == "__main__":
    sys.exit(main())
