"""PyTorch's logits (transformers eager, fp32) for the stand-in on every held-out feature: the
reference that the ONNX runs are compared with at every real token (tests/test_engine.py,
tests/test_jobs_run.py, tests/test_offline_infer.py).

Computing them takes ~7 min at the one thread an xdist worker has, more than a third of the
suite's time on 2 cores, for a result that changes only with its inputs. So they are committed,
in tests/data/heldout-torch-logits.xz, under a content key of each half of the features (the
checkpoint, the rows' bytes, the torch and transformers versions, the loading code and
``compute``): a half whose key is there is read from it, any other half is computed and kept in
the reference cache (tests/reference_cache.py). ``test_engine`` fails while the committed file
is stale; ``python tests/torch_reference.py`` writes it anew.

The logits are stored as multiples of QUANTUM (2^-18): each stored value is within SLACK
(2^-19, 1.9e-6) of PyTorch's own, computed or committed alike, and the tests compare with
``atol(tolerance)``, the tolerance less SLACK, so a pass means the same as against PyTorch's
unrounded values.
"""

from __future__ import annotations

import functools
import inspect
import json
import lzma
import os
from pathlib import Path

HALVES = 2
QUANTUM_BITS = 18
QUANTUM = 2.0**-QUANTUM_BITS
SLACK = QUANTUM / 2
COMMITTED = Path(__file__).parent / "data" / "heldout-torch-logits.xz"


def atol(tolerance: float) -> float:
    """The tolerance against the stored logits that implies ``tolerance`` against PyTorch's."""
    return tolerance - SLACK


def heldout_logits(features, standin_dir: Path):
    """(start, end): float64 arrays shaped like the features, NaN at padding positions."""
    import numpy as np

    start = np.full(features.input_ids.shape, np.nan)
    end = np.full(features.input_ids.shape, np.nan)
    committed = read_committed()
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    keyed = half_keys(features, standin_dir)
    for k in range(HALVES):  # each worker starts with a different half: computed side by side
        rows, key = keyed[(k + worker) % HALVES]
        values = committed[key] if key in committed else _cached_half(features, rows, standin_dir, key)
        real = features.input_mask[rows].astype(bool)
        for out, q in zip((start, end), values):
            block = out[rows]
            block[real] = q * QUANTUM
            out[rows] = block
    return start, end


def features_at_512(examples, standin_dir: Path):
    """The features the reference is computed on: the recipe's 512/128/64, the stand-in's tokenizer."""
    from spanqa.data.features import build_features
    from spanqa.data.vocab import resolve_tokenizer
    from spanqa.settings import FeatureSettings

    return build_features(examples, resolve_tokenizer(standin_dir), FeatureSettings(max_seq_length=512))


def half_keys(f, standin_dir: Path) -> list:
    """[(rows, key)] for each half of ``f``: the checkpoint, the half's rows, the versions and the
    code. (The checkpoint is hashed per half, 44 MB: ~0.05 s, and a new formula would mean a new
    4.9 MB file in the history.)"""
    import numpy as np
    import torch
    import transformers

    from reference_cache import SRC, content_key

    checkpoint = sorted(p for p in standin_dir.iterdir() if p.is_file())
    code = (
        torch.__version__,
        transformers.__version__,
        SRC / "models" / "checkpoint.py",
        inspect.getsource(compute),
        QUANTUM_BITS,
    )
    halves = np.array_split(np.arange(len(f)), HALVES)
    return [
        (rows, content_key(*checkpoint, f.input_ids[rows], f.segment_ids[rows], f.input_mask[rows], *code)) for rows in halves
    ]


def committed_is_current(features, standin_dir: Path) -> bool:
    """Whether the committed file holds every half of ``features``."""
    committed = read_committed()
    return all(key in committed for _, key in half_keys(features, standin_dir))


def read_committed() -> dict:
    """{half key: (start, end) int32 multiples of QUANTUM at the real positions, row by row}."""
    return _read(COMMITTED)


@functools.cache  # the fixture and the staleness test read it once between them
def _read(path: Path) -> dict:
    import numpy as np

    if not path.is_file():
        return {}
    raw = lzma.decompress(path.read_bytes())
    header, _, payload = raw.partition(b"\n")
    meta = json.loads(header)
    if meta.get("quantum_bits") != QUANTUM_BITS:
        return {}
    out, at = {}, 0
    for half in meta["halves"]:
        n = half["values"]
        planes = np.frombuffer(payload, np.uint8, 6 * n, at).reshape(3, 2 * n)  # byte planes
        at += 6 * n
        q = (planes[0].astype(np.int32) | planes[1].astype(np.int32) << 8 | planes[2].astype(np.int32) << 16) << 8 >> 8
        out[half["key"]] = (q[:n], q[n:])
    return out


def write_committed(values: dict) -> None:
    """``values``: {half key: (start, end) int32 arrays}, in the file's format."""
    import numpy as np

    halves_meta, payload = [], []
    for key, (start, end) in values.items():
        q = np.concatenate([start, end]).astype("<i4")
        assert np.abs(q).max() < 2**23, "a logit too large for 3 bytes"
        payload.append(q.view(np.uint8).reshape(-1, 4)[:, :3].T.tobytes())  # byte planes compress
        halves_meta.append({"key": key, "values": int(start.size)})
    header = json.dumps({"quantum_bits": QUANTUM_BITS, "halves": halves_meta}).encode()
    COMMITTED.parent.mkdir(parents=True, exist_ok=True)
    tmp = COMMITTED.with_suffix(".tmp")
    tmp.write_bytes(lzma.compress(header + b"\n" + b"".join(payload), preset=9 | lzma.PRESET_EXTREME))
    os.replace(tmp, COMMITTED)


def _cached_half(f, rows, standin_dir: Path, key: str):
    import numpy as np

    from reference_cache import cached_dir

    def build(out: Path) -> None:
        start, end = compute(f, rows, standin_dir)
        real = f.input_mask[rows].astype(bool)
        q = {
            name: np.round(a[real].astype(np.float64) / QUANTUM).astype(np.int32) for name, a in (("start", start), ("end", end))
        }
        np.savez(out / "logits.npz", **q)

    with np.load(cached_dir("heldout-torch-logits", key, build) / "logits.npz") as data:
        return data["start"], data["end"]


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


def main() -> None:
    """Write tests/data/heldout-torch-logits.xz for the held-out features the suite builds."""
    from conftest import SHARED
    from spanqa.data.squad import read_squad

    standin_dir = SHARED / "models" / "standin-minilm-squad"
    features = features_at_512(read_squad(SHARED / "data" / "squad" / "dev-v1.1-heldout.json"), standin_dir)
    committed = read_committed()
    values = {}
    for rows, key in half_keys(features, standin_dir):
        values[key] = committed[key] if key in committed else _cached_half(features, rows, standin_dir, key)
    write_committed(values)
    print(f"{COMMITTED}: {COMMITTED.stat().st_size} bytes, halves {', '.join(values)}")


if __name__ == "__main__":
    main()
