"""The one-step job (spanqa.jobs.run): a dataset through the engine into a result directory that
appears complete or not at all; scores only where there are gold answers.

The held-out run is conftest's ``heldout_run`` (every held-out question, or every k-th with
``SPANQA_HELDOUT_STRIDE=k``): its F1 against PyTorch's logits through the same preprocessing and
answer code, and its answers against the recipe's padded files run by 'spanqa infer'.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from spanqa.answers.extraction import predict
from spanqa.answers.scoring import score
from spanqa.errors import OutputError
from spanqa.fileutil import MARKER, sha256_file
from spanqa.jobs.run import run
from spanqa.settings import EngineSettings, RunSettings
from squad_files import subset, without_answers

MODEL_README_F1 = 65.66  # ../shared/models/standin-minilm-squad/README.md, run_squad-style pipeline


@pytest.fixture(scope="module")
def small_heldout(heldout_json, tmp_path_factory):
    return subset(heldout_json, tmp_path_factory.mktemp("data") / "heldout-20.json", 20)


def test_run_writes_result_and_summary(standin_package, small_heldout, tmp_path):
    out = tmp_path / "res"
    report = run(small_heldout, standin_package, out, RunSettings(engine=EngineSettings(warmup=0)))
    assert report.result_dir == out
    assert sorted(p.name for p in out.iterdir()) == [
        MARKER,
        "nbest_predictions.json",
        "predictions.json",
        "result.json",
        "summary.json",
    ]
    assert json.loads((out / "result.json").read_text()) == report.result
    assert json.loads((out / "predictions.json").read_text()) == report.evaluation.predictions
    assert report.result["total"] == 20 and 0 < report.result["f1"] <= 100
    assert report.result["f1"] == score(report.evaluation.features.examples, report.evaluation.predictions)["f1"]
    assert (report.result["target"], report.result["model"]) == ("cpu-fp32", str(standin_package))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["questions"] == 20 and summary["features"] == len(report.evaluation.features)
    assert summary["dataset_sha256"] == sha256_file(small_heldout)
    assert summary["model_sha256"] == sha256_file(standin_package / "model.onnx")
    assert summary["guarded"] is False and summary["precision"] == "fp32"
    assert summary["inference"]["rows"] == summary["features"] and summary["inference"]["padded_rows"] == 0


def test_run_without_gold_answers_writes_no_result(standin_package, small_heldout, tmp_path):
    dataset = without_answers(small_heldout, tmp_path / "questions.json")
    report = run(dataset, standin_package, tmp_path / "res", RunSettings(engine=EngineSettings(warmup=0)))
    assert report.result is None and not hasattr(report.evaluation, "scores")
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == [
        MARKER,
        "nbest_predictions.json",
        "predictions.json",
        "summary.json",
    ]
    predictions = json.loads((tmp_path / "res" / "predictions.json").read_text())
    assert len(predictions) == 20 and predictions == report.evaluation.predictions
    assert json.loads((tmp_path / "res" / "summary.json").read_text())["questions"] == 20


def test_run_replaces_a_result_only_with_overwrite(standin_package, small_heldout, tmp_path):
    out = tmp_path / "res"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputError) as exc:
        run(small_heldout, standin_package, out, overwrite=True)
    assert (
        str(exc.value)
        == f"-o {out}: the directory holds files spanqa did not write; name a new or empty directory for the result"
    )
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    out = tmp_path / "res2"
    run(small_heldout, standin_package, out, RunSettings(engine=EngineSettings(warmup=0)))
    with pytest.raises(OutputError, match="a result is already there; pass --overwrite to replace it"):
        run(small_heldout, standin_package, out)
    report = run(small_heldout, standin_package, out, RunSettings(engine=EngineSettings(warmup=0, batch_size=2)), overwrite=True)
    assert (
        json.loads((out / "summary.json").read_text())["settings"]["batch_size"] == 2 == report.summary["settings"]["batch_size"]
    )


def test_interrupted_run_leaves_no_result(standin_package, small_heldout, tmp_path, monkeypatch):
    import spanqa.answers.extraction

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(spanqa.answers.extraction, "predict_answers", boom)
    with pytest.raises(KeyboardInterrupt):
        run(small_heldout, standin_package, tmp_path / "res")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# The stand-in on the held-out questions


def _infer_outputs(out_dir, n, batch_size):
    from spanqa.offline.outputs import read_outputs

    parts = [read_outputs(out_dir, str(b), batch_size, 512) for b in range(-(-n // batch_size))]
    return np.concatenate([p[0] for p in parts])[:n], np.concatenate([p[1] for p in parts])[:n]


def test_run_f1_matches_pytorch_and_padding_changes_nothing(
    heldout_run, heldout_stride, heldout_features, heldout_torch_logits, heldout_infer_runs
):
    report = heldout_run
    features = report.evaluation.features
    assert np.array_equal(features.input_ids, heldout_features.input_ids)

    # PyTorch's logits (NaN at padding: -inf, which answers never rank) through the same answer code.
    torch_start, torch_end = (np.nan_to_num(a, nan=-np.inf) for a in heldout_torch_logits)
    torch_predictions = predict(features, torch_start, torch_end)[0]
    torch_scores = score(features.examples, torch_predictions)
    assert report.result["total"] == torch_scores["total"] == len(report.evaluation.predictions)
    assert abs(report.result["f1"] - torch_scores["f1"]) <= 0.05
    if heldout_stride == 1:
        assert report.result["total"] == 5173 and len(features) == 5248
        assert abs(report.result["f1"] - MODEL_README_F1) <= 2.0

    # The recipe's way, features padded to 512 and run by 'spanqa infer' at batch size 8 (on
    # conftest.BS8_EVERY's rows), put in place of the length-aware logits: exactly the same answers.
    out, _, rows = heldout_infer_runs[8]
    padded_start, padded_end = _infer_outputs(out, len(rows), 8)
    start, end = report.evaluation.start_logits.copy(), report.evaluation.end_logits.copy()
    start[rows], end[rows] = padded_start, padded_end
    assert predict(features, start, end)[0] == report.evaluation.predictions
    assert report.summary["inference"]["padded_rows"] == 0
    assert report.summary["real_tokens"] == int(features.input_mask.sum()) < 0.5 * 512 * len(features)
    assert json.loads((report.result_dir / "result.json").read_text()) == report.result
