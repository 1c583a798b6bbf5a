"""The vendor recipe's way against ``spanqa run``: the whole SQuAD v1.1 dev set, same machine, same threads.

    python benchmarks/recipe_vs_spanqa.py [--model base|standin|CHECKPOINT] [--dataset SQUAD.json]
        [--target cpu-int8|auto|...] [--batch-size 8] [--recipe-sample 400] [--threads N]
        [--base-checkpoint DIR] [--spanqa-package DIR] [--work /tmp/spanqa-recipe] [--json out.json]

Sides (rows), every step a separate process of the project's own CLI (``python -m spanqa ...``),
each timed from start to exit (interpreter start, imports and model load included), its peak
memory the child's ``ru_maxrss`` from ``os.wait4``:
  recipe way   ../shared/reference/ascend-spanbert-recipe.md on CPU: every feature padded to 512, a
               fixed batch (--batch-size, default 8), fp32 ONNX Runtime compiled for exactly that
               shape (``spanqa convert --target cpu-fp32 --seq-len 512 --batch-size B``), and three
               processes talking through files: ``spanqa preprocess`` (.bin folders), ``spanqa infer``
               (msame's outputs), ``spanqa evaluate`` (the postprocess script's answers and F1).
  spanqa run   ``spanqa run DATASET --model PACKAGE --target T``: one process, length-aware batches
               under a token budget, the package built for --target (default cpu-int8; 'auto' = what
               ``spanqa run --target auto`` picks on this CPU).
Models are built before anything is timed and cached under --work. Reduced-precision targets are
built with --no-guard (int8 calibrated on the dev articles that are not in dev-v1.1-heldout.json):
on a random model the accuracy guard means nothing; the guard's F1 for each target is measured on
the stand-in model by benchmarks/peers.py (docs/peers.md). ``--model standin`` runs the real
stand-in (../shared/models/standin-minilm-squad) on dev-v1.1-heldout.json, where F1 means something.

Extrapolation (the recipe at 512 fp32 takes ~45+ minutes on 2 cores for the whole set): unless
``--recipe-sample 0``, the recipe's infer and evaluate run on an evenly spaced sample of questions
(benchmarks/peers.py's write_subset) and on a one-question probe; its figures for the whole set are
  preprocess  measured: it runs on the whole set (cheap), which also counts the whole set's features
  infer       process time outside the batch loop + the loop's time (infer's summary.json wall_s)
              x whole-set batches / sample batches (every batch is B x 512, so each costs the same)
  evaluate    a line through (probe features, probe time) and (sample features, sample time),
              read at the whole set's feature count (the fixed start-up cost is not multiplied)
Peak memory of the sampled steps is the sample's (evaluate's grows with the set: the table shows
a lower bound and the same two-point line's estimate). F1/EM: the recipe's on the sample, spanqa's
on the whole set and on the same sample questions (the like-for-like figure), plus how many sample
answers the two sides agree on. Speed-up: spanqa's questions/s over the recipe's, whole set.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "src"))  # measure the checkout this script lives in
sys.path.insert(0, str(BENCH))
import peers  # noqa: E402

SEQ_LEN = 512
MIB = 1024.0  # ru_maxrss is in KiB on Linux


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def child(argv: list, log: Path) -> dict:
    """Run one command to completion; wall time and its own peak RSS (os.wait4's ru_maxrss)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])))
    argv = [str(a) for a in argv]
    with open(log, "w") as f:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(argv)}\n{tail}\n(log: {log})")
    return {"argv": " ".join(argv), "wall_s": wall, "max_rss_mib": usage.ru_maxrss / MIB, "log": str(log)}


def spanqa_cli(*args) -> list:
    return [sys.executable, "-m", "spanqa", *args]


def machine(threads: int) -> dict:
    info = peers.machine_info(threads)
    flags: set[str] = set()
    try:
        line = next(x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("flags"))
        flags = set(line.split(":", 1)[1].split())
    except (OSError, StopIteration):
        pass
    info["isa"] += sorted(f for f in flags if f.startswith("amx") and f not in info["isa"])
    info["load_avg_start"] = info.pop("load_avg")
    return info


def git_commit() -> dict:
    def git(*a):
        return subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def build(checkpoint: Path, out: Path, target: str, extra: list, logs: Path) -> dict:
    """A model package by ``spanqa convert`` (untimed for the comparison; cached in --work)."""
    if (out / "manifest.json").is_file():
        return {"package": str(out), "cached": True}
    say(f"  building {out.name} ({target}) ...")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    step = child(spanqa_cli("convert", checkpoint, "-o", tmp, "--target", target, *extra, "-q"), logs / f"build-{out.name}.log")
    tmp.rename(out)
    return {"package": str(out), "cached": False, "build_s": step["wall_s"]}


def model_config(checkpoint: Path) -> dict:
    cfg = read_json(checkpoint / "config.json") if (checkpoint / "config.json").is_file() else {}
    return {k: cfg[k] for k in ("num_hidden_layers", "hidden_size", "intermediate_size") if k in cfg}


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def recipe_pass(name: str, dataset: Path, features: Path | None, package: Path, batch: int, threads: int, run: Path) -> dict:
    """preprocess (unless ``features`` are given) -> infer -> evaluate, one process each."""
    steps = {}
    if features is None:
        features = run / f"features-{name}"
        steps["preprocess"] = child(
            spanqa_cli("preprocess", dataset, "-o", features, "--model", package, "--batch-size", batch, "-q"),
            run / f"preprocess-{name}.log",
        )
    outputs, result = run / f"outputs-{name}", run / f"result-{name}"
    steps["infer"] = child(
        spanqa_cli("infer", "--model", package, "--input", features, "-o", outputs, "--threads", threads, "-q"),
        run / f"infer-{name}.log",
    )
    steps["evaluate"] = child(
        spanqa_cli("evaluate", dataset, "--features", features, "--outputs", outputs, "-o", result, "-q"),
        run / f"evaluate-{name}.log",
    )
    manifest = read_json(features / "manifest.json")
    return {
        "dataset": str(dataset),
        "questions": manifest["num_examples"],
        "features": manifest["num_features"],
        "batches": manifest["num_batches"],
        "steps": steps,
        "infer_summary": {k: read_json(outputs / "summary.json")[k] for k in ("batches", "inference_s", "wall_s")},
        "result": read_json(result / "result.json"),
        "predictions": read_json(result / "predictions.json"),
    }


def run_recipe(dataset: Path, package: Path, batch: int, threads: int, sample: int, run: Path) -> dict:
    say("[recipe] preprocess, whole set ...")
    full_features = run / "features-full"
    pre = child(
        spanqa_cli("preprocess", dataset, "-o", full_features, "--model", package, "--batch-size", batch, "-q"),
        run / "preprocess-full.log",
    )
    manifest = read_json(full_features / "manifest.json")
    questions, features, batches = manifest["num_examples"], manifest["num_features"], manifest["num_batches"]
    side: dict[str, Any] = {"questions": questions, "features": features, "batches": batches, "batch_size": batch}
    step = {"preprocess": {**pre, "extrapolated": False, "basis": "measured on the whole set"}}
    if not sample or sample >= questions:
        say(f"[recipe] infer + evaluate, whole set ({features} features) ...")
        full = recipe_pass("full", dataset, full_features, package, batch, threads, run)
        for k in ("infer", "evaluate"):
            step[k] = {**full["steps"][k], "extrapolated": False, "basis": "measured on the whole set"}
        side.update(sample=None, scored=full)
    else:
        subsets = {}
        for name, n in (("probe", 1), ("sample", sample)):
            path = run / f"{name}.json"
            peers.write_subset(dataset, n, path)
            say(f"[recipe] {name}: preprocess, infer, evaluate ({n} question{'s' * (n > 1)}) ...")
            subsets[name] = recipe_pass(name, path, None, package, batch, threads, run)
        p, s = subsets["probe"], subsets["sample"]
        # infer: the batch loop scales with batches (all B x 512), the rest of the process does not
        inf = s["steps"]["infer"]
        loop = s["infer_summary"]["wall_s"]
        infer_s = inf["wall_s"] - loop + loop * batches / s["infer_summary"]["batches"]
        step["infer"] = {
            "wall_s": infer_s,
            "max_rss_mib": inf["max_rss_mib"],
            "extrapolated": True,
            "measured": inf,
            "basis": f"process {inf['wall_s'] - loop:.1f} s outside the batch loop + loop {loop:.1f} s "
            f"x {batches}/{s['batches']} batches",
        }
        # evaluate: the line through the probe and the sample, at the whole set's feature count
        ep, es = p["steps"]["evaluate"], s["steps"]["evaluate"]
        df = s["features"] - p["features"]
        slope = max(0.0, (es["wall_s"] - ep["wall_s"]) / df) if df > 0 else es["wall_s"] / s["features"]
        base = ep["wall_s"] - slope * p["features"] if df > 0 else 0.0
        mem_slope = max(0.0, (es["max_rss_mib"] - ep["max_rss_mib"]) / df) if df > 0 else 0.0
        step["evaluate"] = {
            "wall_s": base + slope * features,
            "max_rss_mib": es["max_rss_mib"],
            "max_rss_mib_estimate": es["max_rss_mib"] + mem_slope * (features - s["features"]),
            "extrapolated": True,
            "measured": es,
            "probe": ep,
            "basis": f"line through ({p['features']} features, {ep['wall_s']:.2f} s) and "
            f"({s['features']} features, {es['wall_s']:.2f} s) at {features} features",
        }
        side.update({name: {k: v[k] for k in ("questions", "features", "batches", "steps")} for name, v in subsets.items()})
        side["scored"] = s
    scored = side.pop("scored")
    side["steps"] = step
    side["wall_s"] = sum(v["wall_s"] for v in step.values())
    side["questions_per_s"] = questions / side["wall_s"]
    side["peak_rss_mib"] = max(v["max_rss_mib"] for v in step.values())
    side["peak_rss_mib_estimate"] = max(v.get("max_rss_mib_estimate", v["max_rss_mib"]) for v in step.values())
    side["extrapolated"] = side["sample"] is not None
    side.update(exact_match=scored["result"]["exact_match"], f1=scored["result"]["f1"], scored_questions=scored["questions"])
    side["predictions"] = scored["predictions"]
    side["scored_dataset"] = scored["dataset"]
    return side


def run_spanqa(dataset: Path, package: Path, target: str, threads: int, run: Path) -> dict:
    say("[spanqa] spanqa run, whole set ...")
    out = run / "result"
    shutil.rmtree(out, ignore_errors=True)
    step = child(
        spanqa_cli("run", dataset, "--model", package, "--target", target, "--threads", threads, "-o", out, "-q"), run / "run.log"
    )
    summary, result = read_json(out / "summary.json"), read_json(out / "result.json")
    return {
        "steps": {"run": {**step, "extrapolated": False, "basis": "measured on the whole set"}},
        "questions": summary["questions"],
        "features": summary["features"],
        "wall_s": step["wall_s"],
        "questions_per_s": summary["questions"] / step["wall_s"],
        "peak_rss_mib": step["max_rss_mib"],
        "exact_match": result["exact_match"],
        "f1": result["f1"],
        "in_process": {k: summary[k] for k in ("end_to_end_questions_per_s", "model_rows_per_s", "timings_s", "runtime")},
        "guarded": summary["guarded"],
        "settings": summary["settings"],
        "predictions": read_json(out / "predictions.json"),
    }


def fmt_s(s: float) -> str:
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def render(r: dict) -> str:
    m, rec, sq = r["machine"], r["recipe"], r["spanqa"]
    sample = rec["sample"]
    how = f"extrapolated from {sample['questions']} of {rec['questions']} questions" if sample else "measured, whole set"
    rec_steps = ", ".join(f"{k} {fmt_s(v['wall_s'])}{'*' if v['extrapolated'] else ''}" for k, v in rec["steps"].items())
    rec_mem = f"≥ {rec['peak_rss_mib']:.0f} (est. {rec['peak_rss_mib_estimate']:.0f})" if sample else f"{rec['peak_rss_mib']:.0f}"
    scope = "sample" if sample else "whole set"
    sq_f1 = f"{sq['f1']:.2f} (whole set)" + (f"; {sq['f1_on_recipe_questions']:.2f} on the recipe's sample" if sample else "")
    out = [
        f"# Recipe's way vs spanqa run — {r['dataset']['name']}, {rec['questions']} questions, {r['model']['label']}",
        "",
        "| side | steps | wall time | questions/s | peak memory MiB | F1 | speed-up |",
        "|---|---|---:|---:|---:|---|---:|",
        f"| recipe way (fp32 ONNX Runtime, 512 × batch {rec['batch_size']}; {how}) | {rec_steps} | "
        f"{fmt_s(rec['wall_s'])} | {rec['questions_per_s']:.2f} | {rec_mem} | {rec['f1']:.2f} ({scope}) | 1.00× |",
        f"| spanqa run ({sq['target']}{', from auto' if r['target_requested'] == 'auto' else ''}) | run {fmt_s(sq['wall_s'])} | "
        f"{fmt_s(sq['wall_s'])} | {sq['questions_per_s']:.2f} | {sq['peak_rss_mib']:.0f} | {sq_f1} | {r['speedup']:.2f}× |",
        "",
    ]
    if sample:
        out.append(
            f"\\* extrapolated to the whole set ({rec['features']} features at 512, {rec['batches']} batches) from an evenly "
            f"spaced sample of {sample['questions']} questions ({sample['features']} features) and a one-question probe: "
            + "; ".join(f"{k}: {v['basis']}" for k, v in rec["steps"].items() if v["extrapolated"])
            + ". Preprocess ran on the whole set. Peak memory of infer/evaluate measured on the sample (≥); "
            "'est.' extends evaluate's along the same two-point line."
        )
    else:
        out.append("Every figure measured on the whole set (--recipe-sample 0).")
    a = r["agreement"]
    out += [
        "",
        f"Wall time: each process from start to exit (start-up, imports, model load included); models built beforehand, "
        f"not timed. Threads: {r['threads']} on both sides. spanqa's own figure (in process): "
        f"{sq['in_process']['end_to_end_questions_per_s']:.2f} questions/s.",
        f"Answers: the two sides give the same answer on {a['same']} of {a['questions']} {scope} questions "
        f"(recipe EM {rec['exact_match']:.2f}, spanqa EM {sq['exact_match_on_recipe_questions']:.2f} on them).",
        f"Model: {r['model']['label']}. {r['model']['f1_note']}",
        f"spanqa {r['spanqa_version']}, commit {(r['git']['commit'] or 'unknown')[:12]}{' (dirty)' if r['git']['dirty'] else ''}. "
        f"CPU: {m['cpu']}, {m['cores']} cores; ISA: {', '.join(m['isa']) or 'none of avx2/avx512/amx'}; "
        f"load average at start {m['load_avg_start'][0]:.2f}, at end {m['load_avg_end'][0]:.2f}.",
    ]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="base", help="base (random SpanBERT-base shape), standin, or a checkpoint directory")
    ap.add_argument("--base-checkpoint", type=Path, help="the random base checkpoint [default: WORK/base-checkpoint, made once]")
    ap.add_argument("--dataset", type=Path, help="SQuAD v1.1 JSON [default: dev-v1.1.json; stand-in: dev-v1.1-heldout.json]")
    ap.add_argument("--target", help="spanqa run's target, or 'auto' [default: cpu-int8, or --spanqa-package's]")
    ap.add_argument("--spanqa-package", type=Path, help="a model package already built for spanqa's side (used as it is)")
    ap.add_argument("--batch-size", type=int, default=8, help="the recipe's fixed batch size")
    ap.add_argument("--recipe-sample", type=int, default=400, help="questions the recipe's infer/evaluate run on (0: all)")
    ap.add_argument("--threads", type=int, help="inference threads for both sides (default: all cores)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "spanqa-recipe", help="models, runs, logs")
    ap.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = ap.parse_args()
    if args.batch_size < 1 or args.recipe_sample < 0:
        ap.error("--batch-size must be >= 1 and --recipe-sample >= 0")

    from spanqa import __version__
    from spanqa.answers.scoring import score
    from spanqa.data.squad import read_squad
    from spanqa.registry import TARGETS

    threads = args.threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    work = args.work.resolve()
    (work / "logs").mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"machine": machine(threads), "threads": threads, "spanqa_version": __version__, "git": git_commit()}

    if args.model == "base":
        checkpoint = peers.make_base_checkpoint((args.base_checkpoint or work / "base-checkpoint").resolve())
        key, label = "base", "random SpanBERT-base shape"
        note = "Random weights: F1 means nothing here (speed does not depend on weights)."
    elif args.model == "standin":
        checkpoint, key, label = peers.STANDIN, "standin", "stand-in MiniLM-L6 fine-tuned on SQuAD"
        note = "A trained model: F1 is meaningful on held-out questions only (dev-v1.1-heldout.json)."
    else:
        checkpoint = Path(args.model).resolve()
        key = f"{checkpoint.name}-{hashlib.sha1(str(checkpoint).encode()).hexdigest()[:8]}"
        label, note = f"checkpoint {checkpoint}", "F1 is meaningful only if the checkpoint is trained."
    dataset = (args.dataset or (peers.HELDOUT if args.model == "standin" else peers.DEV)).resolve()
    if args.model == "standin" and dataset == peers.DEV.resolve():
        ap.error("the stand-in trained on the dev articles that are not held out: score it on dev-v1.1-heldout.json")
    given = read_json(args.spanqa_package / "manifest.json")["target"] if args.spanqa_package else None
    target = args.target or given or "cpu-int8"
    if target == "auto":
        from spanqa.targets.suitability import auto_target

        target = auto_target()
        say(f"--target auto: {target}")
    if target not in TARGETS:
        ap.error(f"--target {target}: not one of {', '.join(TARGETS)} or auto")
    if given and given != target:
        ap.error(f"--spanqa-package {args.spanqa_package} is built for {given}, not --target {target}")
    precision = TARGETS[target].precision
    report.update(target_requested=args.target or target, dataset={"path": str(dataset), "name": dataset.name})
    report["model"] = {"name": args.model, "label": label, "checkpoint": str(checkpoint), "config": model_config(checkpoint)}

    say(f"[{key}] building models (untimed) ...")
    packages = work / "packages"
    packages.mkdir(exist_ok=True)
    b = args.batch_size
    shape = ["--batch-size", b, "--seq-len", SEQ_LEN]
    recipe_pkg = build(checkpoint, packages / f"{key}-recipe-cpu-fp32-{b}x{SEQ_LEN}", "cpu-fp32", shape, work / "logs")
    if args.spanqa_package:
        spanqa_pkg = {"package": str(args.spanqa_package.resolve()), "cached": True}
    else:
        extra = ["--no-guard"] if precision != "fp32" else []
        if precision == "int8":
            calibration = work / "calibration-dev-train-articles.json"
            if not calibration.is_file():
                peers.write_calibration(peers.DEV, peers.HELDOUT, calibration)
            extra += ["--calibration", calibration]
        spanqa_pkg = build(checkpoint, packages / f"{key}-{target}", target, extra, work / "logs")
    report["packages"] = {"recipe": recipe_pkg, "spanqa": spanqa_pkg}

    runs = work / "runs" / key
    shutil.rmtree(runs, ignore_errors=True)
    (runs / "recipe").mkdir(parents=True)
    (runs / "spanqa").mkdir(parents=True)
    rec = run_recipe(dataset, Path(recipe_pkg["package"]), b, threads, args.recipe_sample, runs / "recipe")
    sq = run_spanqa(dataset, Path(spanqa_pkg["package"]), target, threads, runs / "spanqa")
    sq.update(target=target, precision=precision)
    if precision != "fp32":
        note += f" spanqa's {target} package was built " + (
            "with the accuracy guard."
            if sq["guarded"]
            else "with --no-guard"
            + (" (on a random model the guard means nothing)" if args.model == "base" else "")
            + "; the guard's F1 for this target against fp32 is measured on the stand-in by benchmarks/peers.py (docs/peers.md)."
        )
    report["model"]["f1_note"] = note
    if sq["questions"] != rec["questions"]:
        raise SystemExit(f"the sides answered different question counts: recipe {rec['questions']}, spanqa {sq['questions']}")

    # The same questions on both sides: spanqa's answers scored on the recipe's (sample) questions.
    gold = read_squad(rec.pop("scored_dataset"))
    rec_pred, sq_pred = rec.pop("predictions"), sq.pop("predictions")
    on_sample = score(gold, {ex.qas_id: sq_pred.get(ex.qas_id, "") for ex in gold})
    sq.update(f1_on_recipe_questions=on_sample["f1"], exact_match_on_recipe_questions=on_sample["exact_match"])
    same = sum(rec_pred.get(ex.qas_id) == sq_pred.get(ex.qas_id) for ex in gold)
    report["agreement"] = {"questions": len(gold), "same": same, "same_share": same / len(gold) if gold else math.nan}
    report.update(recipe=rec, spanqa=sq, speedup=sq["questions_per_s"] / rec["questions_per_s"])
    report["machine"]["load_avg_end"] = os.getloadavg()
    table = render(report)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        say(f"wrote {args.json}")


if __name__ == "__main__":
    main()
