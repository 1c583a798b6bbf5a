"""``spanqa evaluate`` on a hand-written features directory and hand-written msame outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from spanqa.cli import main
from spanqa.data.features import Features
from spanqa.data.folders import write_features
from spanqa.data.squad import Example
from spanqa.settings import FeatureSettings

MAX_SEQ = 16
CONTEXTS = {
    "q1": "The tower was finished in (1889).",
    "q2": "Gustave Eiffel's company built it.",
    "q3": "It stands in Paris.",
}
# word -> word pieces of a cased model
PIECES = {
    "(1889).": ["(", "1889", ")", "."],
    "Eiffel's": ["E", "##iff", "##el", "'", "s"],
    "it.": ["it", "."],
    "Paris.": ["Paris", "."],
}
GOLD = {"q1": ["1889"], "q2": ["Gustave Eiffel's company", "Gustave Eiffel"], "q3": ["Paris"]}
# the (first piece, last piece) each question's logits point at
WANT = {"q1": ("1889", "1889"), "q2": ("Gustave", "##el"), "q3": ("Paris", "Paris")}


def _features() -> Features:
    vocab = {"[PAD]": 0}
    examples, tokens, t2o, ctx = [], [], [], []
    for qid, text in CONTEXTS.items():
        words = text.split(" ")
        examples.append(Example(qas_id=qid, question_text="what?", doc_tokens=words, answers=GOLD[qid]))
        toks, m, c = ["[CLS]", "what", "?", "[SEP]"], {}, {}
        for w_i, w in enumerate(words):
            for p in PIECES.get(w, [w]):
                m[len(toks)] = w_i
                c[len(toks)] = True
                toks.append(p)
        toks.append("[SEP]")
        tokens.append(toks)
        t2o.append(m)
        ctx.append(c)
    n = len(tokens)
    ids = np.zeros((n, MAX_SEQ), dtype=np.int64)
    mask = np.zeros_like(ids)
    seg = np.zeros_like(ids)
    for i, toks in enumerate(tokens):
        assert len(toks) <= MAX_SEQ
        ids[i, : len(toks)] = [vocab.setdefault(t, len(vocab)) for t in toks]
        mask[i, : len(toks)] = 1
        seg[i, 4 : len(toks)] = 1
    return Features(
        settings=FeatureSettings(max_seq_length=MAX_SEQ, doc_stride=128, max_query_length=4, do_lower_case=False),
        input_ids=ids,
        input_mask=mask,
        segment_ids=seg,
        example_index=np.arange(n, dtype=np.int64),
        span_index=np.zeros(n, dtype=np.int64),
        tokens=tokens,
        token_to_orig_map=t2o,
        token_is_max_context=ctx,
        examples=examples,
    )


@pytest.fixture
def workdir(tmp_path):
    f = _features()
    dataset = {
        "version": "1.1",
        "data": [
            {
                "title": "Eiffel Tower",
                "paragraphs": [
                    {
                        "context": CONTEXTS[q],
                        "qas": [{"id": q, "question": "what?", "answers": [{"text": g, "answer_start": 0} for g in GOLD[q]]}],
                    }
                    for q in CONTEXTS
                ],
            }
        ],
    }
    (tmp_path / "dev.json").write_text(json.dumps(dataset), encoding="utf-8")
    write_features(f, tmp_path / "features", batch_size=2, dataset=tmp_path / "dev.json")  # records its sha256
    start = np.full((4, MAX_SEQ), -5.0, dtype=np.float32)  # 3 features + 1 padding row
    end = np.full((4, MAX_SEQ), -5.0, dtype=np.float32)
    for i, (qid, (first, last)) in enumerate(WANT.items()):
        start[i, f.tokens[i].index(first)] = 4.0
        end[i, f.tokens[i].index(last)] = 4.0
    start[3] = end[3] = 0.0
    out = tmp_path / "outputs"
    out.mkdir()
    for b in range(2):
        start[2 * b : 2 * b + 2].tofile(out / f"{b}_output_0.bin")
        end[2 * b : 2 * b + 2].tofile(out / f"{b}_output_1.bin")
    return tmp_path


def _run(args):
    return CliRunner().invoke(main, args)


def _evaluate(workdir: Path, *extra: str, dataset: str = "dev.json"):
    return _run(
        [
            "evaluate",
            str(workdir / dataset),
            "--features",
            str(workdir / "features"),
            "--outputs",
            str(workdir / "outputs"),
            "-o",
            str(workdir / "result"),
            *extra,
        ]
    )


def test_evaluate_command_writes_predictions_and_scores(workdir: Path):
    res = workdir / "result"
    r = _run(
        [
            "evaluate",
            str(workdir / "dev.json"),
            "--features",
            str(workdir / "features"),
            "--outputs",
            str(workdir / "outputs"),
            "-o",
            str(res),
            "--n-best",
            "5",
            "--max-answer-length",
            "8",
        ]
    )
    assert r.exit_code == 0, r.output
    assert "Exact match 100.00  F1 100.00  over 3 questions (3 features)" in r.output
    assert f"to {res}" in r.output
    assert json.loads((res / "predictions.json").read_text(encoding="utf-8")) == {
        "q1": "1889",
        "q2": "Gustave Eiffel",
        "q3": "Paris",
    }
    result = json.loads((res / "result.json").read_text(encoding="utf-8"))
    assert result["answer_settings"] == {
        "n_best_size": 5,
        "max_answer_length": 8,
        "rank_padding": False,
        "version_2_with_negative": False,
        "null_score_diff_threshold": 0.0,
    }
    assert (result["batch_size"], result["num_features"], result["total"]) == (2, 3, 3)
    nbest = json.loads((res / "nbest_predictions.json").read_text(encoding="utf-8"))
    assert nbest["q1"][0] == {"text": "1889", "probability": nbest["q1"][0]["probability"], "start_logit": 4.0, "end_logit": 4.0}
    # the other four of the top 5 starts are [CLS] and question positions (ties at -5): one candidate
    assert len(nbest["q1"]) == 1 and nbest["q1"][0]["probability"] == 1.0


def test_evaluate_command_reports_bad_outputs_in_one_line(workdir: Path):
    (workdir / "outputs" / "1_output_1.bin").write_bytes(b"\0" * 12)
    res = workdir / "result"
    r = _run(
        [
            "evaluate",
            str(workdir / "dev.json"),
            "--features",
            str(workdir / "features"),
            "--outputs",
            str(workdir / "outputs"),
            "-o",
            str(res),
        ]
    )
    assert r.exit_code == 1
    assert r.output.startswith("Error: ")
    assert "1_output_1.bin holds 3 float32 values" in r.output and "rerun inference" in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert "Traceback" not in r.output
    assert not res.exists()


def test_evaluate_command_reports_a_missing_features_dir(workdir: Path):
    r = _run(
        [
            "evaluate",
            str(workdir / "dev.json"),
            "--features",
            str(workdir / "nope"),
            "--outputs",
            str(workdir / "outputs"),
            "-o",
            str(workdir / "result"),
        ]
    )
    assert r.exit_code == 3
    assert r.output == (
        f"Error: {workdir / 'nope'}: no manifest.json; not a features directory (make one with spanqa preprocess)\n"
    )
    assert not (workdir / "result").exists()


def test_evaluate_command_rejects_bad_settings(workdir: Path):
    r = _run(
        [
            "evaluate",
            str(workdir / "dev.json"),
            "--features",
            str(workdir / "features"),
            "--outputs",
            str(workdir / "outputs"),
            "-o",
            str(workdir / "result"),
            "--n-best",
            "0",
        ]
    )
    assert r.exit_code == 2
    assert "--n-best" in r.output


def test_evaluate_command_refuses_another_dataset(workdir: Path):
    data = json.loads((workdir / "dev.json").read_text(encoding="utf-8"))
    data["version"] = "1.1 (edited)"
    (workdir / "edited.json").write_text(json.dumps(data), encoding="utf-8")
    r = _evaluate(workdir, dataset="edited.json")
    assert r.exit_code == 3
    assert r.output == (
        f"Error: {workdir / 'edited.json'}: not the dataset the features in {workdir / 'features'} were built from "
        "(dev.json); pass that dataset, or preprocess this one\n"
    )
    assert not (workdir / "result").exists()


def test_evaluate_command_replaces_a_result_only_with_overwrite(workdir: Path):
    assert _evaluate(workdir).exit_code == 0
    r = _evaluate(workdir, "--n-best", "3")
    assert r.exit_code == 4
    assert r.output == f"Error: -o {workdir / 'result'}: a result is already there; pass --overwrite to replace it\n"
    r = _evaluate(workdir, "--n-best", "3", "--overwrite")
    assert r.exit_code == 0, r.output
    assert json.loads((workdir / "result" / "result.json").read_text())["answer_settings"]["n_best_size"] == 3
