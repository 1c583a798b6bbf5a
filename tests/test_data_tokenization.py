"""WordPiece (spanqa.data.tokenization) against BERT's pure-Python reference tokenizer, and
run_squad.py's whitespace words."""

from __future__ import annotations

import functools
import json

import pytest
import squad_reference as R
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from spanqa.data.features import build_features
from spanqa.data.squad import Example
from spanqa.data.tokenization import make_tokenizer, split_words, word_spans
from spanqa.data.vocab import TokenizerSettings
from spanqa.errors import DatasetError
from spanqa.settings import FeatureSettings
from squad_files import odd_text, tokenizer, vocab_path


@functools.lru_cache(maxsize=2)
def _ref_tokenizer(lower: bool):
    return R.reference_tokenizer(vocab_path(lower), lower)


def test_reference_takes_out_the_legacy_nfc_step():
    ref = _ref_tokenizer(False)
    decomposed = "cafe\u0301"
    # The legacy class composes to "café" first; SpanBERT's tokenizer never does.
    assert ref.legacy.basic_tokenizer.tokenize(decomposed) == ["café"]
    assert ref.basic.tokenize(decomposed) == [decomposed]
    assert make_tokenizer(tokenizer(False)).tokenize(decomposed) == ref.tokenize(decomposed)
    assert ref.tokenize(decomposed) != ref.tokenize("café")


@hsettings(max_examples=300, deadline=None)
@given(text=odd_text, lower=st.booleans())
def test_hypothesis_question_tokens_equal_reference(text, lower):
    assert make_tokenizer(tokenizer(lower)).tokenize(text) == _ref_tokenizer(lower).tokenize(text)


@hsettings(max_examples=300, deadline=None)
@given(text=odd_text)
def test_words_are_run_squads_and_offsets_point_at_them(text):
    words, starts = word_spans(text)
    assert words == split_words(text) == R.split_doc(text)
    assert [text[s : s + len(w)] for w, s in zip(words, starts)] == words


def test_word_spans_known_values():
    assert word_spans("  a\tbc\u202fd\u00a0e \r\n") == (["a", "bc", "d\u00a0e"], [2, 4, 7])
    assert word_spans(" \t\n") == ([], [])


def test_bad_vocab(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("a\nb\n[UNK]\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"vocab.txt: not a BERT WordPiece vocab \(no \[CLS\], \[SEP\]\)"):
        build_features([Example("a", "q", ["w"])], TokenizerSettings(vocab, False), FeatureSettings())
    with pytest.raises(DatasetError) as exc:
        make_tokenizer(TokenizerSettings(tmp_path / "nope.txt", False))
    assert str(exc.value) == f"{tmp_path / 'nope.txt'}: vocab not found (No such file or directory); pass an existing vocab.txt"


def test_unicode_classes_are_cached_on_disk_and_rebuilt_when_damaged(tmp_path, monkeypatch):
    from spanqa.data import tokenization

    monkeypatch.setenv("SPANQA_HOME", str(tmp_path))
    tokenization._patterns.cache_clear()
    built = tokenization._patterns()
    [cached] = (tmp_path / "unicode").glob("classes-*.json")
    assert tuple(json.loads(cached.read_text())) == built
    assert "\\x{2B820}" in built[2] or "2B820" in built[2]  # the CJK range the Rust table lacks

    calls = []
    monkeypatch.setattr(tokenization, "_ranges", lambda predicate: calls.append(1) or [(0x41, 0x41)])
    tokenization._patterns.cache_clear()
    assert tokenization._patterns() == built and calls == []  # read back, not rebuilt
    cached.write_text("{not json")
    tokenization._patterns.cache_clear()
    rebuilt = tokenization._patterns()
    assert calls == [1, 1, 1] and rebuilt[0] == "[\\x{41}]"  # damaged: built again (here by the stub)
    tokenization._patterns.cache_clear()
