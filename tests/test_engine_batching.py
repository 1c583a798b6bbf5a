"""Length-aware batch plans (spanqa.engine.batching): every feature once, within the token budget,
little padding; fixed shapes for fixed-shape models; logits put back in feature order."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from spanqa.engine.batching import Batch, LogitsCollector, gather, plan_batches
from spanqa.settings import BatchingSettings


@given(
    lengths=st.lists(st.integers(min_value=3, max_value=512), min_size=1, max_size=300),
    budget=st.integers(min_value=64, max_value=8192),
    cap=st.integers(min_value=1, max_value=64),
)
@settings(max_examples=200, deadline=None)
def test_plan_covers_every_feature_once_within_budget(lengths, budget, cap):
    lengths = np.array(lengths)
    plans = plan_batches(lengths, BatchingSettings(token_budget=budget, max_batch_size=cap), max_seq_length=512)
    rows = np.concatenate([p.rows for p in plans])
    assert sorted(rows.tolist()) == list(range(len(lengths)))
    for p in plans:
        assert p.seq_len >= lengths[p.rows].max()
        assert p.seq_len % 8 == 0 or p.seq_len == 512
        assert p.seq_len - lengths[p.rows].max() < 8
        assert len(p.rows) == p.batch_size <= cap
        assert len(p.rows) == 1 or len(p.rows) * p.seq_len <= budget


def test_sorting_removes_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(60, 400, size=1000)
    plans = plan_batches(lengths, max_seq_length=512)
    padded = sum(p.seq_len * len(p.rows) for p in plans)
    assert padded < 1.05 * lengths.sum() + 8 * len(lengths)
    assert padded < 0.5 * 512 * len(lengths)


def test_fixed_shape_batches_are_padded_in_order():
    plans = plan_batches(np.array([10, 500, 30, 7, 9]), max_seq_length=512, fixed_batch=2, fixed_seq=512)
    assert [p.rows.tolist() for p in plans] == [[0, 1], [2, 3], [4]]
    assert all(p.batch_size == 2 and p.seq_len == 512 for p in plans)
    ids = np.arange(5 * 512).reshape(5, 512)
    out = gather(ids, ids, ids, plans[-1])
    assert out[0].shape == (2, 512)
    assert np.array_equal(out[0][0], ids[4]) and not out[0][1].any()


def test_not_length_aware_uses_batch_size():
    plans = plan_batches(np.array([5, 6, 7]), BatchingSettings(length_aware=False), max_seq_length=64, batch_size=2)
    assert [(p.rows.tolist(), p.seq_len, p.batch_size) for p in plans] == [([0, 1], 64, 2), ([2], 64, 1)]


def test_collector_restores_order():
    col = LogitsCollector(3, 16)
    col.add(Batch(np.array([0, 2]), 8, 2), np.full((2, 8), 1.0), np.full((2, 8), 2.0))
    col.add(Batch(np.array([1]), 16, 2), np.arange(32, dtype=np.float32).reshape(2, 16), np.zeros((2, 16)))
    # Positions the batch did not compute hold -inf: no logit there (never 0.0, which could rank).
    assert col.start[0, :8].tolist() == [1.0] * 8 and col.start[0, 8:].tolist() == [-np.inf] * 8
    assert col.start[1].tolist() == list(range(16))
    assert col.end[2, :8].tolist() == [2.0] * 8 and np.isneginf(col.end[2, 8:]).all()
    assert col.start.dtype == col.end.dtype == np.float32
