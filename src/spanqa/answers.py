"""Logits → n-best answers → predictions, and the official SQuAD v1.1 scores.

Answer extraction follows SpanBERT's run_squad.py (``make_predictions`` / ``get_final_text``)
exactly, vectorised with numpy; scoring follows the official ``evaluate-v1.1.py``. Nothing here
runs a model: logits come in as arrays (or msame-style output files, see :func:`read_outputs`).
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import math
import os
import re
import shutil
import string
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from spanqa.errors import DatasetError, FeaturesError, InferenceError

logger = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.json"
NBEST_FILE = "nbest_predictions.json"
RESULT_FILE = "result.json"

# BasicTokenizer's default never_split in SpanBERT's pytorch_pretrained_bert.
_NEVER_SPLIT = ("[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]")


@dataclass(frozen=True)
class AnswerSettings:
    n_best_size: int = 20
    max_answer_length: int = 30
    # run_squad.py ranks the top-n over all max_seq_length positions, padding included, so a
    # padding position can push a real candidate out of the n-best. By default spanqa ranks
    # only a feature's real tokens, which makes answers independent of how much padding a
    # batch carries (length-aware batching); True reproduces the reference on padded logits.
    rank_padding: bool = False

    def __post_init__(self) -> None:
        if self.n_best_size < 1:
            raise ValueError(f"n_best_size must be at least 1, got {self.n_best_size}")
        if self.max_answer_length < 1:
            raise ValueError(f"max_answer_length must be at least 1, got {self.max_answer_length}")


# --------------------------------------------------------------------------------------------
# Basic tokenisation for get_final_text
# --------------------------------------------------------------------------------------------


def basic_tokenize(text: str, do_lower_case: bool) -> list[str]:
    """BERT's BasicTokenizer (as in SpanBERT's tokenization.py): the same Rust pipeline the
    features are made with. Whitespace-separated words equal to a special token ("[CLS]", ...)
    are kept whole and unchanged, as the reference's never_split does."""
    from spanqa.tokenization import basic_tokenizer

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


@functools.lru_cache(maxsize=1 << 16)
def get_final_text(pred_text: str, orig_text: str, do_lower_case: bool) -> str:
    """Project the word-piece prediction back onto the original text (run_squad's get_final_text).

    ``pred_text`` is the de-word-pieced answer (lower-cased and accent-free for an uncased
    model); ``orig_text`` the original words it spans. Returns the matching slice of
    ``orig_text`` with its original casing and accents, or all of ``orig_text`` when the two
    cannot be aligned character by character.
    """
    tok_text = _basic_text(orig_text, do_lower_case)
    start_position = tok_text.find(pred_text)
    if start_position == -1:
        return orig_text
    end_position = start_position + len(pred_text) - 1

    orig_ns_text, orig_ns_to_s_map = _strip_spaces(orig_text)
    tok_ns_text, tok_ns_to_s_map = _strip_spaces(tok_text)
    if len(orig_ns_text) != len(tok_ns_text):
        return orig_text

    tok_s_to_ns_map = {tok_index: i for i, tok_index in tok_ns_to_s_map.items()}

    orig_start_position = None
    if start_position in tok_s_to_ns_map:
        orig_start_position = orig_ns_to_s_map.get(tok_s_to_ns_map[start_position])
    if orig_start_position is None:
        return orig_text

    orig_end_position = None
    if end_position in tok_s_to_ns_map:
        orig_end_position = orig_ns_to_s_map.get(tok_s_to_ns_map[end_position])
    if orig_end_position is None:
        return orig_text

    return orig_text[orig_start_position : orig_end_position + 1]


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
                f"{name} logits have shape {tuple(arr.shape)} but there are {n} features; "
                "expected [num_features, seq_len]"
            )
        if not np.issubdtype(arr.dtype, np.floating):
            raise InferenceError(f"{name} logits are {arr.dtype}, expected float32")
        if np.isnan(arr).any():
            row = int(np.nonzero(np.isnan(arr).any(axis=1))[0][0])
            raise InferenceError(f"{name} logits of feature {row} contain NaN; rerun inference")
    if start.shape != end.shape:
        raise InferenceError(
            f"start logits {tuple(start.shape)} and end logits {tuple(end.shape)} differ in shape"
        )
    return start, end


def predict(
    features,
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    settings: AnswerSettings = AnswerSettings(),
) -> tuple[dict[str, str], dict[str, list[dict]]]:
    """Best answer and n-best list per question, as SpanBERT's run_squad.py (SQuAD v1.1) makes them.

    ``start_logits``/``end_logits`` are [num_features, L]; L may be shorter than
    max_seq_length (length-aware batching) but not shorter than any feature. Positions past a
    feature's tokens take part in its top-n only with ``settings.rank_padding``.
    Returns ``(predictions, nbest)``: question id → answer text, and question id → list of
    ``{text, probability, start_logit, end_logit}`` best first.
    """
    from spanqa import progress

    start, end = _check_logits(features, start_logits, end_logits)
    examples = features.examples
    n_features, width = start.shape
    n_best = settings.n_best_size
    do_lower_case = bool(features.settings.do_lower_case)

    example_index = np.asarray(features.example_index, dtype=np.int64).reshape(-1)
    if example_index.shape[0] != n_features:
        raise FeaturesError(
            f"features have {example_index.shape[0]} example indexes for {n_features} rows"
        )
    if n_features and (example_index.min() < 0 or example_index.max() >= len(examples)):
        raise FeaturesError(
            f"feature example_index out of range for {len(examples)} examples; rebuild the features"
        )
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
            if si > 0:
                tok_text = " ".join(features.tokens[f][si : ei + 1])
                tok_text = tok_text.replace(" ##", "").replace("##", "")
                tok_text = " ".join(tok_text.strip().split())
                orig_start = features.token_to_orig_map[f][si]
                orig_end = features.token_to_orig_map[f][ei]
                orig_text = " ".join(example.doc_tokens[orig_start : orig_end + 1])
                final_text = get_final_text(tok_text, orig_text, do_lower_case)
                if final_text in seen:
                    continue
            else:
                final_text = ""
            seen.add(final_text)
            nbest.append((final_text, cand_start_logit[j], cand_end_logit[j]))
        if not nbest:
            nbest.append(("empty", 0.0, 0.0))
        probs = _compute_softmax([sl + el for _, sl, el in nbest])
        all_nbest[example.qas_id] = [
            {"text": text, "probability": p, "start_logit": sl, "end_logit": el}
            for (text, sl, el), p in zip(nbest, probs)
        ]
        predictions[example.qas_id] = nbest[0][0]
    return predictions, all_nbest


# --------------------------------------------------------------------------------------------
# Official SQuAD v1.1 scoring (evaluate-v1.1.py)
# --------------------------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower case, drop ASCII punctuation and the articles a/an/the, fold whitespace."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def f1_score(prediction: str, ground_truth: str) -> float:
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def exact_match_score(prediction: str, ground_truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def _metric_max_over_ground_truths(metric_fn, prediction: str, ground_truths: list[str]) -> float:
    return max(metric_fn(prediction, gt) for gt in ground_truths)


def read_dataset(path: str | os.PathLike) -> list[dict]:
    """The articles (``data``) of a SQuAD JSON file, with one-line errors for bad files."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"dataset {path} does not exist; pass a SQuAD v1.1 JSON file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(
            f"dataset {path} is not readable JSON ({exc.__class__.__name__}); "
            "pass a SQuAD v1.1 JSON file"
        ) from None
    return _articles(obj, str(path))


def _articles(obj: Any, where: str) -> list[dict]:
    data = obj.get("data") if isinstance(obj, Mapping) else obj
    if not isinstance(data, list) or not all(
        isinstance(a, Mapping) and isinstance(a.get("paragraphs"), list) for a in data
    ):
        raise DatasetError(
            f"{where} is not SQuAD-shaped (expected data: [{{paragraphs: [...]}}]); "
            "pass a SQuAD v1.1 JSON file"
        )
    return data


def score(dataset: str | os.PathLike | Mapping | list, predictions: Mapping[str, str]) -> dict:
    """Exact match and F1 in percent over every question of ``dataset``, as evaluate-v1.1.py.

    ``dataset`` is a path, the parsed file, or its list of articles. A question without a
    prediction scores 0 and counts in the total (the official script says so on stderr; here a
    warning is logged and ``unanswered`` counts them).
    """
    if isinstance(dataset, (str, os.PathLike)):
        articles = read_dataset(dataset)
    else:
        articles = _articles(dataset, "dataset")
    f1 = exact_match = 0.0
    total = 0
    unanswered: list[str] = []
    for article in articles:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                total += 1
                if qa["id"] not in predictions:
                    unanswered.append(qa["id"])
                    continue
                ground_truths = [a["text"] for a in qa["answers"]]
                if not ground_truths:
                    raise DatasetError(
                        f"question {qa['id']} has no gold answers; SQuAD v1.1 scoring needs at "
                        "least one (is this a SQuAD v2 file?)"
                    )
                prediction = predictions[qa["id"]]
                exact_match += _metric_max_over_ground_truths(
                    exact_match_score, prediction, ground_truths
                )
                f1 += _metric_max_over_ground_truths(f1_score, prediction, ground_truths)
    if total == 0:
        raise DatasetError("the dataset has no questions; pass a SQuAD v1.1 JSON file")
    for qid in unanswered[:10]:
        logger.warning("Unanswered question %s will receive score 0.", qid)
    if len(unanswered) > 10:
        logger.warning("... and %d more unanswered questions", len(unanswered) - 10)
    return {
        "exact_match": 100.0 * exact_match / total,
        "f1": 100.0 * f1 / total,
        "total": total,
        "unanswered": len(unanswered),
    }


# --------------------------------------------------------------------------------------------
# Result directories
# --------------------------------------------------------------------------------------------


def _dump_json(obj: Any, path: Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def write_results(
    result_dir: str | os.PathLike,
    predictions: Mapping[str, str],
    nbest: Mapping[str, list[dict]],
    result: Mapping[str, Any],
    extra_files: Mapping[str, Any] | None = None,
    extra_dirs: Mapping[str, Path] | None = None,
) -> Path:
    """Write predictions.json, nbest_predictions.json, any extra files, then result.json.

    The directory is built under a temporary name and renamed into place, so ``result_dir`` is
    either complete or untouched: an interrupted run never leaves a result.json behind.
    ``extra_files`` maps a plain file name to a JSON-able object (or str/bytes written as is);
    ``extra_dirs`` maps a plain name to an existing directory moved inside.
    """
    from spanqa.fileutil import atomic_dir

    extra_files = dict(extra_files or {})
    reserved = {PREDICTIONS_FILE, NBEST_FILE, RESULT_FILE}
    for name in extra_files:
        if not name or name != Path(name).name or name in (".", "..") or name in reserved:
            raise ValueError(f"extra file name {name!r} must be a plain file name other than {sorted(reserved)}")
    final = Path(result_dir)
    with atomic_dir(final) as tmp:
        _dump_json(dict(predictions), tmp / PREDICTIONS_FILE)
        _dump_json(dict(nbest), tmp / NBEST_FILE)
        for name, obj in extra_files.items():
            if isinstance(obj, bytes):
                (tmp / name).write_bytes(obj)
            elif isinstance(obj, str):
                (tmp / name).write_text(obj, encoding="utf-8")
            else:
                _dump_json(obj, tmp / name)
        for name, directory in (extra_dirs or {}).items():
            shutil.move(str(directory), tmp / name)
        _dump_json(dict(result), tmp / RESULT_FILE)
    return final


# --------------------------------------------------------------------------------------------
# Inference outputs (msame layout) and the evaluate step
# --------------------------------------------------------------------------------------------


def _output_file(directory: Path, batch: int, output: int) -> Path | None:
    for suffix in (".bin", ".npy"):
        p = directory / f"{batch}_output_{output}{suffix}"
        if p.is_file():
            return p
    return None


def _outputs_root(outputs_dir: Path) -> Path:
    """``outputs_dir`` itself, or msame's single timestamped sub-folder inside it."""
    if _output_file(outputs_dir, 0, 0) is not None:
        return outputs_dir
    subdirs = [d for d in outputs_dir.iterdir() if d.is_dir() and _output_file(d, 0, 0) is not None]
    if len(subdirs) == 1:
        return subdirs[0]
    return outputs_dir


def _read_array(path: Path, rows_options: Iterable[int], min_width: int, max_width: int) -> np.ndarray:
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InferenceError(f"{path} is not a readable .npy file ({exc}); rerun inference") from None
        if arr.dtype != np.float32:
            raise InferenceError(f"{path} holds {arr.dtype}, expected float32 logits")
        if arr.ndim == 2:
            if arr.shape[0] not in rows_options or not min_width <= arr.shape[1] <= max_width:
                raise InferenceError(
                    f"{path} has shape {tuple(arr.shape)}, expected [{' or '.join(map(str, rows_options))}, "
                    f"{min_width}..{max_width}]; were the outputs made from these features?"
                )
            return arr
        flat = arr.reshape(-1)
    else:
        flat = np.fromfile(path, dtype=np.uint8)
        if flat.size % 4:
            raise InferenceError(
                f"{path} is {flat.size} bytes, not a whole number of float32 values; it is truncated, rerun inference"
            )
        flat = flat.view(np.float32)
    for rows in rows_options:
        if rows and flat.size % rows == 0 and min_width <= flat.size // rows <= max_width:
            return flat.reshape(rows, flat.size // rows)
    raise InferenceError(
        f"{path} holds {flat.size} float32 values, which is not "
        f"{' or '.join(map(str, rows_options))} rows of {min_width}..{max_width} logits; "
        "it is truncated or was made from other features, rerun inference"
    )


def read_outputs(
    outputs_dir: str | os.PathLike,
    batch_size: int,
    lengths: np.ndarray,
    max_seq_length: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Start and end logits [num_features, W] from msame-style output files.

    Batch i is ``{i}_output_0`` (start) and ``{i}_output_1`` (end), ``.bin`` (raw float32) or
    ``.npy``, with ``batch_size`` rows (the last batch padded with rows that are dropped) of up
    to ``max_seq_length`` logits. Batches narrower than the widest are padded with -inf, which
    never enters a feature's top-n ahead of a real logit and is never a valid position.
    """
    outputs_dir = Path(outputs_dir)
    if not outputs_dir.is_dir():
        raise InferenceError(f"outputs directory {outputs_dir} does not exist; run inference first")
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    num_features = int(lengths.shape[0])
    if batch_size < 1:
        raise FeaturesError(f"features batch_size is {batch_size}; rebuild the features")
    root = _outputs_root(outputs_dir)
    num_batches = -(-num_features // batch_size)
    starts: list[np.ndarray] = []
    ends: list[np.ndarray] = []
    for i in range(num_batches):
        lo, hi = i * batch_size, min((i + 1) * batch_size, num_features)
        real = hi - lo
        need = int(lengths[lo:hi].max())
        rows_options = (batch_size,) if real == batch_size else (batch_size, real)
        pair = []
        for k in (0, 1):
            path = _output_file(root, i, k)
            if path is None:
                raise InferenceError(
                    f"{root / f'{i}_output_{k}.bin'} is missing ({num_batches} batches of "
                    f"{batch_size} expected); rerun inference"
                )
            pair.append(_read_array(path, rows_options, need, max_seq_length)[:real])
        if pair[0].shape != pair[1].shape:
            raise InferenceError(
                f"batch {i} start logits {pair[0].shape} and end logits {pair[1].shape} differ; rerun inference"
            )
        starts.append(pair[0])
        ends.append(pair[1])
    if _output_file(root, num_batches, 0) is not None:
        raise InferenceError(
            f"{root} has more output batches than the {num_batches} the features make; "
            "were the outputs made from these features?"
        )
    width = max((a.shape[1] for a in starts), default=0)

    def stack(parts: list[np.ndarray]) -> np.ndarray:
        out = np.full((num_features, width), -np.inf, dtype=np.float32)
        row = 0
        for a in parts:
            out[row : row + a.shape[0], : a.shape[1]] = a
            row += a.shape[0]
        return out

    return stack(starts), stack(ends)


def _manifest_value(manifest: Any, key: str) -> Any:
    if isinstance(manifest, Mapping):
        if key in manifest:
            return manifest[key]
        for nested in manifest.values():
            if isinstance(nested, Mapping) and key in nested:
                return nested[key]
        return None
    return getattr(manifest, key, None)


def evaluate(
    dataset_path: str | os.PathLike,
    features_dir: str | os.PathLike,
    outputs_dir: str | os.PathLike,
    result_dir: str | os.PathLike,
    settings: AnswerSettings = AnswerSettings(),
    extra_files: Mapping[str, Any] | None = None,
) -> dict:
    """Features + inference outputs → predictions, n-best and scores in ``result_dir``.

    Returns the result dict that went into result.json.
    """
    from spanqa import squad

    articles = read_dataset(dataset_path)  # fail fast on a bad dataset, before the heavy work
    features = squad.load_features(features_dir)
    manifest = squad.read_features_manifest(features_dir)
    batch_size = _manifest_value(manifest, "batch_size")
    if not isinstance(batch_size, int):
        raise FeaturesError(f"features manifest in {features_dir} has no batch_size; rebuild the features")
    num_features = _manifest_value(manifest, "num_features")
    if num_features is not None and int(num_features) != len(features):
        raise FeaturesError(
            f"features manifest in {features_dir} says {num_features} features but {len(features)} "
            "were read; rebuild the features"
        )
    lengths = np.fromiter((len(t) for t in features.tokens), dtype=np.int64, count=len(features))
    start, end = read_outputs(outputs_dir, batch_size, lengths, features.settings.max_seq_length)
    predictions, nbest = predict(features, start, end, settings)
    scores = score(articles, predictions)
    answered = scores["total"] - scores["unanswered"]
    if answered == 0:
        raise DatasetError(
            f"none of the {scores['total']} questions in {dataset_path} has a prediction; "
            "were the features made from this dataset?"
        )
    result = {
        **scores,
        "answer_settings": asdict(settings),
        "feature_settings": asdict(features.settings),
        "num_features": len(features),
        "batch_size": batch_size,
        "dataset": str(dataset_path),
        "features": str(features_dir),
        "outputs": str(outputs_dir),
    }
    write_results(result_dir, predictions, nbest, result, extra_files=extra_files)
    return result
