"""The worker processes: how the parent starts one (``run_worker``), and what one does
(``worker``): one system, one model, in a fresh process; warm-up, timed passes, and for spanqa the
model-only replay of the last pass's batches."""

from __future__ import annotations

import json
import os
import subprocess
import time
import traceback
from pathlib import Path
from typing import Any

from .base import WARMUP_QUESTIONS, Context, Meter
from .prepare import ROOT
from .systems import all_systems

ENTRY = ROOT / "benchmarks" / "peers.py"  # what each worker process runs


def run_worker(python: str, args: list[str], log: Path, timeout: float, threads: int) -> tuple[int, str]:
    """Run the script with ``args`` under ``python``, output to ``log``: exit code and last line."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false")
    env["PYTHONWARNINGS"] = "ignore"
    with open(log, "w") as f:
        try:
            proc = subprocess.run(
                [python, str(ENTRY), *args],
                stdout=f,
                stderr=subprocess.STDOUT,
                env=env,
                timeout=timeout,
                cwd=ROOT,
            )
            code = proc.returncode
        except subprocess.TimeoutExpired:
            return -1, f"timed out after {timeout:.0f} s"
    tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-1:] or [""]
    return code, tail[0][:200]


def read_items(subset: Path) -> list[tuple[str, str, str]]:
    """(qid, question, context) of every question of a SQuAD file, in file order."""
    data = json.loads(subset.read_text(encoding="utf-8"))["data"]
    return [(qa["id"], qa["question"], p["context"]) for a in data for p in a["paragraphs"] for qa in p["qas"]]


def worker(name: str, spec: Path, out: Path) -> None:
    ctx = Context(**json.loads(spec.read_text()))
    result: dict[str, Any] = {"system": name, "model": ctx.model}
    try:
        system = next(s for s in all_systems() if s.name == name)
        items = read_items(Path(ctx.subset))
        meter = Meter()
        t0 = time.perf_counter()
        answer, info = system.load(ctx, meter)
        result["load_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        answer(items[:WARMUP_QUESTIONS])
        result["warmup_s"] = time.perf_counter() - t0
        passes = []
        for _ in range(ctx.repeats):
            meter.seconds, meter.calls, meter.inputs = 0.0, [], []
            t0 = time.perf_counter()
            predictions = answer(items)
            seconds = time.perf_counter() - t0
            passes.append({"seconds": seconds, "model_s": meter.seconds / meter.streams, "calls": meter.calls})
        median = sorted(passes, key=lambda p: p["seconds"])[(len(passes) - 1) // 2]
        if meter.replay is not None:
            result.update(model_only(meter))
        result.update(info=info, passes=[{k: p[k] for k in ("seconds", "model_s")} for p in passes], median=median)
        result["questions"] = len(items)
        result["predictions"] = predictions
    except ImportError as exc:
        result["unavailable"] = f"not installed here ({exc})"
    except Exception as exc:  # reported as a row, not a crash of the whole benchmark
        traceback.print_exc()
        result["unavailable"] = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"
    out.write_text(json.dumps(result))


def model_only(meter: Meter) -> dict:
    """The last pass's batches again, on the bare runtime, nothing else running."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(meter.streams) as pool:
        t0 = time.perf_counter()
        list(pool.map(lambda batch: meter.replay(*batch), meter.inputs))
        seconds = time.perf_counter() - t0
    rows = int(sum(int(m.any(axis=1).sum()) for *_, m in meter.inputs))
    return {"model_only_s": seconds, "model_only_rows": rows}
