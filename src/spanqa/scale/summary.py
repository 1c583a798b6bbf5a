"""summary.json of a Ray run: a local run's keys where they mean the same, the fixed costs
apart from answering, and a timeline per worker. Everything is aggregated in SQLite from the
store's ``calls`` and ``actors`` tables, so its size does not grow with the input (the per-call
``batch_timings`` are sampled down to at most ``MAX_TIMINGS`` entries).
"""

from __future__ import annotations

import json
import math
import resource
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spanqa import __version__

if TYPE_CHECKING:
    from spanqa.scale.ray_job import RayRun
    from spanqa.scale.store import Store

MAX_TIMINGS = 10_000  # batch_timings entries at most
MAX_SPANS = 50  # busy spans per worker in its timeline at most
SPAN_GAP_S = 1.0  # idle gaps shorter than this do not split a busy span


def ray_summary(store: Store, run: RayRun, inputs, package, engine, settings, wall: dict) -> dict[str, Any]:
    """The summary of this run (``run``) of the job in ``store``."""
    from spanqa.sysinfo import cpu_info

    t0, execute = run.timings["t0"], run.timings["execute"]
    stats = store.input_stats()
    calls = _call_totals(store, run.run)
    actors = _actor_costs(store, run.run, execute)
    answer_s = calls["last_end"] - calls["first_start"] if calls["calls"] else 0.0
    fixed = {
        "cluster_start_s": run.cluster["start_s"],
        "actor_start_s": actors["actor_start_s"],
        "model_load_s": actors["model_load_s"],
        # From the whole pool's model loaded to the first call: reading and parsing the first
        # file (Ray Data starts the reads once the pool is up).
        "first_block_s": max(0.0, calls["first_start"] - actors["pool_ready"]) if calls["calls"] else 0.0,
    }
    timings = dict(fixed, load_s=actors["model_load_s"], answer_s=answer_s)
    timings.update({k: calls[k] for k in ("preprocess_s", "inference_s", "answers_s")})
    timings.update(wall)
    info = actors["info"]
    # VmHWM, not getrusage's ru_maxrss: that one survives exec, so a driver started by a large
    # process (a test runner) would report its parent's size.
    memory = _driver_memory()
    return {
        "spanqa_version": __version__,
        "engine": "ray",
        "dataset": [str(p) for p in inputs],
        "dataset_sha256": _sha256s(inputs),
        "model": str(Path(package.root).resolve()),
        "model_sha256": package.sha256(),
        "target": package.target,
        "precision": package.precision,
        "guarded": package.manifest.guarded,
        "runtime": info.get("runtime") or {"name": package.runtime},
        "threads": settings.threads_per_worker,  # per worker
        "cpu": cpu_info(),  # the driver's
        "questions": stats["questions"],
        "features": stats["features"],
        "real_tokens": calls["real_tokens"],
        "settings": {
            "features": store.feature_settings() or (asdict(engine.features) if engine.features else None),
            "answers": asdict(engine.answers),
            "batching": asdict(engine.batching),
            "batch_size": engine.batch_size,
            "fixed_shape": info.get("fixed_shape"),
            "ray": {k: v for k, v in asdict(settings).items() if k != "address"},
        },
        "timings_s": timings,
        "fixed_costs_s": fixed,
        # As a local run's: questions over the answering wall time, fixed costs excluded.
        "end_to_end_questions_per_s": run.answered / answer_s if answer_s else math.nan,
        "job_questions_per_s": run.answered / wall["wall_s"] if wall.get("wall_s") else math.nan,
        "model_rows_per_s": calls["model_rows_per_s"],
        "inference": _inference(store, run.run, calls, answer_s),
        "batch_timings": _batch_timings(store, run.run, calls),
        "ray": {k: v for k, v in run.cluster.items() if k != "hosts"},
        "workers": _workers(store, run, t0),
        "runs": store.runs(),
        "answered_this_run": run.answered,
        "resumed": run.skipped,
        "driver_peak_rss_mb": memory.get("VmHWM", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "driver_memory_mb": memory,
    }


def _driver_memory() -> dict[str, float]:
    """The driver's resident memory (Linux): its peak (VmHWM), and now by kind: anonymous (its
    heap), file-backed (mapped libraries) and shared memory (Ray's object store pages it read)."""
    out: dict[str, float] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return out


def _sha256s(inputs) -> dict[str, str | None]:
    """sha256 of each local input file (read in chunks); None for a remote or directory one."""
    from spanqa.fileutil import sha256_file

    out: dict[str, str | None] = {}
    for p in inputs:
        path = Path(p)
        out[str(p)] = sha256_file(path) if "://" not in str(p) and path.is_file() else None
    return out


def _call_totals(store: Store, run: int) -> dict[str, Any]:
    sql = (
        "SELECT COUNT(*), MIN(start), MAX(end), SUM(questions), SUM(features), SUM(real_tokens), SUM(model_batches), "
        "SUM(model_rows), SUM(padded_rows), SUM(preprocess_s), SUM(inference_s), SUM(answers_s) FROM calls WHERE run = ?"
    )
    keys = ("calls", "first_start", "last_end", "questions", "features", "real_tokens", "model_batches", "model_rows")
    keys += ("padded_rows", "preprocess_s", "inference_s", "answers_s")
    out = {k: (v or 0) for k, v in zip(keys, next(store.query(sql, (run,))))}
    # The cluster's model rate: each worker's rows over its own busy time, summed.
    per_worker = store.query("SELECT SUM(model_rows), SUM(inference_s) FROM calls WHERE run = ? GROUP BY worker", (run,))
    out["model_rows_per_s"] = sum(r / s for r, s in per_worker if s) or math.nan
    return out


def _actor_costs(store: Store, run: int, execute: float) -> dict[str, Any]:
    """Actor start (from the job's start to the slowest actor's constructor) and model load
    (the slowest actor's), over each worker's first process (restarts come later)."""
    rows = list(store.query("SELECT worker, MIN(started), ready, info FROM actors WHERE run = ? GROUP BY worker", (run,)))
    if not rows:  # every question was committed by an earlier run
        info = next(store.query("SELECT info FROM actors LIMIT 1"), ["{}"])[0]
        return {"actor_start_s": 0.0, "model_load_s": 0.0, "pool_ready": execute, "info": json.loads(info)}
    return {
        "actor_start_s": max(0.0, max(r[1] for r in rows) - execute),
        "model_load_s": max(r[2] - r[1] for r in rows),
        "pool_ready": max(r[2] for r in rows),
        "info": json.loads(rows[0][3]),
    }


def _inference(store: Store, run: int, calls: dict, answer_s: float) -> dict[str, Any]:
    """The keys of a local run's ``inference`` (InferenceStats.to_json), over every model
    batch of every worker; latency percentiles computed by SQLite over all of them."""
    db = store.db
    db.execute("DROP TABLE IF EXISTS temp.lat")
    db.execute("CREATE TEMP TABLE lat(ms REAL)")
    db.execute("INSERT INTO lat SELECT j.value FROM calls, json_each(calls.latencies) j WHERE calls.run = ?", (run,))
    n, total, low, high = db.execute("SELECT COUNT(*), SUM(ms), MIN(ms), MAX(ms) FROM lat").fetchone()
    latency = None
    if n:
        latency = {"min": low, "mean": total / n, "median": _percentile(db, n, 50), "p90": _percentile(db, n, 90)}
        latency.update(p99=_percentile(db, n, 99), max=high)
    db.execute("DROP TABLE temp.lat")
    rows = calls["model_rows"]
    return {
        "batches": calls["model_batches"],
        "rows": rows,
        "padded_rows": calls["padded_rows"],
        "batch_size": None,
        "warmup": 0,
        "loop": 1,
        "timed_runs": n,
        "throughput_rows_per_s": rows * 1000.0 / total if total else None,
        "latency_ms": latency,
        "average_ms": total / n if n else None,
        "average_ms_without_first": total / n if n else None,
        "inference_s": (total or 0.0) / 1000.0,  # summed over workers: their busy model time
        "wall_s": answer_s,
        "streams": 1,
    }


def _percentile(db, n: int, q: float) -> float:
    """numpy's default (linear) percentile over the ``lat`` table."""
    pos = (n - 1) * q / 100.0
    lo = math.floor(pos)
    values = [r[0] for r in db.execute("SELECT ms FROM lat ORDER BY ms LIMIT 2 OFFSET ?", (lo,))]
    if len(values) == 1 or pos == lo:
        return values[0]
    return values[0] + (values[1] - values[0]) * (pos - lo)


def _batch_timings(store: Store, run: int, calls: dict) -> dict[str, Any]:
    """Per actor call (every k-th when there are more than MAX_TIMINGS): when it ended (s from
    the first call's start), its wall time and its features (the rows it ran)."""
    every = max(1, math.ceil(calls["calls"] / MAX_TIMINGS))
    out: dict[str, Any] = {"done_s": [], "latency_ms": [], "rows": [], "every": every, "unit": "actor call"}
    sql = "SELECT start, end, features FROM calls WHERE run = ? ORDER BY end"
    for i, (start, end, features) in enumerate(store.query(sql, (run,))):
        if i % every == 0:
            out["done_s"].append(round(end - calls["first_start"], 6))
            out["latency_ms"].append(round((end - start) * 1000.0, 4))
            out["rows"].append(features)
    return out


def _workers(store: Store, run: RayRun, t0: float) -> dict[str, dict]:
    """Per worker: its node, host, processes, questions, busy seconds and rate, and its
    timeline (seconds from the job's start): started, model loaded, busy spans."""
    workers: dict[str, dict] = {}
    for worker, node, pid, started, ready in store.query(
        "SELECT worker, node, pid, started, ready FROM actors WHERE run = ? ORDER BY worker, started", (run.run,)
    ):
        w = workers.setdefault(worker, {"node": node, "host": run.cluster["hosts"].get(node, node), "pids": []})
        w["pids"].append(pid)  # more than one: the actor was restarted
        w.setdefault("timeline", {"started_s": round(started - t0, 3), "model_loaded_s": round(ready - t0, 3)})
    sql = "SELECT worker, start, end, questions FROM calls WHERE run = ? ORDER BY worker, start"
    spans: dict[str, list] = {}
    for worker, start, end, questions in store.query(sql, (run.run,)):
        w = workers[worker]
        w["questions"] = w.get("questions", 0) + questions
        w["seconds"] = w.get("seconds", 0.0) + (end - start)
        s = spans.setdefault(worker, [])
        if s and start - t0 - s[-1][1] < SPAN_GAP_S:
            s[-1][1], s[-1][2] = end - t0, s[-1][2] + questions
        else:
            s.append([start - t0, end - t0, questions])
            if len(s) > 4 * MAX_SPANS:  # bounded however long the run
                spans[worker] = _coarsen(s)
    for worker, w in workers.items():
        w.setdefault("questions", 0)
        w.setdefault("seconds", 0.0)
        w["questions_per_s"] = w["questions"] / w["seconds"] if w["seconds"] else math.nan
        busy = _coarsen(spans.get(worker, []))
        w["timeline"]["busy"] = [[round(a, 3), round(b, 3), q] for a, b, q in busy]
        if busy:
            w["timeline"]["first_answer_s"], w["timeline"]["last_answer_s"] = round(busy[0][0], 3), round(busy[-1][1], 3)
    return dict(sorted(workers.items()))


def _coarsen(spans: list) -> list:
    """At most MAX_SPANS spans: the shortest gaps are closed first."""
    while len(spans) > MAX_SPANS:
        gaps = sorted(range(1, len(spans)), key=lambda i: spans[i][0] - spans[i - 1][1])
        closing = set(gaps[: len(spans) - MAX_SPANS])
        merged = [spans[0]]
        for i in range(1, len(spans)):
            if i in closing:
                merged[-1] = [merged[-1][0], spans[i][1], merged[-1][2] + spans[i][2]]
            else:
                merged.append(spans[i])
        spans = merged
    return spans
