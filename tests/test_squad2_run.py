"""`spanqa run` on SQuAD 2.0 files with the stand-in model (a 1.1 model: the null answer is
whatever its [CLS] logits say, which is enough to exercise every path)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from spanqa.cli import main

KEYS = {"exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total", "NoAns_exact", "NoAns_f1", "NoAns_total"}
BEST = {"best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"}


def _run(args):
    r = CliRunner().invoke(main, ["run", *args, "-q", "--threads", "2"])
    assert r.exit_code == 0, r.output
    return r


@pytest.fixture(scope="module")
def first_run(squad2_json, standin_package, tmp_path_factory):
    out = tmp_path_factory.mktemp("run2") / "res"
    r = _run([str(squad2_json), "--model", str(standin_package), "-o", str(out), "--keep-files"])
    return r, out, json.loads((out / "result.json").read_text())


def test_run_ends_with_the_squad2_table(first_run, squad2_json):
    r, out, result = first_run
    assert KEYS | BEST <= set(result) and "exact_match" not in result
    assert (result["total"], result["HasAns_total"], result["NoAns_total"]) == (76, 55, 21)
    assert result["answer_settings"]["version_2_with_negative"] is True  # detected from the file
    assert result["null_score_diff_threshold"] == 0.0 and result["threshold_tuned"] is False
    for line in ("has answer: exact / F1 (n)", "no answer: exact / F1 (n)", "best F1 / threshold", "null score diff threshold"):
        assert line in r.output
    assert f"{result['f1']:.2f}" in r.output and f"{result['best_f1']:.2f} / {result['best_f1_thresh']:.4f}" in r.output
    predictions = json.loads((out / "predictions.json").read_text())
    odds = json.loads((out / "null_odds.json").read_text())
    nbest = json.loads((out / "nbest_predictions.json").read_text())
    assert set(odds) == set(predictions)
    # "" exactly where the odds exceed the threshold, and "" is always an n-best candidate.
    assert all((predictions[q] == "") == (odds[q] > 0.0) for q in predictions)
    assert all(any(c["text"] == "" for c in nbest[q]) for q in predictions)
    assert 0 < sum(p == "" for p in predictions.values()) < len(predictions)
    # The scores are the official 2.0 ones over the written files (independent reference).
    from test_squad2_metrics import ref_best, ref_scores

    questions = _gold(squad2_json)
    want = ref_scores(questions, predictions)
    assert all(result[k] == pytest.approx(want[k], abs=1e-9) for k in KEYS)
    spans = {q: next(c["text"] for c in nbest[q] if c["text"]) for q in predictions}
    assert (result["best_f1"], result["best_f1_thresh"]) == pytest.approx(ref_best(questions, spans, odds, "f1"), abs=1e-9)


def test_threshold_from_best_f1_thresh_scores_best_f1(first_run, squad2_json, standin_package, tmp_path):
    _, _, first = first_run
    out = tmp_path / "again"
    thresh = repr(first["best_f1_thresh"])
    _run([str(squad2_json), "--model", str(standin_package), "-o", str(out), "--null-score-diff-threshold", thresh])
    again = json.loads((out / "result.json").read_text())
    assert again["f1"] == pytest.approx(first["best_f1"], abs=1e-9)
    assert again["null_score_diff_threshold"] == first["best_f1_thresh"]

    tuned_dir = tmp_path / "tuned"
    r = _run([str(squad2_json), "--model", str(standin_package), "-o", str(tuned_dir), "--tune-threshold"])
    tuned = json.loads((tuned_dir / "result.json").read_text())
    assert tuned["threshold_tuned"] is True and tuned["null_score_diff_threshold"] == first["best_f1_thresh"]
    assert tuned["f1"] == pytest.approx(first["best_f1"], abs=1e-9)
    assert json.loads((tuned_dir / "predictions.json").read_text()) == json.loads((out / "predictions.json").read_text())
    assert "(tuned)" in r.output


def test_all_impossible_file(squad2_all_impossible_json, standin_package, tmp_path):
    _run([str(squad2_all_impossible_json), "--model", str(standin_package), "-o", str(tmp_path / "r")])
    result = json.loads((tmp_path / "r" / "result.json").read_text())
    assert result["NoAns_total"] == result["total"] == 21 and "HasAns_total" not in result
    assert result["exact"] == result["NoAns_exact"]
    assert result["best_f1"] == 100.0  # answering nothing is right everywhere


def test_null_answer_off_scores_spans_with_squad2_metrics(first_run, squad2_json, standin_package, tmp_path):
    _, first_dir, _ = first_run
    out = tmp_path / "off"
    _run([str(squad2_json), "--model", str(standin_package), "-o", str(out), "--no-version-2-with-negative"])
    result = json.loads((out / "result.json").read_text())
    assert not (out / "null_odds.json").exists() and not BEST & set(result)
    assert result["NoAns_exact"] == 0.0  # a span for every question
    # The spans are the best non-null spans of the 2.0 run.
    predictions = json.loads((out / "predictions.json").read_text())
    nbest2 = json.loads((first_dir / "nbest_predictions.json").read_text())
    assert predictions == {q: next(c["text"] for c in nbest2[q] if c["text"]) for q in predictions}


def test_tune_threshold_needs_the_null_answer(heldout_json, standin_package, tmp_path):
    r = CliRunner().invoke(
        main, ["run", str(heldout_json), "--model", str(standin_package), "-o", str(tmp_path / "x"), "--tune-threshold"]
    )
    assert r.exit_code == 2
    assert "--tune-threshold needs the null answer" in r.output


def _gold(path) -> dict[str, list[str]]:
    data = json.loads(path.read_text())["data"]
    return {qa["id"]: [a["text"] for a in qa.get("answers", [])] for a in data for p in a["paragraphs"] for qa in p["qas"]}


def test_evaluate_on_kept_files_gives_the_same_result(first_run, squad2_json, tmp_path):
    # The kept features record version_2_with_negative: evaluate turns the null answer on.
    _, out, result = first_run
    assert json.loads((out / "features" / "manifest.json").read_text())["version_2_with_negative"] is True
    again = tmp_path / "ev"
    r = CliRunner().invoke(
        main,
        ["evaluate", str(squad2_json), "--features", str(out / "features"), "--outputs", str(out / "outputs"), "-o", str(again)],
    )
    assert r.exit_code == 0, r.output
    got = json.loads((again / "result.json").read_text())
    assert {k: got[k] for k in KEYS | BEST} == {k: result[k] for k in KEYS | BEST}
    for name in ("predictions.json", "null_odds.json"):
        assert json.loads((again / name).read_text()) == json.loads((out / name).read_text())
    assert "best F1 / threshold" in r.output


def test_preprocess_records_the_version(squad2_json, standin_package, tmp_path):
    for flag, want in (([], True), (["--no-version-2-with-negative"], None)):
        out = tmp_path / f"f{len(flag)}"
        r = CliRunner().invoke(main, ["preprocess", str(squad2_json), "-o", str(out), "--model", str(standin_package), *flag])
        assert r.exit_code == 0, r.output
        assert json.loads((out / "manifest.json").read_text()).get("version_2_with_negative") is want


def test_report_reads_a_squad2_result(first_run):
    from spanqa.offline.report import report_lines

    _, out, result = first_run
    assert report_lines(out / "result.json") == [
        f"{out / 'result.json'}: EM {result['exact']:.3f}, F1 {result['f1']:.3f} (76 questions)"
    ]
