"""Reading SQuAD 2.0 files: detection, the fixture, and one-line errors for bad questions."""

from __future__ import annotations

import json

import pytest

from spanqa.answers.squad2 import is_squad2
from spanqa.data.squad import read_squad
from spanqa.errors import DatasetError


def _file(tmp_path, qas, version=None, context="Paris is the capital of France."):
    obj = {"data": [{"title": "T", "paragraphs": [{"context": context, "qas": qas}]}]}
    if version:
        obj["version"] = version
    path = tmp_path / "d.json"
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def test_fixture_reads_as_squad2(squad2_json, heldout_json):
    examples = read_squad(squad2_json)
    assert is_squad2(examples)
    impossible = [ex for ex in examples if ex.is_impossible]
    assert len(examples) == 76 and len(impossible) == 21
    assert all(ex.answers == [] for ex in impossible)
    assert all(ex.answers and ex.is_impossible is False for ex in examples if not ex.is_impossible)
    # The answerable questions are the 1.1 file's, unchanged.
    v1 = {ex.qas_id: ex for ex in read_squad(heldout_json)}
    for ex in examples:
        if ex.qas_id in v1 and not ex.qas_id.endswith("-long"):
            assert (ex.question_text, ex.answers, ex.doc_tokens) == (
                v1[ex.qas_id].question_text,
                v1[ex.qas_id].answers,
                v1[ex.qas_id].doc_tokens,
            )


def test_squad11_files_are_read_as_before(heldout_json):
    examples = read_squad(heldout_json)
    assert not is_squad2(examples)
    assert all(ex.is_impossible is None and ex.answers for ex in examples)


def test_version_key_alone_makes_a_squad2_file(tmp_path):
    qas = [
        {"id": "a", "question": "Capital?", "answers": [{"text": "Paris", "answer_start": 0}]},
        {"id": "b", "question": "Moon?", "answers": []},
    ]
    examples = read_squad(_file(tmp_path, qas, version="v2.0"))
    assert is_squad2(examples)
    assert [ex.is_impossible for ex in examples] == [False, True]


def test_short_form_and_plausible_answers(tmp_path):
    qas = [
        {"id": "s", "question": "Moon?", "is_impossible": True},
        {
            "id": "p",
            "question": "Capital of Spain?",
            "is_impossible": True,
            "answers": [],
            "plausible_answers": [{"text": "Paris", "answer_start": 0}],
        },
    ]
    examples = read_squad(_file(tmp_path, qas))
    assert [(ex.is_impossible, ex.answers) for ex in examples] == [(True, []), (True, [])]


@pytest.mark.parametrize(
    ("qa", "message"),
    [
        (
            {"id": "q7", "question": "Moon?", "is_impossible": True, "answers": [{"text": "Paris", "answer_start": 0}]},
            "question 'q7': marked is_impossible but has 1 answer; an unanswerable question takes 'answers': [] (its guesses go in 'plausible_answers')",
        ),
        (
            {"id": "q8", "question": "Capital?", "is_impossible": False, "answers": []},
            "question 'q8': answerable (is_impossible false) but has no answers; give its answers or set is_impossible true",
        ),
        (
            {"id": "q9", "question": "Capital?", "is_impossible": True, "plausible_answers": "Paris"},
            "question 'q9': 'plausible_answers' must be a list of objects with a 'text' string",
        ),
    ],
)
def test_bad_squad2_questions_are_one_line_errors(tmp_path, qa, message):
    path = _file(tmp_path, [qa])
    with pytest.raises(DatasetError) as err:
        read_squad(path)
    assert str(err.value) == f"{path}: article 0 ('T'), {message}"
    assert "\n" not in str(err.value)


def test_all_impossible_file(squad2_all_impossible_json):
    examples = read_squad(squad2_all_impossible_json)
    assert len(examples) == 21 and all(ex.is_impossible for ex in examples)
