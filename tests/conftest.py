"""Shared fixtures. Helpers that build models live in tests/models.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/models.py
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference"))  # reference/squad_reference.py

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

# pytest-xdist workers share the machine's cores: each worker (and every process it starts) gets
# its share of threads, and idle pool threads sleep rather than spin. Measured on 2 cores: a Ray
# test took 7 s alone, 105 s beside a 2-thread spinning ONNX Runtime run, 58 s beside the same
# run not spinning and 11 s beside a 1-thread run. Set before anything loads OpenMP (torch).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    from spanqa.sysinfo import usable_cores

    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, usable_cores() // _WORKERS)))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# pytest-xdist (`-n 2 --dist loadgroup`, the README's test command): a module's tests stay on
# one worker, so its module fixtures are built once. The long groups go first, in this order
# (xdist's own reordering by test count is turned off): the length-aware held-out run and the
# padded held-out runs, each on a worker of its own (they share the stand-in package through the
# reference cache's lock), then the Ray tests, then the documents that start `spanqa serve`
# (they take turns on port 8000: tests/test_docs.py). Every document is a group of its own.
XDIST_GROUPS = {
    "heldout": ("test_engine", "test_jobs_run"),
    "heldout-padded": ("test_offline_infer",),
    "ray": ("test_scale", "test_scale_faults", "test_scale_memory", "test_serve_api", "test_serve_faults",
            "test_serve_ingress", "test_loadgen_url"),
}  # fmt: skip


def pytest_configure(config):
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False  # the order below, not xdist's by test count


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    group_of = {module: group for group, modules in XDIST_GROUPS.items() for module in modules}
    groups, serving = {}, set()
    for item in items:
        group = group_of.get(item.path.stem, item.path.stem)
        command = getattr(getattr(item, "callspec", None), "params", {}).get("command")
        if item.path.stem == "test_docs" and command is not None:
            group = f"docs-{command.doc}"  # a document's commands run in order in one directory
            if item.module.starts_server(command.text):
                serving.add(group)
        groups[item] = group
        item.add_marker(pytest.mark.xdist_group(group))
    first = [*XDIST_GROUPS, *sorted(serving)]
    items.sort(key=lambda item: first.index(groups[item]) if groups[item] in first else len(first))  # stable


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "data").is_dir():
        pytest.skip(f"{SHARED} is absent: the real SQuAD data and stand-in model live there")
    return SHARED


@pytest.fixture(scope="session")
def dev_json(shared_dir) -> Path:
    return shared_dir / "data" / "squad" / "dev-v1.1.json"


@pytest.fixture(scope="session")
def heldout_json(shared_dir) -> Path:
    return shared_dir / "data" / "squad" / "dev-v1.1-heldout.json"


@pytest.fixture(scope="session")
def standin_dir(shared_dir) -> Path:
    return shared_dir / "models" / "standin-minilm-squad"


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A 2-layer random SpanBERT-format checkpoint (cased vocab size, no vocab file)."""
    from models import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt")


@pytest.fixture(scope="session")
def tiny_package(tiny_checkpoint, tmp_path_factory) -> Path:
    """The tiny checkpoint converted to a cpu-fp32 model package (dynamic shapes)."""
    from spanqa.targets.compile import convert_checkpoint

    out = tmp_path_factory.mktemp("tinypkg") / "pkg"
    convert_checkpoint(tiny_checkpoint, out)
    return out


@pytest.fixture(scope="session")
def fixed_package(tiny_package, tmp_path_factory) -> Path:
    """The tiny model compiled for fixed [4, 96] inputs (the .om style; 96: compile refuses a fixed
    length too short for a 64-piece question)."""
    from spanqa.settings import CompileSettings
    from spanqa.targets.compile import compile_model

    out = tmp_path_factory.mktemp("fixedpkg") / "pkg"
    compile_model(tiny_package / "exported.onnx", out, CompileSettings(batch_size=4, seq_len=96))
    return out


@pytest.fixture(scope="session")
def tiny_features(tiny_package, tmp_path_factory):
    """Features of five questions about two passages for the tiny model, at 96 tokens (its
    fixed_package's length): 17 features, so batches of 4 and 8 end with padding rows."""
    from spanqa.data.features import build_features
    from spanqa.data.squad import read_squad
    from spanqa.models.package import open_package
    from spanqa.settings import FeatureSettings
    from squad_files import tiny_squad_json

    path = tiny_squad_json(tmp_path_factory.mktemp("squad") / "tiny.json")
    features = build_features(read_squad(path), open_package(tiny_package).tokenizer, FeatureSettings(96, 16, 16))
    assert len(features) % 4 and len(features) % 8, len(features)  # the last batch is padded
    return features


@pytest.fixture(scope="session")
def standin_package(standin_dir) -> Path:
    """The real stand-in QA model converted to a cpu-fp32 model package: built once, and kept in
    the reference cache under a key of the checkpoint, the library versions and the conversion
    code (tests/reference_cache.py). Tests only read it."""
    import onnx
    import onnxruntime
    import torch

    from reference_cache import SRC, cached_dir, content_key
    from spanqa.targets.compile import convert_checkpoint

    key = content_key(
        *(sorted(p for p in standin_dir.iterdir() if p.is_file())),
        torch.__version__,
        onnx.__version__,
        onnxruntime.__version__,
        SRC,
    )
    return cached_dir("standin-package", key, lambda root: convert_checkpoint(standin_dir, root / "pkg")) / "pkg"


# ---------------------------------------------------------------------------------------------
# The stand-in model on the held-out questions, shared by the offline infer, engine and run tests.
# Every question by default; SPANQA_HELDOUT_STRIDE=k takes every k-th question instead (a quick
# local run). Measured on 2 idle cores at 2 threads (2026-12-08, AVX-512): PyTorch over every
# feature 208 s (tests/torch_reference.py: committed, read in a second), the length-aware pass
# ('spanqa run') 143 s, 'spanqa infer' at 512 tokens 88 s (bs8, every 5th feature) and 43 s (bs1,
# every 10th; it takes every 20th since). Under `-n 2` (one thread a worker) the length-aware
# pass and the padded passes run on the two workers side by side. The padded passes (and
# PyTorch's halves, when the committed file is stale) are kept on disk keyed by content
# (tests/reference_cache.py): an unchanged model, data and code path takes them from there.


@pytest.fixture(scope="session")
def heldout_stride() -> int:
    import os

    return int(os.environ.get("SPANQA_HELDOUT_STRIDE", "1"))


@pytest.fixture(scope="session")
def heldout_examples(heldout_json, heldout_stride):
    from spanqa.data.squad import read_squad

    return read_squad(heldout_json)[::heldout_stride]


@pytest.fixture(scope="session")
def heldout_features(heldout_examples, standin_dir):
    """The held-out questions' features at the recipe's 512/128/64, with the stand-in's tokenizer."""
    from torch_reference import features_at_512

    return features_at_512(heldout_examples, standin_dir)


@pytest.fixture(scope="session")
def heldout_torch_logits(heldout_features, standin_dir):
    """PyTorch (transformers eager, fp32) logits of every feature, within torch_reference.SLACK;
    NaN at padding positions (tests/torch_reference.py: committed, or computed in two halves side
    by side by the two xdist workers)."""
    from torch_reference import heldout_logits

    return heldout_logits(heldout_features, standin_dir)


def feature_rows(features, rows):
    """The features at ``rows`` (their examples kept whole): a smaller set to write and run."""
    from dataclasses import replace

    rows = list(rows)
    return replace(
        features,
        input_ids=features.input_ids[rows],
        input_mask=features.input_mask[rows],
        segment_ids=features.segment_ids[rows],
        example_index=features.example_index[rows],
        span_index=features.span_index[rows],
        tokens=[features.tokens[i] for i in rows],
        token_to_orig_map=[features.token_to_orig_map[i] for i in rows],
        token_is_max_context=[features.token_is_max_context[i] for i in rows],
    )


# The recipe's padded 512-token runs ('spanqa infer') take every 5th held-out feature at batch
# size 8 and every 20th at batch size 1 (every feature, at both sizes, would be ~870 s at 2
# threads: scaled from the timings above, not measured), and the length-aware run ('spanqa run') is compared with PyTorch at every real token
# of every feature anyway (tests/test_engine.py). Every bs1 row is also a bs8 row: batch size 1
# shows its file layout and that the batch size changes no logit.
BS8_EVERY, BS1_EVERY = 5, 20


@pytest.fixture(scope="session")
def heldout_infer_runs(heldout_features, standin_package):
    """'spanqa infer' over the held-out features written in the recipe's padded 512-token layout:
    every BS8_EVERY-th feature at batch size 8, every BS1_EVERY-th at batch size 1.
    {batch size: (output dir, summary, feature rows)}.

    The runs are kept in the reference cache (tests/reference_cache.py) under a key of the
    package's model, the features, onnxruntime's version and every spanqa source file on the
    path from feature folders to output files: a change to any of them runs them again."""
    import json

    import numpy as np
    import onnxruntime

    from reference_cache import SRC, cached_dir, content_key
    from spanqa.data.folders import write_features
    from spanqa.offline.infer import infer_folders
    from spanqa.settings import InferSettings

    f = heldout_features
    runs = {}
    for bs, step in ((1, BS1_EVERY), (8, BS8_EVERY)):
        rows = np.arange(0, len(f), step)
        key = content_key(
            standin_package / "model.onnx",
            f.input_ids[rows],
            f.segment_ids[rows],
            f.input_mask[rows],
            bs,
            onnxruntime.__version__,
            np.__version__,
            SRC / "offline",
            SRC / "runtimes",
            SRC / "data",
            *(SRC / name for name in ("settings.py", "fileutil.py", "sysinfo.py", "models/package.py", "models/manifest.py")),
        )

        def build(root: Path, bs=bs, rows=rows) -> None:
            write_features(feature_rows(f, rows), root / "features", bs)
            infer_folders(standin_package, root / "features", root / "out", InferSettings())

        root = cached_dir(f"heldout-infer-bs{bs}", key, build)
        summary = json.loads((root / "out" / "summary.json").read_text(encoding="utf-8"))
        runs[bs] = (root / "out", summary, rows)
    return runs


@pytest.fixture(scope="session")
def heldout_run(heldout_json, heldout_stride, standin_package, tmp_path_factory):
    """'spanqa run' (the engine, length-aware batching) over the held-out questions: its RunReport."""
    from spanqa.jobs.run import run
    from squad_files import every_kth_question

    root = tmp_path_factory.mktemp("heldout-run")
    dataset = heldout_json if heldout_stride == 1 else every_kth_question(heldout_json, root / "sample.json", heldout_stride)
    return run(dataset, standin_package, root / "res")


# ---------------------------------------------------------------------------------------------
# SQuAD 2.0 files made from the held-out set (tests/squad2_fixture.py): a few articles.


@pytest.fixture(scope="session")
def squad2_json(heldout_json, tmp_path_factory) -> Path:
    from squad2_fixture import make_squad2, write

    return write(make_squad2(heldout_json), tmp_path_factory.mktemp("squad2") / "dev-v2.0-small.json")


@pytest.fixture(scope="session")
def squad2_all_impossible_json(heldout_json, tmp_path_factory) -> Path:
    from squad2_fixture import make_all_impossible, write

    return write(make_all_impossible(heldout_json), tmp_path_factory.mktemp("squad2") / "all-impossible.json")
