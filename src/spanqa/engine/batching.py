"""Length-aware batching: no compute spent on padding.

SQuAD features are padded to max_seq_length (512) although most hold far fewer real tokens.
Sorting features by real length, grouping them under a token budget and padding each batch only
to its longest member (rounded up to a multiple the runtime likes) removes nearly all of that
waste. Attention masks make the result independent of the padding, so answers are unchanged.
Fixed-shape models (the .om style) get plain fixed batches instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spanqa.errors import InferenceError
from spanqa.settings import BatchingSettings


@dataclass(frozen=True)
class Batch:
    rows: np.ndarray  # feature indices in this batch (int64)
    seq_len: int  # padded length of the batch
    batch_size: int  # rows the model sees (>= len(rows) when a fixed batch is padded)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def plan_batches(
    lengths: np.ndarray,
    settings: BatchingSettings = BatchingSettings(),
    *,
    max_seq_length: int,
    fixed_batch: int | None = None,
    fixed_seq: int | None = None,
    batch_size: int | None = None,
) -> list[Batch]:
    """Group feature indices into batches.

    ``fixed_batch``/``fixed_seq`` come from a fixed-shape model and win over everything else.
    ``batch_size`` (a dynamic model with a requested batch size) caps the rows per batch.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    n = len(lengths)
    if n == 0:
        return []
    if fixed_batch is not None or fixed_seq is not None or not settings.length_aware:
        rows_per = fixed_batch or batch_size or 1
        seq = fixed_seq or max_seq_length
        return [
            Batch(np.arange(i, min(i + rows_per, n), dtype=np.int64), seq, fixed_batch or min(rows_per, n - i))
            for i in range(0, n, rows_per)
        ]
    cap_rows = min(settings.max_batch_size, batch_size or settings.max_batch_size)
    # Longest first: the padded length of a batch is that of its first member.
    order = np.argsort(-lengths, kind="stable")
    batches: list[Batch] = []
    i = 0
    while i < n:
        seq = min(_round_up(int(lengths[order[i]]), settings.multiple), max_seq_length)
        rows = max(1, min(cap_rows, settings.token_budget // max(seq, 1), n - i))
        batches.append(Batch(np.sort(order[i : i + rows]), seq, rows))
        i += rows
    return batches


def gather(
    input_ids: np.ndarray, segment_ids: np.ndarray, input_mask: np.ndarray, batch: Batch
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model inputs of one batch: rows cut to ``seq_len``, zero rows appended to fill a fixed batch.
    Cutting never drops a real token: a batch whose features are longer is an error."""
    if input_mask.shape[1] > batch.seq_len and input_mask[batch.rows, batch.seq_len :].any():
        raise InferenceError(
            f"features of {int(input_mask[batch.rows].sum(axis=1).max())} tokens do not fit a {batch.seq_len}-token batch; "
            f"rebuild them with --max-seq-length {batch.seq_len}"
        )
    out = []
    for arr in (input_ids, segment_ids, input_mask):
        part = arr[batch.rows, : batch.seq_len]
        if part.shape[1] < batch.seq_len:  # a fixed sequence longer than the features
            part = np.pad(part, ((0, 0), (0, batch.seq_len - part.shape[1])))
        if batch.batch_size > len(batch.rows):
            part = np.pad(part, ((0, batch.batch_size - len(batch.rows)), (0, 0)))
        out.append(np.ascontiguousarray(part, dtype=np.int64))
    return out[0], out[1], out[2]


class LogitsCollector:
    """Puts each batch's logits back at its features' rows, in the original feature order.
    Positions a batch did not compute (past its padded length) stay -inf: no logit there."""

    def __init__(self, num_features: int, max_seq_length: int):
        self.start = np.full((num_features, max_seq_length), -np.inf, dtype=np.float32)
        self.end = np.full((num_features, max_seq_length), -np.inf, dtype=np.float32)

    def add(self, batch: Batch, start: np.ndarray, end: np.ndarray) -> None:
        k = len(batch.rows)
        width = min(start.shape[1], self.start.shape[1])
        self.start[batch.rows, :width] = start[:k, :width]
        self.end[batch.rows, :width] = end[:k, :width]
