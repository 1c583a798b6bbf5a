"""The LoadGen table of docs/loadgen.md: MLPerf's scenarios on the engine, `spanqa serve` and the
pipeline-in-FastAPI peer, one run, same machine, same questions, 2 threads everywhere.

    # once: the peer server needs transformers 4.x (as benchmarks/serve_load.py says)
    python -m venv --system-site-packages /tmp/serve-peer-venv
    /tmp/serve-peer-venv/bin/pip install transformers==4.57.6 tokenizers==0.22.2 huggingface_hub==0.36.2

    PYTHONPATH=src python benchmarks/loadgen_table.py [--models standin,base] [--threads 2]
        [--questions 500] [--duration 60] [--min-queries 512] [--peak-steps 5]
        [--peer-python /tmp/serve-peer-venv/bin/python] [--work /tmp/spanqa-loadgen-table] [--json out.json]

For each model (the stand-in, and a random SpanBERT-base-shaped model, both converted for
cpu-int8 as benchmarks/peers.py converts them), each row a `spanqa loadgen` run in its own process:
  Offline       in process                samples/s (LoadGen's Offline, the engine's batching)
  Server peak   in process / spanqa serve / peer   the highest VALID Poisson rate (find-peak, a
                bisection of full Server runs from the Offline rate down) within the bound:
                130 ms p99 for the stand-in (MLPerf BERT's), 1 s for the SpanBERT-base shape
  SingleStream  in process / spanqa serve           p50 and p90 (ms), one query after another
Then the issue's targets, each met or not with its figures. Servers run on 127.0.0.1 with
--threads-per-replica THREADS (spanqa serve) or torch.set_num_threads(THREADS) (the peer).
Run it on a quiet machine: the load average is recorded beside every row.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

BOUND_MS = {"standin": 130.0, "base": 1000.0}
NAMES = {"standin": "stand-in (MiniLM-L6, 6 x 384)", "base": "SpanBERT-base shape (12 x 768, random)"}


def loadgen(args, out: Path, *extra: str) -> dict:
    """One `spanqa loadgen` run in a fresh process; its loadgen.json (None figures on failure)."""
    cmd = [sys.executable, "-m", "spanqa", "-q", "loadgen", str(args.subset), "--out", str(out), "--overwrite"]
    cmd += ["--duration", str(args.duration), "--min-queries", str(args.min_queries), *extra]
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    env.pop("SPANQA_API_KEY", None)
    print("$", " ".join(cmd[2:]), flush=True)
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        print(p.stderr[-2000:], flush=True)
        return {"rows": [], "peak": None, "error": (p.stderr.strip().splitlines() or ["?"])[-1]}
    print(p.stdout, flush=True)
    return json.loads((out / "loadgen.json").read_text())


def measure(args, model: str, package: str, checkpoint: Path) -> dict:
    from serve_load import start_peer, start_serve, stop, wait_ready

    work = args.work / model
    bound = str(BOUND_MS[model])
    threads = str(args.threads)
    steps = str(args.peak_steps)
    res: dict = {"model": model, "bound_ms": BOUND_MS[model], "load": {}}

    def load(name: str) -> None:
        res["load"][name] = os.getloadavg()[0]

    load("offline")
    offline = loadgen(args, work / "offline", "--model", package, "--threads", threads)
    res["offline"] = offline
    rate = _first(offline, "Offline", "samples_per_s")
    upper = [] if rate is None else ["--target-qps", f"{rate:.4g}"]
    load("peak_engine")
    res["peak_engine"] = loadgen(args, work / "peak-engine", "--model", package, "--threads", threads,
                                 "--mode", "find-peak", "--latency-ms", bound, "--peak-steps", steps, *upper)  # fmt: skip
    load("ss_engine")
    res["ss_engine"] = loadgen(args, work / "ss-engine", "--model", package, "--threads", threads, "--scenario", "singlestream")
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    env.pop("SPANQA_API_KEY", None)
    ns = argparse.Namespace(threads=args.threads, serve_args="", model=str(checkpoint), peer_python=args.peer_python)
    url, proc, path = start_serve(package, ns, env)
    try:
        wait_ready(url, proc, path)
        load("peak_serve")
        res["peak_serve"] = loadgen(args, work / "peak-serve", "--url", url, "--mode", "find-peak", "--latency-ms", bound,
                                    "--peak-steps", steps, *upper)  # fmt: skip
        load("ss_serve")
        res["ss_serve"] = loadgen(args, work / "ss-serve", "--url", url, "--scenario", "singlestream")
    finally:
        stop(proc)
    if args.skip_peer or not Path(args.peer_python).is_file():
        res["peak_peer"] = {"rows": [], "peak": None, "error": f"not run ({args.peer_python} absent or --skip-peer)"}
        return res
    url, proc, path = start_peer(ns, env)
    try:
        wait_ready(url, proc, path)
        load("peak_peer")
        # The peer saturates at a few q/s: start the search at a tenth of the engine's Offline rate.
        peer_upper = [] if rate is None else ["--target-qps", f"{rate / 10:.4g}"]
        res["peak_peer"] = loadgen(args, work / "peak-peer", "--url", url, "--mode", "find-peak", "--latency-ms", bound,
                                   "--peak-steps", steps, *peer_upper)  # fmt: skip
    finally:
        stop(proc)
    return res


def _first(report: dict, scenario: str, key: str):
    for row in report.get("rows", []):
        if row["scenario"] == scenario:
            return row.get(key)
    return None


def _peak(report: dict):
    return (report.get("peak") or {}).get("qps")


def fmt(value, spec: str = ".1f") -> str:
    return "–" if value is None else format(value, spec)


def render(results: list[dict], machine: dict) -> str:
    lines = [
        f"Machine: {machine['cpu']} ({', '.join(machine['flags'])}), {machine['cores']} cores; {machine['threads']} threads everywhere; "
        f"mlcommons-loadgen {machine['loadgen']}; {machine['questions']} held-out questions; runs of at least "
        f"{machine['duration']:g} s and {machine['min_queries']} queries",
        "",
        "| model (cpu-int8) | Offline samples/s | Server peak: in process | spanqa serve | peer | p99 bound | SingleStream p50 / p90 ms: in process | spanqa serve | load avg |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ss = []
        for key in ("ss_engine", "ss_serve"):
            ss.append(f"{fmt(_first(r[key], 'SingleStream', 'p50_ms'))} / {fmt(_first(r[key], 'SingleStream', 'p90_ms'))}")
        loads = [v for v in r["load"].values() if v is not None]
        lines.append(
            f"| {NAMES[r['model']]} | {fmt(_first(r['offline'], 'Offline', 'samples_per_s'), '.2f')} | "
            f"{fmt(_peak(r['peak_engine']), '.3g')} | {fmt(_peak(r['peak_serve']), '.3g')} | {fmt(_peak(r['peak_peer']), '.3g')} | "
            f"{r['bound_ms']:g} ms | {ss[0]} | {ss[1]} | {min(loads):.2f}–{max(loads):.2f} |"
        )
    lines += ["", "Targets:"]
    for r in results:
        offline = _first(r["offline"], "Offline", "samples_per_s")
        eng, srv, peer = _peak(r["peak_engine"]), _peak(r["peak_serve"]), _peak(r["peak_peer"])
        p50_e, p50_s = _first(r["ss_engine"], "SingleStream", "p50_ms"), _first(r["ss_serve"], "SingleStream", "p50_ms")
        checks = []
        if r["model"] == "base" and offline:
            checks.append(
                (
                    "in-process Server peak >= 90% of Offline",
                    eng is not None and eng >= 0.9 * offline,
                    f"{fmt(eng, '.3g')} / {offline:.3g}",
                )
            )
            checks.append(
                (
                    "spanqa serve Server peak >= 80% of Offline",
                    srv is not None and srv >= 0.8 * offline,
                    f"{fmt(srv, '.3g')} / {offline:.3g}",
                )
            )
            checks.append(
                (
                    "spanqa serve >= 5x the peer",
                    bool(srv and peer and srv >= 5 * peer),
                    f"{fmt(srv, '.3g')} vs {fmt(peer, '.3g')}",
                )
            )
        if r["model"] == "standin" and offline:
            checks.append(
                (
                    "spanqa serve VALID at >= 50% of Offline (130 ms)",
                    srv is not None and srv >= 0.5 * offline,
                    f"{fmt(srv, '.3g')} / {offline:.3g}",
                )
            )
        if p50_e is not None and p50_s is not None:
            checks.append(
                ("SingleStream p50: serve within 10 ms of in process", p50_s - p50_e <= 10, f"{p50_s:.1f} vs {p50_e:.1f} ms")
            )
        for name, ok, figures in checks:
            lines.append(f"- {NAMES[r['model']]}: {name}: {'met' if ok else 'NOT met'} ({figures})")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="standin,base")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--questions", type=int, default=500, help="held-out questions (taken evenly through the file)")
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--min-queries", type=int, default=512)
    ap.add_argument("--peak-steps", type=int, default=5)
    ap.add_argument("--peer-python", default="/tmp/serve-peer-venv/bin/python")
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--work", type=Path, default=Path("/tmp/spanqa-loadgen-table"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from importlib.metadata import version

    import mlperf_loadgen  # noqa: F401 - fail before converting anything

    from peers import DEV, HELDOUT, STANDIN, make_base_checkpoint, prepare_model, write_calibration, write_subset
    from spanqa.sysinfo import cpu_info

    args.work.mkdir(parents=True, exist_ok=True)
    args.subset = args.work / "questions.json"
    n = write_subset(HELDOUT, args.questions, args.subset)
    calibration = args.work / "calibration.json"
    write_calibration(DEV, HELDOUT, calibration)
    cpu = cpu_info()
    machine = {"cpu": cpu["model"], "flags": cpu["flags"], "cores": cpu["cores"], "threads": args.threads, "questions": n,
               "loadgen": version("mlcommons-loadgen"), "duration": args.duration, "min_queries": args.min_queries}  # fmt: skip
    results = []
    started = time.monotonic()
    for model in args.models.split(","):
        _, _, packages = prepare_model(model, args.work, calibration, ["cpu-int8"], print)
        checkpoint = STANDIN if model == "standin" else make_base_checkpoint(args.work / "base-checkpoint")
        results.append(measure(args, model, packages["cpu-int8"], checkpoint))
    table = render(results, machine)
    print()
    print(table)
    print(f"\n({(time.monotonic() - started) / 60:.0f} minutes)")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "results": results, "table": table}, indent=2))


if __name__ == "__main__":
    main()
