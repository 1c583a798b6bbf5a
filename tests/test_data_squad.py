"""Reading SQuAD files (spanqa.data.squad): questions, contexts and word offsets, and one-line
errors for every way a file can be wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spanqa.data.features import build_features
from spanqa.data.squad import examples_from_text, read_squad
from spanqa.errors import DatasetError
from spanqa.settings import FeatureSettings
from squad_files import tokenizer


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
    features = build_features(examples, tokenizer(False), FeatureSettings())
    assert len(features) == 2
    assert features.tokens[1] == ["[CLS]", "Where", "is", "Rome", "?", "[SEP]", "Paris", "is", "in", "France", ".", "[SEP]"]


def test_examples_carry_their_context_and_word_offsets(tmp_path):
    path = tmp_path / "s.json"
    context = "  Paris\tis in\u202fFrance.\n"
    path.write_text(
        json.dumps(
            {
                "data": [
                    {
                        "title": "P",
                        "paragraphs": [
                            {
                                "context": context,
                                "qas": [
                                    {"id": "a", "question": "Where?", "answers": [{"text": "France"}]},
                                    {"id": "b", "question": "What?", "answers": [{"text": "Paris"}]},
                                ],
                            }
                        ],
                    }
                ]
            }
        ),
        encoding="utf-8",
    )
    a, b = read_squad(path)
    assert a.doc_tokens == ["Paris", "is", "in", "France."] and a.word_starts == [2, 8, 11, 14]
    assert a.context == context and a.answers == ["France"]
    assert [context[s : s + len(w)] for w, s in zip(a.doc_tokens, a.word_starts)] == a.doc_tokens
    # Questions of one paragraph share its word list (tokenised once downstream).
    assert b.doc_tokens is a.doc_tokens and b.word_starts is a.word_starts


def test_examples_from_text():
    cache: dict = {}
    one = examples_from_text("Who?", "Ann met  Bob.", "1", ["Ann"], _cache=cache)
    two = examples_from_text("Whom?", "Ann met  Bob.", "2", _cache=cache)
    assert (one.qas_id, one.question_text, one.answers, one.is_impossible) == ("1", "Who?", ["Ann"], None)
    assert one.doc_tokens == ["Ann", "met", "Bob."] and one.word_starts == [0, 4, 9]
    assert two.doc_tokens is one.doc_tokens and two.answers == []
    assert examples_from_text("Who?", "Ann met  Bob.", "3").doc_tokens is not one.doc_tokens


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
    (
        {"data": [{"title": "Nile", "paragraphs": [_para(), _para(context=" \t\n")]}]},
        "article 0 ('Nile'), paragraph 1: the context is empty; every question needs a passage",
    ),
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
