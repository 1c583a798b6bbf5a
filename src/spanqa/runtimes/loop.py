"""Running batches on a runtime: timing every run, handing each batch's logits on, and
checking before anything runs that inputs fit a fixed-shape model."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from typing import NamedTuple

import numpy as np

from spanqa.errors import InferenceError, SpanQAError
from spanqa.runtimes.stats import InferenceStats


class Batch(NamedTuple):
    key: str  # names the batch in messages and output files (the input file's stem)
    input_ids: np.ndarray  # int64 [B, L]
    token_type_ids: np.ndarray
    attention_mask: np.ndarray


OutputSink = Callable[[Batch, np.ndarray, np.ndarray], None]


def _run_once(runtime, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
    try:
        start, end = runtime.run(batch.input_ids, batch.token_type_ids, batch.attention_mask)
    except (SpanQAError, KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InferenceError(f"batch {batch.key}: {runtime.name} failed ({first})") from None
    shape = batch.input_ids.shape
    start, end = np.asarray(start), np.asarray(end)
    if start.shape != shape or end.shape != shape:
        raise InferenceError(
            f"batch {batch.key}: {runtime.name} returned logits of shape {start.shape}/{end.shape} for inputs {shape}"
        )
    return start.astype(np.float32, copy=False), end.astype(np.float32, copy=False)


def run_batches(
    runtime,
    batches: Iterable[Batch],
    *,
    warmup: int = 0,
    loop: int = 1,
    on_output: OutputSink | None = None,
    total: int | None = None,
    desc: str = "infer",
    stats: InferenceStats | None = None,
    log_lines: bool = False,
    bar=None,
) -> InferenceStats:
    """Run each batch ``loop`` times (each run timed), after ``warmup`` untimed runs of the first.

    ``on_output(batch, start, end)`` receives the logits of each batch's last run. Only
    ``runtime.run`` is inside the timer: reading inputs and writing outputs are not.
    ``bar``: a progress bar of the caller's to advance (one per batch) instead of a new one.
    """
    from spanqa import progress

    stats = stats if stats is not None else InferenceStats(warmup=warmup, loop=loop)
    began = time.perf_counter()
    parallel = max(1, int(getattr(runtime, "parallel", 1) or 1))
    stats.streams = parallel

    def timed(batch: Batch):
        latencies = []
        for _ in range(max(1, loop)):
            t0 = time.perf_counter()
            start, end = _run_once(runtime, batch)
            latencies.append((time.perf_counter() - t0) * 1000.0)
        return start, end, latencies

    def done(batch: Batch, start, end, latencies) -> None:
        rows = int(batch.input_ids.shape[0])
        for ms in latencies:
            stats.record(ms, rows)
        real = int(np.count_nonzero(batch.attention_mask.any(axis=1)))
        stats.batches += 1
        stats.rows += real
        stats.padded_rows += rows - real
        if on_output is not None:
            on_output(batch, start, end)
        bar.update(1)

    def warmed(items: Iterable[Batch]) -> Iterator[Batch]:
        for i, batch in enumerate(items):
            if i == 0:
                for _ in range(warmup):
                    _run_once(runtime, batch)
            yield batch

    try:
        with progress.bar(total=total, desc=desc, unit="batch", lines=log_lines) if bar is None else nullcontext(bar) as bar:
            if parallel == 1:
                for batch in warmed(batches):
                    done(batch, *timed(batch))
            else:
                _run_parallel(warmed(batches), timed, done, parallel)
    finally:
        stats.wall_s += time.perf_counter() - began
    return stats


def _run_parallel(batches: Iterator[Batch], timed, done, parallel: int) -> None:
    """``parallel`` batches in flight (one per stream) and one more ready; outputs handed on in
    input order. An error in any batch stops the submitting and reaches the caller."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(parallel, thread_name_prefix="spanqa-stream")
    pending: deque = deque()
    try:
        for batch in batches:
            pending.append((batch, pool.submit(timed, batch)))
            if len(pending) > parallel:
                first, future = pending.popleft()
                done(first, *future.result())
        while pending:
            first, future = pending.popleft()
            done(first, *future.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def check_model_fit(
    model_batch: int | None,
    model_seq: int | None,
    max_positions: int | None,
    batch_size: int,
    seq_len: int,
    where: str = "features",
) -> None:
    """One-line errors when inputs of [batch_size, seq_len] cannot run on the model."""
    if model_seq is not None and seq_len != model_seq:
        raise InferenceError(
            f"{where} have sequence length {seq_len} but the model is compiled for {model_seq}; "
            f"preprocess with --max-seq-length {model_seq} or compile the model with --seq-len {seq_len}"
        )
    if max_positions is not None and seq_len > max_positions:
        raise InferenceError(
            f"{where} have sequence length {seq_len} but the model has only {max_positions} positions; "
            f"preprocess with --max-seq-length {max_positions}"
        )
    if model_batch is not None and batch_size != model_batch:
        raise InferenceError(
            f"{where} have batch size {batch_size} but the model is compiled for batch size {model_batch}; "
            f"preprocess with --batch-size {model_batch} or compile the model with --batch-size {batch_size}"
        )


# --------------------------------------------------------------------------------------------
# Feature folders (msame's inputs).
