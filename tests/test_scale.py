"""``spanqa run --engine ray`` (spanqa.scale) on a real local Ray: the same answers as a local
run, on one node and on a simulated two-node cluster, through a killed actor, and the errors.

Small on purpose (2 shared cores): a few paragraphs of three held-out articles (49 questions);
about 1.5 minutes in all, most of it Ray starting and actors loading the model.
"""

from __future__ import annotations

import builtins
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from spanqa.errors import DatasetError, MissingBackendError, UsageError
from spanqa.settings import RaySettings, RunSettings

ray = pytest.importorskip("ray")

ARTICLES = {0: 4, 2: 3, 5: 3}  # held-out article -> its first paragraphs taken (49 questions)


@pytest.fixture(scope="module")
def squad_subset(heldout_json, tmp_path_factory) -> Path:
    data = json.loads(heldout_json.read_text(encoding="utf-8"))["data"]
    articles = [{"title": data[a]["title"], "paragraphs": data[a]["paragraphs"][:n]} for a, n in ARTICLES.items()]
    path = tmp_path_factory.mktemp("scale") / "subset.json"
    path.write_text(json.dumps({"version": "1.1", "data": articles}), encoding="utf-8")
    return path


def _rows(squad_json: Path) -> list[dict]:
    data = json.loads(squad_json.read_text(encoding="utf-8"))["data"]
    return [
        {"id": qa["id"], "question": qa["question"], "context": p["context"], "answers": [a["text"] for a in qa["answers"]]}
        for article in data
        for p in article["paragraphs"]
        for qa in p["qas"]
    ]


@pytest.fixture(scope="module")
def jsonl_subset(squad_subset) -> Path:
    path = squad_subset.with_suffix(".jsonl")
    path.write_text("".join(json.dumps(r) + "\n" for r in _rows(squad_subset)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def local_predictions(squad_subset, standin_package) -> dict[str, str]:
    """What the local run answers (the Engine's predict, the local run's settings)."""
    from spanqa.data.squad import read_squad
    from spanqa.engine import Engine

    with Engine.load(standin_package, threads=2, settings=RunSettings().engine()) as engine:
        return engine.predict(read_squad(squad_subset)).predictions


def _engine_settings():
    return RunSettings().engine()


# ---------------------------------------------------------------------------------------------
# Without Ray running


def test_missing_ray_names_the_extra(monkeypatch):
    from spanqa.scale.ray_job import import_ray

    real = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(MissingBackendError) as err:
        import_ray()
    assert str(err.value) == "ray is not installed; install it with: pip install 'spanqa[ray]'"


def test_cli_without_ray_says_how_to_install_it(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from spanqa.cli import main

    real = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    r = CliRunner().invoke(
        main, ["run", str(tmp_path / "x.json"), "--model", str(tmp_path), "-o", str(tmp_path / "o"), "--engine", "ray"]
    )
    assert (r.exit_code, r.output) == (1, "Error: ray is not installed; install it with: pip install 'spanqa[ray]'\n")


def test_inputs_found_by_directory_glob_and_file(tmp_path, squad_subset, jsonl_subset):
    from spanqa.scale.inputs import find_inputs

    (tmp_path / "sub").mkdir()
    for name in ("a.json", "sub/b.jsonl", "sub/c.parquet", "notes.txt"):
        (tmp_path / name).write_text("{}", encoding="utf-8")
    found = find_inputs([str(tmp_path)])
    assert found.paths == [str(tmp_path / "a.json"), str(tmp_path / "sub/b.jsonl"), str(tmp_path / "sub/c.parquet")]
    assert find_inputs([str(tmp_path / "sub" / "*.jsonl"), str(tmp_path / "sub/b.jsonl")]).paths == [
        str(tmp_path / "sub/b.jsonl")
    ]
    with pytest.raises(UsageError) as err:
        find_inputs([str(tmp_path / "notes.txt")])
    assert str(err.value) == f"{tmp_path / 'notes.txt'}: unknown input format; name it .json (SQuAD), .jsonl or .parquet"
    with pytest.raises(UsageError) as err:
        find_inputs([str(tmp_path / "nothing-*.json")])
    assert str(err.value) == f"{tmp_path / 'nothing-*.json'}: the glob matches no file"


def test_pool_must_fit_the_cluster():
    from spanqa.scale.ray_job import _pool_size

    assert _pool_size(RaySettings(), 2.0) == 2
    assert _pool_size(RaySettings(threads_per_worker=2), 5.0) == 2
    with pytest.raises(UsageError) as err:
        _pool_size(RaySettings(workers=3, threads_per_worker=1), 2.0)
    assert str(err.value) == "--workers 3 x --threads-per-worker 1 needs 3 CPUs but the cluster has 2; use at most 2 workers"


def test_shipped_model_is_verified(tmp_path, standin_package):
    from spanqa.scale.ship import materialise, pack

    shipped = pack(standin_package)
    assert "model.onnx" in shipped.files and "exported.onnx" not in shipped.files
    root = materialise(shipped, tmp_path)
    assert (root / "model.onnx").read_bytes() == (Path(standin_package) / "model.onnx").read_bytes()
    assert materialise(shipped, tmp_path) == root  # the node's copy is reused
    (root / "vocab.txt").write_text("tampered", encoding="utf-8")
    assert materialise(shipped, tmp_path) == root  # and rewritten when it no longer matches
    assert (root / "vocab.txt").read_bytes() == shipped.files["vocab.txt"]


# ---------------------------------------------------------------------------------------------
# One local Ray with 2 CPUs, shared by the tests of this class (the job attaches to it)


class TestLocalRay:
    @pytest.fixture(scope="class", autouse=True)
    def local_ray(self):
        import logging

        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
        yield
        ray.shutdown()

    def test_squad_json_matches_the_local_run(self, squad_subset, standin_package, local_predictions, tmp_path):
        from spanqa.scale.ray_job import PARTIAL, run_on_ray

        run = run_on_ray(
            [str(squad_subset)], standin_package, tmp_path, _engine_settings(), RaySettings(batch_questions=16), quiet=True
        )
        assert run.predictions == local_predictions
        assert list(run.predictions) == list(local_predictions)  # input order
        lines = [json.loads(line) for line in (tmp_path / PARTIAL).read_text(encoding="utf-8").splitlines()]
        assert sorted(r["id"] for r in lines) == sorted(local_predictions)
        assert sum(w["questions"] for w in run.workers.values()) == len(local_predictions) == 49
        assert run.cluster["workers"] == 2 and run.cluster["cpus"] == 2.0

    def test_duplicate_ids_across_files_fail_before_answering(self, squad_subset, tmp_path, standin_package):
        from spanqa.scale.ray_job import run_on_ray

        row = _rows(squad_subset)[7]
        other = tmp_path / "more.jsonl"
        other.write_text(json.dumps(row) + "\n", encoding="utf-8")
        with pytest.raises(DatasetError) as err:
            run_on_ray([str(squad_subset), str(other)], standin_package, tmp_path / "out", _engine_settings(), quiet=True)
        assert str(err.value) == (
            f"duplicate question id {row['id']!r} in {squad_subset} and {other}; question ids must be unique across INPUT"
        )
        assert not (tmp_path / "out").exists()  # no actor ever answered

    def test_errors_in_read_tasks_and_actors_come_back_as_one_line(self, squad_subset, tmp_path):
        from spanqa.errors import PackageError
        from spanqa.scale.ray_job import run_on_ray

        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"id": "q1", "question": "Who?"}\n', encoding="utf-8")
        with pytest.raises(DatasetError) as err:  # raised in a Ray Data read task
            run_on_ray([str(bad)], tmp_path, tmp_path / "out", _engine_settings(), quiet=True)
        assert str(err.value) == f"{bad}: question 'q1': missing or empty 'context'"
        nothing = tmp_path / "empty-package"
        nothing.mkdir()
        (nothing / "manifest.json").write_text("{}", encoding="utf-8")
        with pytest.raises(PackageError) as err:  # raised in every actor's constructor
            run_on_ray([str(squad_subset)], nothing, tmp_path / "out2", _engine_settings(), quiet=True)
        assert str(err.value) == (
            f"{nothing / 'manifest.json'}: the manifest lacks target, precision, runtime, model_file; re-run 'spanqa compile'"
        )

    def test_killed_actor_is_restarted_and_every_question_answered_once(
        self, squad_subset, standin_package, local_predictions, tmp_path
    ):
        from spanqa.scale.ray_job import PARTIAL, run_on_ray

        out, outcome = tmp_path / "out", {}

        def job():
            try:
                outcome["run"] = run_on_ray(
                    [str(squad_subset)], standin_package, out, _engine_settings(), RaySettings(batch_questions=2), quiet=True
                )
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                outcome["error"] = exc

        thread = threading.Thread(target=job)
        thread.start()
        killed = None
        while thread.is_alive() and killed is None:  # the first answer names its actor's pid
            line = (out / PARTIAL).read_text(encoding="utf-8").split("\n", 1)[0] if (out / PARTIAL).is_file() else ""
            if line.endswith("}"):
                killed = json.loads(line)["pid"]
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.02)
        thread.join(timeout=120)
        assert killed is not None and "error" not in outcome, outcome
        run = outcome["run"]
        ids = [json.loads(line)["id"] for line in (out / PARTIAL).read_text(encoding="utf-8").splitlines()]
        assert len(ids) == len(set(ids)) == 49 and set(ids) == set(local_predictions)
        assert run.predictions == local_predictions
        assert [w for w in run.workers.values() if killed in w["pids"]]  # the killed actor had answered


# ---------------------------------------------------------------------------------------------
# The command line: a local Ray it starts and stops, and a simulated two-node cluster


def _run_cli(*args: str):
    from click.testing import CliRunner

    from spanqa.cli import main

    result = CliRunner().invoke(main, ["run", *args, "--engine", "ray", "-q"])
    assert result.exit_code == 0, result.output
    return result


def test_cli_jsonl_on_a_local_ray_matches_the_local_run(jsonl_subset, squad_subset, standin_package, local_predictions, tmp_path):
    from spanqa.answers.scoring import score
    from spanqa.data.squad import read_squad

    out = tmp_path / "result"
    cli = _run_cli(str(jsonl_subset), "--model", str(standin_package), "-o", str(out), "--batch-questions", "16")
    assert not ray.is_initialized()  # the local Ray it started is stopped
    predictions = json.loads((out / "predictions.json").read_text(encoding="utf-8"))
    assert predictions == local_predictions and list(predictions) == list(local_predictions)
    assert sorted(p.name for p in out.iterdir()) == [
        ".spanqa-artifact",
        "predictions.json",
        "predictions.jsonl",
        "result.json",
        "summary.json",
    ]
    result = json.loads((out / "result.json").read_text(encoding="utf-8"))
    expected = score(read_squad(squad_subset), local_predictions)
    assert (result["exact_match"], result["f1"], result["total"]) == (expected["exact_match"], expected["f1"], 49)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["engine"] == "ray" and summary["questions"] == 49 and summary["ray"]["address"] == "local"
    assert sum(w["questions"] for w in summary["workers"].values()) == 49
    assert (
        "questions/s" in cli.output
        and f"Wrote predictions.json, result.json, summary.json and predictions.jsonl to {out}" in cli.output
    )


def test_two_node_cluster_gives_the_same_answers_with_work_on_both_nodes(
    squad_subset, standin_package, local_predictions, tmp_path
):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        out = tmp_path / "result"
        args = ("--model", str(standin_package), "-o", str(out), "--address", cluster.address, "--ship-model")
        _run_cli(str(squad_subset), *args, "--batch-questions", "4")
    finally:
        cluster.shutdown()
    assert json.loads((out / "predictions.json").read_text(encoding="utf-8")) == local_predictions
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    workers = summary["workers"].values()
    assert summary["ray"]["nodes"] == 2 and summary["ray"]["workers"] == 2 and summary["settings"]["ray"]["ship_model"]
    assert len({w["node"] for w in workers}) == 2 and all(w["questions"] > 0 for w in workers)
    assert sum(w["questions"] for w in workers) == 49
