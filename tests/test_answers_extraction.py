"""Answer extraction (spanqa.answers.extraction): logits -> n-best -> predictions exactly as
SpanBERT's run_squad.py makes them, checked on hand-made cases and against a loop-by-loop port of
run_squad's make_predictions (SQuAD v1.1 branch)."""

from __future__ import annotations

import json
import unicodedata

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features_by_hand import example, hand_features, peaked, pieces, position
from spanqa.answers.extraction import _top_indexes, basic_tokenize, get_final_text, predict
from spanqa.data.features import build_features
from spanqa.data.squad import Example, read_squad
from spanqa.data.vocab import TokenizerSettings
from spanqa.errors import InferenceError
from spanqa.settings import AnswerSettings, FeatureSettings

NEVER_SPLIT = ["[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]"]


# ------------------------------------------------------------------------------------------
# The oracle: BERT's legacy basic tokenizer and run_squad's loops, written out
# ------------------------------------------------------------------------------------------


def _legacy_basic(do_lower_case):
    from transformers.models.bert.tokenization_bert_legacy import BasicTokenizer

    return BasicTokenizer(do_lower_case=do_lower_case, never_split=NEVER_SPLIT)


def chunk_wordpiece(do_lower_case, size=3):
    """A stand-in WordPiece: basic tokens cut into chunks; words with 'ø' become [UNK]."""
    basic = _legacy_basic(do_lower_case)

    def pieces(word):
        out = []
        for tok in basic.tokenize(word):
            if "ø" in tok.lower():
                out.append("[UNK]")
                continue
            out.extend(("##" if k else "") + tok[k : k + size] for k in range(0, len(tok), size))
        return out

    return pieces


def reference_get_final_text(pred_text, orig_text, do_lower_case):
    def strip_spaces(text):
        ns_chars, ns_to_s = [], {}
        for i, c in enumerate(text):
            if c == " ":
                continue
            ns_to_s[len(ns_chars)] = i
            ns_chars.append(c)
        return "".join(ns_chars), ns_to_s

    tok_text = " ".join(_legacy_basic(do_lower_case).tokenize(orig_text))
    start_position = tok_text.find(pred_text)
    if start_position == -1:
        return orig_text
    end_position = start_position + len(pred_text) - 1
    orig_ns_text, orig_ns_to_s = strip_spaces(orig_text)
    tok_ns_text, tok_ns_to_s = strip_spaces(tok_text)
    if len(orig_ns_text) != len(tok_ns_text):
        return orig_text
    tok_s_to_ns = {v: k for k, v in tok_ns_to_s.items()}
    orig_start = orig_ns_to_s.get(tok_s_to_ns.get(start_position, -1))
    if orig_start is None:
        return orig_text
    orig_end = orig_ns_to_s.get(tok_s_to_ns.get(end_position, -1))
    if orig_end is None:
        return orig_text
    return orig_text[orig_start : orig_end + 1]


def reference_predictions(features, start_logits, end_logits, n_best_size, max_answer_length):
    import math

    def best_indexes(logits):
        ranked = sorted(enumerate(logits), key=lambda x: x[1], reverse=True)
        return [i for i, _ in ranked[:n_best_size]]

    by_example = {}
    for f in range(len(features)):
        by_example.setdefault(int(features.example_index[f]), []).append(f)
    predictions, all_nbest = {}, {}
    for ex_i, ex in enumerate(features.examples):
        prelim = []
        for f in by_example.get(ex_i, []):
            s_l = start_logits[f].tolist()
            e_l = end_logits[f].tolist()
            tokens, m, c = features.tokens[f], features.token_to_orig_map[f], features.token_is_max_context[f]
            for s in best_indexes(s_l):
                for e in best_indexes(e_l):
                    if s >= len(tokens) or e >= len(tokens):
                        continue
                    if s not in m or e not in m or not c.get(s, False):
                        continue
                    if e < s or e - s + 1 > max_answer_length:
                        continue
                    prelim.append((f, s, e, s_l[s], e_l[e]))
        prelim = sorted(prelim, key=lambda x: x[3] + x[4], reverse=True)
        seen, nbest = {}, []
        for f, s, e, sl, el in prelim:
            if len(nbest) >= n_best_size:
                break
            if s > 0:
                tok_text = " ".join(features.tokens[f][s : e + 1])
                tok_text = tok_text.replace(" ##", "").replace("##", "")
                tok_text = " ".join(tok_text.strip().split())
                o_s, o_e = features.token_to_orig_map[f][s], features.token_to_orig_map[f][e]
                orig_text = " ".join(ex.doc_tokens[o_s : o_e + 1])
                final = reference_get_final_text(tok_text, orig_text, features.settings.do_lower_case)
                if final in seen:
                    continue
                seen[final] = True
            else:
                final = ""
                seen[final] = True
            nbest.append((final, sl, el))
        if not nbest:
            nbest.append(("empty", 0.0, 0.0))
        scores = [sl + el for _, sl, el in nbest]
        mx = max(scores)
        exps = [math.exp(x - mx) for x in scores]
        total = sum(exps)
        all_nbest[ex.qas_id] = [
            {"text": t, "probability": x / total, "start_logit": sl, "end_logit": el} for (t, sl, el), x in zip(nbest, exps)
        ]
        predictions[ex.qas_id] = nbest[0][0]
    return predictions, all_nbest


# ------------------------------------------------------------------------------------------
# Basic tokenisation and final-text alignment
# ------------------------------------------------------------------------------------------


def test_get_final_text_reference_examples():
    # run_squad's own example: the prediction "steve smith" in "Steve Smith's"
    assert get_final_text("steve smith", "Steve Smith's", True) == "Steve Smith"
    assert get_final_text("1889", "(1889),", False) == "1889"
    assert get_final_text("cafe", "Café,", True) == "Café"
    # cannot be found → the whole original text
    assert get_final_text("paris", "London", True) == "London"
    # the model's casing decides: a cased prediction is not found in lower-cased text
    assert get_final_text("McDonald", "McDonald's", False) == "McDonald"
    assert get_final_text("McDonald", "McDonald's", True) == "McDonald's"


def _stable_char(c: str) -> bool:
    # Characters whose Unicode category is unchanged since 3.2: Python's unicodedata (which
    # the reference uses) and the tokenizers crate's tables agree on all of them. Newer
    # characters can differ between Unicode versions, as they do between Python versions.
    cat = unicodedata.category(c)
    return cat != "Cn" and cat != "Cs" and unicodedata.ucd_3_2_0.category(c) == cat


def _nfc_stable_after_cleaning(s: str) -> bool:
    # The legacy tokenizer NFC-normalises after dropping control characters, which can bring
    # combining marks together that NFC then reorders; the reference has no NFC step.
    cleaned = "".join(c for c in s if c in "\t\n\r" or not unicodedata.category(c).startswith("C"))
    return unicodedata.normalize("NFC", s) == s and unicodedata.normalize("NFC", cleaned) == cleaned


_stable_text = (
    st.lists(
        st.one_of(
            st.characters(max_codepoint=0x2FFF),
            st.characters(),
            st.sampled_from(["[CLS]", "[SEP]", "[UNK]", " [MASK] ", "é", "\u0301", "\u00a0", "\u3000", "中文", "İ", "ß"]),
        ).filter(lambda s: all(_stable_char(c) for c in s)),
        max_size=30,
    )
    .map("".join)
    .filter(lambda s: _nfc_stable_after_cleaning(s))
)


@settings(max_examples=400, deadline=None)
@given(_stable_text, st.booleans())
def test_basic_tokenize_matches_bert_basic_tokenizer(text, lower):
    # transformers' legacy BasicTokenizer adds an NFC step the reference lacks: NFC-stable text only.
    assert basic_tokenize(text, lower) == _legacy_basic(lower).tokenize(text)


def test_basic_tokenize_matches_on_dev_contexts(dev_json):
    data = json.loads(dev_json.read_text(encoding="utf-8"))
    texts = [p["context"] for a in data["data"] for p in a["paragraphs"]]
    for lower in (True, False):
        ref = _legacy_basic(lower)
        bad = [t[:60] for t in texts if basic_tokenize(t, lower) != ref.tokenize(t)]
        assert bad == []


# ------------------------------------------------------------------------------------------
# Hand-made cases
# ------------------------------------------------------------------------------------------


SETTINGS = AnswerSettings(n_best_size=5, max_answer_length=10)


def test_answer_at_the_end_of_a_span():
    ex = example("The tower was finished in 1889")
    f = hand_features([ex], pieces({}), do_lower_case=False, max_seq_length=32)
    last = len(f.tokens[0]) - 2  # the final doc token, just before [SEP]
    assert f.tokens[0][last] == "1889"
    sep = last + 1
    # [SEP] scores higher still but is not a document position
    s, e = peaked(f, {(0, last): 5.0, (0, sep): 9.0}, {(0, last): 5.0, (0, sep): 9.0})
    preds, nbest = predict(f, s, e, SETTINGS)
    assert preds == {"q1": "1889"}
    assert nbest["q1"][0] == {"text": "1889", "probability": nbest["q1"][0]["probability"], "start_logit": 5.0, "end_logit": 5.0}


def test_answer_at_the_end_of_a_window_in_a_multi_span_document():
    words = "a b c d e f g h i j k l"
    ex = example(words)
    # 3 query tokens + 3 specials: 6 doc tokens per window, stride 3 → windows 0-5, 3-8, 6-11
    f = hand_features([ex], pieces({}), do_lower_case=False, max_seq_length=12, doc_stride=3)
    assert [t[5:-1] for t in f.tokens] == [list("abcdef"), list("defghi"), list("ghijkl")]
    pos_l = position(f, 2, "l")
    assert pos_l == len(f.tokens[2]) - 2
    s, e = peaked(f, {(2, pos_l): 3.0}, {(2, pos_l): 3.0})
    preds, _ = predict(f, s, e, SETTINGS)
    assert preds["q1"] == "l"


def test_answer_split_over_two_spans_max_context_span_wins():
    ex = example("w0 w1 w2 w3 w4 Eiffel Tower w7 w8 w9 w10 w11")
    f = hand_features([ex], pieces({}), do_lower_case=False, max_seq_length=12, doc_stride=3)
    assert len(f) == 3
    # window 0 holds only "Eiffel" (at its edge); window 1 holds the whole answer in its middle
    p0 = position(f, 0, "Eiffel")
    assert f.tokens[0][p0 + 1] == "[SEP]" and not f.token_is_max_context[0][p0]
    p1, p1_end = position(f, 1, "Eiffel"), position(f, 1, "Tower")
    assert f.token_is_max_context[1][p1]
    # window 0 is far more confident about its truncated "Eiffel", but its start is not in its
    # max context, so the reference drops it; window 1's full answer wins.
    s, e = peaked(f, {(0, p0): 20.0, (1, p1): 2.0}, {(0, p0): 20.0, (1, p1_end): 2.0})
    preds, nbest = predict(f, s, e, SETTINGS)
    assert preds["q1"] == "Eiffel Tower"
    assert (nbest["q1"][0]["start_logit"], nbest["q1"][0]["end_logit"]) == (2.0, 2.0)
    assert "Eiffel" not in [c["text"] for c in nbest["q1"]]


def test_punctuation_next_to_the_answer():
    table = {"(1889),": ["(", "1889", ")", ","], "years.": ["years", "."]}
    ex = example("It opened in (1889), after two years.")
    f = hand_features(
        [ex, example(" ".join(ex.doc_tokens), "q2"), example(" ".join(ex.doc_tokens), "q3")],
        pieces(table),
        do_lower_case=False,
        max_seq_length=32,
    )
    y = position(f, 0, "1889")
    s, e = peaked(
        f,
        {(0, y): 4.0, (1, y - 1): 4.0, (2, position(f, 2, "years")): 4.0},
        {(0, y): 4.0, (1, y + 1): 4.0, (2, position(f, 2, ".")): 4.0},
    )
    preds, _ = predict(f, s, e, SETTINGS)
    assert preds == {"q1": "1889", "q2": "(1889)", "q3": "years."}


def test_accents_are_restored_for_an_uncased_model():
    table = {"Zürich's": ["zur", "##ich", "'", "s"], "Café": ["ca", "##fe"], "Ørsted.": ["[UNK]", "."]}
    ex = example("He moved from Zürich's Café to Ørsted.")
    f = hand_features(
        [ex, example(" ".join(ex.doc_tokens), "q2"), example(" ".join(ex.doc_tokens), "q3")],
        pieces(table),
        do_lower_case=True,
        max_seq_length=32,
    )
    z, ca = position(f, 0, "zur"), position(f, 1, "ca")
    unk = position(f, 2, "[UNK]")
    s, e = peaked(f, {(0, z): 4.0, (1, ca): 4.0, (2, unk): 4.0}, {(0, z + 1): 4.0, (1, ca + 1): 4.0, (2, unk): 4.0})
    preds, _ = predict(f, s, e, SETTINGS)
    # "[UNK]" cannot be aligned: the whole original word comes back, as in the reference
    assert preds == {"q1": "Zürich", "q2": "Café", "q3": "Ørsted."}


def test_a_cased_model_keeps_its_casing():
    table = {"McDonald's": ["Mc", "##Don", "##ald", "'", "s"], "Café.": ["Ca", "##fé", "."]}
    words = "McDonald's opened a Café."
    exs = [example(words), example(words, "q2")]
    f = hand_features(exs, pieces(table), do_lower_case=False, max_seq_length=32)
    mc, ca = position(f, 0, "Mc"), position(f, 1, "Ca")
    s, e = peaked(f, {(0, mc): 4.0, (1, ca): 4.0}, {(0, mc + 2): 4.0, (1, ca + 1): 4.0})
    preds, _ = predict(f, s, e, SETTINGS)
    assert preds == {"q1": "McDonald", "q2": "Café"}
    # the same logits read as an uncased model's cannot align the cased text: whole words
    f.settings = FeatureSettings(max_seq_length=32, do_lower_case=True)
    preds_uncased, _ = predict(f, s, e, SETTINGS)
    assert preds_uncased == {"q1": "McDonald's", "q2": "Café."}


def test_invalid_spans_are_skipped_and_empty_is_the_fallback():
    ex = example("one two three four five six seven")
    f = hand_features([ex, example("alpha beta", "q2")], pieces({}), do_lower_case=False, max_seq_length=32)
    two, three, five, seven = (position(f, 0, w) for w in ("two", "three", "five", "seven"))
    q = 1  # a question position
    starts = {(0, q): 50.0, (0, seven): 40.0, (0, two): 30.0}
    ends = {(0, q): 50.0, (0, five): 45.0, (0, three): 40.0}
    s, e = peaked(f, starts, ends, base=-100.0)
    # question position: out; "seven".."five"/"three": end before start;
    # "two".."five": 4 words > max length 2; left: "two three"
    preds, nbest = predict(f, s, e, AnswerSettings(n_best_size=3, max_answer_length=2))
    assert preds["q1"] == "two three"
    assert nbest["q1"] == [{"text": "two three", "probability": 1.0, "start_logit": 30.0, "end_logit": 40.0}]
    # the second question only has question/[CLS] logits among its top 3 → "empty"
    s2, e2 = peaked(f, {(1, 0): 9.0, (1, 1): 8.0, (1, 2): 7.0}, {(1, 0): 9.0, (1, 1): 8.0, (1, 2): 7.0})
    preds2, nbest2 = predict(f, s2, e2, AnswerSettings(n_best_size=3))
    assert preds2["q2"] == "empty"
    assert nbest2["q2"] == [{"text": "empty", "probability": 1.0, "start_logit": 0.0, "end_logit": 0.0}]


def test_nbest_is_deduplicated_sorted_and_normalised():
    ex = example("red Ørsted. green")
    f = hand_features([ex], pieces({"Ørsted.": ["[UNK]", "."]}), do_lower_case=False, max_seq_length=32)
    r, unk, dot, g = (position(f, 0, w) for w in ("red", "[UNK]", ".", "green"))
    s, e = peaked(f, {(0, r): 3.0, (0, unk): 2.0, (0, g): 1.0}, {(0, r): 0.5, (0, unk): 0.25, (0, dot): 0.125, (0, g): 0.0})
    # top 6 starts: red, [UNK], green and three -10 ties, taken lowest position first ([CLS], q, q)
    preds, nbest = predict(f, s, e, AnswerSettings(n_best_size=6, max_answer_length=30))
    # "[UNK]" and "[UNK] ." cannot be aligned and both fall back to the whole words: one entry
    texts = [c["text"] for c in nbest["q1"]]
    assert texts == ["red", "red Ørsted.", "red Ørsted. green", "Ørsted.", "Ørsted. green", "green"]
    totals = [c["start_logit"] + c["end_logit"] for c in nbest["q1"]]
    assert totals == [3.5, 3.25, 3.0, 2.25, 2.0, 1.0]
    assert sum(c["probability"] for c in nbest["q1"]) == pytest.approx(1.0, abs=1e-12)
    assert nbest["q1"][0]["probability"] == pytest.approx(1 / sum(np.exp(np.array(totals) - 3.5)))
    assert preds == {"q1": "red"}


def test_narrow_logits_from_length_aware_batching():
    ex = example("The tower was finished in 1889")
    f = hand_features([ex], pieces({}), do_lower_case=False, max_seq_length=64)
    last = len(f.tokens[0]) - 2
    s, e = peaked(f, {(0, last): 5.0}, {(0, last): 5.0}, width=len(f.tokens[0]))
    assert predict(f, s, e, SETTINGS)[0] == {"q1": "1889"}
    with pytest.raises(InferenceError, match=r"logits are 8 positions wide but feature 0 has 12 tokens"):
        predict(f, s[:, :8], e[:, :8], SETTINGS)
    with pytest.raises(InferenceError, match=r"start logits have shape \(2, 12\) but there are 1 features"):
        predict(f, np.vstack([s, s]), e, SETTINGS)
    bad = s.copy()
    bad[0, 3] = np.nan
    with pytest.raises(InferenceError, match="start logits of feature 0 contain NaN"):
        predict(f, bad, e, SETTINGS)


@pytest.mark.parametrize("rank_padding", [False, True])
def test_minus_inf_where_nothing_was_computed(rank_padding):
    """The engine leaves -inf past each batch's padded length: the same answers as logits cut
    to the feature's own length, padding ranked or not."""
    exs = [example("The tower was finished in 1889"), example("It stands in Paris today", "q2")]
    f = hand_features(exs, pieces({}), do_lower_case=False, max_seq_length=64)
    starts = {(0, position(f, 0, "1889")): 5.0, (1, position(f, 1, "Paris")): 4.0}
    ends = {(0, position(f, 0, "1889")): 5.0, (1, position(f, 1, "today")): 4.0}
    s, e = peaked(f, starts, ends)
    width = max(len(t) for t in f.tokens)
    s[:, width:] = e[:, width:] = -np.inf
    settings = AnswerSettings(n_best_size=20, max_answer_length=10, rank_padding=rank_padding)
    assert predict(f, s, e, settings) == predict(f, s[:, :width], e[:, :width], settings)
    preds, nbest = predict(f, s, e, settings)
    assert preds == {"q1": "1889", "q2": "Paris today"}
    assert all(np.isfinite(c["start_logit"] + c["end_logit"]) for cands in nbest.values() for c in cands)


# ------------------------------------------------------------------------------------------
# The vectorised predict against the loop-by-loop port of run_squad
# ------------------------------------------------------------------------------------------


_DOC_WORDS = [
    "The",
    "tower",
    "was",
    "built",
    "in",
    "1889,",
    "by",
    "Gustave",
    "Eiffel's",
    "company.",
    "Café",
    "Zürich",
    "naïve",
    "(1990s)",
    "U.S.",
    "don't",
    "Ørsted",
    "«quoted»",
    "São",
    "Paulo,",
    "x",
    "x",
    "x",
    "[CLS]",
    "a[SEP]b",
    "中文字",
    "été",
    "3.5%",
    "—",
    "McDonald's",
]


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    lower=st.booleans(),
    n_best=st.integers(1, 8),
    max_len=st.integers(1, 6),
    max_seq=st.integers(10, 24),
    stride=st.integers(1, 6),
    narrow=st.booleans(),
)
def test_predict_matches_reference_loops(seed, lower, n_best, max_len, max_seq, stride, narrow):
    rng = np.random.default_rng(seed)
    exs = []
    for i in range(int(rng.integers(1, 5))):
        n_words = int(rng.integers(1, 14))
        words = [str(w) for w in rng.choice(_DOC_WORDS, n_words)]
        exs.append(Example(qas_id=f"q{i}", question_text="?", doc_tokens=words))
    f = hand_features(exs, chunk_wordpiece(lower), do_lower_case=lower, max_seq_length=max_seq, doc_stride=stride)
    width = max(len(t) for t in f.tokens) if narrow else max_seq
    # coarse values make ties common: ordering of ties must follow the reference's
    s = rng.integers(-4, 5, size=(len(f), width)).astype(np.float32) / 2
    e = rng.normal(size=(len(f), width)).astype(np.float32).round(1)
    ours = predict(f, s, e, AnswerSettings(n_best_size=n_best, max_answer_length=max_len, rank_padding=True))
    ref = reference_predictions(f, s, e, n_best, max_len)
    assert ours == ref


@pytest.mark.parametrize("vocab", ["bert-base-cased-vocab.txt", "bert-base-uncased-vocab.txt"])
def test_predict_matches_reference_loops_on_real_features(shared_dir, dev_json, vocab):
    lower = "uncased" in vocab
    examples = read_squad(dev_json)[:300]
    f = build_features(
        examples,
        TokenizerSettings(shared_dir / "data" / "vocab" / vocab, lower),
        FeatureSettings(max_seq_length=192, doc_stride=64, max_query_length=32, do_lower_case=lower),
    )
    assert len(f) > len(examples)  # several windows per long context
    rng = np.random.default_rng(7)
    # answer-like logits: peaks in the document, including at real answers' word pieces
    s = rng.normal(size=(len(f), 192)).astype(np.float32)
    e = rng.normal(size=(len(f), 192)).astype(np.float32)
    s[:, :20] -= 3.0
    ours = predict(f, s, e, AnswerSettings(n_best_size=20, max_answer_length=30, rank_padding=True))
    ref = reference_predictions(f, s, e, 20, 30)
    assert ours == ref
    assert sum(p != "empty" for p in ours[0].values()) > 250
    # By default padding never competes: the same logits with the padding columns raised to the
    # top give exactly the answers of logits cut to each feature's own length.
    lengths = np.array([len(t) for t in f.tokens])
    pad = np.arange(192)[None, :] >= lengths[:, None]
    assert pad.any()
    loud_s, loud_e = np.where(pad, 50.0, s).astype(np.float32), np.where(pad, 50.0, e).astype(np.float32)
    default = predict(f, loud_s, loud_e, AnswerSettings(n_best_size=20, max_answer_length=30))
    quiet = predict(f, np.where(pad, -50.0, s).astype(np.float32), np.where(pad, -50.0, e).astype(np.float32), AnswerSettings())
    assert default == quiet
    assert predict(f, loud_s, loud_e, AnswerSettings(rank_padding=True))[0] != default[0]


def test_top_indexes_matches_a_stable_descending_sort():
    rng = np.random.default_rng(0)
    special = np.array([0.0, -0.0, 1.5, -1.5, np.inf, -np.inf, 3e38, -3e38, 1e-45, -1e-45], np.float32)
    for trial in range(300):
        rows, width, n = int(rng.integers(1, 4)), int(rng.integers(1, 30)), int(rng.integers(1, 35))
        x = rng.choice(special, (rows, width)) if trial % 2 else rng.normal(size=(rows, width)).astype(np.float32)
        want = [[i for i, _ in sorted(enumerate(r.tolist()), key=lambda t: t[1], reverse=True)[:n]] for r in x]
        assert _top_indexes(x, n).tolist() == want
