"""The parent side's inputs: the machine, the question subsets, the models and their conversions."""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
HELDOUT = SHARED / "data" / "squad" / "dev-v1.1-heldout.json"
DEV = SHARED / "data" / "squad" / "dev-v1.1.json"
STANDIN = SHARED / "models" / "standin-minilm-squad"


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def machine_info(threads: int) -> dict:
    model, flags = "unknown", set()
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        cpuinfo = []
    for line in cpuinfo:
        if line.lower().startswith("model name") and model == "unknown":
            model = line.split(":", 1)[1].strip()
        elif line.startswith("flags") and not flags:
            flags = set(line.split(":", 1)[1].split())
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8") if f in flags]
    return {
        "cpu": model,
        "cores": cores(),
        "threads": threads,
        "isa": isa,
        "python": platform.python_version(),
        "load_avg": os.getloadavg(),
    }


def write_subset(heldout: Path, n: int, out: Path) -> int:
    """Every (total/n)-th question of the held-out file, articles and paragraphs kept in order."""
    data = json.loads(heldout.read_text(encoding="utf-8"))
    total = sum(len(p["qas"]) for a in data["data"] for p in a["paragraphs"])
    n = min(n, total)
    keep = {int(i * total / n) for i in range(n)}
    k = 0
    articles = []
    for a in data["data"]:
        paragraphs = []
        for p in a["paragraphs"]:
            qas = []
            for qa in p["qas"]:
                if k in keep:
                    qas.append(qa)
                k += 1
            if qas:
                paragraphs.append({"context": p["context"], "qas": qas})
        if paragraphs:
            articles.append({"title": a["title"], "paragraphs": paragraphs})
    out.write_text(json.dumps({"version": data.get("version", "1.1"), "data": articles}), encoding="utf-8")
    return n


def write_calibration(dev: Path, heldout: Path, out: Path) -> None:
    """The dev articles that are not held out (the stand-in trained on them): int8 calibration
    inputs never overlap the questions it is scored on."""
    held = {a["title"] for a in json.loads(heldout.read_text(encoding="utf-8"))["data"]}
    data = json.loads(dev.read_text(encoding="utf-8"))
    data["data"] = [a for a in data["data"] if a["title"] not in held]
    out.write_text(json.dumps(data), encoding="utf-8")


def make_base_checkpoint(out: Path) -> Path:
    if not (out / "config.json").is_file():
        sys.path.insert(0, str(ROOT / "tests"))
        from models import SPANBERT_BASE, bert_config, make_checkpoint

        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        make_checkpoint(tmp, bert_config(**SPANBERT_BASE), std=0.05)
        tmp.rename(out)
    return out


def make_hf_dir(checkpoint: Path, out: Path) -> Path:
    """The checkpoint as a Hugging Face directory the peers load: weights plus vocab.txt and a
    tokenizer_config.json from which every transformers version builds the same fast tokenizer."""
    if (out / "config.json").is_file():
        return out
    from spanqa.models.checkpoint import load_checkpoint

    loaded = load_checkpoint(checkpoint)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    loaded.model.save_pretrained(tmp)
    shutil.copyfile(loaded.info.tokenizer.vocab_path, tmp / "vocab.txt")
    config = {"do_lower_case": loaded.info.tokenizer.do_lower_case, "tokenizer_class": "BertTokenizer", "model_max_length": 512}
    (tmp / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    tmp.rename(out)
    return out


def make_package(checkpoint: Path, target: str, out: Path, calibration: Path) -> Path:
    from spanqa.models.manifest import MANIFEST_NAME
    from spanqa.settings import CompileSettings
    from spanqa.targets.compile import convert_checkpoint

    if not (out / MANIFEST_NAME).is_file():
        # The accuracy guard is measured by this script itself (F1 against spanqa fp32, per row).
        convert_checkpoint(
            checkpoint, out, CompileSettings(target=target, calibration=str(calibration), unguarded=target != "cpu-fp32")
        )
    return out


def model_config(hf_dir: Path) -> dict:
    cfg = json.loads((hf_dir / "config.json").read_text())
    return {k: cfg[k] for k in ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads")}


def prepare_model(model: str, work: Path, calibration: Path, targets: list[str], say) -> tuple[Path, Path, dict]:
    checkpoint = STANDIN if model == "standin" else make_base_checkpoint(work / "base-checkpoint")
    hf_dir = make_hf_dir(checkpoint, work / f"{model}-hf")
    packages = {}
    for target in targets:
        out = work / "packages" / f"{model}-{target}"
        if not out.exists():
            say(f"  converting {model} for {target} ...")
        try:
            packages[target] = str(make_package(checkpoint, target, out, calibration))
        except Exception as exc:
            say(f"  spanqa {target} on {model}: conversion failed: {type(exc).__name__}: {exc}")
    return checkpoint, hf_dir, packages
