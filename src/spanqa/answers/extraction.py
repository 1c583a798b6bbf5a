"""Logits → n-best answers → predictions, exactly as SpanBERT's run_squad.py makes them
(``make_predictions`` / ``get_final_text``), vectorised with numpy. Nothing here runs a model.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from spanqa.errors import FeaturesError, InferenceError
from spanqa.settings import AnswerSettings

_NEVER_SPLIT = ("[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]")

# --------------------------------------------------------------------------------------------
# Basic tokenisation for get_final_text
# --------------------------------------------------------------------------------------------


def basic_tokenize(text: str, do_lower_case: bool) -> list[str]:
    """BERT's BasicTokenizer (as in SpanBERT's tokenization.py): the same Rust pipeline the
    features are made with. Whitespace-separated words equal to a special token ("[CLS]", ...)
    are kept whole and unchanged, as the reference's never_split does."""
    from spanqa.data.tokenization import basic_tokenizer

    basic = basic_tokenizer(bool(do_lower_case))
    if "[" in text and any(tok in text for tok in _NEVER_SPLIT):
        out: list[str] = []
        for word in basic.clean(text).split():
            if word in _NEVER_SPLIT:
                out.append(word)
            else:
                out.extend(basic.tokenize(word))
        return out
    return basic.tokenize(text)


@functools.lru_cache(maxsize=1 << 18)
def _basic_piece(piece: str, do_lower_case: bool) -> str:
    return " ".join(basic_tokenize(piece, do_lower_case))


def _basic_text(text: str, do_lower_case: bool) -> str:
    """``" ".join(basic_tokenize(text))``, memoised per space-separated word.

    Basic tokenisation never looks across whitespace, so a text's tokens are its words' tokens
    in order; answer texts are runs of the same document words, so most words repeat.
    """
    return " ".join(t for t in (_basic_piece(w, do_lower_case) for w in text.split(" ")) if t)


def _strip_spaces(text: str) -> tuple[str, dict[int, int]]:
    ns_chars = []
    ns_to_s_map = {}
    for i, c in enumerate(text):
        if c == " ":
            continue
        ns_to_s_map[len(ns_chars)] = i
        ns_chars.append(c)
    return "".join(ns_chars), ns_to_s_map


def get_final_text(pred_text: str, orig_text: str, do_lower_case: bool) -> str:
    """Project the word-piece prediction back onto the original text (run_squad's get_final_text)."""
    lo, hi = final_span(pred_text, orig_text, do_lower_case)
    return orig_text[lo:hi]


@functools.lru_cache(maxsize=1 << 16)
def final_span(pred_text: str, orig_text: str, do_lower_case: bool) -> tuple[int, int]:
    """Project the word-piece prediction back onto the original text (run_squad's get_final_text).

    ``pred_text`` is the de-word-pieced answer (lower-cased and accent-free for an uncased
    model); ``orig_text`` the original words it spans. Returns the matching slice of
    ``orig_text`` with its original casing and accents, or all of ``orig_text`` when the two
    cannot be aligned character by character.
    """
    tok_text = _basic_text(orig_text, do_lower_case)
    start_position = tok_text.find(pred_text)
    if start_position == -1:
        return 0, len(orig_text)
    end_position = start_position + len(pred_text) - 1

    orig_ns_text, orig_ns_to_s_map = _strip_spaces(orig_text)
    tok_ns_text, tok_ns_to_s_map = _strip_spaces(tok_text)
    if len(orig_ns_text) != len(tok_ns_text):
        return 0, len(orig_text)

    tok_s_to_ns_map = {tok_index: i for i, tok_index in tok_ns_to_s_map.items()}

    orig_start_position = None
    if start_position in tok_s_to_ns_map:
        orig_start_position = orig_ns_to_s_map.get(tok_s_to_ns_map[start_position])
    if orig_start_position is None:
        return 0, len(orig_text)

    orig_end_position = None
    if end_position in tok_s_to_ns_map:
        orig_end_position = orig_ns_to_s_map.get(tok_s_to_ns_map[end_position])
    if orig_end_position is None:
        return 0, len(orig_text)

    return orig_start_position, orig_end_position + 1


def _compute_softmax(scores: list[float]) -> list[float]:
    # Kept scalar and in the reference's order of operations so probabilities match bit for bit.
    if not scores:
        return []
    max_score = max(scores)
    exp_scores = [math.exp(s - max_score) for s in scores]
    total = 0.0
    for x in exp_scores:
        total += x
    return [x / total for x in exp_scores]


# --------------------------------------------------------------------------------------------
# Prediction
# --------------------------------------------------------------------------------------------


def _top_indexes(logits: np.ndarray, n: int) -> np.ndarray:
    """Per row, the indexes of the n largest logits, largest first, ties by lower index.

    This is run_squad's ``sorted(enumerate(logits), key=score, reverse=True)[:n]`` (Python's
    sort stays stable under reverse=True). A full stable argsort of every row costs most of
    the time, so each logit and its index are packed into one unique uint64 key that orders
    exactly like (descending logit, ascending index); a partition then finds the n smallest
    keys and only those are sorted.
    """
    rows, width = logits.shape
    n = min(n, width)
    if n == 0:
        return np.zeros((rows, 0), dtype=np.int64)
    # +0.0 turns -0.0 into +0.0: the reference compares them as equal.
    x = np.ascontiguousarray(logits, dtype=np.float32) + np.float32(0.0)
    bits = x.view(np.uint32)
    # IEEE bits → unsigned ints in ascending float order; inverted for descending.
    ordered = np.where(bits & np.uint32(0x80000000), ~bits, bits | np.uint32(0x80000000))
    keys = (~ordered).astype(np.uint64) << np.uint64(32)
    keys |= np.arange(width, dtype=np.uint64)[None, :]
    if n < width:
        keys = np.partition(keys, n - 1, axis=1)[:, :n]
    keys = np.sort(keys, axis=1)[:, :n]
    return (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)


def _check_logits(features, start_logits, end_logits) -> tuple[np.ndarray, np.ndarray]:
    start = np.asarray(start_logits)
    end = np.asarray(end_logits)
    n = len(features)
    for name, arr in (("start", start), ("end", end)):
        if arr.ndim != 2 or arr.shape[0] != n:
            raise InferenceError(
                f"{name} logits have shape {tuple(arr.shape)} but there are {n} features; expected [num_features, seq_len]"
            )
        if not np.issubdtype(arr.dtype, np.floating):
            raise InferenceError(f"{name} logits are {arr.dtype}, expected float32")
        if np.isnan(arr).any():
            row = int(np.nonzero(np.isnan(arr).any(axis=1))[0][0])
            raise InferenceError(f"{name} logits of feature {row} contain NaN; rerun inference")
    if start.shape != end.shape:
        raise InferenceError(f"start logits {tuple(start.shape)} and end logits {tuple(end.shape)} differ in shape")
    return start, end


@dataclass
class Answers:
    """What ``predict_answers`` makes. The last two are set for SQuAD 2.0 only."""

    predictions: dict[str, str]  # question id -> answer text ("" for no answer in 2.0)
    nbest: dict[str, list[dict]]
    null_odds: dict[str, float] | None = None  # null score - best span's score (null_odds.json)
    best_spans: dict[str, str] | None = None  # the best non-null span, whatever the threshold


def predict(
    features,
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    settings: AnswerSettings = AnswerSettings(),
    spans: bool = False,
) -> tuple[dict[str, str], dict[str, list[dict]]]:
    """``(predictions, nbest)`` of ``predict_answers``."""
    out = predict_answers(features, start_logits, end_logits, settings, spans)
    return out.predictions, out.nbest


def predict_answers(
    features,
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    settings: AnswerSettings = AnswerSettings(),
    spans: bool = False,
) -> Answers:
    """Best answer and n-best list per question, as SpanBERT's run_squad.py (SQuAD v1.1) makes them.

    ``start_logits``/``end_logits`` are [num_features, L]; L may be shorter than
    max_seq_length (length-aware batching) but not shorter than any feature. Positions past a
    feature's tokens take part in its top-n only with ``settings.rank_padding``.
    Returns ``(predictions, nbest)``: question id → answer text, and question id → list of
    ``{text, probability, start_logit, end_logit}`` best first (with ``spans``, also
    ``orig_words`` and ``orig_chars``: where the text lies among the example's words).

    With ``settings.version_2_with_negative`` the null answer joins in as Google BERT's 2.0
    run_squad.py adds it (see ``spanqa.answers.squad2``): an n-best candidate "", the answer ""
    when the null odds exceed ``null_score_diff_threshold``, and ``null_odds``/``best_spans``.
    """
    from spanqa import progress
    from spanqa.answers import squad2

    start, end = _check_logits(features, start_logits, end_logits)
    examples = features.examples
    n_features, width = start.shape
    n_best = settings.n_best_size
    do_lower_case = bool(features.settings.do_lower_case)

    example_index = np.asarray(features.example_index, dtype=np.int64).reshape(-1)
    if example_index.shape[0] != n_features:
        raise FeaturesError(f"features have {example_index.shape[0]} example indexes for {n_features} rows")
    if n_features and (example_index.min() < 0 or example_index.max() >= len(examples)):
        raise FeaturesError(f"feature example_index out of range for {len(examples)} examples; rebuild the features")
    n_tokens = np.fromiter((len(t) for t in features.tokens), dtype=np.int64, count=n_features)
    if n_features and width < int(n_tokens.max()):
        row = int(np.argmax(n_tokens > width))
        raise InferenceError(
            f"logits are {width} positions wide but feature {row} has {int(n_tokens[row])} tokens; "
            "were the outputs made from these features?"
        )

    if n_features and width and not settings.rank_padding:
        padding = np.arange(width)[None, :] >= n_tokens[:, None]
        if padding.any():
            start = np.where(padding, np.float32(-np.inf), start).astype(start.dtype, copy=False)
            end = np.where(padding, np.float32(-np.inf), end).astype(end.dtype, copy=False)
    if n_features and width:
        n = min(n_best, width)
        start_top = _top_indexes(start, n)  # [N, n]
        end_top = _top_indexes(end, n)
        # Only the top positions need the dict lookups: N * 2n of them, not N * L.
        start_in_map = np.zeros((n_features, n), dtype=bool)
        start_max_ctx = np.zeros((n_features, n), dtype=bool)
        end_in_map = np.zeros((n_features, n), dtype=bool)
        t2o = features.token_to_orig_map
        ctx = features.token_is_max_context
        start_rows = start_top.tolist()
        end_rows = end_top.tolist()
        for i in range(n_features):
            m, c = t2o[i], ctx[i]
            start_in_map[i] = [p in m for p in start_rows[i]]
            start_max_ctx[i] = [bool(c.get(p, False)) for p in start_rows[i]]
            end_in_map[i] = [p in m for p in end_rows[i]]
        s = start_top[:, :, None]
        e = end_top[:, None, :]
        valid = (
            (s < n_tokens[:, None, None])
            & (e < n_tokens[:, None, None])
            & (start_in_map & start_max_ctx)[:, :, None]
            & end_in_map[:, None, :]
            & (e >= s)
            & (e - s + 1 <= settings.max_answer_length)
        )
        # Row-major order of nonzero = the reference's loops: feature, start rank, end rank.
        feat, a, b = np.nonzero(valid)
        cand_start = start_top[feat, a]
        cand_end = end_top[feat, b]
        cand_start_logit = start[feat, cand_start].astype(np.float64)
        cand_end_logit = end[feat, cand_end].astype(np.float64)
        total = cand_start_logit + cand_end_logit
        cand_example = example_index[feat]
        # Per example, a stable sort by descending score (ties keep the reference's loop order).
        order = np.lexsort((np.arange(total.shape[0]), -total, cand_example))
        feat = feat[order].tolist()
        cand_start = cand_start[order].tolist()
        cand_end = cand_end[order].tolist()
        cand_start_logit = cand_start_logit[order].tolist()
        cand_end_logit = cand_end_logit[order].tolist()
        bounds = np.searchsorted(cand_example[order], np.arange(len(examples) + 1)).tolist()
    else:
        feat = cand_start = cand_end = cand_start_logit = cand_end_logit = []
        bounds = [0] * (len(examples) + 1)

    version_2 = bool(settings.version_2_with_negative)  # None (undecided) is 1.1
    if version_2:
        nulls = squad2.null_scores(example_index, start, end, len(examples))
        null_odds: dict[str, float] = {}
        best_spans: dict[str, str] = {}
    predictions: dict[str, str] = {}
    all_nbest: dict[str, list[dict]] = {}
    for ex_i in progress.track(range(len(examples)), total=len(examples), desc="answers"):
        example = examples[ex_i]
        seen: set[str] = set()
        nbest: list[tuple[str, float, float]] = []
        for j in range(bounds[ex_i], bounds[ex_i + 1]):
            if len(nbest) >= n_best:
                break
            f, si, ei = feat[j], cand_start[j], cand_end[j]
            span = None
            if si > 0:
                tok_text = " ".join(features.tokens[f][si : ei + 1])
                tok_text = tok_text.replace(" ##", "").replace("##", "")
                tok_text = " ".join(tok_text.strip().split())
                orig_start = features.token_to_orig_map[f][si]
                orig_end = features.token_to_orig_map[f][ei]
                orig_text = " ".join(example.doc_tokens[orig_start : orig_end + 1])
                lo, hi = final_span(tok_text, orig_text, do_lower_case)
                final_text = orig_text[lo:hi]
                span = (orig_start, orig_end, lo, hi)
                if final_text in seen:
                    continue
            else:
                final_text = ""
            seen.add(final_text)
            nbest.append((final_text, cand_start_logit[j], cand_end_logit[j], span))
        if version_2:
            null = ("", float(nulls.start_logit[ex_i]), float(nulls.end_logit[ex_i]), None)
            nbest = squad2.insert_null(nbest, null, n_best)
            answer, odds, best = squad2.decide(nbest, nulls.score[ex_i], settings.null_score_diff_threshold)
            null_odds[example.qas_id], best_spans[example.qas_id] = odds, best
        elif not nbest:
            nbest.append(("empty", 0.0, 0.0, None))
        probs = _compute_softmax([sl + el for _, sl, el, _ in nbest])
        entries = []
        for (text, sl, el, span), p in zip(nbest, probs):
            entry = {"text": text, "probability": p, "start_logit": sl, "end_logit": el}
            if spans and span is not None:
                # Word range in doc_tokens and character range within their space-joined text.
                entry["orig_words"], entry["orig_chars"] = span[:2], span[2:]
            entries.append(entry)
        all_nbest[example.qas_id] = entries
        predictions[example.qas_id] = answer if version_2 else nbest[0][0]
    if version_2:
        return Answers(predictions, all_nbest, null_odds, best_spans)
    return Answers(predictions, all_nbest)
