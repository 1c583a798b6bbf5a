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

Reliability (``--reliability``; tests/test_serve_faults.py runs the same functions): the server's
capacity measured with a closed loop, then an open loop offering --overload times that rate for
--seconds, long and short contexts alternating, one question a request; every request is counted
as answered (200), refused (JSON 503), timed out (JSON 504), failed (JSON 500) or lost (no JSON
answer within --request-timeout + 5 s, or a connection dropped after it was sent); the replica's
resident memory before and after, and the p50 latency of one-at-a-time requests while idle and
5 s after the offered load stops.

    PYTHONPATH=src python benchmarks/serve_load.py --reliability [--package PKG] [--threads 1]
        [--seconds 60] [--overload 4] [--serve-args "--max-queued-tokens 4096"] [--json out.json]
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
from dataclasses import dataclass, field
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


def wait_ready(url: str, proc: subprocess.Popen, path: str, timeout: float = 300, every: float = 0.5) -> list:
    """Poll ``path`` until 200; what each poll got: (seconds, status or exception name, body)."""
    import httpx

    trace = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"server exited {proc.returncode}")
        try:
            r = httpx.get(url + path, timeout=2)
            trace.append((time.monotonic() - t0, r.status_code, r.text))
            if r.status_code == 200:
                return trace
        except httpx.HTTPError as exc:
            trace.append((time.monotonic() - t0, type(exc).__name__, ""))
        time.sleep(every)
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


# ----------------------------------------------------------------------------------------------
# Reliability: overload, faults (the tests in tests/test_serve_faults.py use these)


def mixed_questions(path: Path, n: int) -> list[dict]:
    """``n`` held-out questions alternating between the shortest and the longest third of the
    contexts."""
    data = json.loads(path.read_text())["data"]
    qs = [{"question": qa["question"], "context": p["context"]} for a in data for p in a["paragraphs"] for qa in p["qas"][:1]]
    qs.sort(key=lambda q: len(q["context"]))
    third = len(qs) // 3
    short, long = qs[:third], qs[-third:]
    step = max(1, third // max(1, n // 2))
    return [q for pair in zip(short[::step], long[::step]) for q in pair][:n]


@dataclass
class Tally:
    """What became of every request sent. ``lost``: sent, and no JSON answer within the
    client's limit (a dropped connection, a hang); ``plain``: an answer that was not JSON."""

    sent: int = 0
    answered: int = 0
    refused: int = 0
    timed_out: int = 0
    failed: int = 0
    lost: int = 0
    plain: int = 0
    not_connected: int = 0  # the server was gone before the request could be sent
    statuses: dict = field(default_factory=dict)
    latencies: list = field(default_factory=list)  # seconds, 200s only
    slowest_s: float = 0.0
    first_ok_after: float | None = None  # perf_counter of the first 200 sent after ``mark``
    mark: float | None = None
    notes: list = field(default_factory=list)
    events: list = field(default_factory=list)  # (perf_counter sent, status) of every request
    retry_after_s: float = 1.0  # the last 503's Retry-After
    bodies: dict = field(default_factory=dict)  # a few answer bodies of each status but 200

    def row(self) -> dict:
        return {
            k: getattr(self, k) for k in ("sent", "answered", "refused", "timed_out", "failed", "lost", "plain", "not_connected")
        }


async def send(client, body: dict, tally: Tally, limit_s: float) -> int | str:
    import httpx

    t = time.perf_counter()
    try:
        r = await client.post("/v1/answer", json=body, timeout=limit_s)
    except httpx.ConnectError:
        tally.not_connected += 1
        return "not connected"
    except httpx.HTTPError as exc:
        tally.sent += 1
        tally.lost += 1
        tally.events.append((t, type(exc).__name__))
        if len(tally.notes) < 5:
            tally.notes.append(f"{type(exc).__name__} after {time.perf_counter() - t:.1f} s")
        return type(exc).__name__
    took = time.perf_counter() - t
    tally.sent += 1
    tally.events.append((t, r.status_code))
    if r.status_code != 200 and len(tally.bodies.setdefault(r.status_code, [])) < 5:
        tally.bodies[r.status_code].append(r.text)
    tally.slowest_s = max(tally.slowest_s, took)
    tally.statuses[r.status_code] = tally.statuses.get(r.status_code, 0) + 1
    if r.headers.get("content-type") != "application/json":
        tally.plain += 1
        if len(tally.notes) < 5:
            tally.notes.append(f"{r.status_code} {r.headers.get('content-type')}: {r.text[:80]}")
        return r.status_code
    if r.status_code == 200:
        tally.answered += 1
        tally.latencies.append(took)
        if tally.mark is not None and tally.first_ok_after is None and t > tally.mark:
            tally.first_ok_after = time.perf_counter()
    elif r.status_code == 503:
        tally.refused += 1
        tally.retry_after_s = float(r.headers.get("retry-after", 1))
    elif r.status_code == 504:
        tally.timed_out += 1
    else:
        tally.failed += 1
    return r.status_code


def _client(url: str, headers: dict | None, limit_s: float):
    import httpx

    limits = httpx.Limits(max_connections=None, max_keepalive_connections=256)
    return httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=httpx.Timeout(limit_s, pool=None))


async def open_loop(url: str, bodies: list[dict], rate: float, seconds: float, limit_s: float, headers=None) -> Tally:
    """Offer ``rate`` requests a second for ``seconds``, whatever the answers (an open loop)."""
    tally = Tally()
    async with _client(url, headers, limit_s) as client:
        t0 = time.perf_counter()
        tasks = []
        for i in range(int(rate * seconds)):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(send(client, bodies[i % len(bodies)], tally, limit_s)))
        await asyncio.gather(*tasks)
    return tally


async def closed_loop(
    url: str,
    bodies: list[dict],
    workers: int,
    seconds: float,
    limit_s: float,
    headers=None,
    tally: Tally | None = None,
    until=None,
    stop=None,
) -> Tally:
    """``workers`` requests always in flight for ``seconds`` or until ``stop`` (an asyncio.Event)
    is set, each worker waiting out a 503's Retry-After; once ``until`` (an asyncio.Event) is set,
    a worker quits at its first 503 or refused connection (the server is draining)."""
    tally = tally or Tally()
    counter = itertools.count()
    async with _client(url, headers, limit_s) as client:
        end = time.perf_counter() + seconds

        async def worker():
            while time.perf_counter() < end and not (stop is not None and stop.is_set()):
                got = await send(client, bodies[next(counter) % len(bodies)], tally, limit_s)
                if until is not None and until.is_set() and got in (503, "not connected"):
                    return
                if got == 503:  # a client that backs off as told
                    await asyncio.sleep(min(tally.retry_after_s, 5.0))

        await asyncio.gather(*(worker() for _ in range(workers)))
    return tally


async def sequential_p50(url: str, bodies: list[dict], limit_s: float, headers=None) -> float:
    """The median latency (s) of ``bodies`` sent one at a time."""
    tally = Tally()
    async with _client(url, headers, limit_s) as client:
        for body in bodies:
            await send(client, body, tally, limit_s)
    return statistics.median(tally.latencies) if tally.latencies else float("inf")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def replica_pid(url: str, headers: dict) -> int:
    import httpx

    return int(httpx.get(url + "/readyz", headers=headers, timeout=10).json()["replica"]["pid"])


async def overload(url: str, headers: dict, bodies: list[dict], factor: float, seconds: float, timeout_s: float) -> dict:
    """The overload run: idle p50, capacity (a closed loop), ``factor`` x capacity offered for
    ``seconds``, p50 again 5 s after the offered load stops; the replica's RSS before and after."""
    pid = replica_pid(url, headers)
    probe = bodies[:20]  # 10 short, 10 long contexts
    await sequential_p50(url, probe, timeout_s, headers)  # warm-up
    idle_p50 = await sequential_p50(url, probe, timeout_s, headers)
    cap = await closed_loop(url, bodies, 8, 8.0, timeout_s + 5, headers)
    capacity = cap.answered / 8.0
    rss_before = rss_mib(pid)
    load_before = os.getloadavg()[0]
    offered = asyncio.ensure_future(open_loop(url, bodies, factor * capacity, seconds, timeout_s + 5, headers))
    await asyncio.sleep(seconds + 5)  # 5 s after the last request was offered
    after_p50 = await sequential_p50(url, probe, timeout_s, headers)
    tally = await offered
    return {
        "capacity_rps": capacity,
        "offered_rps": factor * capacity,
        "seconds": seconds,
        "idle_p50_ms": idle_p50 * 1000,
        "after_p50_ms": after_p50 * 1000,
        "rss_before_mib": rss_before,
        "rss_after_mib": rss_mib(pid),
        "slowest_s": tally.slowest_s,
        "statuses": tally.statuses,
        "notes": tally.notes,
        "load_avg": [load_before, os.getloadavg()[0]],
        **tally.row(),
    }


def reliability_main(args) -> None:
    from spanqa.serve.server import resolve_package

    package = args.package or str(resolve_package(args.model, args.target).root)
    key = "serve-load-key"
    env = dict(os.environ, SPANQA_API_KEY=key, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    url, proc, path = start_serve(package, args, env)
    headers = {"Authorization": f"Bearer {key}"}
    try:
        wait_ready(url, proc, path)
        bodies = [{"inputs": q} for q in mixed_questions(Path(args.dataset), 60)]
        timeout_s = args.request_timeout
        report = {"machine": machine(args.threads), "package": package}
        report["overload"] = asyncio.run(overload(url, headers, bodies, args.overload, args.seconds, timeout_s))
    finally:
        stop(proc)
    report["exit_code"] = proc.returncode
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


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
    ap.add_argument("--reliability", action="store_true", help="The overload run instead of the throughput table.")
    ap.add_argument("--overload", type=float, default=4.0, help="--reliability: offered load, times the capacity.")
    ap.add_argument("--request-timeout", type=float, default=30.0, help="--reliability: the server's --request-timeout.")
    ap.add_argument("--peer-server", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--hf-dir", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peer_server:
        return peer_main(args)
    if args.reliability:
        return reliability_main(args)

    from spanqa.serve.server import resolve_package

    levels = [int(c) for c in args.concurrency.split(",")]
    questions = load_questions(Path(args.dataset), args.questions)
    package = args.package or str(resolve_package(args.model, args.target).root)
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
    extra = ["--threads-per-replica", str(args.threads), *args.serve_args.split()]
    if getattr(args, "reliability", False):
        extra += ["--request-timeout", str(args.request_timeout)]
    # The access log (one line a request) would flood the terminal: it goes nowhere here.
    url, proc = launch(package, extra, env, stdout=subprocess.DEVNULL)
    return url, proc, "/readyz"


def launch(package: str, extra: list[str], env: dict, stdout=None, stderr=None) -> tuple[str, subprocess.Popen]:
    """``spanqa serve`` on a free loopback port."""
    port = free_port()
    cmd = [sys.executable, "-m", "spanqa", "serve", "--model", package, "--port", str(port), *extra]
    return f"http://127.0.0.1:{port}", subprocess.Popen(cmd, env=env, stdout=stdout, stderr=stderr)


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
