"""The evaluate step (spanqa.offline.evaluate, the recipe's postprocess): features and msame-style
output files on disk -> predictions, n-best and scores; logits read back by spanqa.offline.logits."""

from __future__ import annotations

import json

import numpy as np
import pytest

import spanqa.offline.evaluate
from features_by_hand import example, hand_features, peaked, pieces
from spanqa.answers.extraction import predict
from spanqa.errors import DatasetError, InferenceError, OutputError, UsageError
from spanqa.fileutil import sha256_file
from spanqa.offline.evaluate import evaluate
from spanqa.offline.logits import read_logits
from spanqa.settings import AnswerSettings


def _dataset_for(exs, golds):
    return {
        "version": "1.1",
        "data": [
            {
                "title": "t",
                "paragraphs": [
                    {
                        "context": " ".join(ex.doc_tokens),
                        "qas": [
                            {
                                "id": ex.qas_id,
                                "question": "?",
                                "answers": [{"text": g, "answer_start": 0} for g in golds[ex.qas_id]],
                            }
                        ],
                    }
                    for ex in exs
                ],
            }
        ],
    }


@pytest.fixture
def eval_setup(tmp_path, monkeypatch):
    """Three questions, four features, batch size 3 (two batches, the second padded)."""
    exs = [
        example("The tower was finished in 1889", "q1"),
        example("w0 w1 w2 w3 w4 Eiffel Tower w7 w8 w9 w10 w11", "q2"),
        example("It stands in Paris", "q3"),
    ]
    f = hand_features(exs, pieces({}), do_lower_case=False, max_seq_length=16, doc_stride=3)
    assert [len(t) for t in f.tokens] == [12, 16, 15, 10]
    golds = {"q1": ["1889"], "q2": ["Eiffel Tower"], "q3": ["Paris", "in Paris"]}
    want = {"q1": ("1889", "1889"), "q2": ("Eiffel", "Tower"), "q3": ("Paris", "Paris")}
    starts, ends = {}, {}
    for i in range(len(f)):
        ex = exs[int(f.example_index[i])]
        w_s, w_e = want[ex.qas_id]
        for p, m in f.token_to_orig_map[i].items():
            if ex.doc_tokens[m] == w_s and f.token_is_max_context[i][p]:
                starts[(i, p)] = 3.0
            if ex.doc_tokens[m] == w_e:
                ends[(i, p)] = 3.0
    s, e = peaked(f, starts, ends)
    batch_size = 3
    features_dir = tmp_path / "features"
    features_dir.mkdir()
    manifest = {"batch_size": batch_size, "num_features": len(f), "settings": {"max_seq_length": 16}}
    # The features directory is stood in for: these hand-made features have no real token ids.
    monkeypatch.setattr(spanqa.offline.evaluate, "load_features", lambda d: f)
    monkeypatch.setattr(spanqa.offline.evaluate, "read_features_manifest", lambda d: manifest)
    dataset = tmp_path / "dev.json"
    dataset.write_text(json.dumps(_dataset_for(exs, golds)), encoding="utf-8")

    def write_outputs(out_dir, fmt="bin", widths=None):
        out_dir.mkdir(parents=True, exist_ok=True)
        n_batches = -(-len(f) // batch_size)
        for b in range(n_batches):
            width = widths[b] if widths else s.shape[1]
            for k, arr in enumerate((s, e)):
                rows = np.zeros((batch_size, width), dtype=np.float32)
                part = arr[b * batch_size : (b + 1) * batch_size, :width]
                rows[: part.shape[0]] = part
                if fmt == "bin":
                    rows.tofile(out_dir / f"{b}_output_{k}.bin")
                else:
                    np.save(out_dir / f"{b}_output_{k}.npy", rows)
        return out_dir

    return dict(
        features=f,
        s=s,
        e=e,
        features_dir=features_dir,
        dataset=dataset,
        write_outputs=write_outputs,
        tmp=tmp_path,
        manifest=manifest,
    )


def test_evaluate_end_to_end_with_bin_outputs(eval_setup):
    env = eval_setup
    outputs = env["write_outputs"](env["tmp"] / "out")
    result = evaluate(env["dataset"], env["features_dir"], outputs, env["tmp"] / "res", AnswerSettings(7, 9))
    assert result["exact_match"] == 100.0 and result["f1"] == 100.0 and result["total"] == 3
    assert result["answer_settings"] == {
        "n_best_size": 7,
        "max_answer_length": 9,
        "rank_padding": False,
        "version_2_with_negative": False,
        "null_score_diff_threshold": 0.0,
    }
    assert result["feature_settings"]["max_seq_length"] == 16
    res = env["tmp"] / "res"
    assert json.loads((res / "predictions.json").read_text()) == {"q1": "1889", "q2": "Eiffel Tower", "q3": "Paris"}
    assert json.loads((res / "result.json").read_text()) == result
    direct = predict(env["features"], env["s"], env["e"], AnswerSettings(7, 9))[1]
    assert json.loads((res / "nbest_predictions.json").read_text()) == direct


def test_evaluate_reads_npy_narrow_batches_in_an_msame_subfolder(eval_setup):
    env = eval_setup
    widths = [16, 10]  # each batch only as wide as its longest feature
    outputs = env["write_outputs"](env["tmp"] / "out" / "20240101_120000", fmt="npy", widths=widths)
    result = evaluate(env["dataset"], env["features_dir"], outputs.parent, env["tmp"] / "res")
    assert result["exact_match"] == 100.0
    start, end = read_logits(outputs, 3, np.array([len(t) for t in env["features"].tokens]), 16)
    assert start.shape == end.shape == (4, 16)
    assert np.array_equal(start[:, :10], env["s"][:, :10]) and np.array_equal(end[:3], env["e"][:3])
    assert np.isneginf(start[3, 10:]).all() and np.isneginf(end[3, 10:]).all()


def test_evaluate_errors_name_the_file(eval_setup):
    env = eval_setup
    out = env["write_outputs"](env["tmp"] / "out")
    res = env["tmp"] / "res"
    (out / "1_output_1.bin").unlink()
    with pytest.raises(InferenceError, match=r"1_output_1\.bin is missing \(2 batches of 3 expected\); rerun inference"):
        evaluate(env["dataset"], env["features_dir"], out, res)
    env["write_outputs"](out)
    data = (out / "0_output_0.bin").read_bytes()
    (out / "0_output_0.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(InferenceError, match=r"0_output_0\.bin holds 24 float32 values.*truncated"):
        evaluate(env["dataset"], env["features_dir"], out, res)
    (out / "0_output_0.bin").write_bytes(data[:-1])
    with pytest.raises(InferenceError, match=r"0_output_0\.bin is 191 bytes, not a whole number of float32"):
        evaluate(env["dataset"], env["features_dir"], out, res)
    env["write_outputs"](out)
    (out / "2_output_0.bin").write_bytes(data)
    with pytest.raises(InferenceError, match="more output batches than the 2 the features make"):
        evaluate(env["dataset"], env["features_dir"], out, res)
    with pytest.raises(UsageError, match=r"--outputs .*nowhere: no such directory; run .spanqa infer. first"):
        evaluate(env["dataset"], env["features_dir"], env["tmp"] / "nowhere", res)
    assert not res.exists()


def test_evaluate_refuses_a_dataset_the_features_were_not_made_from(eval_setup):
    env = eval_setup
    out = env["write_outputs"](env["tmp"] / "out")
    other = env["tmp"] / "other.json"
    other.write_text(json.dumps(_dataset_for([example("z", "zz")], {"zz": ["x"]})), encoding="utf-8")
    with pytest.raises(DatasetError, match=r"none of the 1 questions in .*other\.json has a prediction"):
        evaluate(other, env["features_dir"], out, env["tmp"] / "res")
    assert not (env["tmp"] / "res").exists()


def test_evaluate_checks_the_dataset_the_features_record(eval_setup):
    env = eval_setup
    out = env["write_outputs"](env["tmp"] / "out")
    train = env["tmp"] / "train.json"
    train.write_text("{}", encoding="utf-8")
    env["manifest"].update(dataset="train.json", dataset_sha256=sha256_file(train))
    with pytest.raises(DatasetError) as exc:
        evaluate(env["dataset"], env["features_dir"], out, env["tmp"] / "res")
    assert str(exc.value) == (
        f"{env['dataset']}: not the dataset the features in {env['features_dir']} were built from (train.json); "
        "pass that dataset, or preprocess this one"
    )
    assert not (env["tmp"] / "res").exists()
    env["manifest"]["dataset_sha256"] = sha256_file(env["dataset"])
    assert evaluate(env["dataset"], env["features_dir"], out, env["tmp"] / "res")["f1"] == 100.0


def test_evaluate_replaces_a_result_only_with_overwrite(eval_setup):
    env = eval_setup
    out = env["write_outputs"](env["tmp"] / "out")
    res = env["tmp"] / "res"
    evaluate(env["dataset"], env["features_dir"], out, res)
    before = (res / "result.json").read_bytes()
    with pytest.raises(OutputError, match="a result is already there; pass --overwrite to replace it"):
        evaluate(env["dataset"], env["features_dir"], out, res, AnswerSettings(n_best_size=3))
    assert (res / "result.json").read_bytes() == before
    result = evaluate(env["dataset"], env["features_dir"], out, res, AnswerSettings(n_best_size=3), overwrite=True)
    assert json.loads((res / "result.json").read_text()) == result and result["answer_settings"]["n_best_size"] == 3
    with pytest.raises(OutputError, match="that is \\(or holds\\) the input"):
        evaluate(env["dataset"], env["features_dir"], out, out)
