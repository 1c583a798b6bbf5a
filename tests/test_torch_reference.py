"""The committed PyTorch reference's file format (tests/torch_reference.py): what is written is
read back exactly, and a stored logit is within SLACK of the value it came from."""

from __future__ import annotations

import numpy as np

import torch_reference


def test_committed_logits_read_back_exactly_and_within_the_slack(tmp_path, monkeypatch):
    monkeypatch.setattr(torch_reference, "COMMITTED", tmp_path / "ref.xz")
    rng = np.random.default_rng(0)
    logits = rng.uniform(-31.9, 31.9, 1000)
    q = np.round(logits / torch_reference.QUANTUM).astype(np.int32)
    assert np.abs(q * torch_reference.QUANTUM - logits).max() <= torch_reference.SLACK
    edges = np.array([0, -1, 1, 2**23 - 1, -(2**23) + 1], np.int32)  # the sign bit of 3 bytes
    values = {"a": (q[:500], q[500:]), "b": (edges, edges[::-1].copy())}
    torch_reference.write_committed(values)
    back = torch_reference.read_committed()
    assert list(back) == ["a", "b"]
    for key, (start, end) in values.items():
        assert np.array_equal(back[key][0], start) and np.array_equal(back[key][1], end)
    assert torch_reference.atol(1e-4) == 1e-4 - 2.0**-19
