"""The 2.0 null answer through answer extraction, on real features and hand-made logits."""

from __future__ import annotations

import numpy as np
import pytest

from spanqa.answers.extraction import predict, predict_answers
from spanqa.answers.squad2 import NO_SPAN_NULL_ODDS
from spanqa.data.features import build_features
from spanqa.data.squad import examples_from_text
from spanqa.data.vocab import TokenizerSettings, default_vocab_path
from spanqa.settings import AnswerSettings, FeatureSettings

WORDS = "river mountain valley forest desert ocean island canyon meadow glacier".split()
CONTEXT = " ".join(f"{w}{i}" if i % 3 else w for i, w in enumerate(WORDS * 4))  # 40 words


@pytest.fixture(scope="module")
def features():
    """One question over a long context: several windows of 32 tokens, stride 8."""
    ex = examples_from_text("Where is it?", CONTEXT, "q")
    tok = TokenizerSettings(default_vocab_path(), do_lower_case=False)
    f = build_features([ex], tok, FeatureSettings(max_seq_length=32, doc_stride=8, max_query_length=8))
    assert len(f) >= 4
    return f


def _logits(features, null: list[float], span: tuple[int, int, int, float]):
    """-5 everywhere; position 0 of window w gets null[w] (as start and end logit halves); the
    span (window, start, end, score) gets score / 2 at its start and at its end."""
    n, width = features.input_ids.shape
    start = np.full((n, width), -5.0, np.float32)
    end = np.full((n, width), -5.0, np.float32)
    start[:, 0] = end[:, 0] = np.asarray(null, np.float32) / 2
    w, s, e, score = span
    start[w, s] = end[w, e] = score / 2
    return start, end


def _span_in(features, w: int) -> tuple[int, int]:
    """Two max-context word pieces of window ``w``, starting a word and ending one."""
    ctx = features.token_is_max_context[w]
    positions = sorted(p for p, flag in ctx.items() if flag)
    return positions[0], positions[0]


def test_null_is_the_minimum_over_windows_and_odds_use_the_best_span(features):
    n = len(features)
    null = [6.0] * n
    null[n - 1] = 2.0  # the smallest null is in the last window, the span in window 1
    s, e = _span_in(features, 1)
    start, end = _logits(features, null, (1, s, e, 3.0))
    v2 = AnswerSettings(version_2_with_negative=True)
    got = predict_answers(features, start, end, v2)
    span_text = predict(features, start, end, AnswerSettings())[0]["q"]
    assert span_text and got.best_spans["q"] == span_text
    assert got.null_odds["q"] == pytest.approx(2.0 - 3.0)
    assert got.predictions["q"] == span_text  # -1 <= 0: the span
    nbest = got.nbest["q"]
    nulls = [c for c in nbest if c["text"] == ""]
    assert len(nulls) == 1 and (nulls[0]["start_logit"], nulls[0]["end_logit"]) == (1.0, 1.0)
    assert nbest[0]["text"] == span_text and nbest[1]["text"] == ""  # 3.0 > 2.0
    assert sum(c["probability"] for c in nbest) == pytest.approx(1.0)

    high = predict_answers(features, start, end, AnswerSettings(version_2_with_negative=True, null_score_diff_threshold=-1.5))
    assert high.predictions["q"] == "" and high.null_odds["q"] == pytest.approx(-1.0)


def test_squad11_path_has_no_null_candidate(features):
    s, e = _span_in(features, 1)
    start, end = _logits(features, [9.0] * len(features), (1, s, e, 3.0))
    predictions, nbest = predict(features, start, end, AnswerSettings())
    assert predictions["q"] != "" and all(c["text"] for c in nbest["q"])
    v11 = predict_answers(features, start, end, AnswerSettings())
    assert v11.null_odds is None and v11.predictions == predictions


def test_no_valid_span_answers_empty_with_documented_odds(features):
    # n_best 1 and the top start / end both in the question: no span is valid in any window.
    start, end = _logits(features, [1.0] * len(features), (0, 1, 1, 50.0))
    start[:, 1] = end[:, 1] = 25.0
    got = predict_answers(features, start, end, AnswerSettings(n_best_size=1, version_2_with_negative=True))
    assert got.predictions["q"] == "" and got.best_spans["q"] == ""
    assert got.null_odds["q"] == NO_SPAN_NULL_ODDS
    assert [c["text"] for c in got.nbest["q"]] == [""]
    assert got.nbest["q"][0]["probability"] == 1.0


def test_squad11_predictions_unchanged_on_the_heldout_set(heldout_json, standin_dir):
    """Every held-out question, seeded logits: the 1.1 path's predictions.json and n-best are
    byte for byte those of the extraction before 2.0 existed (sha256 recorded from it)."""
    import hashlib
    import json

    from spanqa.data.squad import read_squad
    from spanqa.data.vocab import resolve_tokenizer

    examples = read_squad(heldout_json)
    f = build_features(examples, resolve_tokenizer(standin_dir), FeatureSettings(max_seq_length=384))
    rng = np.random.default_rng(13)
    start = rng.standard_normal(f.input_ids.shape, dtype=np.float32)
    end = rng.standard_normal(f.input_ids.shape, dtype=np.float32)
    predictions, nbest = predict(f, start, end, AnswerSettings())
    digest = [hashlib.sha256(json.dumps(x, ensure_ascii=False).encode()).hexdigest() for x in (predictions, nbest)]
    assert digest == [
        "4bb0b4c24b38315f87e2a807990a044c66cdc0c7dfbbb04a5c23429922d4367f",
        "89aa31c9af3153bf95511f8e722e89fff478dcce54865c7de214924844ac64fa",
    ]
    # 2.0 keeps the same best spans: the null only joins the candidates.
    v2 = predict_answers(f, start, end, AnswerSettings(version_2_with_negative=True))
    assert v2.best_spans == predictions
