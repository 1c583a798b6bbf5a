"""The official SQuAD v1.1 scores (evaluate-v1.1.py), over parsed examples."""

from __future__ import annotations

import collections
import logging
import re
import string
from collections.abc import Mapping, Sequence

from spanqa.errors import DatasetError

logger = logging.getLogger(__name__)

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


def score(examples: Sequence, predictions: Mapping[str, str]) -> dict:
    """Exact match and F1 in percent over ``examples`` (each with ``qas_id`` and gold
    ``answers``), as evaluate-v1.1.py computes them over a dataset's questions.

    A question without a prediction scores 0 and counts in the total (the official script says
    so on stderr; here a warning is logged and ``unanswered`` counts them). Questions without
    gold answers are not scored: ``total`` counts the labelled ones and ``unlabelled`` (present
    only when there are any) the rest.
    """
    labelled = [ex for ex in examples if ex.answers]
    if examples and not labelled:
        raise DatasetError(
            f"none of the {len(examples)} questions has gold answers, so nothing can be scored; "
            "pass a labelled SQuAD v1.1 file (or a 2.0 file for unanswerable questions)"
        )
    ems, f1s, unanswered = question_scores(labelled, predictions)
    exact_match, f1 = sum(ems), sum(f1s)
    total = len(labelled)
    if total == 0:
        raise DatasetError("the dataset has no questions; pass a SQuAD v1.1 JSON file")
    for qid in unanswered[:10]:
        logger.warning("Unanswered question %s will receive score 0.", qid)
    if len(unanswered) > 10:
        logger.warning("... and %d more unanswered questions", len(unanswered) - 10)
    out = {
        "exact_match": 100.0 * exact_match / total,
        "f1": 100.0 * f1 / total,
        "total": total,
        "unanswered": len(unanswered),
    }
    if len(examples) > total:
        out["unlabelled"] = len(examples) - total
    return out


def question_scores(examples: Sequence, predictions: Mapping[str, str]) -> tuple[list[float], list[float], list[str]]:
    """Per-question exact match and F1 (0 or 1 / 0..1; 0 for a missing prediction) and the ids
    without a prediction."""
    ems, f1s, unanswered = [], [], []
    for example in examples:
        prediction = predictions.get(example.qas_id)
        if not example.answers:
            raise DatasetError(
                f"question {example.qas_id} has no gold answers; SQuAD v1.1 scoring needs at "
                "least one (is this a SQuAD v2 file, or a file without answers?)"
            )
        if prediction is None:
            unanswered.append(example.qas_id)
            ems.append(0.0)
            f1s.append(0.0)
            continue
        ems.append(_metric_max_over_ground_truths(exact_match_score, prediction, example.answers))
        f1s.append(_metric_max_over_ground_truths(f1_score, prediction, example.answers))
    return ems, f1s, unanswered


def any_gold(examples: Sequence) -> bool:
    """Whether some example carries a gold answer (the labelled ones can be scored)."""
    return any(ex.answers for ex in examples)


def has_gold(examples: Sequence) -> bool:
    """Whether every example carries at least one gold answer (so the set can be scored)."""
    return bool(examples) and all(ex.answers for ex in examples)
