"""SQuAD 2.0: the null answer (as BERT's run_squad.py computes it) and the official 2.0 metrics.

The null answer. Position 0 ([CLS]) of every window scores "no answer": the null score of a
question is the minimum over its windows of ``start_logits[0] + end_logits[0]``; the best
non-null span is chosen as in 1.1, and ``score_diff = null_score - (start_logit + end_logit)``
of that span is the question's null odds. The prediction is "" when ``score_diff`` exceeds the
threshold (Google BERT / Hugging Face; SpanBERT keeps the span and thresholds when scoring).

The metrics re-implement the official ``evaluate-v2.0.py``: exact and F1 at the chosen
threshold, split into HasAns / NoAns, and ``best_exact`` / ``best_f1`` at the threshold that
maximises each, from the best non-null spans and their null odds. Two documented departures:
* a question without a prediction scores 0 and counts in every total (the official script
  skips it in ``exact``/``f1`` and then fails on the HasAns/NoAns split);
* the best threshold is searched over groups of equal null odds, and "answer nothing" reports
  a threshold below every odds instead of 0.0, so that re-running with the reported threshold
  scores exactly ``best_exact`` / ``best_f1`` (the official walk can stop inside a tie).
"""

from __future__ import annotations

import collections
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from spanqa.answers.scoring import normalize_answer
from spanqa.data.squad import is_squad2
from spanqa.errors import UsageError

NULL_ODDS_FILE = "null_odds.json"

# Null odds of a question with no valid non-null span in any window: its answer is "" at any
# threshold; a finite value (JSON has no infinity) far above any difference of two logits.
NO_SPAN_NULL_ODDS = 1e6

# How far below the smallest null odds "answer nothing" puts its best threshold.
_BELOW_ALL = 1.0


# --------------------------------------------------------------------------------------------
# The null answer


@dataclass(frozen=True)
class NullScores:
    """Per example: the smallest null score over its windows and where it was found."""

    score: np.ndarray  # float64 [examples]; +inf for an example without windows
    feature: np.ndarray  # int64 [examples]: the window holding it (-1: none)
    start_logit: np.ndarray  # float64 [examples]: start_logits[feature, 0]
    end_logit: np.ndarray  # float64 [examples]


def null_scores(
    example_index: Sequence[int],
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    num_examples: int,
) -> NullScores:
    """The null score of each example: min over its windows of ``start[0] + end[0]``.

    Sums are float64 of the float32 logits, as the reference adds Python floats; among windows
    with the same score the first wins (the reference replaces only on ``<``).
    """
    ex = np.asarray(example_index, dtype=np.int64).reshape(-1)
    s0 = np.asarray(start_logits)[:, 0].astype(np.float64) if len(ex) else np.zeros(0)
    e0 = np.asarray(end_logits)[:, 0].astype(np.float64) if len(ex) else np.zeros(0)
    total = s0 + e0
    score = np.full(num_examples, np.inf)
    feature = np.full(num_examples, -1, dtype=np.int64)
    # Stable sort by (example, score): the first row of each example is its first minimum.
    order = np.lexsort((np.arange(len(ex)), total, ex))
    first = np.ones(len(order), dtype=bool)
    first[1:] = ex[order][1:] != ex[order][:-1]
    rows = order[first]
    feature[ex[rows]] = rows
    score[ex[rows]] = total[rows]
    start = np.zeros(num_examples)
    end = np.zeros(num_examples)
    start[ex[rows]] = s0[rows]
    end[ex[rows]] = e0[rows]
    return NullScores(score, feature, start, end)


# An n-best candidate: (text, start_logit, end_logit, ...) with anything else after them.
Candidate = tuple


def insert_null(spans: list[Candidate], null: Candidate, n_best: int) -> list[Candidate]:
    """The 2.0 n-best: the null candidate ("", its logits, ...) ranked among the 1.1 n-best.

    ``spans`` are the best deduplicated non-null spans, best first, at most ``n_best``. The
    null takes its place by score (after spans of equal score, as the reference sorts it in
    last) and counts toward ``n_best``; when it ranks below all ``n_best`` it is appended, as
    the reference does, so the empty answer is always a candidate.
    """
    total = null[1] + null[2]
    pos = next((i for i, c in enumerate(spans) if c[1] + c[2] < total), len(spans))
    if pos >= n_best:
        return [*spans[:n_best], null]
    return [*spans[:pos], null, *spans[pos : n_best - 1]]


def decide(nbest: list[Candidate], null_score: float, threshold: float) -> tuple[str, float, str]:
    """(prediction, null odds, best non-null text) of one question from its 2.0 n-best.

    With no non-null candidate the answer is "" and the odds ``NO_SPAN_NULL_ODDS``.
    """
    best = next((c for c in nbest if c[0]), None)
    if best is None:  # also an example without windows (null_score +inf): it has no span either
        return "", NO_SPAN_NULL_ODDS, ""
    diff = float(null_score) - (best[1] + best[2])
    return ("" if diff > threshold else best[0]), diff, best[0]


def apply_threshold(best_spans: Mapping[str, str], null_odds: Mapping[str, float], threshold: float) -> dict[str, str]:
    """Predictions at ``threshold``: "" where the null odds exceed it, else the best span."""
    return {q: ("" if null_odds[q] > threshold else text) for q, text in best_spans.items()}


# --------------------------------------------------------------------------------------------
# Gold answers and per-question scores (evaluate-v2.0.py's rules)

_normalize = normalize_answer  # the same in evaluate-v1.1.py and evaluate-v2.0.py


def _exact(gold: str, pred: str) -> int:
    return int(_normalize(gold) == _normalize(pred))


def _f1(gold: str, pred: str) -> float:
    g = _normalize(gold).split()
    p = _normalize(pred).split()
    if not g or not p:
        return float(g == p)  # "" against "" is a match: a correct no-answer
    same = sum((collections.Counter(g) & collections.Counter(p)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class Gold:
    has_answer: bool
    texts: tuple[str, ...]  # what a prediction is scored against ("" for no answer)


def gold_answers(examples: Iterable[Any]) -> dict[str, Gold]:
    """Question id -> Gold from parsed examples (``qas_id``, ``answers``, ``is_impossible``).

    As the official script: a question has an answer when its answer list is not empty; gold
    texts that normalise to nothing are dropped, and with none left the gold is "".
    """
    out = {}
    for ex in examples:
        answers = list(ex.answers)
        has = bool(answers) and not getattr(ex, "is_impossible", False)
        texts = tuple(a for a in answers if _normalize(a)) or ("",)
        out[ex.qas_id] = Gold(has, texts)
    return out


def question_scores(gold: Gold, pred: str) -> tuple[float, float]:
    return max(_exact(g, pred) for g in gold.texts), max(_f1(g, pred) for g in gold.texts)


# --------------------------------------------------------------------------------------------
# The metrics


def score(
    gold: Mapping[str, Gold],
    predictions: Mapping[str, str],
    null_odds: Mapping[str, float] | None = None,
    best_spans: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The official 2.0 metrics, in percent.

    ``predictions`` are scored as they are (the threshold already applied). With ``null_odds``
    the best thresholds are searched too, over ``best_spans`` (the best non-null span of each
    question; default ``predictions``, which is what the official script uses).
    """
    if not gold:
        raise UsageError("no questions to score")
    exact: dict[str, float] = {}
    f1: dict[str, float] = {}
    for q, g in gold.items():
        exact[q], f1[q] = question_scores(g, predictions[q]) if q in predictions else (0.0, 0.0)
    has = [q for q, g in gold.items() if g.has_answer]
    no = [q for q, g in gold.items() if not g.has_answer]
    out: dict[str, Any] = _block("", exact, f1, list(gold))
    if has:
        out.update(_block("HasAns_", exact, f1, has))
    if no:
        out.update(_block("NoAns_", exact, f1, no))
    out["unanswered"] = sum(q not in predictions for q in gold)
    if null_odds is not None:
        spans = predictions if best_spans is None else best_spans
        for name, fn in (("exact", _exact), ("f1", _f1)):
            best, thresh = best_threshold(gold, spans, null_odds, fn)
            out[f"best_{name}"] = best
            out[f"best_{name}_thresh"] = thresh
    return out


def score_examples(
    examples: Sequence[Any],
    predictions: Mapping[str, str],
    null_odds: Mapping[str, float] | None = None,
    best_spans: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``score`` against parsed examples' gold answers."""
    return score(gold_answers(examples), predictions, null_odds, best_spans)


def _block(prefix: str, exact: Mapping[str, float], f1: Mapping[str, float], qids: list[str]) -> dict:
    n = len(qids)
    return {
        f"{prefix}exact": 100.0 * sum(exact[q] for q in qids) / n,
        f"{prefix}f1": 100.0 * sum(f1[q] for q in qids) / n,
        f"{prefix}total": n,
    }


def best_threshold(
    gold: Mapping[str, Gold],
    spans: Mapping[str, str],
    null_odds: Mapping[str, float],
    metric=_f1,
) -> tuple[float, float]:
    """(best score in percent, its threshold) over every threshold on ``null_odds``.

    A question answers its span when its odds are at most the threshold, else "". Starting
    from "all no answer", groups of equal odds are switched to their spans in increasing odds
    and the best total kept (the first, i.e. lowest threshold, among equals).
    """
    missing = [q for q in spans if q in gold and q not in null_odds]
    if missing:
        raise UsageError(f"question {missing[0]} has a prediction but no null odds; pass the run's {NULL_ODDS_FILE}")
    gain: dict[float, float] = collections.defaultdict(float)
    total = 0.0  # everything answered ""
    for q, g in gold.items():
        if q not in spans:
            continue  # scores 0 at every threshold, as in ``score``
        # What "" scores: 1 for no answer, and for the odd gold that normalises to nothing.
        if_null = max(metric(t, "") for t in g.texts)
        total += if_null
        gain[float(null_odds[q])] += max(metric(t, spans[q]) for t in g.texts) - if_null
    odds = sorted(gain)
    best, thresh = total, (odds[0] - _BELOW_ALL if odds else 0.0)
    for value in odds:
        total += gain[value]
        if total > best:
            best, thresh = total, value
    return 100.0 * best / len(gold), thresh


# --------------------------------------------------------------------------------------------
# Which models and datasets are 2.0

_SQUAD_VERSION = re.compile(r"squad[-_ .]?v?([12])(?:\.[01])?(?![0-9])", re.IGNORECASE)


def detect_squad_version(source: str | Path) -> int | None:
    """2 or 1 when a checkpoint's (or .onnx's) name, or its config.json's ``_name_or_path`` /
    ``finetuning_task``, says "squad2", "squad_v2", "squad-2.0", ... ("squad1", ...); else None."""
    path = Path(source)
    names = [path.name, path.parent.name if path.suffix else ""]
    config = (path if path.is_dir() else path.parent) / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
        names += [str(data.get(k) or "") for k in ("_name_or_path", "finetuning_task")]
    except (OSError, ValueError, AttributeError):
        pass  # no readable config: the name alone decides
    for name in names:
        m = _SQUAD_VERSION.search(name)
        if m:
            return int(m.group(1))
    return None


def package_squad_version(package: Any) -> int | None:
    """The SQuAD version a model package was built for (``compile --squad-version``, recorded
    in its manifest's settings), else what its model file's name says."""
    recorded = (package.manifest.settings or {}).get("squad_version")
    return int(recorded) if recorded else detect_squad_version(package.model_path)


def resolve_version_2(
    answers: Any, *, examples: Sequence[Any] | None = None, package: Any = None, features_manifest: Mapping | None = None
) -> Any:
    """``answers`` (AnswerSettings) with ``version_2_with_negative`` decided when it is None:
    on for a 2.0 dataset, for features preprocessed for 2.0, or for a model built for 2.0."""
    if answers.version_2_with_negative is not None:
        return answers
    on = bool(
        (examples is not None and is_squad2(examples))
        or (features_manifest or {}).get("version_2_with_negative")
        or (package is not None and package_squad_version(package) == 2)
    )
    return replace(answers, version_2_with_negative=on)
