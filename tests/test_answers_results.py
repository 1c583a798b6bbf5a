"""Result directories (spanqa.answers.results): everything appears at once, or nothing does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from spanqa.answers import results
from spanqa.answers.results import write_results
from spanqa.errors import OutputError, UsageError
from spanqa.fileutil import MARKER


def test_write_results_writes_everything(tmp_path):
    out = write_results(
        tmp_path / "res",
        {"q": "Café"},
        {"q": [{"text": "Café", "probability": 1.0, "start_logit": 1.0, "end_logit": 2.0}]},
        {"exact_match": 100.0, "f1": 100.0, "total": 1},
        extra_files={"inference.json": {"batches": 3}, "notes.txt": "hello\n"},
    )
    assert sorted(p.name for p in out.iterdir()) == [
        MARKER,
        "inference.json",
        "nbest_predictions.json",
        "notes.txt",
        "predictions.json",
        "result.json",
    ]
    assert json.loads((out / "predictions.json").read_text(encoding="utf-8")) == {"q": "Café"}
    assert json.loads((out / "result.json").read_text(encoding="utf-8"))["total"] == 1
    assert json.loads((out / "inference.json").read_text(encoding="utf-8")) == {"batches": 3}
    assert (out / "notes.txt").read_text() == "hello\n"
    assert [p.name for p in tmp_path.iterdir()] == ["res"]
    assert json.loads((out / MARKER).read_text()) == {"kind": "result"}
    with pytest.raises(UsageError) as exc:
        write_results(tmp_path / "res2", {}, {}, {}, extra_files={"../escape.json": {}})
    assert str(exc.value) == (
        "extra file name '../escape.json' must be a plain file name other than "
        "['nbest_predictions.json', 'predictions.json', 'result.json']"
    )
    with pytest.raises(UsageError, match="plain file name"):
        write_results(tmp_path / "res2", {}, {}, {}, extra_files={"result.json": {}})
    assert not (tmp_path / "res2").exists()


def test_no_scores_no_result_json(tmp_path, monkeypatch):
    """Questions without gold answers: predictions and the extra files, but no result.json."""
    out = write_results(tmp_path / "res", {"q": "a"}, {"q": []}, None, extra_files={"summary.json": {"questions": 1}})
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "nbest_predictions.json", "predictions.json", "summary.json"]


def test_a_result_is_replaced_only_with_overwrite(tmp_path):
    write_results(tmp_path / "res", {"q": "old"}, {"q": []}, {"f1": 1.0})
    with pytest.raises(OutputError) as exc:
        write_results(tmp_path / "res", {"q": "new"}, {"q": []}, {"f1": 2.0})
    assert str(exc.value) == f"-o {tmp_path / 'res'}: a result is already there; pass --overwrite to replace it"
    write_results(tmp_path / "res", {"q": "new"}, {"q": []}, {"f1": 2.0}, overwrite=True)
    assert json.loads((tmp_path / "res" / "predictions.json").read_text()) == {"q": "new"}
    dataset = tmp_path / "data" / "dev.json"
    dataset.parent.mkdir()
    dataset.write_text("{}")
    with pytest.raises(OutputError, match="that is \\(or holds\\) the input"):
        write_results(tmp_path / "data", {}, {}, None, inputs=(dataset,))


def _failing_dump(after: int):
    real = results._dump_json
    calls = []

    def dump(obj, path):
        calls.append(Path(path).name)
        if len(calls) > after:
            raise OSError("disk full")
        real(obj, path)

    return dump, calls


def test_failure_midway_leaves_no_result_dir(tmp_path, monkeypatch):
    dump, calls = _failing_dump(after=2)
    monkeypatch.setattr(results, "_dump_json", dump)
    with pytest.raises(OSError, match="disk full"):
        write_results(tmp_path / "res", {"q": "a"}, {"q": []}, {"f1": 1.0})
    assert calls == ["predictions.json", "nbest_predictions.json", "result.json"]
    assert list(tmp_path.iterdir()) == []  # no result dir, no temp dir left behind


def test_failure_midway_keeps_the_previous_result(tmp_path, monkeypatch):
    write_results(tmp_path / "res", {"q": "old"}, {"q": []}, {"f1": 1.0})
    dump, _ = _failing_dump(after=1)
    monkeypatch.setattr(results, "_dump_json", dump)
    with pytest.raises(OSError):
        write_results(tmp_path / "res", {"q": "new"}, {"q": []}, {"f1": 2.0}, overwrite=True)
    assert json.loads((tmp_path / "res" / "predictions.json").read_text()) == {"q": "old"}
    assert json.loads((tmp_path / "res" / "result.json").read_text()) == {"f1": 1.0}
    assert [p.name for p in tmp_path.iterdir()] == ["res"]


_KILLED_CHILD = r"""
import sys, time
from pathlib import Path
from spanqa.answers import results
real = results._dump_json
def slow(obj, path):
    real(obj, path)
    if Path(path).name == "nbest_predictions.json":
        print("written", flush=True)
        time.sleep(120)
results._dump_json = slow
results.write_results(sys.argv[1], {"q": "a"}, {"q": []}, {"f1": 1.0})
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_killed_run_leaves_no_result_json(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_CHILD, str(tmp_path / "res")], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "written"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "res").exists()
    assert list(tmp_path.rglob("result.json")) == []
    # predictions.json was written, but only under the hidden temp name
    assert [p.parent.name.startswith(".res.") for p in tmp_path.rglob("predictions.json")] == [True]
