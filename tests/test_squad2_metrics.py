"""SQuAD 2.0 metrics and the null answer, against an independent implementation written here.

The reference below scores every threshold by brute force (apply it, score every question)
instead of the module's single sorted walk, and normalises text its own way.
"""

from __future__ import annotations

import random
import string
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from spanqa.answers import squad2 as v2
from spanqa.errors import UsageError

# --------------------------------------------------------------------------------------------
# The independent reference

_DROP = str.maketrans("", "", string.punctuation)


def ref_norm(text: str) -> list[str]:
    words = text.lower().translate(_DROP).split()
    return [w for w in words if w not in ("a", "an", "the")]


def ref_f1(gold: str, pred: str) -> float:
    g, p = ref_norm(gold), ref_norm(pred)
    if not g or not p:
        return 1.0 if g == p else 0.0
    same = sum((Counter(g) & Counter(p)).values())
    return 0.0 if not same else 2 * same / (len(g) + len(p))


def ref_exact(gold: str, pred: str) -> float:
    return 1.0 if ref_norm(gold) == ref_norm(pred) else 0.0


def ref_golds(questions: dict[str, list[str]]) -> dict[str, list[str]]:
    return {q: [a for a in answers if ref_norm(a)] or [""] for q, answers in questions.items()}


def ref_scores(questions: dict[str, list[str]], preds: dict[str, str]) -> dict:
    golds = ref_golds(questions)
    out = {}
    groups = {
        "": list(questions),
        "HasAns_": [q for q, a in questions.items() if a],
        "NoAns_": [q for q, a in questions.items() if not a],
    }
    for prefix, qids in groups.items():
        if not qids:
            continue
        for name, fn in (("exact", ref_exact), ("f1", ref_f1)):
            got = [max(fn(g, preds[q]) for g in golds[q]) if q in preds else 0.0 for q in qids]
            out[prefix + name] = 100.0 * sum(got) / len(qids)
        out[prefix + "total"] = len(qids)
    return out


def ref_at(questions, spans, odds, thresh, name) -> float:
    preds = {q: ("" if odds[q] > thresh else s) for q, s in spans.items()}
    return ref_scores(questions, preds)[name]


def ref_best(questions, spans, odds, name) -> tuple[float, float]:
    """Max over every threshold that changes something; the lowest threshold among equals."""
    cands = [min(odds.values()) - 1.0, *sorted(set(odds.values()))]
    best = max(ref_at(questions, spans, odds, t, name) for t in cands)
    return best, next(t for t in cands if ref_at(questions, spans, odds, t, name) == best)


def gold_of(questions: dict[str, list[str]]):
    examples = [SimpleNamespace(qas_id=q, answers=a, is_impossible=not a) for q, a in questions.items()]
    return v2.gold_answers(examples)


def check_against_reference(questions, spans, odds, thresh):
    preds = v2.apply_threshold(spans, odds, thresh)
    got = v2.score(gold_of(questions), preds, odds, spans)
    want = ref_scores(questions, preds)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key
    for name in ("exact", "f1"):
        best, best_t = ref_best(questions, spans, odds, name)
        assert got[f"best_{name}"] == pytest.approx(best, abs=1e-9)
        assert got[f"best_{name}_thresh"] == best_t
        # Re-running at the reported threshold scores exactly the best.
        assert ref_at(questions, spans, odds, got[f"best_{name}_thresh"], name) == pytest.approx(best, abs=1e-9)
    return got


# --------------------------------------------------------------------------------------------
# Hand-made cases

QUESTIONS = {
    "a": ["Denver Broncos", "the Denver Broncos"],
    "b": ["1990"],
    "c": [],
    "d": [],
    "e": ["Santa Clara, California"],
    "f": [],
}
SPANS = {
    "a": "Denver Broncos",
    "b": "in 1991",
    "c": "Levi's Stadium",
    "d": "gold",
    "e": "Santa Clara",
    "f": "the",
}


def test_hand_made_values():
    odds = {"a": -3.0, "b": -1.0, "c": 3.0, "d": 5.0, "e": 2.0, "f": 4.0}
    got = check_against_reference(QUESTIONS, SPANS, odds, 0.0)
    # At 0.0 a and b answer their spans, the rest "": right are a, c, d, f.
    assert got["exact"] == pytest.approx(400 / 6)
    assert got["f1"] == pytest.approx(400 / 6)
    assert (got["HasAns_total"], got["NoAns_total"]) == (3, 3)
    assert got["HasAns_exact"] == pytest.approx(100 / 3)
    assert got["NoAns_exact"] == pytest.approx(100.0)
    # e's span "Santa Clara" has F1 2*2/(2+3) = 0.8: answering it too (threshold 2.0) is best.
    assert got["best_f1"] == pytest.approx(100 * 4.8 / 6)
    assert got["best_f1_thresh"] == 2.0
    # For exact, e gains nothing, b neither: the first threshold reaching 4/6 is kept.
    assert got["best_exact"] == pytest.approx(400 / 6)
    assert got["best_exact_thresh"] == -3.0
    # f's span "the" normalises to "": answering it is a correct no-answer at any threshold.
    assert v2.score(gold_of(QUESTIONS), SPANS)["NoAns_exact"] == pytest.approx(100 / 3)
    assert got["unanswered"] == 0


def test_ties_at_the_threshold():
    # b (right) and d (wrong, no answer) share the odds 1.0 in both orders of the file: the
    # group switches together, and a threshold of 1.0 answers both.
    questions = {"b": ["1990"], "d": [], "x": ["yes"]}
    for spans in (
        {"b": "1990", "d": "gold", "x": "yes"},
        {"d": "gold", "b": "1990", "x": "yes"},
    ):
        odds = {"b": 1.0, "d": 1.0, "x": 0.0}
        got = check_against_reference(questions, spans, odds, 1.0)
        assert got["f1"] == pytest.approx(200 / 3)  # b, x right, d wrong
        # 0.0 (x only, d right) and 1.0 (b, x) both score 2/3; the lowest threshold wins.
        assert got["best_f1"] == pytest.approx(200 / 3)
        assert got["best_f1_thresh"] == 0.0
    # A tie where the official walk (one question at a time) would stop inside the group: d
    # first gains 1, then b loses 1.  As a group they gain 0, so 0.5 stays best.
    questions = {"b": [], "d": ["x"], "e": ["y"]}
    spans = {"d": "x", "b": "wrong", "e": "y"}
    odds = {"d": 1.0, "b": 1.0, "e": 0.5}
    got = check_against_reference(questions, spans, odds, 0.0)
    assert got["best_f1"] == pytest.approx(200 / 3)
    assert got["best_f1_thresh"] == 0.5


def test_threshold_equal_to_odds_answers_the_span():
    odds = {"a": 0.25}
    assert v2.apply_threshold({"a": "x"}, odds, 0.25) == {"a": "x"}
    assert v2.apply_threshold({"a": "x"}, odds, 0.2499) == {"a": ""}


def test_all_no_answer():
    questions = {"c": [], "d": [], "f": []}
    spans = {"c": "Levi's Stadium", "d": "gold", "f": "it"}
    odds = {"c": -2.0, "d": 3.0, "f": 0.0}
    got = check_against_reference(questions, spans, odds, 0.0)
    assert got["NoAns_total"] == 3 and "HasAns_total" not in got
    assert got["exact"] == pytest.approx(100 / 3)  # only d says ""
    assert got["best_f1"] == 100.0
    assert got["best_f1_thresh"] == -3.0  # below every odds: answer nothing


def test_all_has_answer():
    questions = {"a": ["Denver Broncos"], "b": ["1990"], "e": ["Santa Clara"]}
    spans = {"a": "Broncos", "b": "1990", "e": "Santa Clara"}
    odds = {"a": 5.0, "b": -1.0, "e": 1.0}
    got = check_against_reference(questions, spans, odds, 0.0)
    assert got["HasAns_total"] == 3 and "NoAns_total" not in got
    assert got["best_f1"] == pytest.approx(100 * (2 / 3 + 2) / 3)
    assert got["best_f1_thresh"] == 5.0
    assert got["best_exact"] == pytest.approx(200 / 3)
    assert got["best_exact_thresh"] == 1.0


def test_gold_that_normalises_to_nothing_is_no_answer_text():
    # Official rule: gold texts that normalise to "" are dropped, none left means gold "".
    questions = {"q": ["The", "."]}
    got = v2.score(gold_of(questions), {"q": ""})
    assert got["exact"] == 100.0 and got["HasAns_total"] == 1
    assert ref_scores(questions, {"q": ""})["exact"] == 100.0


def test_missing_predictions_score_zero_and_count():
    got = v2.score(gold_of({"a": ["x"], "c": []}), {"a": "x"}, {"a": 0.0}, {"a": "x"})
    assert got["total"] == 2 and got["unanswered"] == 1
    assert got["exact"] == 50.0 and got["NoAns_exact"] == 0.0
    assert got["best_exact"] == 50.0


def test_null_odds_must_cover_the_predictions():
    with pytest.raises(UsageError, match="question b has a prediction but no null odds"):
        v2.score(gold_of({"a": ["x"], "b": []}), {"a": "x", "b": ""}, {"a": 0.0})


@pytest.mark.parametrize("seed", range(40))
def test_random_cases_match_the_reference(seed):
    rng = random.Random(seed)
    words = ["alpha", "beta", "the", "gamma", "delta", "a"]
    n = rng.randint(1, 12)
    questions, spans, odds = {}, {}, {}
    for i in range(n):
        q = f"q{i}"
        questions[q] = [] if rng.random() < 0.4 else [" ".join(rng.sample(words, rng.randint(1, 3)))]
        spans[q] = "" if rng.random() < 0.1 else " ".join(rng.sample(words, rng.randint(1, 3)))
        odds[q] = float(rng.choice([-2, -1, -0.5, 0, 0.5, 1, 3]))  # few values: many ties
    check_against_reference(questions, spans, odds, rng.choice([-1.0, 0.0, 0.5, 2.0]))


# --------------------------------------------------------------------------------------------
# The null answer


def test_null_score_is_the_minimum_over_all_windows():
    # Example 0 has three windows; its smallest start[0] + end[0] is in the last one, which is
    # not the window holding its best span. Example 1 has one window; two windows of example 2
    # tie and the first is kept.
    ex = [0, 0, 0, 1, 2, 2]
    start = np.array(
        [[2.0, 9.0], [1.5, 0.0], [0.25, 8.0], [-1.0, 0.0], [1.0, 0.0], [0.5, 0.0]],
        np.float32,
    )
    end = np.array(
        [[1.0, 9.0], [1.0, 0.0], [0.5, 8.0], [-2.0, 0.0], [0.0, 0.0], [0.5, 0.0]],
        np.float32,
    )
    got = v2.null_scores(ex, start, end, 4)
    np.testing.assert_array_equal(got.score[:3], [0.75, -3.0, 1.0])
    np.testing.assert_array_equal(got.feature, [2, 3, 4, -1])
    assert got.score[3] == np.inf
    np.testing.assert_array_equal(got.start_logit[:3], [0.25, -1.0, 1.0])
    np.testing.assert_array_equal(got.end_logit[:3], [0.5, -2.0, 0.0])


def test_null_takes_its_place_in_the_nbest():
    spans = [("x", 3.0, 2.0), ("y", 2.0, 1.0), ("z", 1.0, 1.0)]
    # Ranked between x (5) and y (3); ties go after spans of the same score.
    assert v2.insert_null(spans, ("", 2.0, 1.5), 3) == [
        ("x", 3.0, 2.0),
        ("", 2.0, 1.5),
        ("y", 2.0, 1.0),
    ]
    assert v2.insert_null(spans, ("", 1.0, 2.0), 3) == [
        *spans[:2],
        ("", 1.0, 2.0),
    ]  # ties y: after it
    assert v2.insert_null(spans, ("", 0.5, 1.0), 3) == [
        *spans,
        ("", 0.5, 1.0),
    ]  # below all: appended
    assert v2.insert_null(spans, ("", 9.0, 0.0), 2) == [("", 9.0, 0.0), ("x", 3.0, 2.0)]
    assert v2.insert_null([], ("", 0.5, 0.5), 20) == [("", 0.5, 0.5)]


def test_decide_uses_the_best_non_null_span():
    nbest = [("", 4.0, 4.0), ("x", 3.0, 2.0), ("y", 2.0, 1.0)]
    assert v2.decide(nbest, 8.0, 0.0) == ("", 3.0, "x")
    assert v2.decide(nbest, 8.0, 3.0) == (
        "x",
        3.0,
        "x",
    )  # equal to the threshold: answer
    assert v2.decide([("x", 3.0, 2.0), ("", 1.0, 1.0)], 2.0, 0.0) == ("x", -3.0, "x")
    assert v2.decide([("", 1.0, 1.0)], 2.0, 0.0) == ("", v2.NO_SPAN_NULL_ODDS, "")
