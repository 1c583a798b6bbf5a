"""Where spanqa's int8 model spends its time, and what each alternative execution plan buys.

    python benchmarks/profile_int8.py [--package /tmp/spanqa-peers/packages/base-cpu-int8]
        [--questions 300] [--threads N] [--ceiling GOPS] [--json out.json]

The package is an OpenVINO int8 package (``spanqa convert --target cpu-int8``; benchmarks/peers.py
builds one for the SpanBERT-base shape under /tmp/spanqa-peers). The questions are an evenly spaced
subset of dev-v1.1-heldout.json; their features and the engine's length-aware batch plan are built
once, and every variant below runs exactly those batches (the same rows, shapes and order):

  profile     one batch at a time on every thread (LATENCY hint, dynamic shapes), what is not
              int8 in f32 (the engine before 2026-12-02), with OpenVINO's performance counters on:
              time per node type and kernel (exec type), and how much of it runs in int8
  latency     LATENCY hint, f32 or bf16 outside the int8 kernels, counters off
  throughput  THROUGHPUT hint, one request per stream through ``AsyncInferQueue``, f32 or bf16
              outside the int8 kernels (``spanqa run`` now: throughput, bf16 on a bf16 CPU)
  static      a model reshaped to each batch shape of the plan (compiled once per shape; compile
              time reported apart), LATENCY hint, f32 elsewhere
  budget=N    latency, f32 elsewhere, with other token budgets per batch (re-planned)

Every timed figure is the median of ``--repeats`` passes over the plan after one warm-up pass.
Model operations per sequence of padded length L are those of benchmarks/peers.py
(2·P·L + 4·layers·hidden·L²); GOP/s over the best int8 matmul the machine runs (``--ceiling``, or
measured with peers.py's matmul worker) gives the share of the ceiling.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import peers  # noqa: E402  (benchmarks/ is not a package)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_plan(package_dir: Path, questions: int, budget: int | None = None):
    from spanqa.engine import Engine
    from spanqa.engine.core import examples_from_questions
    from spanqa.models.package import open_package
    from spanqa.settings import BatchingSettings, EngineSettings

    with tempfile.TemporaryDirectory() as tmp:
        subset = Path(tmp) / "subset.json"
        peers.write_subset(peers.HELDOUT, questions, subset)
        items = peers.read_items(subset)
    package = open_package(package_dir)
    settings = EngineSettings() if budget is None else EngineSettings(batching=BatchingSettings(token_budget=budget))

    class NoRuntime:  # the plan needs only the model's fixed shapes (none here)
        batch_size = seq_len = None

    engine = Engine(package, settings=settings, runtime=NoRuntime())
    from spanqa.engine import Question

    examples = examples_from_questions([Question(q, c, qid) for qid, q, c in items])
    features = engine.features(examples)
    from spanqa.engine.batching import gather

    batches = [gather(features.input_ids, features.segment_ids, features.input_mask, b) for b in engine.plan(features)]
    return package, batches, len(items), len(features)


def model_ops(cfg: dict, batches) -> float:
    calls = [(ids.shape[0], ids.shape[1], 0, 0) for ids, _, _ in batches]
    return peers.flops(cfg, calls)[0]


def feeds(batches):
    return [{"input_ids": a, "token_type_ids": b, "attention_mask": c} for a, b, c in batches]


def compile_model(
    package,
    threads: int,
    hint: str = "LATENCY",
    perf: bool = False,
    shape=None,
    cache: str | None = None,
    precision: str | None = None,
):
    import openvino as ov

    core = ov.Core()
    if cache:
        core.set_property({"CACHE_DIR": cache})
    model = core.read_model(str(package.model_path))
    if shape is not None:
        model.reshape({name: ov.PartialShape(list(shape)) for name in ("input_ids", "token_type_ids", "attention_mask")})
    config = {
        "INFERENCE_PRECISION_HINT": precision or package.manifest.inference_precision or "f32",
        "PERFORMANCE_HINT": hint,
        "INFERENCE_NUM_THREADS": threads,
    }
    if perf:
        config["PERF_COUNT"] = True
    return core.compile_model(model, "CPU", config)


def timed_passes(run_pass, repeats: int) -> float:
    run_pass()  # warm-up: first-shape compilation inside the plugin, caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run_pass()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def variant_sync(compiled_for, batch_feeds, repeats: int) -> float:
    requests = {}

    def run_pass():
        for feed in batch_feeds:
            key = feed["input_ids"].shape
            if key not in requests:
                requests[key] = compiled_for(key).create_infer_request()
            requests[key].infer(feed, share_inputs=True)

    return timed_passes(run_pass, repeats)


def variant_throughput(package, threads: int, batch_feeds, repeats: int, precision: str) -> tuple[float, int]:
    import openvino as ov

    compiled = compile_model(package, threads, hint="THROUGHPUT", precision=precision)
    n = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    queue = ov.AsyncInferQueue(compiled, n)

    def run_pass():
        for feed in batch_feeds:
            queue.start_async(feed, share_inputs=True)
        queue.wait_all()

    return timed_passes(run_pass, repeats), n


def profile(package, threads: int, batch_feeds) -> dict:
    compiled = compile_model(package, threads, perf=True, precision="f32")
    request = compiled.create_infer_request()
    for feed in batch_feeds[:2]:
        request.infer(feed, share_inputs=True)
    by_type: dict[tuple[str, str], float] = defaultdict(float)
    by_node: dict[tuple[str, str, str], float] = defaultdict(float)
    total = 0.0
    for feed in batch_feeds:
        request.infer(feed, share_inputs=True)
        for p in request.profiling_info:
            us = p.real_time.total_seconds() * 1e6
            if us <= 0:
                continue
            by_type[(p.node_type, p.exec_type)] += us
            by_node[(p.node_name, p.node_type, p.exec_type)] += us
            total += us
    rows = sorted(({"node_type": k[0], "exec_type": k[1], "ms": v / 1e3} for k, v in by_type.items()), key=lambda r: -r["ms"])
    for r in rows:
        r["share"] = r["ms"] * 1e3 / total
    int8 = sum(r["ms"] for r in rows if any(t in r["exec_type"].lower() for t in ("i8", "u8"))) * 1e3 / total
    # The first layer's nodes by name: what each node type stands for in the graph.
    layer0 = sorted(
        (
            {"node": k[0], "node_type": k[1], "exec_type": k[2], "ms": v / 1e3}
            for k, v in by_node.items()
            if k[0].startswith("/layer.0/")
        ),
        key=lambda r: -r["ms"],
    )
    return {"total_ms": total / 1e3, "int8_share": int8, "ops": rows, "layer0": layer0[:25]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--package", type=Path, default=Path(tempfile.gettempdir()) / "spanqa-peers" / "packages" / "base-cpu-int8")
    ap.add_argument("--hf-config", type=Path, help="config.json with the model's shape (default: the package's)")
    ap.add_argument("--questions", type=int, default=300)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budgets", default="512,2048,4096", help="other token budgets to try (comma list; '' for none)")
    ap.add_argument("--ceiling", type=float, help="int8 matmul ceiling in GOP/s (default: measure it with peers.py's worker)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from spanqa.sysinfo import cpu_flags, default_threads

    threads = args.threads or default_threads()
    package, batches, n_questions, n_features = load_plan(args.package, args.questions)
    cfg_path = args.hf_config or package.root / "config.json"
    cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
    cfg = {k: cfg.get(k) for k in ("num_hidden_layers", "hidden_size", "intermediate_size")}
    if None in cfg.values():
        cfg = peers.model_config(Path(args.package).parent.parent / "base-hf")
    batch_feeds = feeds(batches)
    ops = model_ops(cfg, batches)
    shapes = sorted({f["input_ids"].shape for f in batch_feeds})
    say(f"{n_questions} questions, {n_features} features, {len(batch_feeds)} batches, {len(shapes)} shapes; {threads} threads")
    report = {"machine": peers.machine_info(threads), "cpu_flags": sorted(cpu_flags()), "package": str(args.package)}
    report.update(questions=n_questions, features=n_features, batches=len(batch_feeds), shapes=len(shapes), gops=ops / 1e9)

    ceiling = args.ceiling
    if ceiling is None:
        say("int8 matmul ceiling ...")
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "matmul.json"
            peers.run_worker(sys.executable, ["--worker", "matmul", "--out", str(out)], Path(tmp) / "log", 900, threads)
            kernels = json.loads(out.read_text())["gflops"]["int8"] if out.is_file() else {}
        ceiling = max(kernels.values()) if kernels else None
        report["ceiling_kernels"] = kernels
    report["ceiling_gops"] = ceiling

    say("profile (performance counters, latency, f32 elsewhere) ...")
    report["profile"] = profile(package, threads, batch_feeds)

    variants: dict[str, dict] = {}

    def record(name: str, seconds: float, **extra) -> None:
        gops = ops / seconds / 1e9
        variants[name] = {"seconds": seconds, "rows_per_s": n_features / seconds, "gops": gops, **extra}
        if ceiling:
            variants[name]["ceiling_share"] = gops / ceiling
        say(f"  {name}: {seconds:.2f} s, {n_features / seconds:.1f} rows/s, {gops:.0f} GOP/s")

    say("latency, fp32 outside the int8 kernels (the engine's configuration before 2026-12-02) ...")
    dynamic = compile_model(package, threads, precision="f32")
    record("latency, f32 elsewhere", variant_sync(lambda shape: dynamic, batch_feeds, args.repeats))

    say("latency, bf16 outside the int8 kernels ...")
    plain = compile_model(package, threads, precision="bf16")
    record("latency, bf16 elsewhere", variant_sync(lambda shape: plain, batch_feeds, args.repeats))

    for precision in ("f32", "bf16"):
        say(f"throughput hint, {precision} elsewhere ...")
        seconds, n = variant_throughput(package, threads, batch_feeds, args.repeats, precision)
        record(f"throughput ({n} requests), {precision} elsewhere", seconds, requests=n)

    say(f"static shapes ({len(shapes)} compilations, latency, f32 elsewhere) ...")
    compiled: dict = {}
    t0 = time.perf_counter()
    for shape in shapes:
        compiled[shape] = compile_model(package, threads, shape=shape, precision="f32")
    compile_s = time.perf_counter() - t0
    record("static per shape", variant_sync(lambda shape: compiled[shape], batch_feeds, args.repeats), compile_s=compile_s)

    for budget in [int(b) for b in args.budgets.split(",") if b.strip()]:
        _, other, _, _ = load_plan(args.package, args.questions, budget)
        other_feeds = feeds(other)
        dyn = compile_model(package, threads, precision="f32")
        seconds = variant_sync(lambda shape: dyn, other_feeds, args.repeats)
        # Other budgets pad differently: compare at the same useful work (rows/s), ops of its own plan.
        variants[f"budget={budget}"] = {
            "seconds": seconds,
            "rows_per_s": n_features / seconds,
            "gops": model_ops(cfg, other) / seconds / 1e9,
            "batches": len(other_feeds),
        }
        say(f"  budget={budget}: {seconds:.2f} s, {n_features / seconds:.1f} rows/s")
    report["variants"] = variants
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    print(render(report))


def render(report: dict) -> str:
    lines = [
        f"CPU: {report['machine'].get('cpu', '?')}; flags: {', '.join(report['cpu_flags'])}",
        f"{report['questions']} questions, {report['features']} features, {report['batches']} batches "
        f"({report['shapes']} shapes), {report['gops']:.0f} GOP; int8 ceiling {report['ceiling_gops'] or 0:.0f} GOP/s",
        "",
        "| variant | seconds | rows/s | GOP/s | % of int8 ceiling |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, v in report["variants"].items():
        share = f"{100 * v['ceiling_share']:.1f}" if "ceiling_share" in v else "–"
        lines.append(f"| {name} | {v['seconds']:.2f} | {v['rows_per_s']:.1f} | {v['gops']:.0f} | {share} |")
    p = report["profile"]
    lines += [
        "",
        f"Performance counters (engine configuration): {p['total_ms']:.0f} ms in nodes, {100 * p['int8_share']:.1f}% in int8 kernels",
        "",
        "| node type | kernel | ms | share |",
        "|---|---|---:|---:|",
    ]
    for r in p["ops"][:20]:
        lines.append(f"| {r['node_type']} | {r['exec_type']} | {r['ms']:.0f} | {100 * r['share']:.1f}% |")
    lines += ["", "First layer's nodes:", "", "| node | type | kernel | ms |", "|---|---|---|---:|"]
    for r in p["layer0"]:
        lines.append(f"| {r['node']} | {r['node_type']} | {r['exec_type']} | {r['ms']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
