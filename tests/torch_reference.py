"""PyTorch's logits (transformers eager, fp32) for the stand-in on every held-out feature: the
reference that the ONNX runs are compared with at every real token (tests/test_engine.py,
tests/test_jobs_run.py, tests/test_offline_infer.py).

3.5 min on 2 idle cores, ~7 min at the one thread an xdist worker has. The features are cut into
halves, each kept in the reference cache (tests/reference_cache.py) under a key of the
checkpoint, its rows' bytes, the library versions and the loading code; each worker starts with
a different half, so under `-n 2` the two halves are computed side by side and each worker
takes the other's from the cache (its lock waits while it is being built)."""

from __future__ import annotations

import os
from pathlib import Path

HALVES = 2


def heldout_logits(features, standin_dir: Path):
    """(start, end): float32 arrays shaped like the features, NaN at padding positions."""
    import numpy as np

    start = np.full(features.input_ids.shape, np.nan, np.float32)
    end = np.full(features.input_ids.shape, np.nan, np.float32)
    parts = np.array_split(np.arange(len(features)), HALVES)
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    for k in range(HALVES):
        rows = parts[(k + worker) % HALVES]
        with np.load(_cached_half(features, rows, standin_dir) / "logits.npz") as data:
            start[rows], end[rows] = data["start"], data["end"]
    return start, end


def _cached_half(f, rows, standin_dir: Path) -> Path:
    import numpy as np
    import torch
    import transformers

    from reference_cache import SRC, cached_dir, content_key

    key = content_key(
        *(sorted(p for p in standin_dir.iterdir() if p.is_file())),
        f.input_ids[rows],
        f.segment_ids[rows],
        f.input_mask[rows],
        torch.__version__,
        transformers.__version__,
        SRC / "models" / "checkpoint.py",
        Path(__file__).read_bytes(),
    )

    def build(out: Path) -> None:
        np.savez(out / "logits.npz", **dict(zip(("start", "end"), compute(f, rows, standin_dir))))

    return cached_dir("heldout-torch-logits", key, build)


def compute(f, rows, standin_dir: Path):
    """The logits of ``rows``, in batches of 16 of similar length cut to their longest real
    length: the logits of real tokens do not depend on the padding after them (it is masked
    out), and this is ~3x cheaper than running 512 positions."""
    import numpy as np
    import torch

    from spanqa.models.checkpoint import load_checkpoint

    model = load_checkpoint(standin_dir).model
    lengths = f.lengths[rows]
    order = np.argsort(lengths, kind="stable")
    start = np.full((len(rows), f.input_ids.shape[1]), np.nan, np.float32)
    end = np.full_like(start, np.nan)
    with torch.inference_mode():
        for lo in range(0, len(rows), 16):
            batch = order[lo : lo + 16]
            cut = int(lengths[batch].max())
            src = rows[batch]
            out = model(
                input_ids=torch.from_numpy(f.input_ids[src, :cut]),
                token_type_ids=torch.from_numpy(f.segment_ids[src, :cut]),
                attention_mask=torch.from_numpy(f.input_mask[src, :cut]),
            )
            for i, b in enumerate(batch):
                n = int(lengths[b])
                start[b, :n] = out.start_logits[i, :n].numpy()
                end[b, :n] = out.end_logits[i, :n].numpy()
    return start, end
