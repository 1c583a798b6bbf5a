"""spanqa against its peers: one run, same machine, same questions, same thread count.

    # once: the peers live in their own venv so their pins never touch the project's environment
    python -m venv --system-site-packages /tmp/peers-venv
    /tmp/peers-venv/bin/pip install -r benchmarks/requirements-peers.txt

    python benchmarks/peers.py [--peers-python /tmp/peers-venv/bin/python] [--threads 2]
        [--models standin,base] [--questions-standin 1000] [--questions-base 300]
        [--systems SUBSTRING,...] [--repeats 1] [--work /tmp/spanqa-peers] [--json out.json]

Systems (rows), each run in its own fresh process (``worker``) with the same thread count; each
module's docstring says how its system is set up:
  HF pipeline (PyTorch eager)       hf_pipeline.py       (peers venv)
  PyTorch eager, batched 384        torch_eager.py
  Optimum ORT fp32 / int8           optimum_ort.py       (peers venv)
  optimum-intel OpenVINO            optimum_openvino.py  (peers venv)
  spanqa <target>                   spanqa_targets.py    (every target of SPANQA_TARGETS)

Models: the stand-in (../shared/models/standin-minilm-squad, 6 x 384, scored only on the held-out
dev articles) and a random SpanBERT-base-shaped model (12 x 768, std 0.05; speed does not depend on
weight values, so its F1 means nothing). Questions: a fixed subset of dev-v1.1-heldout.json taken
evenly through the file (so context lengths are representative), the same for every system.

Timing: each system first answers the first 8 questions of the subset (warm-up, untimed), then the
whole subset once per --repeats; the median pass is reported. A pass is end to end: question and
context strings in, answer strings out (tokenising, windows, model, answer extraction), reading the
JSON and scoring excluded. "model s" is the time inside the model's forward/run calls alone.
F1/EM: spanqa.answers.scoring.score (the official v1.1 metric) over the same subset.

Model FLOPs (stated in the output): per sequence of padded length L,
  2 * P * L + 4 * layers * hidden * L^2,   P = layers * (4 * hidden^2 + 2 * hidden * intermediate) + 2 * hidden
(the weight matmuls, then QK^T and attention x V; embeddings, softmax, LayerNorm and GELU are not
counted). "model GFLOP/s" uses the shapes each system actually ran (its padding included) over its
model time, and is compared with the ceiling of its precision: the best of several matmul kernels
(torch, OpenVINO, ONNX Runtime; ceiling.py) on 2048 x 2048 x 2048, measured in the same run with the
same threads. "useful" counts only real tokens (L = real length), so padding shows as the gap
between the two.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from .base import Context, System
from .ceiling import matmul_worker
from .prepare import DEV, HELDOUT, cores, machine_info, model_config, prepare_model, write_calibration, write_subset
from .spanqa_targets import target_of
from .systems import all_systems
from .table import add_ceilings, best_ceilings, finish, measured_row, render
from .worker import run_worker, worker


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="peers.py", description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", default="standin,base", help="comma list of: standin, base")
    ap.add_argument("--questions-standin", type=int, default=1000, help="timed questions on the stand-in")
    ap.add_argument("--questions-base", type=int, default=300, help="timed questions on the SpanBERT-base-shaped model")
    ap.add_argument("--questions", type=int, help="set both counts")
    ap.add_argument("--threads", type=int, default=None, help="threads for every system (default: all cores)")
    ap.add_argument("--repeats", type=int, default=1, help="timed passes per system (median reported)")
    ap.add_argument("--systems", default="", help="comma list of substrings; run only matching systems")
    ap.add_argument("--peers-python", default="/tmp/peers-venv/bin/python", help="interpreter with the peers installed")
    ap.add_argument(
        "--work",
        type=Path,
        default=Path(tempfile.gettempdir()) / "spanqa-peers",
        help="cache of converted models, exports and logs",
    )
    ap.add_argument("--fresh", action="store_true", help="delete --work first (converted models, exports) and rebuild everything")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per system before it is reported as unavailable")
    ap.add_argument("--json", type=Path, help="also write the raw numbers here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    threads = args.threads or cores()
    if args.worker == "matmul":
        return matmul_worker(args.out, threads)
    if args.worker:
        return worker(args.worker, args.spec, args.out)

    if args.questions:
        args.questions_standin = args.questions_base = args.questions
    work = args.work.resolve()
    if args.fresh and work.exists():
        shutil.rmtree(work)
    (work / "logs").mkdir(parents=True, exist_ok=True)
    (work / "cache").mkdir(exist_ok=True)
    report: dict[str, Any] = {"machine": machine_info(threads), "threads": threads, "repeats": args.repeats, "models": {}}

    wanted = [s.strip().lower() for s in args.systems.split(",") if s.strip()]
    systems = [s for s in all_systems() if not wanted or any(w in s.name.lower() for w in wanted)]
    calibration = work / "calibration-dev-train-articles.json"
    if not calibration.is_file():
        write_calibration(DEV, HELDOUT, calibration)

    report["matmul"] = {"runs": []}
    measure_ceilings(report, work, "start", args.timeout, threads)

    targets = [target_of(s) for s in systems if s.spanqa]
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        say(f"[{model}] preparing ...")
        checkpoint, hf_dir, packages = prepare_model(model, work, calibration, targets, say)
        n = args.questions_standin if model == "standin" else args.questions_base
        subset = work / f"{model}-subset-{n}.json"
        n = write_subset(HELDOUT, n, subset)
        ctx = Context(model, str(hf_dir), str(checkpoint), packages, str(subset), threads, args.repeats, str(work / "cache"))
        rows = run_systems(ctx, systems, work, args.peers_python, args.timeout)
        report["models"][model] = {"config": model_config(hf_dir), "questions": n, "rows": rows}

    report["machine"]["load_avg_end"] = os.getloadavg()
    measure_ceilings(report, work, "end", args.timeout, threads)
    add_ceilings(report)
    finish(report)
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def measure_ceilings(report: dict, work: Path, when: str, timeout: float, threads: int) -> None:
    """One run of the matmul worker; the ceilings are the best of the runs so far (start and end),
    each kernel's own figure a median of 7."""
    say(f"matmul ceilings ({when}, {threads} threads) ...")
    out = work / f"matmul-{when}.json"
    code, tail = run_worker(
        sys.executable,
        ["--worker", "matmul", "--out", str(out), "--threads", str(threads)],
        work / "logs" / f"matmul-{when}.log",
        timeout,
        threads,
    )
    run = json.loads(out.read_text()) if code == 0 else {"gflops": {}, "errors": {"worker": tail}}
    run["when"], run["load_avg"] = when, os.getloadavg()
    report["matmul"]["runs"].append(run)
    report["matmul"].update(best_ceilings(report["matmul"]["runs"]))


def run_systems(ctx: Context, systems: list[System], work: Path, peers_python: str, timeout: float) -> list[dict]:
    """One row per system on ``ctx``'s model and subset, each measured by a worker process."""
    from spanqa.data.squad import read_squad

    spec = work / f"{ctx.model}-spec.json"
    spec.write_text(json.dumps(dataclasses.asdict(ctx)))
    cfg = model_config(Path(ctx.hf_dir))
    gold = read_squad(Path(ctx.subset))
    peers_ok = Path(peers_python).is_file()
    rows = []
    for system in systems:
        row: dict[str, Any] = {"system": system.name, "precision": system.precision, "spanqa": system.spanqa}
        rows.append(row)
        if system.env == "peers" and not peers_ok:
            row["unavailable"] = f"no peers interpreter at {peers_python} (see requirements-peers.txt)"
            continue
        if system.spanqa and target_of(system) not in ctx.packages:
            row["unavailable"] = "conversion failed (see stderr)"
            continue
        say(f"[{ctx.model}] {system.name} on {len(gold)} questions ...")
        out = work / f"{ctx.model}-{_slug(system.name)}.json"
        out.unlink(missing_ok=True)
        python = sys.executable if system.env == "project" else peers_python
        log = work / "logs" / f"{ctx.model}-{_slug(system.name)}.log"
        code, tail = run_worker(
            python,
            ["--worker", system.name, "--spec", str(spec), "--out", str(out), "--threads", str(ctx.threads)],
            log,
            timeout,
            ctx.threads,
        )
        if not out.is_file():
            row["unavailable"] = f"worker exited {code}: {tail} (log: {log})"
            continue
        res = json.loads(out.read_text())
        if "unavailable" in res:
            row["unavailable"] = res["unavailable"]
            continue
        measured_row(row, res, cfg, gold)
        say(f"    {row['questions_per_s']:.2f} q/s, F1 {row['f1']:.2f}")
    return rows


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
