"""SQuAD preprocessing: exact agreement with an independent pure-Python reference, file layout,
round trips and errors."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import squad_reference as R
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from spanqa.data.features import build_features, doc_spans, max_context_flags
from spanqa.data.folders import load_features, read_features_manifest, write_features
from spanqa.data.squad import Example, read_squad, split_context
from spanqa.data.tokenization import make_tokenizer
from spanqa.data.vocab import TokenizerSettings, default_vocab_path
from spanqa.errors import DatasetError, FeaturesError
from spanqa.settings import FeatureSettings

HERE = Path(__file__).resolve().parent
SHARED_VOCAB = HERE.parents[1] / "shared" / "data" / "vocab"


def _vocab(lower: bool) -> Path:
    if not lower:
        return default_vocab_path()
    path = SHARED_VOCAB / "bert-base-uncased-vocab.txt"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


def _tok(lower: bool) -> TokenizerSettings:
    return TokenizerSettings(_vocab(lower), lower)


@functools.lru_cache(maxsize=2)
def _ref_tokenizer(lower: bool):
    return R.reference_tokenizer(_vocab(lower), lower)


def _reference(examples, lower, s: FeatureSettings):
    return R.convert_examples_to_features(
        [(ex.question_text, ex.doc_tokens) for ex in examples],
        _ref_tokenizer(lower),
        s.max_seq_length,
        s.doc_stride,
        s.max_query_length,
    )


def _squad_json(path: Path, paragraphs: list[tuple[str, list[str]]], title="T") -> Path:
    data = {
        "version": "1.1",
        "data": [
            {
                "title": title,
                "paragraphs": [
                    {
                        "context": ctx,
                        "qas": [
                            {"id": f"q{p}_{i}", "question": q, "answers": [{"text": "x", "answer_start": 0}]}
                            for i, q in enumerate(qs)
                        ],
                    }
                    for p, (ctx, qs) in enumerate(paragraphs)
                ],
            }
        ],
    }
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


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


def test_reference_takes_out_the_legacy_nfc_step():
    ref = _ref_tokenizer(False)
    decomposed = "cafe\u0301"
    # The legacy class composes to "café" first; SpanBERT's tokenizer never does.
    assert ref.legacy.basic_tokenizer.tokenize(decomposed) == ["café"]
    assert ref.basic.tokenize(decomposed) == [decomposed]
    assert make_tokenizer(_tok(False)).tokenize(decomposed) == ref.tokenize(decomposed)
    assert ref.tokenize(decomposed) != ref.tokenize("café")


ODD_PARAGRAPHS = [
    ("An ordinary context, with punctuation (and brackets).", ["", "   ", "What is it?"]),
    (" \t\r\n\u202f  ", ["Whitespace-only context?"]),
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
    path = _squad_json(tmp_path / "odd.json", ODD_PARAGRAPHS)
    examples = read_squad(path)
    ref_examples = R.read_squad_examples(path)
    assert [(e.qas_id, e.question_text, e.doc_tokens) for e in examples] == ref_examples
    assert examples[0].question_text == "" and examples[3].doc_tokens == []

    s = FeatureSettings(max_seq_length=48, doc_stride=7, max_query_length=9)
    features = build_features(examples, _tok(lower), s)
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
        features = build_features(examples, _tok(lower), s)
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
    examples = [Example("long", "Who gave their name to Normandy?", split_context(context))]
    assert len(examples[0].doc_tokens) == 10_000
    s = FeatureSettings(512, 128, 64)
    features = build_features(examples, _tok(lower), s)
    ref = _reference(examples, lower, s)
    assert R.mismatches(features, ref) == []
    assert len(features) == len(ref) > 100


def test_squad_v2_is_read(tmp_path):
    path = tmp_path / "v2.json"
    path.write_text(
        json.dumps(
            {
                "version": "v2.0",
                "data": [
                    {
                        "title": "V2",
                        "paragraphs": [
                            {
                                "context": "Paris is in France.",
                                "qas": [
                                    {
                                        "id": "a",
                                        "question": "Where is Paris?",
                                        "is_impossible": False,
                                        "answers": [{"text": "France", "answer_start": 12}],
                                    },
                                    {
                                        "id": "b",
                                        "question": "Where is Rome?",
                                        "is_impossible": True,
                                        "answers": [],
                                        "plausible_answers": [{"text": "France", "answer_start": 12}],
                                    },
                                ],
                            }
                        ],
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    examples = read_squad(path)
    assert [(e.qas_id, e.answers, e.is_impossible) for e in examples] == [
        ("a", ["France"], False),
        ("b", [], True),
    ]
    features = build_features(examples, _tok(False), FeatureSettings())
    assert len(features) == 2
    assert features.tokens[1] == ["[CLS]", "Where", "is", "Rome", "?", "[SEP]", "Paris", "is", "in", "France", ".", "[SEP]"]


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
        build_features([Example("a", "q", ["w"])], _tok(False), FeatureSettings(67, 128, 64))
    with pytest.raises(FeaturesError, match=r"doc_stride=0: must be at least 1"):
        build_features([Example("a", "q", ["w"])], _tok(False), FeatureSettings(512, 0, 64))


def test_casing_comes_from_the_tokenizer():
    features = build_features([Example("a", "Who?", ["Ann"])], _tok(True), FeatureSettings())
    assert features.settings.do_lower_case is True
    assert features.tokens[0] == ["[CLS]", "who", "?", "[SEP]", "ann", "[SEP]"]


# --- hypothesis -------------------------------------------------------------------------------

_ODD_CHARS = list(
    " \t\r\n\u202f\u00a0\u2009\u3000\u2028\u0085\x00\x07\x0b\u200b\ufeff\ufffd\u0301\u0308\u030a"
    "ΣσςΑάΐİıßẞǅﬁ.,;:!?'\"()[]{}-—–…#$%&*+/<=>@\\^_`|~¡¿§¶·"
    "中文漢字\U0002b820\U0002b91f\U00020000豈\u3400😀𝔘\U000e0080\u0378\ud800\udfff"
    "\u2e5d\U00010ead\u166d\U000111c9\u061d"
)
_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(_ODD_CHARS),
        st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789   "),
        st.characters(codec=None, exclude_categories=()),
    ),
    max_size=120,
)


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    contexts=st.lists(_text, min_size=1, max_size=3),
    questions=st.lists(_text, min_size=1, max_size=4),
    lower=st.booleans(),
    max_query_length=st.integers(0, 12),
    extra=st.integers(1, 30),
    doc_stride=st.integers(1, 20),
)
def test_hypothesis_features_equal_reference(contexts, questions, lower, max_query_length, extra, doc_stride):
    examples = []
    for c, context in enumerate(contexts):
        words = split_context(context)
        assert words == R.split_doc(context)
        for q, question in enumerate(questions):
            examples.append(Example(f"{c}-{q}", question, words))
    s = FeatureSettings(max_query_length + 3 + extra, doc_stride, max_query_length)
    features = build_features(examples, _tok(lower), s)
    assert R.mismatches(features, _reference(examples, lower, s)) == []


@hsettings(max_examples=300, deadline=None)
@given(text=_text, lower=st.booleans())
def test_hypothesis_question_tokens_equal_reference(text, lower):
    assert make_tokenizer(_tok(lower)).tokenize(text) == _ref_tokenizer(lower).tokenize(text)


# --- bad input ---------------------------------------------------------------------------------


def _write(tmp_path, obj, name="bad.json") -> Path:
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return path


def _para(**kw):
    base = {"context": "c", "qas": [{"id": "1", "question": "q", "answers": []}]}
    base.update(kw)
    return base


BAD_INPUTS = [
    (
        "{not json",
        "not valid JSON (Expecting property name enclosed in double quotes at line 1 column 2); pass a SQuAD .json file",
    ),
    ([1, 2], "not a SQuAD file: expected a JSON object with a 'data' list of articles"),
    ({"version": "1.1"}, "not a SQuAD file: expected a JSON object with a 'data' list of articles"),
    (
        {"data": [{"title": "Nile", "paras": []}]},
        "article 0 ('Nile'): not a SQuAD article: expected an object with a 'paragraphs' list",
    ),
    ({"data": [{"title": "Nile", "paragraphs": [{"qas": []}]}]}, "article 0 ('Nile'), paragraph 0: missing 'context'"),
    (
        {"data": [{"title": "Nile", "paragraphs": [_para(context=7)]}]},
        "article 0 ('Nile'), paragraph 0: 'context' is not a string",
    ),
    (
        {"data": [{"title": "Nile", "paragraphs": [_para(qas=[{"id": "q1", "answers": []}])]}]},
        "article 0 ('Nile'), question 'q1': missing 'question'",
    ),
    (
        {"data": [{"title": "Nile", "paragraphs": [_para(), _para(qas=[{"question": "q"}])]}]},
        "article 0 ('Nile'), paragraph 1, question 0: missing 'id'",
    ),
    (
        {"data": [{"title": "Nile", "paragraphs": [_para()]}, {"title": "Amazon", "paragraphs": [_para()]}]},
        "article 1 ('Amazon'), question '1': duplicate question id (first in article 0 ('Nile')); question ids must be unique",
    ),
    (
        {"data": [{"title": "Nile", "paragraphs": [_para(qas=[{"id": "1", "question": "q", "answers": "x"}])]}]},
        "article 0 ('Nile'), question '1': 'answers' must be a list of objects with a 'text' string",
    ),
    ({"data": []}, "no questions found; pass a SQuAD file with 'qas'"),
]


@pytest.mark.parametrize("content, message", BAD_INPUTS)
def test_bad_input_is_one_line_naming_file_and_place(tmp_path, content, message):
    path = _write(tmp_path, content)
    with pytest.raises(DatasetError) as info:
        read_squad(path)
    assert str(info.value) == f"{path}: {message}"
    assert "\n" not in str(info.value)


def test_not_utf8_and_missing_file(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes('{"data": "é"}'.encode("latin-1"))
    with pytest.raises(DatasetError, match=r"latin1.json: not UTF-8 text \(invalid continuation byte at byte 10\)"):
        read_squad(path)
    with pytest.raises(DatasetError, match=r"nope.json: cannot read the dataset \(No such file or directory\)"):
        read_squad(tmp_path / "nope.json")


def test_bad_vocab(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("a\nb\n[UNK]\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"vocab.txt: not a BERT WordPiece vocab \(no \[CLS\], \[SEP\]\)"):
        build_features([Example("a", "q", ["w"])], TokenizerSettings(vocab, False), FeatureSettings())


# --- writing and reading feature folders -----------------------------------------------------


@pytest.fixture(scope="module")
def small_features(tmp_path_factory):
    path = _squad_json(
        tmp_path_factory.mktemp("small") / "small.json",
        [
            ("The Normans gave their name to Normandy, a region in France. " * 6, ["Who?", "What region?"]),
            ("Short one.", ["Is it short?", "", "Really?"]),
        ],
    )
    features = build_features(read_squad(path), _tok(False), FeatureSettings(40, 16, 8))
    return path, features


def _assert_same(a, b):
    assert a.settings == b.settings
    for name in ("input_ids", "input_mask", "segment_ids", "example_index", "span_index"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
        assert getattr(a, name).dtype == np.int64
    assert a.tokens == b.tokens
    assert a.token_to_orig_map == b.token_to_orig_map
    assert a.token_is_max_context == b.token_is_max_context
    assert a.examples == b.examples


@pytest.mark.parametrize("fmt", ["bin", "npy"])
def test_write_then_load_round_trip(tmp_path, small_features, fmt):
    dataset, features = small_features
    n = len(features)
    assert n == 13
    out = tmp_path / "features"
    manifest = write_features(features, out, batch_size=4, fmt=fmt, tokenizer=_tok(False), dataset=dataset)
    assert manifest == read_features_manifest(out)
    from spanqa.fileutil import sha256_file

    assert {
        k: manifest[k]
        for k in (
            "format",
            "batch_size",
            "max_seq_length",
            "num_features",
            "num_batches",
            "num_padding_rows",
            "num_examples",
            "num_contexts",
            "unique_id_base",
            "do_lower_case",
            "dataset",
            "dataset_sha256",
            "vocab_sha256",
        )
    } == {
        "format": fmt,
        "batch_size": 4,
        "max_seq_length": 40,
        "num_features": n,
        "num_batches": 4,
        "num_padding_rows": 3,
        "num_examples": 5,
        "num_contexts": 2,
        "unique_id_base": 1000000000,
        "do_lower_case": False,
        "dataset": "small.json",
        "dataset_sha256": sha256_file(dataset),
        "vocab_sha256": sha256_file(default_vocab_path()),
    }
    assert manifest["settings"] == {"max_seq_length": 40, "doc_stride": 16, "max_query_length": 8, "do_lower_case": False}
    for name in ("input_ids", "input_mask", "segment_ids"):
        files = sorted(p.name for p in (out / name).iterdir())
        assert files == [f"0.{fmt}", f"1.{fmt}", f"2.{fmt}", f"3.{fmt}"]
        last = out / name / f"3.{fmt}"
        if fmt == "bin":
            assert last.stat().st_size == 4 * 40 * 8
            raw = np.frombuffer(last.read_bytes(), dtype="<i8").reshape(4, 40)
        else:
            raw = np.load(last, allow_pickle=False)
            assert raw.dtype == np.dtype("<i8") and raw.shape == (4, 40)
        assert np.array_equal(raw[:1], getattr(features, name)[12:13])
        assert raw[0].any() and not raw[1:].any()  # one real row, three padding rows
    _assert_same(load_features(out), features)


def test_small_features_layout(small_features):
    _, f = small_features
    assert f.example_index.tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 3, 4]
    assert f.span_index.tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 0, 0]
    # Exact values for the short context, question "Is it short?":
    i = f.example_index.tolist().index(2)
    assert f.tokens[i] == ["[CLS]", "Is", "it", "short", "?", "[SEP]", "Short", "one", ".", "[SEP]"]
    assert f.token_to_orig_map[i] == {6: 0, 7: 1, 8: 1}
    assert f.token_is_max_context[i] == {6: True, 7: True, 8: True}
    assert f.segment_ids[i, :11].tolist() == [0] * 6 + [1] * 4 + [0]
    assert f.input_mask[i].sum() == 10
    assert f.unique_ids[i] == 1000000000 + i


def test_write_replaces_features_dir_but_never_other_dirs(tmp_path, small_features):
    _, features = small_features
    out = tmp_path / "out"
    write_features(features, out, batch_size=2)
    write_features(features, out, batch_size=5, fmt="npy")
    assert read_features_manifest(out)["batch_size"] == 5
    assert sorted(p.name for p in (out / "input_ids").iterdir()) == ["0.npy", "1.npy", "2.npy"]

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("keep me")
    with pytest.raises(FeaturesError, match="exists and is not a features directory"):
        write_features(features, precious)
    assert [p.name for p in precious.iterdir()] == ["thesis.tex"]


def test_failed_write_leaves_nothing(tmp_path, small_features, monkeypatch):
    _, features = small_features
    import spanqa.squad

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    # Fails after every batch file is written: the half-made directory must vanish.
    monkeypatch.setattr(spanqa.squad.np, "savez_compressed", no_space)
    with pytest.raises(OSError, match="No space left"):
        write_features(features, tmp_path / "out", batch_size=2)
    assert list(tmp_path.iterdir()) == []


def test_load_rejects_inconsistent_dirs(tmp_path, small_features):
    _, features = small_features
    out = tmp_path / "f"
    with pytest.raises(FeaturesError, match=r"no manifest.json; not a features directory"):
        load_features(out)
    write_features(features, out, batch_size=4)

    (out / "segment_ids" / "2.bin").unlink()
    with pytest.raises(FeaturesError, match=r"segment_ids: expected 4 files 0.bin..3.bin; missing 2.bin$"):
        load_features(out)
    write_features(features, out, batch_size=4)

    with open(out / "input_mask" / "1.bin", "r+b") as fh:
        fh.truncate(100)
    with pytest.raises(
        FeaturesError, match=r"input_mask/1.bin: 100 bytes, expected 1280 \(int64 \[4, 40\]\); re-run spanqa preprocess$"
    ):
        load_features(out)
    write_features(features, out, batch_size=4)

    block = np.fromfile(out / "input_ids" / "3.bin", dtype="<i8")
    block[-1] = 7
    block.tofile(out / "input_ids" / "3.bin")
    with pytest.raises(FeaturesError, match=r"padding rows after row 13 are not zero"):
        load_features(out)
    write_features(features, out, batch_size=4)

    manifest = json.loads((out / "manifest.json").read_text())
    manifest["num_features"] = 12
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FeaturesError, match=r"padding rows after row 12 are not zero"):
        load_features(out)
    write_features(features, out, batch_size=4)

    np.savez(out / "features.npz", **{k: v[:-1] for k, v in np.load(out / "features.npz").items()})
    with pytest.raises(FeaturesError, match=r"features.npz 'unique_id' has 12 rows, expected 13"):
        load_features(out)
