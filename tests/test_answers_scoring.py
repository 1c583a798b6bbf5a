"""Official SQuAD v1.1 scoring (spanqa.answers.scoring, evaluate-v1.1.py) over parsed examples,
against torchmetrics' SQuAD metric and known values."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from spanqa.answers.scoring import exact_match_score, f1_score, has_gold, normalize_answer, question_scores, score
from spanqa.data.squad import Example, read_squad
from spanqa.errors import DatasetError


@pytest.fixture
def torch64():
    torch = pytest.importorskip("torch")
    old = torch.get_default_dtype()
    # torchmetrics accumulates in float32 by default; float64 makes a 1e-9 comparison meaningful.
    torch.set_default_dtype(torch.float64)
    yield torch
    torch.set_default_dtype(old)


def torchmetrics_squad(torch, cases):
    """cases: [(qid, prediction or None, [gold texts])] → (exact_match, f1) in percent."""
    import warnings

    from torchmetrics.text import SQuAD

    metric = SQuAD()
    metric.set_dtype(torch.float64)
    preds = [{"id": q, "prediction_text": p} for q, p, _ in cases if p is not None]
    target = [{"id": q, "answers": {"text": g, "answer_start": [0] * len(g)}} for q, _, g in cases]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric.update(preds, target)
        out = metric.compute()
    return float(out["exact_match"]), float(out["f1"])


def as_examples(cases):
    """cases: [(qid, prediction or None, [gold texts])] -> the questions, as read_squad gives them."""
    return [Example(qas_id=q, question_text="?", doc_tokens=["c"], answers=list(g)) for q, _, g in cases]


FIXED_CASES = [
    ("1", "Denver Broncos", ["Denver Broncos", "Denver Broncos", "Denver Broncos"]),
    ("2", "the Denver Broncos.", ["Denver Broncos"]),
    ("3", "Broncos", ["Denver Broncos", "The Broncos"]),
    ("4", "Santa Clara, California", ["Santa Clara, California", "Levi's Stadium"]),
    (
        "5",
        "Levis Stadium in the San Francisco Bay Area",
        ["Levi's Stadium in the San Francisco Bay Area at Santa Clara, California."],
    ),
    ("6", "gold", ["golden", "gold-themed"]),
    ("7", "Café Zürich", ["cafe zurich", "Café  Zürich"]),
    ("8", "an apple a day", ["apple day", "An Apple"]),
    ("9", "", ["something"]),
    ("10", "1,000", ["1000", "1,000 people"]),
    ("11", "no no no yes", ["no yes yes"]),
    ("12", None, ["unanswered"]),
    ("13", "«quoted» — text", ["quoted — text"]),
]


def test_normalize_answer_is_the_official_one():
    assert normalize_answer("The  Quick,\tbrown FOX!") == "quick brown fox"
    assert normalize_answer("an apple a day") == "apple day"
    assert normalize_answer("theory") == "theory"  # articles only as whole words
    assert normalize_answer("Levi's") == "levis"
    assert normalize_answer("«Café»") == "«café»"  # only ASCII punctuation is stripped


def test_score_matches_torchmetrics_on_fixed_cases(torch64):
    preds = {q: p for q, p, _ in FIXED_CASES if p is not None}
    ours = score(as_examples(FIXED_CASES), preds)
    em, f1 = torchmetrics_squad(torch64, FIXED_CASES)
    assert ours["total"] == len(FIXED_CASES)
    assert ours["unanswered"] == 1
    assert abs(ours["exact_match"] - em) < 1e-9
    assert abs(ours["f1"] - f1) < 1e-9
    # known values, so agreement is not agreement on nonsense
    assert ours["exact_match"] == pytest.approx(100.0 * 7 / 13, abs=1e-12)  # 1 2 3 4 7 8 10
    for q, p, g in FIXED_CASES:
        if p is None:
            continue
        em1, f11 = torchmetrics_squad(torch64, [(q, p, g)])
        assert abs(100.0 * max(exact_match_score(p, t) for t in g) - em1) < 1e-9
        assert abs(100.0 * max(f1_score(p, t) for t in g) - f11) < 1e-9


def test_known_f1_values():
    assert f1_score("Denver Broncos", "the Broncos") == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert f1_score("no no no yes", "no yes yes") == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert exact_match_score("The Broncos!", "broncos") == 1.0


def test_v11_scores_an_empty_normalised_pair_zero_f1_unlike_v2():
    # The one place torchmetrics (which follows the v2 script's empty-answer rule) and the
    # official v1.1 script part: both sides normalise to nothing. v1.1 gives EM 1 but F1 0.
    assert exact_match_score("The", "a.") == 1.0
    assert f1_score("The", "a.") == 0.0
    assert score(as_examples([("x", "The", ["a."])]), {"x": "The"})["f1"] == 0.0


_WORDS = [
    "the",
    "The",
    "a",
    "an",
    "AN",
    "cat",
    "Cat",
    "dog",
    "café",
    "Café",
    "naïve",
    "1990",
    "3.5",
    "U.S.",
    "don't",
    "x",
    "Zürich",
]
_PUNCT = [",", ".", "!", "(", ")", "'", '"', "-", "—", "–", "«", "»", "$", "%", "?"]
_SPACE = [" ", "  ", "\t", "\n", "\u00a0", ""]
_fragment = st.one_of(st.sampled_from(_WORDS), st.sampled_from(_PUNCT), st.sampled_from(_SPACE), st.text(max_size=4))
_answer = st.lists(_fragment, max_size=8).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(st.one_of(st.none(), _answer), st.lists(_answer, min_size=1, max_size=4)),
        min_size=1,
        max_size=6,
    )
)
def test_score_matches_torchmetrics_on_generated_answers(torch64, qs):
    cases = [(f"q{i}", p, g) for i, (p, g) in enumerate(qs)]
    for _, p, g in cases:
        # the documented v1.1/v2 difference, tested on its own above
        assume(not (p is not None and not normalize_answer(p) and any(not normalize_answer(t) for t in g)))
    preds = {q: p for q, p, _ in cases if p is not None}
    ours = score(as_examples(cases), preds)
    em, f1 = torchmetrics_squad(torch64, cases)
    assert abs(ours["exact_match"] - em) < 1e-9
    assert abs(ours["f1"] - f1) < 1e-9
    assert ours["total"] == len(cases)
    assert ours["unanswered"] == sum(p is None for _, p, _ in cases)


def test_score_dev_set_matches_torchmetrics(torch64, dev_json):
    data = json.loads(dev_json.read_text(encoding="utf-8"))
    cases, preds = [], {}
    questions = [qa for a in data["data"] for p in a["paragraphs"] for qa in p["qas"]]
    for i, qa in enumerate(questions):
        golds = [a["text"] for a in qa["answers"]]
        words = golds[0].split()
        if i % 7 == 0:
            pred = None  # unanswered
        elif i % 3 == 0:
            pred = " ".join(words[1:]) or "nothing"
        elif i % 3 == 1:
            pred = golds[-1] + " and more words"
        else:
            pred = golds[0].upper()
        if pred is not None:
            preds[qa["id"]] = pred
        cases.append((qa["id"], pred, golds))
    assert not any(not normalize_answer(p) and any(not normalize_answer(g) for g in gs) for _, p, gs in cases if p)
    examples = read_squad(dev_json)
    ours = score(examples, preds)
    em, f1 = torchmetrics_squad(torch64, cases)
    assert ours["total"] == 10570
    assert ours["unanswered"] == sum(p is None for _, p, _ in cases)
    assert abs(ours["exact_match"] - em) < 1e-9
    assert abs(ours["f1"] - f1) < 1e-9
    gold_first = {qa["id"]: qa["answers"][0]["text"] for a in data["data"] for p in a["paragraphs"] for qa in p["qas"]}
    assert score(examples, gold_first) == {"exact_match": 100.0, "f1": 100.0, "total": 10570, "unanswered": 0}


def test_score_reports_unanswered_questions_like_the_official_script(caplog):
    cases = [("a", "x", ["x"]), ("b", None, ["y"]), ("c", None, ["z"])]
    with caplog.at_level("WARNING", logger="spanqa.answers.scoring"):
        result = score(as_examples(cases), {"a": "x", "not-in-dataset": "w"})
    assert result == {"exact_match": pytest.approx(100 / 3), "f1": pytest.approx(100 / 3), "total": 3, "unanswered": 2}
    assert "Unanswered question b will receive score 0." in caplog.text
    assert "Unanswered question c will receive score 0." in caplog.text


def test_score_needs_questions_with_gold_answers():
    with pytest.raises(DatasetError) as exc:
        score([], {})
    assert str(exc.value) == "the dataset has no questions; pass a SQuAD v1.1 JSON file"
    unlabelled = Example(qas_id="v2", question_text="?", doc_tokens=["c"], is_impossible=True)
    cases = as_examples([("a", "x", ["x"])]) + [unlabelled]
    # #19: the labelled questions are scored, the others counted
    assert score(cases, {"a": "x", "v2": "c"}) == {
        "exact_match": 100.0,
        "f1": 100.0,
        "total": 1,
        "unanswered": 0,
        "unlabelled": 1,
    }
    with pytest.raises(DatasetError) as exc:
        score([unlabelled], {"v2": "c"})
    assert str(exc.value) == (
        "none of the 1 questions has gold answers, so nothing can be scored; "
        "pass a labelled SQuAD v1.1 file (or a 2.0 file for unanswerable questions)"
    )
    assert has_gold(cases[:1]) and not has_gold(cases) and not has_gold([])


def test_question_scores_are_per_question():
    cases = [("a", "Denver Broncos", ["the Broncos"]), ("b", None, ["y"]), ("c", "The Broncos!", ["broncos"])]
    ems, f1s, unanswered = question_scores(as_examples(cases), {q: p for q, p, _ in cases if p is not None})
    assert ems == [0.0, 0.0, 1.0] and unanswered == ["b"]
    assert f1s == pytest.approx([2 * 0.5 * 1.0 / 1.5, 0.0, 1.0])
