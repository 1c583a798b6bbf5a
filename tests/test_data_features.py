"""Building features (spanqa.data.features): exact agreement with an independent pure-Python
reference (reference/squad_reference.py) on the whole dev set, odd text and generated text, and
the windowing algorithm's pieces."""

from __future__ import annotations

import functools

import pytest
import squad_reference as R
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from spanqa.data.features import build_features, doc_spans, max_context_flags
from spanqa.data.squad import Example, read_squad
from spanqa.data.tokenization import split_words
from spanqa.data.vocab import TokenizerSettings
from spanqa.errors import FeaturesError
from spanqa.settings import FeatureSettings
from squad_files import odd_text, squad_json, tokenizer, vocab_path


@functools.lru_cache(maxsize=2)
def _ref_tokenizer(lower: bool):
    return R.reference_tokenizer(vocab_path(lower), lower)


def _reference(examples, lower, s: FeatureSettings):
    return R.convert_examples_to_features(
        [(ex.question_text, ex.doc_tokens) for ex in examples],
        _ref_tokenizer(lower),
        s.max_seq_length,
        s.doc_stride,
        s.max_query_length,
    )


# --- the whole dev set --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "lower, vocab_name, count",
    [(False, "bert-base-cased-vocab.txt", 10664), (True, "bert-base-uncased-vocab.txt", 10650)],
    ids=["cased", "uncased"],
)
def test_dev_set_features_identical_to_reference(dev_json, shared_dir, lower, vocab_name, count):
    vocab = shared_dir / "data" / "vocab" / vocab_name
    examples = read_squad(dev_json)
    ref_examples = R.read_squad_examples(dev_json)
    assert len(examples) == len(ref_examples) == 10570
    assert [(e.qas_id, e.question_text, e.doc_tokens) for e in examples] == ref_examples

    s = FeatureSettings(512, 128, 64)
    features = build_features(examples, TokenizerSettings(vocab, lower), s)
    ref = R.convert_examples_to_features([(q, d) for _, q, d in ref_examples], R.reference_tokenizer(vocab, lower), 512, 128, 64)
    assert R.mismatches(features, ref) == []
    assert len(features) == len(ref) == count
    assert features.settings == FeatureSettings(512, 128, 64, lower)


# --- the reference's traps and odd but valid text ----------------------------------------------


ODD_PARAGRAPHS = [
    ("An ordinary context, with punctuation (and brackets).", ["", "   ", "What is it?"]),
    ("Emoji 😀🎉 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢, CJK 中文字 𠀀 \U0002b820x 漢\u0301.", ["Non-BMP: 😀 𝔘?"]),
    ("Controls\x00here\x07and\u200bthere \ufffd\x85 \x0b\x0c end\u2028next\u2029para", ["\x00\x01?"]),
    ("cafe\u0301 café Éclair ÉCOLE naïve Å\u030a re\u0301sume\u0301 \u0301alone", ["Ωμέγα ΣΊΣΥΦΟΣ ΟΔΥΣΣΕΥΣ?"]),
    ("non\u00a0breaking\u2009thin\u3000ideographic spaces [SEP] [CLS] [UNK] [MASK]", ["[SEP]?"]),
    ("a" * 101 + " " + "b" * 100 + " " + "x" * 99 + "y", ["long words?"]),
    ("New punctuation \u2e5d\u2e52x\U00010ead; old ones \u166d\U000111c9 y; unassigned \u0378\U000e0080.", ["ok?"]),
    ("İstanbul ǅemal ﬁne ß ẞ ΐ Ⅻ ① \u1e9e", ["İ?"]),
]


@pytest.mark.parametrize("lower", [False, True], ids=["cased", "uncased"])
def test_odd_but_valid_text_matches_reference(tmp_path, lower):
    path = squad_json(tmp_path / "odd.json", ODD_PARAGRAPHS)
    examples = read_squad(path)
    ref_examples = R.read_squad_examples(path)
    assert [(e.qas_id, e.question_text, e.doc_tokens) for e in examples] == ref_examples
    assert examples[0].question_text == ""
    # read_squad refuses a whitespace-only context (test_data_squad.py); an example built by hand
    # from one has no words at all.
    examples.insert(3, Example("blank", "Whitespace-only context?", split_words(" \t\r\n\u202f  ")))
    assert examples[3].doc_tokens == []

    s = FeatureSettings(max_seq_length=48, doc_stride=7, max_query_length=9)
    features = build_features(examples, tokenizer(lower), s)
    ref = _reference(examples, lower, s)
    assert R.mismatches(features, ref) == []
    # The whitespace-only context has no tokens, so (as in run_squad.py) no features at all.
    assert 3 not in features.example_index.tolist()
    # Several windows per context, so the max-context flags are really exercised.
    assert int(features.span_index.max()) >= 3


def test_lone_surrogates_from_json_escapes_are_dropped_like_the_reference(tmp_path):
    path = tmp_path / "surrogates.json"
    path.write_text(
        '{"data": [{"title": "s", "paragraphs": [{"context": "ab\\ud800cd \\udfff ok \\ud83d\\ude00",'
        ' "qas": [{"id": "1", "question": "x\\udc00y?", "answers": []}]}]}]}',
        encoding="utf-8",
    )
    examples = read_squad(path)
    assert examples[0].doc_tokens == ["ab\ud800cd", "\udfff", "ok", "😀"]
    for lower in (False, True):
        s = FeatureSettings(32, 4, 8)
        features = build_features(examples, tokenizer(lower), s)
        assert R.mismatches(features, _reference(examples, lower, s)) == []
        if not lower:
            assert features.tokens[0] == ["[CLS]", "x", "##y", "?", "[SEP]", "a", "##b", "##c", "##d", "ok", "[UNK]", "[SEP]"]
            # "\udfff" (word 1) yields no token at all.
            assert features.token_to_orig_map[0] == {5: 0, 6: 0, 7: 0, 8: 0, 9: 2, 10: 3}


@pytest.mark.parametrize("lower", [False, True], ids=["cased", "uncased"])
def test_ten_thousand_word_context(lower):
    words = [
        "The",
        "Normans",
        "(Norman:",
        "Nourmands;",
        "French:",
        "Normands)",
        "gave",
        "their",
        "name",
        "to",
        "Normandy,",
        "a",
        "région",
        "in",
        "France.",
        "ΣΟΦΟΣ",
        "1066",
        "—",
    ]
    context = " ".join(words[i % len(words)] + ("s" if i % 7 == 0 else "") for i in range(10_000))
    examples = [Example("long", "Who gave their name to Normandy?", split_words(context))]
    assert len(examples[0].doc_tokens) == 10_000
    s = FeatureSettings(512, 128, 64)
    features = build_features(examples, tokenizer(lower), s)
    ref = _reference(examples, lower, s)
    assert R.mismatches(features, ref) == []
    assert len(features) == len(ref) > 100


# --- the algorithm's pieces ----------------------------------------------------------------------


def test_doc_stride_is_a_step_not_an_overlap():
    assert doc_spans(10, 4, 3) == [(0, 4), (3, 4), (6, 4)]
    assert doc_spans(10, 4, 8) == [(0, 4), (4, 4), (8, 2)]
    assert doc_spans(4, 4, 1) == [(0, 4)]
    assert doc_spans(0, 4, 1) == []


def test_max_context_flags_first_best_wins():
    spans = doc_spans(10, 4, 2)  # (0,4) (2,4) (4,4) (6,4)
    flags = [f.tolist() for f in max_context_flags(spans, 10)]
    assert flags == [
        [True, True, True, False],
        [False, True, True, False],
        [False, True, True, False],
        [False, True, True, True],
    ]
    for i, (start, length) in enumerate(spans):
        for j in range(length):
            assert flags[i][j] == R._check_is_max_context(spans, i, start + j)
    # Token 3 scores 0.04 in both (0,4) and (3,4): the first span wins the tie.
    assert [f.tolist() for f in max_context_flags(doc_spans(7, 4, 3), 7)] == [
        [True, True, True, True],
        [False, True, True, True],
    ]


def test_settings_that_leave_no_room_are_refused():
    with pytest.raises(FeaturesError, match=r"max_seq_length=67 leaves no room .* use at least 68"):
        build_features([Example("a", "q", ["w"])], tokenizer(False), FeatureSettings(67, 128, 64))
    with pytest.raises(FeaturesError, match=r"doc_stride=0: must be at least 1"):
        build_features([Example("a", "q", ["w"])], tokenizer(False), FeatureSettings(512, 0, 64))


def test_casing_comes_from_the_tokenizer():
    features = build_features([Example("a", "Who?", ["Ann"])], tokenizer(True), FeatureSettings())
    assert features.settings.do_lower_case is True
    assert features.tokens[0] == ["[CLS]", "who", "?", "[SEP]", "ann", "[SEP]"]


# --- hypothesis -------------------------------------------------------------------------------


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    contexts=st.lists(odd_text, min_size=1, max_size=3),
    questions=st.lists(odd_text, min_size=1, max_size=4),
    lower=st.booleans(),
    max_query_length=st.integers(0, 12),
    extra=st.integers(1, 30),
    doc_stride=st.integers(1, 20),
)
def test_hypothesis_features_equal_reference(contexts, questions, lower, max_query_length, extra, doc_stride):
    examples = []
    for c, context in enumerate(contexts):
        words = split_words(context)
        assert words == R.split_doc(context)
        for q, question in enumerate(questions):
            examples.append(Example(f"{c}-{q}", question, words))
    s = FeatureSettings(max_query_length + 3 + extra, doc_stride, max_query_length)
    features = build_features(examples, tokenizer(lower), s)
    assert R.mismatches(features, _reference(examples, lower, s)) == []
