"""benchmarks/peers.py (the package benchmarks/peers/) on the tiny random model: the driver runs
every system whose packages this interpreter has (its workers in this process, the matmul
ceilings on a small matrix) and prints the table with its rows and columns; the split into one
module per system family is complete. No speed is asserted: timings are the benchmark's, never
the tests'."""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import io
import json
import pkgutil
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from import_graph import cycles, graph
from squad_files import tiny_squad_json

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import peers  # noqa: E402
from peers import base, ceiling, driver, systems  # noqa: E402

ROWS = [
    "HF pipeline (PyTorch eager)",
    "PyTorch eager, batched 384",
    "Optimum ORT fp32",
    "Optimum ORT int8 (dynamic, avx512_vnni)",
    "optimum-intel OpenVINO",
    "spanqa cpu-fp32",
    "spanqa cpu-int8-ort",
    "spanqa cpu-bf16",
    "spanqa cpu-int8",
]
PEERS = ROWS[:5]
COLUMNS = (
    "| system | precision | questions/s | × spanqa best | F1 | EM | F1 / spanqa fp32 | model share | model GFLOP/s "
    "| useful GFLOP/s | % ceil | e2e % of model-only |"
)
# The package's modules that are not a system family.
INFRASTRUCTURE = {"base", "ceiling", "driver", "prepare", "systems", "table", "worker"}
QUESTIONS = 5  # tiny_squad_json's


def missing(system: base.System) -> str | None:
    """The first of a system's requirements this interpreter does not satisfy, as pip names it."""
    for req in map(Requirement, system.requires):
        try:
            version = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            return str(req)
        if not req.specifier.contains(version, prereleases=True):
            return f"{req} (this interpreter has {req.name} {version})"
    return None


def by_name() -> dict[str, base.System]:
    return {s.name: s for s in systems.all_systems()}


def test_every_system_module_exposes_the_interface():
    modules = {m.name for m in pkgutil.iter_modules(peers.__path__)} - INFRASTRUCTURE
    assert modules == {m.__name__.rsplit(".", 1)[1] for m in systems.PEER_MODULES}
    for module in systems.PEER_MODULES:
        family = module.systems()
        assert family, module.__name__
        for system in family:
            assert isinstance(system, base.System) and callable(system.load), (module.__name__, system)
    assert [s.name for s in systems.all_systems()] == ROWS
    assert [s.name for s in systems.all_systems() if s.env == "peers"] == ["HF pipeline (PyTorch eager)", *ROWS[2:5]]
    assert [s.name for s in systems.all_systems() if s.spanqa] == ROWS[5:]
    # Behind one interface: a system family sees only base; no cycle among the modules.
    edges = graph(BENCH / "peers", "peers")
    for module in systems.PEER_MODULES:
        assert edges[module.__name__] == {"peers.base"}, module.__name__
    assert cycles(edges) == []


def test_what_peers_require_is_what_the_peers_venv_pins():
    pins = {}
    for line in (BENCH / "requirements-peers.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            pins[canonicalize_name(req.name)] = next(iter(req.specifier)).version
    for system in systems.all_systems():
        for req in map(Requirement, system.requires):
            name = canonicalize_name(req.name)
            assert name in pins, (system.name, req)
            assert req.specifier.contains(pins[name]), (system.name, req, pins[name])


def _substring(name: str) -> str:
    # --systems takes a comma list of substrings: a name's part after its last comma is its own.
    return name.lower().rsplit(",", 1)[-1].strip()


@pytest.fixture(scope="module")
def tiny_run(tiny_checkpoint, tiny_package, tmp_path_factory):
    """The driver's main on the tiny model as the "standin" (so the F1 guard and the targets run),
    only cpu-fp32 converted, every worker run in this process."""
    import torch

    tmp = tmp_path_factory.mktemp("peers")
    questions = tiny_squad_json(tmp / "tiny.json")
    installed = [s.name for s in systems.all_systems() if missing(s) is None]
    asked_targets = []

    def prepare(model, work, calibration, targets, say):
        asked_targets.extend(targets)
        return tiny_checkpoint, peers.make_hf_dir(tiny_checkpoint, work / f"{model}-hf"), {"cpu-fp32": str(tiny_package)}

    def in_process(python, args, log, timeout, threads):
        assert python == sys.executable
        driver.main(args)
        return 0, ""

    work, out = tmp / "work", tmp / "peers.json"
    argv = ["--models", "standin", "--questions", str(QUESTIONS), "--threads", "1", "--work", str(work)]
    argv += ["--systems", ",".join(_substring(n) for n in installed), "--peers-python", sys.executable, "--json", str(out)]
    threads, stdout = torch.get_num_threads(), io.StringIO()
    try:
        with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(stdout):
            mp.setattr(driver, "HELDOUT", questions)
            mp.setattr(driver, "DEV", questions)
            mp.setattr(driver, "prepare_model", prepare)
            mp.setattr(driver, "run_worker", in_process)
            mp.setattr(driver, "matmul_worker", functools.partial(ceiling.matmul_worker, n=256, reps=1))
            driver.main(argv)
    finally:
        torch.set_num_threads(threads)
    return {
        "table": stdout.getvalue(),
        "report": json.loads(out.read_text()),
        "installed": installed,
        "targets": asked_targets,
        "work": work,
    }


def _table_rows(table: str, heading: str) -> list[list[str]]:
    lines = table.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    assert lines[start + 2] == COLUMNS
    assert lines[start + 3] == "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    rows = []
    for line in lines[start + 4 :]:
        if not line.startswith("| "):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_table_rows_and_columns(tiny_run):
    report, installed = tiny_run["report"], tiny_run["installed"]
    assert tiny_run["targets"] == ["cpu-fp32", "cpu-int8-ort", "cpu-bf16", "cpu-int8"]
    rows = _table_rows(tiny_run["table"], f"## stand-in (MiniLM-L6, 6 × 384) — {QUESTIONS} held-out questions")
    assert (
        [r[0].removesuffix(" **(best)**") for r in rows]
        == installed
        == [r["system"] for r in report["models"]["standin"]["rows"]]
    )
    assert all(len(r) == 12 for r in rows)
    table_rows = dict(zip(installed, rows))
    for row in report["models"]["standin"]["rows"]:
        cells = table_rows[row["system"]]
        assert cells[1] == row["precision"]
        if row["system"] in ("spanqa cpu-int8-ort", "spanqa cpu-bf16", "spanqa cpu-int8"):
            assert cells[2:] == ["unavailable: conversion failed (see stderr)"] + [""] * 9
            continue
        assert "unavailable" not in row, row
        assert row["questions"] == QUESTIONS and row["questions_per_s"] == QUESTIONS / row["seconds"]
        assert (
            cells[2] == f"{row['questions_per_s']:.2f}"
            and cells[4] == f"{row['f1']:.2f}"
            and cells[5] == f"{row['exact_match']:.2f}"
        )
        assert cells[7] == f"{100 * row['model_share']:.0f}%" and 0 < row["model_share"] <= 1
        assert 0 < row["real_tokens"] <= row["padded_tokens"] and row["sequences"] >= QUESTIONS
        assert 0 < row["useful_gflops"] <= row["model_gflops"]
        assert 0 <= row["f1"] <= 100 and 0 <= row["exact_match"] <= row["f1"]
        if row["ceiling_gflops"]:
            assert row["ceiling_pct"] == 100 * row["model_gflops"] / row["ceiling_gflops"]
        if row["system"] == "PyTorch eager, batched 384":  # every window padded to 384
            assert row["padded_tokens"] == 384 * row["sequences"]
    fp32 = next(r for r in report["models"]["standin"]["rows"] if r["system"] == "spanqa cpu-fp32")
    assert table_rows["spanqa cpu-fp32"][0] == "spanqa cpu-fp32 **(best)**" and table_rows["spanqa cpu-fp32"][3] == "1.00"
    assert fp32["info"]["target"] == "cpu-fp32" and fp32["info"]["precision"] == "fp32"
    assert fp32["e2e_vs_model_only"] > 0
    assert report["targets"]["standin"]["spanqa_best"] == "spanqa cpu-fp32"
    assert "- **standin**: spanqa best = spanqa cpu-fp32 (F1 guard: standin)" in tiny_run["table"]
    # The ceilings: one run at the start and one at the end, the best of the two per kernel.
    runs = report["matmul"]["runs"]
    assert [r["when"] for r in runs] == ["start", "end"] and all(r["n"] == 256 for r in runs)
    for prec, kernels in report["matmul"]["gflops"].items():
        for kernel, g in kernels.items():
            assert g == max(r["gflops"][prec].get(kernel, 0.0) for r in runs)
        if kernels:
            assert report["matmul"]["ceiling"][prec] == max(kernels.values())


@pytest.mark.parametrize("name", PEERS)
def test_each_installed_peer_answers_every_question(tiny_run, name):
    system = by_name()[name]
    need = missing(system)
    if need:
        pytest.skip(f"{name} needs {need}: the peers venv of benchmarks/requirements-peers.txt has it")
    row = next(r for r in tiny_run["report"]["models"]["standin"]["rows"] if r["system"] == name)
    assert "unavailable" not in row, row
    assert row["questions"] == QUESTIONS and row["sequences"] >= QUESTIONS and row["info"]


def test_a_worker_in_its_own_process_answers_as_in_this_one(tiny_run, tmp_path):
    # The entry file, the package and the worker as the driver starts them for a real run.
    work = tiny_run["work"]
    out = tmp_path / "fresh.json"
    args = ["--worker", "spanqa cpu-fp32", "--spec", str(work / "standin-spec.json"), "--out", str(out), "--threads", "1"]
    code, tail = peers.run_worker(sys.executable, args, tmp_path / "log", 300, 1)
    assert code == 0, tail
    fresh, here = json.loads(out.read_text()), json.loads((work / "standin-spanqa-cpu-fp32.json").read_text())
    assert fresh["predictions"] == here["predictions"] and len(fresh["predictions"]) == QUESTIONS
    assert fresh["median"]["calls"] == here["median"]["calls"]
