"""``spanqa run --engine ray`` (spanqa.scale) on a real local Ray: the files of a local run, byte
for byte (SQuAD 1.1, 2.0 with and without a tuned threshold, n-best), on one node and on a
simulated two-node cluster, and the errors a user meets (one line each).

Fault tests (killed driver, killed actor, late duplicate, --overwrite) are in
test_scale_faults.py, the driver's memory at 20,000 and 100,000 questions in
test_scale_memory.py. Small on purpose (2 shared cores): a few paragraphs of three held-out
articles (49 questions) and the small SQuAD 2.0 file; most of the time is Ray starting and
actors loading the model.
"""

from __future__ import annotations

import builtins
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from spanqa.errors import MissingBackendError, UsageError
from spanqa.settings import RaySettings, RunSettings

ray = pytest.importorskip("ray")

ARTICLES = {0: 4, 2: 3, 5: 3}  # held-out article -> its first paragraphs taken (49 questions)
RESULT_FILES = ["nbest_predictions.json", "predictions.json", "result.json"]


# ---------------------------------------------------------------------------------------------
# Shared by the scale test modules (imported by test_scale_faults.py and test_scale_memory.py)


@pytest.fixture(scope="module")
def squad_subset(heldout_json, tmp_path_factory) -> Path:
    data = json.loads(heldout_json.read_text(encoding="utf-8"))["data"]
    articles = [{"title": data[a]["title"], "paragraphs": data[a]["paragraphs"][:n]} for a, n in ARTICLES.items()]
    path = tmp_path_factory.mktemp("scale") / "subset.json"
    path.write_text(json.dumps({"version": "1.1", "data": articles}), encoding="utf-8")
    return path


def rows_of(squad_json: Path) -> list[dict]:
    data = json.loads(squad_json.read_text(encoding="utf-8"))["data"]
    return [
        {
            "id": qa["id"],
            "question": qa["question"],
            "context": p["context"],
            "answers": [a["text"] for a in qa.get("answers", [])],
        }
        for article in data
        for p in article["paragraphs"]
        for qa in p["qas"]
    ]


def cli(*args: str, code: int = 0):
    from spanqa.cli import main

    result = CliRunner().invoke(main, ["run", *args, "-q"])
    assert result.exit_code == code, result.output
    return result


def local_run(dataset: Path, model: Path, out: Path, *extra: str) -> Path:
    """The local run every Ray result is compared with, byte for byte."""
    cli(str(dataset), "--model", str(model), "-o", str(out), "--threads", "2", *extra)
    return out


def same_files(a: Path, b: Path, names=RESULT_FILES) -> None:
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.fixture(scope="module")
def local_result(squad_subset, standin_package, tmp_path_factory) -> Path:
    return local_run(squad_subset, standin_package, tmp_path_factory.mktemp("local") / "result")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray with 2 CPUs for the module; the jobs attach to it (no start per test)."""
    import logging

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


# ---------------------------------------------------------------------------------------------
# Without Ray running


def _without_ray(monkeypatch):
    real = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)


def test_missing_ray_names_the_extra(monkeypatch, tmp_path):
    from spanqa.cli import main
    from spanqa.scale.cluster import import_ray

    _without_ray(monkeypatch)
    with pytest.raises(MissingBackendError) as err:
        import_ray()
    assert str(err.value) == "ray is not installed; install it with: pip install 'spanqa[ray]'"
    r = CliRunner().invoke(
        main, ["run", str(tmp_path / "x.json"), "--model", str(tmp_path / "pkg"), "-o", str(tmp_path / "o"), "--engine", "ray"]
    )
    assert (r.exit_code, r.output) == (1, "Error: ray is not installed; install it with: pip install 'spanqa[ray]'\n")


def test_inputs_found_by_directory_glob_and_file(tmp_path):
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


def test_squad_rows_read_2_0_as_read_squad_does(squad2_json):
    from spanqa.data.squad import read_squad
    from spanqa.scale.inputs import squad_rows

    rows = squad_rows(squad2_json.read_bytes(), str(squad2_json))
    examples = read_squad(squad2_json)
    assert [r["id"] for r in rows] == [e.qas_id for e in examples]
    assert [r["impossible"] for r in rows] == [e.is_impossible for e in examples]
    assert [r["answers"] for r in rows] == [e.answers for e in examples]
    assert sum(r["impossible"] for r in rows) > 0


def test_squad_json_errors_name_the_file_and_the_fix(tmp_path):
    from spanqa.errors import DatasetError
    from spanqa.scale.inputs import squad_rows

    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes('{"data": [{"paragraphs": [{"context": "café", "qas": []}]}]}'.encode("latin-1"))
    with pytest.raises(DatasetError) as err:
        squad_rows(latin1.read_bytes(), str(latin1))
    assert str(err.value) == (
        f"{latin1}: not UTF-8 text (invalid continuation byte at byte {latin1.read_bytes().index(0xE9)}); SQuAD JSON is "
        "UTF-8: re-save the file as UTF-8"
    )
    lines = tmp_path / "lines.json"
    lines.write_text('{"id": "a", "question": "Q?", "context": "C."}\n{"id": "b", "question": "Q?", "context": "C."}\n')
    with pytest.raises(DatasetError) as err:
        squad_rows(lines.read_bytes(), str(lines))
    assert (
        str(err.value)
        == f"{lines}: not valid JSON (Extra data at line 2 column 1); it holds one JSON object per line: name it .jsonl"
    )


def test_local_engine_says_json_lines_are_for_ray(tmp_path):
    from spanqa.cli import main

    path = tmp_path / "x.jsonl"
    path.write_text('{"id": "a", "question": "Q?", "context": "C."}\n', encoding="utf-8")
    r = CliRunner().invoke(main, ["run", str(path), "--model", str(tmp_path / "pkg"), "-o", str(tmp_path / "out")])
    assert r.exit_code == 2
    assert r.output.splitlines()[-1] == (
        f"Error: {path}: JSON-lines and Parquet input is for --engine ray; the local engine reads one SQuAD .json file"
    )
    r = CliRunner().invoke(main, ["run", str(path), "--model", str(tmp_path / "pkg"), "-o", str(tmp_path / "out"), "--resume"])
    assert (r.exit_code, r.output.splitlines()[-1]) == (2, "Error: --resume is for --engine ray")


def test_without_an_address_a_local_ray_of_its_own_starts():
    """Not one that another process runs on this machine: ray.init() without an address joins
    the newest local cluster (Ray's /tmp/ray/ray_current_cluster) and then refuses num_cpus, which
    failed `spanqa run --engine ray` beside another Ray."""
    from types import SimpleNamespace

    from spanqa.scale.cluster import cluster

    calls = []
    fake = SimpleNamespace(
        is_initialized=lambda: False,
        init=lambda **kw: calls.append(kw),
        nodes=lambda: [{"Alive": True, "NodeID": "n" * 20, "NodeManagerAddress": "127.0.0.1"}],
        cluster_resources=lambda: {"CPU": 3.0},
        shutdown=lambda: calls.append("shutdown"),
    )
    with cluster(fake, RaySettings(local_cpus=3)) as facts:
        assert (facts["address"], facts["cpus"]) == ("local", 3.0)
    assert calls[0]["address"] == "local" and calls[0]["num_cpus"] == 3 and calls[1] == "shutdown"


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


def test_committed_index_finds_exactly_the_committed_ids(tmp_path):
    import sqlite3

    from spanqa.scale.store import committed_index, in_index

    db = tmp_path / "a.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE answers(id TEXT PRIMARY KEY)")
    con.executemany("INSERT INTO answers VALUES (?)", [(f"q{i}",) for i in range(0, 1000, 3)])
    con.commit()
    con.close()
    index = committed_index(str(db))
    ids = [f"q{i}" for i in range(1000)] + ["", "q", "é"]
    assert [i for i, hit in zip(ids, in_index(ids, index)) if hit] == [f"q{i}" for i in range(0, 1000, 3)]
    assert not in_index(ids, None).any()


def test_one_driver_at_a_time_writes_a_store(tmp_path):
    from spanqa.errors import OutputError
    from spanqa.scale.store import Store

    first = Store(tmp_path)
    with pytest.raises(OutputError) as err:
        Store(tmp_path)
    assert str(err.value) == f"{tmp_path}: another spanqa run is writing there; wait for it, or stop it"
    first.close()
    Store(tmp_path).close()  # free again once the first is closed (or its driver died)


# ---------------------------------------------------------------------------------------------
# On a local Ray (2 CPUs) the jobs attach to


def test_squad_json_gives_the_local_runs_files(local_ray, squad_subset, standin_package, local_result, tmp_path, recwarn):
    out = tmp_path / "result"
    r = cli(str(squad_subset), "--model", str(standin_package), "-o", str(out), "--engine", "ray")
    same_files(local_result, out)
    # One block of 49 for a pool of 2: Ray Data's advice about it is not shown to the user.
    assert not [w for w in recwarn if "number of concurrent" in str(w.message)]
    assert sorted(p.name for p in out.iterdir()) == [
        ".spanqa-artifact",
        "nbest_predictions.json",
        "predictions.json",
        "predictions.jsonl",
        "result.json",
        "summary.json",
    ]
    assert not (tmp_path / "result.partial").exists()
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [x["id"] for x in lines] == list(json.loads((local_result / "predictions.json").read_text()))
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    local = json.loads((local_result / "summary.json").read_text(encoding="utf-8"))
    assert set(local) - set(summary) == set() and set(local["settings"]) <= set(summary["settings"])
    assert set(local["inference"]) == set(summary["inference"])
    assert (summary["questions"], summary["features"], summary["real_tokens"]) == (49, local["features"], local["real_tokens"])
    assert summary["inference"]["rows"] == 49 and summary["ray"]["workers"] == 2 and summary["ray"]["address"] == "attached"
    workers = summary["workers"].values()
    assert sum(w["questions"] for w in workers) == 49 and all(w["timeline"]["busy"] for w in workers)
    for w in workers:  # the timeline: started, model loaded, then answering
        t = w["timeline"]
        assert t["started_s"] <= t["model_loaded_s"] <= t["first_answer_s"] <= t["last_answer_s"]
    assert set(summary["fixed_costs_s"]) == {"cluster_start_s", "actor_start_s", "model_load_s", "first_block_s"}
    assert [(x["run"], x["answered"], x["outcome"]) for x in summary["runs"]] == [(1, 49, "done")]
    assert "fixed: cluster start" in r.output and "Wrote predictions.json, nbest_predictions.json, result.json" in r.output


def test_jsonl_and_parquet_give_the_same_predictions(local_ray, squad_subset, standin_package, local_result, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = rows_of(squad_subset)
    first = tmp_path / "a.jsonl"
    first.write_text("".join(json.dumps(r) + "\n" for r in rows[:20]), encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(rows[20:]), tmp_path / "b.parquet")
    out = tmp_path / "result"
    cli(str(first), str(tmp_path / "b.parquet"), "--model", str(standin_package), "-o", str(out), "--engine", "ray", "--no-nbest")
    # Two formats: Ray Data's union takes their blocks in turn, so only the answers are compared.
    predictions = json.loads((out / "predictions.json").read_text(encoding="utf-8"))
    assert predictions == json.loads((local_result / "predictions.json").read_text(encoding="utf-8"))
    assert not (out / "nbest_predictions.json").exists()
    result = json.loads((out / "result.json").read_text())
    local = json.loads((local_result / "result.json").read_text())
    assert result["total"] == 49 and result["exact_match"] == local["exact_match"]
    assert result["f1"] == pytest.approx(local["f1"], rel=1e-12)  # summed in another order


def test_squad2_file_gives_the_local_runs_files(local_ray, squad2_json, standin_package, tmp_path):
    """Issue #19: a file detected as SQuAD 2.0 is answered with the null answer, as locally;
    --version-2-with-negative and --tune-threshold too; n-best and null odds byte for byte."""
    names = [*RESULT_FILES, "null_odds.json"]
    ray_args = ("--model", str(standin_package), "--engine", "ray", "--batch-questions", "16")
    detected = local_run(squad2_json, standin_package, tmp_path / "local")
    cli(str(squad2_json), "-o", str(tmp_path / "ray"), *ray_args)
    same_files(detected, tmp_path / "ray", names)
    assert '""' in (tmp_path / "ray" / "predictions.json").read_text()  # some questions get no answer
    tuned = local_run(squad2_json, standin_package, tmp_path / "local-tuned", "--version-2-with-negative", "--tune-threshold")
    cli(str(squad2_json), "-o", str(tmp_path / "ray-tuned"), *ray_args, "--version-2-with-negative", "--tune-threshold")
    same_files(tuned, tmp_path / "ray-tuned", names)
    result = json.loads((tmp_path / "ray-tuned" / "result.json").read_text())
    assert result["threshold_tuned"] and result["null_score_diff_threshold"] == result["best_f1_thresh"]


def test_mixed_squad_versions_are_refused(local_ray, squad_subset, squad2_json, standin_package, tmp_path):
    out = tmp_path / "result"
    r = cli(str(squad_subset), str(squad2_json), "--model", str(standin_package), "-o", str(out), "--engine", "ray", code=2)
    first_v1, first_v2 = rows_of(squad_subset)[0]["id"], rows_of(squad2_json)[0]["id"]
    assert r.output.splitlines()[-1] == (
        f"Error: INPUT mixes SQuAD 2.0 questions ({first_v2!r} in {squad2_json}) and 1.1 questions ({first_v1!r} in "
        f"{squad_subset}); rerun with --overwrite and --version-2-with-negative or --no-version-2-with-negative to "
        "answer them alike"
    )
    assert not out.exists()


def test_errors_in_read_tasks_and_actors_come_back_as_one_line(local_ray, squad_subset, standin_package, tmp_path):
    from spanqa.errors import PackageError
    from spanqa.scale.ray_job import run_on_ray
    from spanqa.scale.store import Store

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "q1", "question": "Who?"}\n', encoding="utf-8")
    r = cli(str(bad), "--model", str(standin_package), "-o", str(tmp_path / "out"), "--engine", "ray", code=3)
    assert r.output.splitlines()[-1] == f"Error: {bad}: question 'q1': missing or empty 'context'"
    nothing = tmp_path / "empty-package"
    nothing.mkdir()
    (nothing / "manifest.json").write_text("{}", encoding="utf-8")
    store = Store(tmp_path)
    store.start_run()
    with pytest.raises(PackageError) as err:  # raised in every actor's constructor
        run_on_ray([str(squad_subset)], nothing, store, RunSettings().engine, quiet=True)
    assert str(err.value) == (
        f"{nothing / 'manifest.json'}: the manifest lacks target, precision, runtime, model_file; re-run 'spanqa compile'"
    )
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()  # nothing answered


def test_latin1_file_is_one_clean_line(squad_subset, standin_package, tmp_path):
    """Issue #19: spanqa's own local Ray, as a user starts it: one line on stderr, exit 3."""
    raw = squad_subset.read_bytes()  # ASCII: json.dumps escapes everything else
    at = raw.index(b'"context": "') + len(b'"context": "')
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes(raw[:at] + "café ".encode("latin-1") + raw[at:])
    command = [sys.executable, "-m", "spanqa", "run", str(latin1), "--model", str(standin_package)]
    command += ["-o", str(tmp_path / "o"), "--engine", "ray"]
    r = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert (r.returncode, r.stdout) == (3, ""), r.stderr
    assert r.stderr.splitlines() == [
        f"Error: {latin1}: not UTF-8 text (invalid continuation byte at byte {at + 3}); "
        "SQuAD JSON is UTF-8: re-save the file as UTF-8"
    ]
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()


def test_two_node_cluster_gives_the_same_answers_with_work_on_both_nodes(squad_subset, standin_package, local_result, tmp_path):
    from ray.cluster_utils import Cluster

    ray.shutdown()  # the module's one-node Ray, if it runs: this job must attach to the cluster below
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        out = tmp_path / "result"
        args = ("--model", str(standin_package), "-o", str(out), "--address", cluster.address, "--ship-model")
        cli(str(squad_subset), *args, "--engine", "ray", "--batch-questions", "4")
    finally:
        cluster.shutdown()
    same_files(local_result, out)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    workers = summary["workers"].values()
    assert summary["ray"]["nodes"] == 2 and summary["ray"]["workers"] == 2 and summary["settings"]["ray"]["ship_model"]
    assert len({w["node"] for w in workers}) == 2 and all(w["questions"] > 0 for w in workers)
