"""SQuAD features, exactly as SpanBERT's run_squad.py makes them (tokenising and windowing).

Data only: nothing here knows about models or scores.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np

from spanqa.data.squad import Example
from spanqa.data.tokenization import split_words
from spanqa.data.vocab import TokenizerSettings
from spanqa.settings import FeatureSettings

UNIQUE_ID_BASE = 1000000000


@dataclass
class Features:
    """All features of a dataset. Row i of the arrays is feature i (unique id 1000000000 + i)."""

    settings: FeatureSettings
    input_ids: np.ndarray  # int64 [N, max_seq_length], zero padded
    input_mask: np.ndarray  # int64 [N, max_seq_length]
    segment_ids: np.ndarray  # int64 [N, max_seq_length]
    example_index: np.ndarray  # int64 [N]: index into ``examples``
    span_index: np.ndarray  # int64 [N]: doc_span_index within its example
    tokens: list[list[str]]  # the word pieces of each feature, [CLS] ... [SEP] (unpadded)
    token_to_orig_map: list[dict[int, int]]  # feature token position -> index in doc_tokens
    token_is_max_context: list[dict[int, bool]]  # feature token position -> max-context flag
    examples: list[Example]

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def lengths(self) -> np.ndarray:
        """Real (unpadded) length of each feature."""
        return self.input_mask.sum(axis=1)

    @property
    def unique_ids(self) -> np.ndarray:
        """int64 [N]: 1000000000 + feature index, as run_squad.py numbers features."""
        return UNIQUE_ID_BASE + np.arange(len(self), dtype=np.int64)

    @classmethod
    def concat(cls, parts: list[Features]) -> Features:
        """The features of consecutive example lists, as one (example indexes shifted)."""
        offsets = np.cumsum([0] + [len(p.examples) for p in parts[:-1]])
        return cls(
            settings=parts[0].settings,
            input_ids=np.concatenate([p.input_ids for p in parts]),
            input_mask=np.concatenate([p.input_mask for p in parts]),
            segment_ids=np.concatenate([p.segment_ids for p in parts]),
            example_index=np.concatenate([p.example_index + k for p, k in zip(parts, offsets)]),
            span_index=np.concatenate([p.span_index for p in parts]),
            tokens=[t for p in parts for t in p.tokens],
            token_to_orig_map=[m for p in parts for m in p.token_to_orig_map],
            token_is_max_context=[m for p in parts for m in p.token_is_max_context],
            examples=[e for p in parts for e in p.examples],
        )

    def example_features(self) -> list[list[int]]:
        """For each example, the indices of its features (in span order; may be empty)."""
        out: list[list[int]] = [[] for _ in self.examples]
        for i, ex in enumerate(self.example_index.tolist()):
            out[ex].append(i)
        return out


# ---------------------------------------------------------------------------------------------


def doc_spans(num_tokens: int, max_tokens_for_doc: int, doc_stride: int) -> list[tuple[int, int]]:
    """run_squad.py's sliding window: (start, length) spans; the start advances by
    min(length, doc_stride) -- a step, not an overlap."""
    spans: list[tuple[int, int]] = []
    start = 0
    while start < num_tokens:
        length = min(num_tokens - start, max_tokens_for_doc)
        spans.append((start, length))
        if start + length == num_tokens:
            break
        start += min(length, doc_stride)
    return spans


def max_context_flags(spans: list[tuple[int, int]], num_tokens: int) -> list[np.ndarray]:
    """For each span, whether it is each of its tokens' "max context" span.

    A token's score in a span is min(left context, right context) + 0.01 * span length; the
    first span with the best score wins (run_squad.py's _check_is_max_context, vectorised:
    spans are visited in order and only a strictly better score takes over).
    """
    if len(spans) == 1:
        return [np.ones(spans[0][1], dtype=bool)]
    best_score = np.full(num_tokens, -np.inf)
    best_span = np.full(num_tokens, -1, dtype=np.int64)
    for i, (start, length) in enumerate(spans):
        pos = np.arange(length)
        score = np.minimum(pos, length - 1 - pos) + 0.01 * length
        window = slice(start, start + length)
        better = score > best_score[window]
        best_score[window] = np.where(better, score, best_score[window])
        best_span[window] = np.where(better, i, best_span[window])
    return [best_span[start : start + length] == i for i, (start, length) in enumerate(spans)]


def _chunks(n: int, size: int) -> Iterable[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)


@contextmanager
def no_gc():
    # Building features allocates a few hundred thousand containers and frees none: the cyclic
    # collector would rescan everything alive in the process again and again for nothing.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def build_features(
    examples: list[Example],
    tokenizer: TokenizerSettings,
    settings: FeatureSettings = FeatureSettings(),
) -> Features:
    """run_squad.py's convert_examples_to_features, with the Rust WordPiece.

    Every distinct word (of all contexts and questions) is tokenised once, on its own, by the
    Rust tokenizer in parallel; windows and max-context flags are computed once per (context,
    question length). ``settings.do_lower_case`` is taken from ``tokenizer`` (the casing is the
    tokenizer's property).
    """
    with no_gc():
        return _build_features(examples, tokenizer, settings)


def _build_features(examples: list[Example], tokenizer: TokenizerSettings, settings: FeatureSettings) -> Features:
    from spanqa import progress
    from spanqa.data.tokenization import make_tokenizer

    settings = replace(settings, do_lower_case=bool(tokenizer.do_lower_case))
    settings.check()
    wp = make_tokenizer(tokenizer)
    L = settings.max_seq_length

    # Distinct contexts, keyed by their words (questions of one paragraph share them).
    ctx_index: dict[tuple[str, ...], int] = {}
    ctx_words: list[list[str]] = []
    example_ctx: list[int] = []
    for ex in examples:
        key = tuple(ex.doc_tokens)
        c = ctx_index.get(key)
        if c is None:
            c = ctx_index[key] = len(ctx_words)
            ctx_words.append(list(ex.doc_tokens))
        example_ctx.append(c)

    q_words = [split_words(ex.question_text) for ex in examples]
    unique = list(dict.fromkeys(w for words in (*ctx_words, *q_words) for w in words))
    with progress.bar(total=len(unique), desc="tokenize", unit="word", unit_scale=True) as bar:
        table = wp.encode_vocabulary(unique, on_chunk=bar.update)
    ctx_enc = []
    for words in ctx_words:
        ids, toks, word_ids = table.lookup(words)
        ctx_enc.append((ids, toks, word_ids.tolist()))
    q_enc = []
    for words in q_words:
        ids, toks, _ = table.lookup(words)
        q_enc.append((ids, toks))

    # Windows per example; (context, question length) pairs repeat, so cache them.
    window_cache: dict[tuple[int, int], tuple[list[tuple[int, int]], list[np.ndarray]]] = {}
    plan: list[tuple[int, int, list[tuple[int, int]], list[np.ndarray]]] = []
    for e, c in enumerate(example_ctx):
        qlen = min(len(q_enc[e][0]), settings.max_query_length)
        key = (c, qlen)
        if key not in window_cache:
            n = len(ctx_enc[c][0])
            spans = doc_spans(n, L - qlen - 3, settings.doc_stride)
            window_cache[key] = (spans, max_context_flags(spans, n) if spans else [])
        spans, flags = window_cache[key]
        plan.append((e, qlen, spans, flags))

    n_features = sum(len(p[2]) for p in plan)
    input_ids = np.zeros((n_features, L), dtype=np.int64)
    input_mask = np.zeros((n_features, L), dtype=np.int64)
    segment_ids = np.zeros((n_features, L), dtype=np.int64)
    example_index = np.zeros(n_features, dtype=np.int64)
    span_index = np.zeros(n_features, dtype=np.int64)
    tokens: list[list[str]] = []
    token_to_orig_map: list[dict[int, int]] = []
    token_is_max_context: list[dict[int, bool]] = []

    cls_id, sep_id = wp.cls_id, wp.sep_id
    f = 0
    for e, qlen, spans, flags in progress.track(plan, total=len(plan), desc="features", unit="q"):
        q_ids, q_toks = q_enc[e][0][:qlen], q_enc[e][1][:qlen]
        c_ids, c_toks, c_words = ctx_enc[example_ctx[e]]
        head = ["[CLS]", *q_toks, "[SEP]"]
        off = qlen + 2
        for s, ((start, length), flag) in enumerate(zip(spans, flags)):
            end = off + length
            row = input_ids[f]
            row[0] = cls_id
            row[1 : 1 + qlen] = q_ids
            row[1 + qlen] = sep_id
            row[off:end] = c_ids[start : start + length]
            row[end] = sep_id
            input_mask[f, : end + 1] = 1
            segment_ids[f, off : end + 1] = 1
            example_index[f] = e
            span_index[f] = s
            positions = range(off, end)
            tokens.append(head + c_toks[start : start + length] + ["[SEP]"])
            token_to_orig_map.append(dict(zip(positions, c_words[start : start + length])))
            token_is_max_context.append(dict(zip(positions, flag.tolist())))
            f += 1

    return Features(
        settings=settings,
        input_ids=input_ids,
        input_mask=input_mask,
        segment_ids=segment_ids,
        example_index=example_index,
        span_index=span_index,
        tokens=tokens,
        token_to_orig_map=token_to_orig_map,
        token_is_max_context=token_is_max_context,
        examples=list(examples),
    )


# ---------------------------------------------------------------------------------------------
# Writing and reading feature folders
