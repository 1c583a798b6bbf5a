"""Reports (spanqa.offline.report, the recipe's parse.py): fps from msame logs and infer
summaries, rows/s and questions/s from run summaries, EM/F1 from result.json."""

from __future__ import annotations

import json

import pytest

from spanqa.errors import EXIT_DATA, EXIT_USAGE, InferenceError, ResultError, UsageError
from spanqa.offline.report import perf_from_log, report_lines

MSAME_LOG = """[INFO] acl init success
[INFO] open device 0 success
[INFO] load model ./spanBert_bs8.om success
[INFO] start to process file:./input_ids/0.bin
Inference time: 180.129ms
[INFO] output data success
Inference average time: 176.502000 ms
Inference average time without first time: 175.250000 ms
[INFO] unload model success, model Id is 1
"""


def test_report_msame_log(tmp_path):
    log = tmp_path / "msame_bs8.txt"
    log.write_text(MSAME_LOG)
    assert report_lines(log, batch_size=8) == [
        f"{log}: batch size 8, 175.250 ms per batch (without first time), {8000 / 175.25:.3f} fps"
    ]
    with pytest.raises(InferenceError, match="does not say the batch size; pass --batch-size N"):
        report_lines(log)
    only_avg = tmp_path / "avg.txt"
    only_avg.write_text("Inference average time: 20.000000 ms\n")
    assert perf_from_log(only_avg.read_text(), batch_size=1).fps == 50.0


def test_report_result_json_and_directory(tmp_path):
    (tmp_path / "result.json").write_text(json.dumps({"exact_match": 51.3, "f1": 65.66, "total": 5173}))
    assert report_lines(tmp_path / "result.json") == [f"{tmp_path / 'result.json'}: EM 51.300, F1 65.660 (5173 questions)"]
    (tmp_path / "summary.json").write_text(
        json.dumps({"batch_size": 4, "average_ms_without_first": 8.0, "timed_runs": 3, "throughput_rows_per_s": 500.0})
    )
    assert report_lines(tmp_path) == [
        f"{tmp_path / 'summary.json'}: batch size 4, 8.000 ms per batch (without first time), 500.000 fps",
        f"{tmp_path / 'result.json'}: EM 51.300, F1 65.660 (5173 questions)",
    ]
    with pytest.raises(UsageError, match="no such file or directory; pass an infer log"):
        report_lines(tmp_path / "missing.txt")
    (tmp_path / "x.txt").write_text("hello\n")
    with pytest.raises(ResultError, match="no 'Inference average time' line"):
        report_lines(tmp_path / "x.txt", 1)
    with pytest.raises(UsageError, match="was run with batch size 4; drop --batch-size"):
        report_lines(tmp_path / "summary.json", 8)
    assert (UsageError.exit_code, ResultError.exit_code) == (EXIT_USAGE, EXIT_DATA) == (2, 3)


def test_report_run_summary(tmp_path):
    """A 'spanqa run' summary.json: batches of varying size, so rows/s, and questions/s end to end."""
    summary = {
        "end_to_end_questions_per_s": 7.5,
        "inference": {
            "batches": 9,
            "batch_size": None,
            "timed_runs": 9,
            "average_ms_without_first": 465.25,
            "throughput_rows_per_s": 9.9,
        },
    }
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "result.json").write_text(json.dumps({"exact_match": 58.974, "f1": 69.43, "total": 39}))
    assert report_lines(tmp_path) == [
        f"{tmp_path / 'summary.json'}: 9 batches (sizes vary), 465.250 ms per batch (without first time), 9.900 rows/s, "
        "7.500 questions/s end to end",
        f"{tmp_path / 'result.json'}: EM 58.974, F1 69.430 (39 questions)",
    ]
    summary["inference"]["batch_size"] = 8
    summary["end_to_end_questions_per_s"] = float("nan")  # not measured (written as NaN)
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    assert report_lines(tmp_path / "summary.json") == [
        f"{tmp_path / 'summary.json'}: 9 batches (batch size 8), 465.250 ms per batch (without first time), 9.900 rows/s"
    ]
    (tmp_path / "summary.json").write_text("[1, 2]")
    with pytest.raises(ResultError, match=r"not a summary\.json or result\.json"):
        report_lines(tmp_path / "summary.json")
    (tmp_path / "summary.json").write_text('{"questions": 3}')
    with pytest.raises(ResultError, match=r"neither a summary\.json \(infer or run\) nor a result\.json"):
        report_lines(tmp_path / "summary.json")
    (tmp_path / "summary.json").write_text("{oops")
    with pytest.raises(
        ResultError, match=r"not valid JSON \(Expecting property name enclosed in double quotes at line 1 column 2\)"
    ):
        report_lines(tmp_path / "summary.json")
