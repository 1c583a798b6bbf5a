"""The GPU check: build gpu-fp16 and gpu-trt from the stand-in and a random SpanBERT-base, verify
their logits against fp32, time the recipe's fps table (batch 1-64 at 512) and the length-aware
dataset mode, and write one JSON and one Markdown table. Run it through gpu_check.sh on a machine
with an NVIDIA GPU; ``--cpu-only`` runs the CPU-side parts (arguments, model building, the fp32
reference packages) anywhere, which is what the test suite does.

Budget: it stops starting new work once ``--budget-s`` (default 420 s of the 8 minutes the
device tool lends) has passed, and says what it skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
GPU_TARGETS = ("gpu-fp16", "gpu-trt")
BASE = dict(vocab_size=28996, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
SMALL = dict(vocab_size=28996, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
RECIPE_FIGURES = (
    "Ascend 310P: 45.5 fps at batch 1, 27.8-35.5 fps at batch 4-64; T4 ONNX Runtime: about 10 fps (the recipe's README)"
)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="Where to write gpu_check.json, gpu_check.md and the packages.")
    ap.add_argument("--cpu-only", action="store_true", help="Build models and the fp32 references only (no GPU needed).")
    ap.add_argument("--small", action="store_true", help="A 2-layer random model instead of SpanBERT-base (for tests).")
    ap.add_argument("--batch-sizes", default="1,4,8,16,32,64")
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--questions", type=int, default=1000, help="Held-out questions for the dataset mode.")
    ap.add_argument("--budget-s", type=float, default=420.0)
    args = ap.parse_args(argv)
    try:
        args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    except ValueError:
        ap.error(f"--batch-sizes {args.batch_sizes}: give comma-separated integers, e.g. 1,4,8")
    if not args.batch_sizes or min(args.batch_sizes) < 1:
        ap.error("--batch-sizes: give positive batch sizes, e.g. 1,4,8")
    if not 68 <= args.seq_len <= 512:
        ap.error(f"--seq-len {args.seq_len}: must lie between 68 and 512")
    if args.questions < 1 or args.budget_s <= 0:
        ap.error("--questions and --budget-s must be positive")
    return args


def random_checkpoint(out: Path, config: dict) -> Path:
    """A random BertForQuestionAnswering in Hugging Face format (speed does not depend on weights)."""
    if (out / "config.json").is_file():
        return out
    import torch
    from transformers import BertConfig, BertForQuestionAnswering

    torch.manual_seed(0)
    BertForQuestionAnswering(BertConfig(max_position_embeddings=512, **config)).save_pretrained(out)
    return out


def spanqa(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spanqa", "-q", *args], capture_output=True, text=True, timeout=max(1.0, timeout)
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    left = lambda: args.budget_s - (time.monotonic() - began)  # noqa: E731
    args.out.mkdir(parents=True, exist_ok=True)
    heldout = SHARED / "data" / "squad" / "dev-v1.1-heldout.json"
    models = {"random-base": random_checkpoint(args.out / "random-base", SMALL if args.small else BASE)}
    if not args.small and (SHARED / "models" / "standin-minilm-squad").is_dir():
        models = {"standin": SHARED / "models" / "standin-minilm-squad", **models}
    report: dict = {"machine": machine(), "recipe": RECIPE_FIGURES, "models": {}, "skipped": []}
    targets = ("cpu-fp32",) if args.cpu_only else ("cpu-fp32", *GPU_TARGETS)
    for name, checkpoint in models.items():
        block = report["models"][name] = {"checkpoint": str(checkpoint), "targets": {}}
        for target in targets:
            if left() <= 0:
                report["skipped"].append(f"{name} {target}: out of budget")
                continue
            block["targets"][target] = run_target(name, checkpoint, target, args, heldout, left)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    (args.out / "gpu_check.md").write_text(markdown(report, args))
    print((args.out / "gpu_check.md").read_text())
    return 0


def run_target(name: str, checkpoint: Path, target: str, args, heldout: Path, left) -> dict:
    pkg = args.out / f"{name}-{target}"
    guard = ["--no-guard"] if target != "cpu-fp32" else []
    if not (pkg / "manifest.json").is_file():
        built = spanqa("convert", str(checkpoint), "-o", str(pkg), "--target", target, *guard, timeout=left())
        if built.returncode != 0:
            return {"error": (built.stderr.strip().splitlines() or ["failed"])[-1]}
    manifest = json.loads((pkg / "manifest.json").read_text())
    row = {"package": str(pkg), "verification_max_abs_diff": manifest["verification"]["max_abs_diff"]}
    if args.cpu_only and args.small:
        return row  # the test's CPU-side run stops at building and verifying
    sizes = ",".join(map(str, args.batch_sizes))
    fps = spanqa(
        "bench",
        "--model",
        str(pkg),
        "--batch-sizes",
        sizes,
        "--seq-len",
        str(args.seq_len),
        "--repeat",
        "3",
        "--json",
        timeout=left(),
    )
    row["fps"] = json.loads(fps.stdout) if fps.returncode == 0 else {"error": fps.stderr.strip()[-300:]}
    if heldout.is_file() and left() > 0:
        ds = spanqa(
            "bench",
            "--model",
            str(pkg),
            "--dataset",
            str(heldout),
            "--questions",
            str(args.questions),
            "--batch-sizes",
            "64",
            "--repeat",
            "1",
            "--json",
            timeout=left(),
        )
        row["dataset"] = json.loads(ds.stdout) if ds.returncode == 0 else {"error": ds.stderr.strip()[-300:]}
    return row


def machine() -> dict:
    gpu = None
    try:
        gpu = (
            subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.TimeoutExpired):
        pass
    from spanqa.sysinfo import cpu_info

    return {
        "gpu": gpu,
        "cpu": cpu_info(),
        "python": platform.python_version(),
        "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


def markdown(report: dict, args) -> str:
    sizes = args.batch_sizes
    lines = [
        f"GPU: {report['machine']['gpu'] or 'none'}; CPU: {report['machine']['cpu']['model']}",
        "",
        "| model | target | max abs diff vs fp32 | " + " | ".join(f"fps b{b}" for b in sizes) + " | dataset q/s |",
        "|---|---|---:|" + "---:|" * len(sizes) + "---:|",
    ]
    for name, block in report["models"].items():
        for target, row in block["targets"].items():
            if "error" in row:
                lines.append(f"| {name} | {target} | {row['error']} |" + " |" * (len(sizes) + 1))
                continue
            fps = {r["batch_size"]: r.get("fps", {}).get("median") for r in row.get("fps", {}).get("results", [])}
            ds = [r.get("questions_per_s", {}).get("median") for r in row.get("dataset", {}).get("results", [])]
            cells = [f"{fps[b]:.1f}" if fps.get(b) else "-" for b in sizes] + [f"{ds[0]:.1f}" if ds and ds[0] else "-"]
            lines.append(f"| {name} | {target} | {row['verification_max_abs_diff']:.2e} | " + " | ".join(cells) + " |")
    lines += ["", f"Recipe's figures: {report['recipe']}."]
    if report["skipped"]:
        lines += ["", "Skipped: " + "; ".join(report["skipped"])]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
