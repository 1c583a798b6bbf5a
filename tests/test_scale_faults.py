"""Faults of ``spanqa run --engine ray`` (issue #23): the driver killed by pid, an actor killed,
a duplicate id found late, ``--overwrite`` after a failed run. After each, the result is the
uninterrupted run's byte for byte and every question was answered, and committed, once.

The driver runs as its own process (so it can be killed) attached to the module's local Ray;
the runs after it are in-process (CliRunner) on the same Ray.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_scale import cli, local_ray, local_result, local_run, rows_of, same_files, squad_subset  # noqa: F401

ray = pytest.importorskip("ray")


def _driver(address: str, *args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "spanqa", "run", *args, "--engine", "ray", "--address", address, "-q"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _query(partial: Path, sql: str) -> list:
    """What the run's store holds now (read-only; the driver may be writing)."""
    db = partial / "answers.sqlite"
    if not db.is_file():
        return []
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()
    except sqlite3.OperationalError:  # the tables are not made yet
        return []


def _committed(partial: Path) -> int:
    rows = _query(partial, "SELECT COUNT(*) FROM answers")
    return rows[0][0] if rows else 0


def _wait(condition, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the driver ended ({proc.returncode}) before the fault: {proc.communicate()[1]}"
        assert time.monotonic() < end, "timed out waiting for the run to commit answers"
        time.sleep(0.02)


def _jsonl(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]


def _checksums(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_driver_then_resume(sig, local_ray, squad_subset, standin_package, local_result, tmp_path):  # noqa: F811
    """SIGKILL: the driver dies mid-transaction for all it knows; SIGTERM (and Ctrl-C): it unwinds,
    says how to resume and exits 130."""
    out, partial = tmp_path / "result", tmp_path / "result.partial"
    args = (str(squad_subset), "--model", str(standin_package), "-o", str(out), "--batch-questions", "4")
    proc = _driver(local_ray, *args)
    _wait(lambda: _committed(partial) >= 8, proc)
    os.kill(proc.pid, sig)
    _, stderr = proc.communicate(timeout=120)
    first = {qid for (qid,) in _query(partial, "SELECT id FROM answers")}
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 130
        assert stderr.splitlines() == [
            f"Interrupted. The answers committed so far are kept in {partial}: rerun the same command with --resume."
        ]
    assert not out.exists()
    assert 8 <= len(first) < 49 and len(first) % 4 == 0  # whole blocks of 4, never part of one
    r = cli(*args, "--engine", "ray", "--resume")
    same_files(local_result, out, ["predictions.json", "nbest_predictions.json", "result.json"])
    lines = _jsonl(out)
    assert len(lines) == len({x["id"] for x in lines}) == 49  # every question once
    assert {x["id"] for x in lines if x["run"] == 1} == first  # the first run's answers were kept, not redone
    summary = json.loads((out / "summary.json").read_text())
    runs = [(x["run"], x["answered"], x["outcome"]) for x in summary["runs"]]
    assert runs == [(1, len(first), "interrupted"), (2, 49 - len(first), "done")]
    assert (summary["resumed"], summary["answered_this_run"]) == (len(first), 49 - len(first))
    assert f"Resumed: {len(first)} answers committed by earlier runs, {49 - len(first)} answered now" in r.output
    assert not partial.exists()


def test_killed_actor_is_restarted_and_every_question_answered_once(
    local_ray,  # noqa: F811
    squad_subset,  # noqa: F811
    standin_package,
    local_result,  # noqa: F811
    tmp_path,
):
    out, partial = tmp_path / "result", tmp_path / "result.partial"
    proc = _driver(local_ray, str(squad_subset), "--model", str(standin_package), "-o", str(out), "--batch-questions", "2")
    _wait(lambda: _committed(partial) >= 2, proc)
    killed = _query(partial, "SELECT pid FROM actors LIMIT 1")[0][0]
    os.kill(killed, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    same_files(local_result, out, ["predictions.json", "nbest_predictions.json", "result.json"])
    lines = _jsonl(out)
    assert len(lines) == len({x["id"] for x in lines}) == 49
    workers = json.loads((out / "summary.json").read_text())["workers"].values()
    restarted = [w for w in workers if killed in w["pids"]]
    assert len(restarted) == 1 and len(restarted[0]["pids"]) == 2  # the same worker, a new process


def test_late_duplicate_stops_the_run_and_resume_finishes_after_the_fix(
    local_ray,  # noqa: F811
    squad_subset,  # noqa: F811
    standin_package,
    heldout_json,
    tmp_path,
):
    data = json.loads(heldout_json.read_text(encoding="utf-8"))["data"]
    extra_article = {"title": data[7]["title"], "paragraphs": data[7]["paragraphs"][:1]}
    combined = tmp_path / "combined.json"
    subset = json.loads(squad_subset.read_text(encoding="utf-8"))
    combined.write_text(json.dumps({"version": "1.1", "data": [*subset["data"], extra_article]}), encoding="utf-8")
    extra = rows_of(combined)[49:]
    duplicate = dict(rows_of(squad_subset)[7], question="The same id again?")
    more = tmp_path / "more.jsonl"
    more.write_text("".join(json.dumps(r) + "\n" for r in [*extra, duplicate]), encoding="utf-8")
    out, partial = tmp_path / "result", tmp_path / "result.partial"
    args = (str(squad_subset), str(more), "--model", str(standin_package), "-o", str(out), "--engine", "ray")
    r = cli(*args, "--batch-questions", "4", code=3)
    committed = _committed(partial)
    assert committed >= 49 and not out.exists()  # the blocks before the duplicate's are kept
    assert r.output.splitlines()[-1] == (
        f"Error: duplicate question id {duplicate['id']!r} in {squad_subset} and {more}; question ids must be unique "
        f"across INPUT; the {committed} answers committed are kept in {partial}: after the fix, rerun the same command "
        "with --resume"
    )
    r = cli(*args, "--batch-questions", "4", code=4)  # neither --resume nor --overwrite
    assert r.output.splitlines()[-1] == (
        f"Error: -o {out}: an interrupted Ray run's answers are in {partial}; pass --resume to finish that run, "
        "or --overwrite to start afresh"
    )
    more.write_text("".join(json.dumps(r) + "\n" for r in extra), encoding="utf-8")  # the fix
    cli(*args, "--batch-questions", "4", "--resume")
    reference = local_run(combined, standin_package, tmp_path / "local")
    same_files(reference, out, ["predictions.json", "nbest_predictions.json"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["questions"] == 49 + len(extra) and summary["answered_this_run"] == 49 + len(extra) - committed
    assert len({x["id"] for x in _jsonl(out)}) == 49 + len(extra)


def test_overwrite_after_a_failed_run_leaves_the_old_result_or_a_complete_new_one(
    local_ray,  # noqa: F811
    squad_subset,  # noqa: F811
    standin_package,
    local_result,  # noqa: F811
    tmp_path,
):
    import shutil

    out = tmp_path / "result"
    shutil.copytree(local_result, out)
    (out / "predictions.json").write_text("{}\n", encoding="utf-8")  # an old result, unlike the new one
    old = _checksums(out)
    duplicate = tmp_path / "dup.jsonl"
    duplicate.write_text(json.dumps(rows_of(squad_subset)[0]) + "\n", encoding="utf-8")
    model = ("--model", str(standin_package), "-o", str(out), "--engine", "ray", "--overwrite", "--batch-questions", "7")
    cli(str(squad_subset), str(duplicate), *model, code=3)
    assert _checksums(out) == old  # the failed run left the old result as it was
    assert _committed(tmp_path / "result.partial") == 49  # 7 blocks of 7 before the duplicate's
    cli(str(squad_subset), *model)  # --overwrite again: the interrupted run's answers are discarded
    same_files(local_result, out)  # complete and new
    assert json.loads((out / "summary.json").read_text())["answered_this_run"] == 49  # afresh, not resumed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dup.jsonl", "result"]  # no partial, no temp dirs
