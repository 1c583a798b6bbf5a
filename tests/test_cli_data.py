"""``spanqa preprocess`` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from spanqa.cli import main
from spanqa.data.features import build_features
from spanqa.data.folders import load_features
from spanqa.data.squad import read_squad
from spanqa.data.vocab import TokenizerSettings, default_vocab_path
from spanqa.fileutil import sha256_file
from spanqa.settings import FeatureSettings

SQUAD = {
    "version": "1.1",
    "data": [
        {
            "title": "Normans",
            "paragraphs": [
                {
                    "context": "The Normans gave their name to Normandy, a region in France. " * 4,
                    "qas": [
                        {
                            "id": "n1",
                            "question": "Who gave their name to Normandy?",
                            "answers": [{"text": "The Normans", "answer_start": 0}],
                        },
                        {"id": "n2", "question": "Where is Normandy?", "answers": [{"text": "France", "answer_start": 53}]},
                    ],
                }
            ],
        },
        {
            "title": "Paris",
            "paragraphs": [
                {"context": "Paris is the capital of France.", "qas": [{"id": "p1", "question": "What is Paris?", "answers": []}]}
            ],
        },
    ],
}


def _run(*args):
    return CliRunner().invoke(main, ["preprocess", *map(str, args)])


@pytest.fixture
def dataset(tmp_path) -> Path:
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(SQUAD), encoding="utf-8")
    return path


def test_preprocess_default_is_spanbert_cased(tmp_path, dataset):
    out = tmp_path / "features"
    result = _run(dataset, "-o", out, "--max-seq-length", 32, "--doc-stride", 8, "--max-query-length", 10, "--batch-size", 5)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    expected = build_features(read_squad(dataset), TokenizerSettings(default_vocab_path(), False), FeatureSettings(32, 8, 10))
    n = len(expected)
    assert n == 12
    assert result.output == (
        f"12 features for 3 questions (cased, bert-base-cased-vocab.txt) -> {out}: 3 batches of 5 (bin), 3 padding rows\n"
    )
    assert manifest["tokenizer"] == {"vocab_file": "bert-base-cased-vocab.txt", "do_lower_case": False}
    assert manifest["vocab_sha256"] == sha256_file(default_vocab_path())
    assert manifest["dataset_sha256"] == sha256_file(dataset)
    assert (manifest["num_features"], manifest["num_batches"], manifest["batch_size"]) == (12, 3, 5)
    for name in ("input_ids", "input_mask", "segment_ids"):
        assert sorted(p.name for p in (out / name).iterdir()) == [f"{b}.bin" for b in range(3)]
        rows = np.concatenate([np.fromfile(out / name / f"{b}.bin", dtype="<i8").reshape(5, 32) for b in range(3)])
        assert np.array_equal(rows[:n], getattr(expected, name))
        assert not rows[n:].any()
    loaded = load_features(out)
    assert loaded.tokens == expected.tokens
    assert loaded.token_to_orig_map == expected.token_to_orig_map
    assert loaded.token_is_max_context == expected.token_is_max_context


def test_preprocess_vocab_lower_case_npy(tmp_path, dataset, shared_dir):
    vocab = shared_dir / "data" / "vocab" / "bert-base-uncased-vocab.txt"
    out = tmp_path / "f"
    result = _run(dataset, "-o", out, "--vocab", vocab, "--lower-case", "--format", "npy", "-q")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["do_lower_case"] is True and manifest["format"] == "npy"
    assert manifest["vocab_sha256"] == sha256_file(vocab)
    block = np.load(out / "input_ids" / "0.npy")
    assert block.shape == (1, 512) and block.dtype == np.dtype("<i8")
    features = load_features(out)
    assert features.tokens[-1] == [
        "[CLS]",
        "what",
        "is",
        "paris",
        "?",
        "[SEP]",
        "paris",
        "is",
        "the",
        "capital",
        "of",
        "france",
        ".",
        "[SEP]",
    ]


def test_preprocess_model_dir_carries_vocab_and_casing(tmp_path, dataset, shared_dir):
    model = tmp_path / "model"
    model.mkdir()
    (model / "vocab.txt").write_bytes((shared_dir / "data" / "vocab" / "bert-base-uncased-vocab.txt").read_bytes())
    (model / "tokenizer_config.json").write_text('{"do_lower_case": true}')
    result = _run(dataset, "-o", tmp_path / "f", "--model", model)
    assert result.exit_code == 0, result.output
    assert "(uncased, vocab.txt)" in result.output
    assert load_features(tmp_path / "f").tokens[-1][1] == "what"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--vocab", "V", "--model", "M"], "give either --model or --vocab, not both"),
        (["--lower-case"], "--lower-case goes with --vocab (a --model carries its own casing)"),
    ],
)
def test_option_conflicts(tmp_path, dataset, args, message):
    (tmp_path / "V").write_text("[UNK]\n")
    (tmp_path / "M").mkdir()
    args = [str(tmp_path / a) if a in ("V", "M") else a for a in args]
    result = _run(dataset, "-o", tmp_path / "out", *args)
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == f"Error: {message}"
    assert not (tmp_path / "out").exists()


def test_settings_without_room_for_context(tmp_path, dataset):
    result = _run(dataset, "-o", tmp_path / "out", "--max-seq-length", 60)
    assert result.exit_code == 3
    assert result.output == (
        "Error: max_seq_length=60 leaves no room for the context after [CLS] + 64 question tokens "
        "+ 2 [SEP]; use at least 68 or a smaller max_query_length\n"
    )


def _bad(data):
    return data if isinstance(data, str) else json.dumps(data)


def _qa(**kw):
    return {"id": "a", "question": "q", "answers": [], **kw}


BAD = [
    ("notjson", '{"data": [', "not valid JSON (Expecting value at line 1 column 11); pass a SQuAD .json file"),
    ("shape", {"articles": []}, "not a SQuAD file: expected a JSON object with a 'data' list of articles"),
    (
        "context",
        {"data": [{"title": "Nile", "paragraphs": [{"qas": [_qa()]}]}]},
        "article 0 ('Nile'), paragraph 0: missing 'context'",
    ),
    (
        "question",
        {"data": [{"title": "Nile", "paragraphs": [{"context": "c", "qas": [{"id": "x9"}]}]}]},
        "article 0 ('Nile'), question 'x9': missing 'question'",
    ),
    (
        "id",
        {"data": [{"paragraphs": [{"context": "c", "qas": [{"question": "q"}]}]}]},
        "article 0, paragraph 0, question 0: missing 'id'",
    ),
    (
        "duplicate",
        {"data": [{"title": "Nile", "paragraphs": [{"context": "c", "qas": [_qa(), _qa()]}]}]},
        "article 0 ('Nile'), question 'a': duplicate question id (first in article 0 ('Nile')); question ids must be unique",
    ),
]


@pytest.mark.parametrize("name, data, message", BAD, ids=[b[0] for b in BAD])
def test_bad_dataset_one_line_error_no_output(tmp_path, name, data, message):
    path = tmp_path / f"{name}.json"
    path.write_text(_bad(data), encoding="utf-8")
    out = tmp_path / "features"
    result = _run(path, "-o", out)
    assert result.exit_code == 3  # bad input data
    assert result.output == f"Error: {path}: {message}\n"
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_existing_foreign_directory_is_left_alone(tmp_path, dataset):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    for extra in ([], ["--overwrite"]):
        result = _run(dataset, "-o", out, *extra)
        assert result.exit_code == 4
        assert result.output == (
            f"Error: -o {out}: the directory holds files spanqa did not write; name a new or empty directory for the features\n"
        )
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_features_are_replaced_only_with_overwrite(tmp_path, dataset, monkeypatch):
    out = tmp_path / "features"
    assert _run(dataset, "-o", out, "--max-seq-length", 32, "--doc-stride", 8, "--max-query-length", 10).exit_code == 0
    result = _run(dataset, "-o", out, "--batch-size", 4)
    assert result.exit_code == 4
    assert result.output == f"Error: -o {out}: a features is already there; pass --overwrite to replace it\n"
    assert json.loads((out / "manifest.json").read_text())["batch_size"] == 1
    result = _run(dataset, "-o", out, "--batch-size", 4, "--overwrite")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "manifest.json").read_text())["batch_size"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features", "tiny.json"]
    monkeypatch.chdir(tmp_path)
    result = _run(dataset, "-o", ".")
    assert result.exit_code == 4
    assert (
        result.output
        == f"Error: -o .: refusing to write into {tmp_path.resolve()} itself; name a new directory, e.g. -o features\n"
    )


def test_heldout_through_cli_equals_in_memory(tmp_path, heldout_json):
    out = tmp_path / "h"
    result = _run(heldout_json, "-o", out, "--batch-size", 16, "--format", "npy")
    assert result.exit_code == 0, result.output
    loaded = load_features(out)
    direct = build_features(read_squad(heldout_json), TokenizerSettings(default_vocab_path(), False), FeatureSettings())
    for name in ("input_ids", "input_mask", "segment_ids", "example_index", "span_index"):
        assert np.array_equal(getattr(loaded, name), getattr(direct, name)), name
    assert loaded.tokens == direct.tokens
    assert loaded.token_to_orig_map == direct.token_to_orig_map
    assert loaded.token_is_max_context == direct.token_is_max_context
    # The features keep each example's question, words and answers (not the passage's text).
    stored = [(e.qas_id, e.question_text, e.doc_tokens, e.answers, e.is_impossible) for e in loaded.examples]
    assert stored == [(e.qas_id, e.question_text, e.doc_tokens, e.answers, e.is_impossible) for e in direct.examples]
    assert len(loaded.examples) == 5173
