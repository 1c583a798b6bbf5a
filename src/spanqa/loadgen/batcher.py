"""The in-process SUT's online batcher: batches formed from queries as they arrive.

What MLPerf's CPU Server submissions do: a batch closes when its padded tokens reach a budget,
when the oldest query in it has no time left for more (its deadline minus the batch's expected
run time), or, when nothing more is waiting, a short wait after its first query arrived; and one
batch is in flight per inference stream (OpenVINO's THROUGHPUT streams), so the cores stay busy
while the next batch forms. The queue, the worker threads and the length-aware grouping inside a
batch are the standard library's and the engine's. No library batcher fits here: Ray Serve's
``@serve.batch`` runs only inside a Serve replica (it reads the replica's context), and the
small batching libraries count items, not tokens, and know no deadline.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

_STOP = object()


@dataclass
class Query:
    rid: int  # LoadGen's response id
    index: int  # sample index
    arrival: float  # time.monotonic() when it was issued
    cost: int = 0  # padded tokens (set by ``prepare``)
    payload: Any = None  # what ``prepare`` made of it (its features)


class OnlineBatcher:
    """``put`` queries; ``run(batch)`` is called on one of ``slots`` worker threads with each
    batch. ``prepare(query)`` (on the batcher's thread) sets the query's cost and payload.

    ``deadline_s``: the latency bound a query should be answered within (None: no bound);
    ``per_token_s``: the first estimate of a batch's seconds per padded token, then a moving
    average of the batches run."""

    def __init__(
        self,
        prepare: Callable[[Query], None],
        run: Callable[[list[Query]], None],
        *,
        slots: int = 1,
        token_budget: int = 1024,
        max_wait_s: float = 0.0,
        deadline_s: float | None = None,
        per_token_s: float = 0.0,
    ):
        self.prepare, self.run = prepare, run
        self.slots, self.budget, self.max_wait, self.deadline = max(1, slots), token_budget, max_wait_s, deadline_s
        self.per_token = per_token_s
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._free = threading.Semaphore(self.slots)
        self._lock = threading.Lock()
        self._carry: Query | None = None
        self._pool = ThreadPoolExecutor(self.slots, thread_name_prefix="spanqa-loadgen-batch")
        self._thread = threading.Thread(target=self._loop, name="spanqa-loadgen-batcher", daemon=True)
        self.batches = 0
        self.batch_tokens = 0
        self._thread.start()

    def put(self, query: Query) -> None:
        self._queue.put(query)

    def close(self) -> None:
        """Stop after the queries already put; wait for the batches in flight."""
        self._queue.put(_STOP)
        self._thread.join()
        self._pool.shutdown(wait=True)

    # ------------------------------------------------------------------------------------------

    def _next(self, timeout: float | None) -> Any:
        if self._carry is not None:
            q, self._carry = self._carry, None
            return q
        try:
            item = self._queue.get(timeout=timeout) if timeout is None or timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None
        if item is not _STOP and not item.cost:
            self.prepare(item)
        return item

    def _room(self, first: Query, tokens: int, now: float) -> float:
        """Seconds the batch may still wait for more, from the first query's arrival and deadline."""
        close = first.arrival + self.max_wait
        if self.deadline is not None:
            close = min(close, first.arrival + self.deadline - self.per_token * tokens)
        return close - now

    def _fits(self, first: Query, tokens: int, cost: int, now: float) -> bool:
        if tokens + cost > self.budget:
            return False
        if self.deadline is None:
            return True
        limit = first.arrival + self.deadline
        if now + self.per_token * tokens > limit:
            # The oldest is late whatever this batch does: small batches would only make the
            # queue behind it longer, so the batch fills to the budget to catch up.
            return True
        return now + self.per_token * (tokens + cost) <= limit

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            self._free.acquire()  # a stream is free: form its batch
            first = self._next(None)
            if first is _STOP:
                self._free.release()
                return
            batch, tokens = [first], first.cost
            while tokens < self.budget:
                now = time.monotonic()
                item = self._next(self._room(first, tokens, now))
                if item is None:
                    break
                if item is _STOP:
                    stopping = True
                    break
                if not self._fits(first, tokens, item.cost, time.monotonic()):
                    self._carry = item
                    break
                batch.append(item)
                tokens += item.cost
            self.batches += 1
            self.batch_tokens += tokens
            self._pool.submit(self._run, batch, tokens)
        self._drain()

    def _drain(self) -> None:
        """After the stop: whatever was carried or still queued runs as one more batch each."""
        rest = [q for q in (self._carry,) if q is not None]
        self._carry = None
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                if not item.cost:
                    self.prepare(item)
                rest.append(item)
        if rest:
            self._free.acquire()
            self._pool.submit(self._run, rest, sum(q.cost for q in rest))

    def _run(self, batch: list[Query], tokens: int) -> None:
        t0 = time.perf_counter()
        try:
            self.run(batch)
        finally:
            seconds = time.perf_counter() - t0
            with self._lock:
                rate = seconds / max(1, tokens)
                self.per_token = rate if not self.per_token else 0.8 * self.per_token + 0.2 * rate
            self._free.release()
