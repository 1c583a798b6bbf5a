"""Bad input at scale (hypothesis, fixed seed, bounded counts): SQuAD JSON of random structure,
random unicode, empty and huge fields and wrong types, through reading, features, answer
extraction and scoring. Each either gives a result or raises a SpanQAError, never another
exception; every answer's character offsets slice its context to the answer text.

Inputs tried per run (derandomized, so the same every run): EXAMPLES below; docs/reliability.md
quotes them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanqa.errors import SpanQAError

EXAMPLES = {"structure": 200, "pipeline": 80, "scoring": 200}
FUZZ = dict(
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
# Text with the hard cases: combining marks, CJK, control and zero-width characters, odd spaces.
text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)) | st.sampled_from(list(" \t\n\u202f\u00a0\u200b\u0301\u4e2dAa.,")),
    max_size=60,
)
huge = st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=8), st.integers(100, 400))
field_value = json_values | text


def _qa(draw, i: int) -> dict:
    qa = {"id": draw(st.one_of(st.just(f"q{i}"), field_value)), "question": draw(st.one_of(text, field_value))}
    if draw(st.booleans()):
        qa["answers"] = draw(st.one_of(st.lists(st.fixed_dictionaries({"text": text}), max_size=3), field_value))
    if draw(st.integers(0, 9)) == 0:
        qa["is_impossible"] = draw(field_value)
    return qa


@st.composite
def squad_like(draw) -> object:
    """Mostly SQuAD-shaped, with any field of any type at random."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    paragraphs = []
    for p in range(draw(st.integers(0, 3))):
        context = draw(st.one_of(text, huge, field_value))
        qas = [_qa(draw, 10 * p + i) for i in range(draw(st.integers(0, 3)))]
        paragraphs.append(draw(st.sampled_from([{"context": context, "qas": qas}, {"qas": qas}, {"context": context}, context])))
    article = draw(st.sampled_from([{"title": "t", "paragraphs": paragraphs}, {"paragraphs": paragraphs}, {"title": paragraphs}]))
    return {"version": "1.1", "data": draw(st.sampled_from([[article], [article, article], article, []]))}


@st.composite
def squad_valid(draw) -> dict:
    """Well-formed SQuAD whose strings are anything at all."""
    paragraphs = []
    for p in range(draw(st.integers(1, 3))):
        context = draw(st.one_of(text, huge))
        qas = [
            {"id": f"q{p}-{i}", "question": draw(text), "answers": [{"text": draw(text)} for _ in range(draw(st.integers(0, 2)))]}
            for i in range(draw(st.integers(1, 3)))
        ]
        paragraphs.append({"context": context, "qas": qas})
    return {"version": "1.1", "data": [{"title": "fuzz", "paragraphs": paragraphs}]}


def _write(tmp_path_factory, obj) -> object:
    path = tmp_path_factory.mktemp("fuzz") / "d.json"
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


@settings(max_examples=EXAMPLES["structure"], **FUZZ)
@given(obj=squad_like())
def test_read_squad_gives_examples_or_a_dataset_error(obj, tmp_path_factory):
    from spanqa.data.squad import read_squad

    try:
        examples = read_squad(_write(tmp_path_factory, obj))
    except SpanQAError as exc:
        assert "\n" not in str(exc)
        return
    assert examples and all(isinstance(e.qas_id, str) and isinstance(e.question_text, str) for e in examples)


@pytest.fixture(scope="module")
def tokenizer():
    from spanqa.data.vocab import TokenizerSettings, default_vocab_path

    return TokenizerSettings(default_vocab_path(), False)


@settings(max_examples=EXAMPLES["pipeline"], **FUZZ)
@given(
    obj=squad_valid(),
    length=st.integers(68, 160),
    stride=st.integers(1, 128),
    query=st.integers(0, 64),
    seed=st.integers(0, 2**32 - 1),
)
def test_features_answers_and_scores_never_crash(obj, length, stride, query, seed, tokenizer, tmp_path_factory):
    from spanqa.answers.extraction import predict
    from spanqa.answers.scoring import score
    from spanqa.data.features import build_features
    from spanqa.data.squad import read_squad
    from spanqa.engine.core import span_answer
    from spanqa.settings import AnswerSettings, FeatureSettings

    try:
        examples = read_squad(_write(tmp_path_factory, obj))
        features = build_features(
            examples, tokenizer, FeatureSettings(max_seq_length=length, doc_stride=stride, max_query_length=query)
        )
    except SpanQAError:
        return
    rng = np.random.default_rng(seed)
    start = rng.normal(size=features.input_ids.shape).astype(np.float32)
    end = rng.normal(size=features.input_ids.shape).astype(np.float32)
    predictions, nbest = predict(features, start, end, AnswerSettings(n_best_size=5), spans=True)
    assert sorted(predictions) == sorted(e.qas_id for e in examples)
    for example in examples:
        for cand in nbest[example.qas_id]:
            answer = span_answer(example, cand)
            assert example.context[answer.start : answer.end] == answer.text
            if "orig_words" in cand:  # a real span: the same text, up to the whitespace between words
                assert answer.text.split() == cand["text"].split()
                assert 0 <= answer.start < answer.end <= len(example.context)
            else:
                assert (answer.text, answer.start, answer.end) == ("", 0, 0)
    try:
        result = score(examples, predictions)
    except SpanQAError:
        return
    assert 0.0 <= result["exact_match"] <= 100.0 and 0.0 <= result["f1"] <= 100.0


@settings(max_examples=EXAMPLES["scoring"], **FUZZ)
@given(
    golds=st.lists(st.lists(text, max_size=3), min_size=1, max_size=5),
    preds=st.lists(st.one_of(st.none(), text), min_size=5, max_size=5),
)
def test_scoring_is_bounded_and_exact_match_implies_full_f1(golds, preds):
    from spanqa.answers.scoring import question_scores, score
    from spanqa.data.squad import Example

    examples = [Example(f"q{i}", "q", ["w"], answers=g) for i, g in enumerate(golds)]
    predictions = {f"q{i}": p for i, p in enumerate(preds[: len(golds)]) if p is not None}
    labelled = [ex for ex in examples if ex.answers]
    try:
        result = score(examples, predictions)
    except SpanQAError:
        assert not labelled  # only a file without any gold answer is refused
        return
    from spanqa.answers.scoring import normalize_answer

    ems, f1s, unanswered = question_scores(labelled, predictions)
    # The official F1 of two answers that normalise to nothing is 0 although they match exactly.
    assert all(f == 1.0 for ex, e, f in zip(labelled, ems, f1s) if e == 1.0 and normalize_answer(predictions[ex.qas_id]))
    assert result["unanswered"] == len(unanswered) and result["total"] == len(labelled)
    assert result.get("unlabelled", 0) == len(examples) - len(labelled)
    assert 0.0 <= result["exact_match"] <= 100.0 and 0.0 <= result["f1"] <= 100.0
