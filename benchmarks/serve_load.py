"""Load test: ``spanqa serve`` against the service users write by hand, in one run.

    # once: the peer needs transformers 4.x (transformers 5 dropped the question-answering pipeline)
    python -m venv --system-site-packages /tmp/serve-peer-venv
    /tmp/serve-peer-venv/bin/pip install transformers==4.57.6 tokenizers==0.22.2 huggingface_hub==0.36.2

    PYTHONPATH=src python benchmarks/serve_load.py [--model CHECKPOINT] [--target cpu-fp32 | --package PKG]
        [--threads 2] [--concurrency 1,4,16,64] [--seconds 10] [--questions 400]
        [--peer-python /tmp/serve-peer-venv/bin/python] [--json out.json]

Rows (both servers on 127.0.0.1, the same model and thread count, started once; each concurrency
level measures the three back to back, since other jobs' load on the cores drifts):
  offline Engine       Engine.answer_many over 64 questions at a time, in this process (no HTTP).
  spanqa serve         one replica, --threads-per-replica THREADS, the package of --target.
  pipeline + FastAPI   transformers.pipeline("question-answering") (PyTorch eager, its defaults:
                       384 tokens, stride 128) called from a plain ``def`` FastAPI handler under
                       uvicorn, torch.set_num_threads(THREADS): what a user writes by hand.

Load: an async httpx client, CONCURRENCY requests always in flight, each one question (a held-out
question taken evenly through dev-v1.1-heldout.json, in turn), for --seconds after a short
warm-up; throughput = answered / wall time; latency percentiles over the answered requests. The
client shares the machine's cores with the server (it is the only machine there is).
"""

import argparse
import asyncio
import itertools
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_questions(path: Path, n: int) -> list[dict]:
    data = json.loads(path.read_text())["data"]
    qs = [{"question": qa["question"], "context": p["context"]} for a in data for p in a["paragraphs"] for qa in p["qas"]]
    step = max(1, len(qs) // n)
    return qs[::step][:n]


def wait_ready(url: str, proc: subprocess.Popen, path: str, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited {proc.returncode}")
        try:
            if httpx.get(url + path, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"{url} not ready in {timeout:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def run_level(
    url: str,
    questions: list[dict],
    concurrency: int,
    seconds: float,
    warmup: float = 2.0,
) -> dict:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    failures: dict[int, int] = {}
    counter = itertools.count()
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:

        async def worker(until: float, record: bool) -> None:
            while time.perf_counter() < until:
                q = questions[next(counter) % len(questions)]
                t = time.perf_counter()
                try:
                    r = await client.post("/v1/answer", json={"inputs": q})
                    status = r.status_code
                except httpx.HTTPError as exc:  # a server that drops connections fails them
                    status = type(exc).__name__
                if not record:
                    continue
                if status == 200:
                    latencies.append(time.perf_counter() - t)
                else:
                    failures[status] = failures.get(status, 0) + 1

        await asyncio.gather(*(worker(time.perf_counter() + warmup, False) for _ in range(concurrency)))
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(t0 + seconds, True) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    lat = sorted(latencies)

    def pct(p: float) -> float:
        return 1000 * lat[min(len(lat) - 1, round(p / 100 * (len(lat) - 1)))] if lat else float("nan")

    return {
        "concurrency": concurrency,
        "answered": len(lat),
        "failed": failures,
        "q_per_s": len(lat) / wall,
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "mean_ms": 1000 * statistics.fmean(lat) if lat else float("nan"),
    }


def machine(threads: int) -> dict:
    cpu = platform.machine()
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = [f for f in ("avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in flags]
    return {
        "cpu": cpu,
        "isa": isa,
        "usable_cores": len(os.sched_getaffinity(0)),
        "threads": threads,
        "python": platform.python_version(),
    }


def peer_main(args) -> None:
    """The peer server, run in the peer venv: the hand-written pipeline service."""
    import torch
    import uvicorn
    from fastapi import FastAPI
    from pydantic import BaseModel
    from transformers import pipeline

    torch.set_num_threads(args.threads)
    qa = pipeline("question-answering", model=args.hf_dir, tokenizer=args.hf_dir, device=-1)
    app = FastAPI()

    class Body(BaseModel):
        inputs: dict
        parameters: dict = {}

    @app.post("/v1/answer")
    def answer(body: Body):
        return qa(
            question=body.inputs["question"],
            context=body.inputs["context"],
            **body.parameters,
        )

    @app.get("/healthz")
    def healthz():
        return {"status": "alive"}

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


def table(rows: list[dict]) -> str:
    out = [
        "| system | concurrency | q/s | p50 ms | p95 ms | p99 ms | failed | load avg |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        failed = sum(r["failed"].values()) if r.get("failed") else 0
        lat = " | ".join(f"{r[k]:.0f}" if k in r else "–" for k in ("p50_ms", "p95_ms", "p99_ms"))
        out.append(
            f"| {r['system']} | {r['concurrency']} | {r['q_per_s']:.1f} | {lat} | {failed} | {r.get('load', float('nan')):.1f} |"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(SHARED / "models" / "standin-minilm-squad"))
    ap.add_argument("--target", default="cpu-fp32")
    ap.add_argument("--package", default=None, help="A model package built from --model (default: build it for --target).")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--concurrency", default="1,4,16,64")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--questions", type=int, default=400)
    ap.add_argument("--dataset", default=str(SHARED / "data" / "squad" / "dev-v1.1-heldout.json"))
    ap.add_argument("--peer-python", default="/tmp/serve-peer-venv/bin/python")
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--serve-args", default="", help="Extra options for spanqa serve.")
    ap.add_argument("--json", default=None)
    ap.add_argument("--peer-server", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--hf-dir", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peer_server:
        return peer_main(args)

    from spanqa.serve.server import resolve_package

    levels = [int(c) for c in args.concurrency.split(",")]
    questions = load_questions(Path(args.dataset), args.questions)
    package = args.package or resolve_package(args.model, args.target)
    env = dict(
        os.environ,
        PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    )
    env.pop("SPANQA_API_KEY", None)
    report: dict = {
        "machine": machine(args.threads),
        "package": package,
        "target": args.target,
        "questions": len(questions),
    }
    print(json.dumps(report["machine"]), flush=True)

    from spanqa import progress
    from spanqa.engine import Engine

    progress.set_quiet(True)
    engine = Engine.load(package, threads=args.threads)
    engine.answer_many(questions[:16])  # warm-up
    target = report["target"] = engine.package.target
    servers = {f"spanqa serve ({target})": start_serve(package, args, env)}
    if not args.skip_peer:
        servers["pipeline + FastAPI (PyTorch)"] = start_peer(args, env)
    rows: list[dict] = []
    try:
        for name, (url, proc, path) in servers.items():
            wait_ready(url, proc, path)
        # Other people's jobs share these 2 cores and their load drifts: so every level measures
        # the offline engine, spanqa serve and the peer back to back, each over the same seconds.
        for c in levels:
            load = os.getloadavg()[0]
            t = time.perf_counter()
            done = 0
            while time.perf_counter() - t < args.seconds / 2:
                engine.answer_many(questions[done % len(questions) :][:64])
                done += len(questions[done % len(questions) :][:64])
            rows.append(
                {
                    "system": f"offline Engine ({target})",
                    "concurrency": c,
                    "q_per_s": done / (time.perf_counter() - t),
                    "load": load,
                }
            )
            print(table(rows[-1:]).splitlines()[-1], flush=True)
            for name, (url, _, _) in servers.items():
                load = os.getloadavg()[0]
                rows.append({"system": name, **asyncio.run(run_level(url, questions, c, args.seconds)), "load": load})
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    finally:
        for _, proc, _ in servers.values():
            stop(proc)
        engine.close()

    report["rows"] = rows
    m = report["machine"]
    print()
    print(
        f"Machine: {m['cpu']}, {m['usable_cores']} cores ({', '.join(m['isa'])}); {args.threads} threads each; {len(questions)} held-out questions"
    )
    print(table(rows))
    for c in levels:
        got = {r["system"].split(" (")[0]: r["q_per_s"] for r in rows if r["concurrency"] == c}
        served = got.get("spanqa serve")
        if served and got.get("offline Engine"):
            line = f"concurrency {c}: served / offline {served / got['offline Engine']:.0%}"
            if got.get("pipeline + FastAPI"):
                line += f", served / peer {served / got['pipeline + FastAPI']:.1f}x"
            print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


def start_serve(package: str, args, env: dict):
    port = free_port()
    cmd = [sys.executable, "-m", "spanqa", "serve", "--model", package, "--port", str(port)]
    cmd += ["--threads-per-replica", str(args.threads), *args.serve_args.split()]
    return f"http://127.0.0.1:{port}", subprocess.Popen(cmd, env=env), "/readyz"


def start_peer(args, env: dict):
    sys.path.insert(0, str(HERE))
    from peers import make_hf_dir

    hf_dir = make_hf_dir(Path(args.model), Path(tempfile.gettempdir()) / "spanqa-serve-load" / "hf")
    port = free_port()
    cmd = [
        args.peer_python,
        __file__,
        "--peer-server",
        "--hf-dir",
        str(hf_dir),
        "--port",
        str(port),
        "--threads",
        str(args.threads),
    ]
    return f"http://127.0.0.1:{port}", subprocess.Popen(cmd, env=env), "/healthz"


if __name__ == "__main__":
    main()
