"""The in-process SUT's online batcher: token budget, arrival order, the oldest query's
deadline, and one batch per stream in flight."""

from __future__ import annotations

import threading
import time

from spanqa.loadgen.batcher import OnlineBatcher, Query


def _prepare(q: Query) -> None:
    q.cost = q.index  # the tests say each query's padded tokens through its index


def _batcher(run, **kw) -> OnlineBatcher:
    return OnlineBatcher(_prepare, run, **kw)


def test_batches_fill_to_the_budget_in_arrival_order():
    runs: list[list[int]] = []
    started, gate = threading.Event(), threading.Event()

    def run(batch):
        started.set()
        gate.wait(10)
        runs.append([q.rid for q in batch])

    b = _batcher(run, slots=1, token_budget=1000, max_wait_s=0.0)
    b.put(Query(0, 100, time.monotonic()))
    assert started.wait(10)  # the first batch runs (alone: nothing else had arrived)
    for rid, cost in enumerate([400, 400, 400, 300, 300, 500], start=1):
        b.put(Query(rid, cost, time.monotonic()))
    gate.set()
    b.close()
    # 400+400 (+400 would pass 1000: it leads the next batch), 400+300+300 = 1000, 500.
    assert runs == [[0], [1, 2], [3, 4, 5], [6]]
    assert b.batches == 4 and b.batch_tokens == 100 + 800 + 1000 + 500


def test_nothing_is_lost_on_close():
    runs: list[list[Query]] = []
    b = _batcher(lambda batch: runs.append(batch) or time.sleep(0.002), slots=2, token_budget=500, max_wait_s=0.001)
    costs = [(i * 37) % 300 + 8 for i in range(60)]
    for rid, cost in enumerate(costs):
        b.put(Query(rid, cost, time.monotonic()))
    b.close()
    done = sorted(q.rid for batch in runs for q in batch)
    assert done == list(range(60))
    assert all(sum(q.cost for q in batch) <= 500 for batch in runs)
    for batch in runs:  # each batch keeps arrival order
        assert [q.rid for q in batch] == sorted(q.rid for q in batch)


def test_the_oldest_querys_deadline_closes_a_batch_early():
    b = _batcher(lambda batch: None, token_budget=10_000, max_wait_s=0.005, deadline_s=0.1, per_token_s=1e-4)
    try:
        first = Query(0, 0, arrival=0.0)
        # 1,000 tokens take 0.1 s: the oldest (arrived at 0) can take 600 + 300 but not 900 + 300.
        assert b._fits(first, 600, 300, now=0.0)
        assert not b._fits(first, 900, 300, now=0.0)
        assert not b._fits(first, 9_900, 300, now=0.0)  # the budget, whatever the time
        # Already late whatever the batch does: fill it (small batches would lengthen the queue).
        assert b._fits(first, 1_200, 300, now=0.2)
        # The wait for more: the short wait, or less when the deadline is closer.
        assert abs(b._room(first, 0, now=0.001) - 0.004) < 1e-9
        assert abs(b._room(first, 990, now=0.001) - 0.0) < 1e-9
    finally:
        b.close()


def test_a_batch_per_stream_in_flight():
    def peak_concurrency(slots: int) -> int:
        lock = threading.Lock()
        state = {"now": 0, "peak": 0}

        def run(batch):
            with lock:
                state["now"] += 1
                state["peak"] = max(state["peak"], state["now"])
            time.sleep(0.15)
            with lock:
                state["now"] -= 1

        b = _batcher(run, slots=slots, token_budget=100, max_wait_s=0.0)
        for rid in range(4):  # 100 tokens each: one query a batch
            b.put(Query(rid, 100, time.monotonic()))
        b.close()
        return state["peak"]

    assert peak_concurrency(1) == 1
    assert peak_concurrency(2) == 2
