"""#20: a model package runs as it is, in every front end, without repeating its target; naming
another target with a package is a one-line error naming both."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from spanqa.cli import main
from squad_files import tiny_squad_json

CONTEXT = "The Normans gave their name to Normandy, a region in France."


def _native_bf16() -> bool:
    from spanqa.runtimes.openvino import cpu_capabilities

    try:
        return "BF16" in cpu_capabilities()
    except Exception:
        return False


@pytest.fixture(scope="module", params=["cpu-int8", "cpu-bf16"])
def package(request, tiny_package, tmp_path_factory):
    """The tiny model compiled for a reduced-precision OpenVINO target (unguarded: speed of the test)."""
    if request.param == "cpu-bf16" and not _native_bf16():
        pytest.skip("cpu-bf16 needs a CPU with native bf16 (AVX512-BF16 or AMX); this one has none")
    root = tmp_path_factory.mktemp(request.param)
    data = tiny_squad_json(root / "tiny.json")
    out = root / "pkg"
    r = CliRunner().invoke(
        main,
        ["compile", str(tiny_package / "exported.onnx"), "-o", str(out), "--target", request.param, "--no-guard"]
        + (["--calibration", str(data)] if request.param == "cpu-int8" else []),
    )
    assert r.exit_code == 0, r.output
    return request.param, out, data


def test_engine_load_runs_the_package_as_it_is(package):
    from spanqa.engine import Engine

    target, pkg, _ = package
    with Engine.load(pkg, threads=1) as engine:
        assert engine.package.target == target
        assert engine.runtime.name.startswith("openvino")
        assert engine.answer("Where is Normandy?", CONTEXT).text in CONTEXT


def test_run_ask_and_bench_without_target(package, tmp_path, monkeypatch):
    from spanqa.engine import Engine

    monkeypatch.setenv("SPANQA_HOME", str(tmp_path / "home"))
    target, pkg, data = package
    r = CliRunner().invoke(main, ["run", str(data), "--model", str(pkg), "-o", str(tmp_path / "r")])
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["target"] == target and summary["runtime"]["name"].startswith("openvino")

    r = CliRunner().invoke(main, ["ask", "--model", str(pkg), "--context", CONTEXT, "Where is Normandy?"])
    assert r.exit_code == 0, r.output
    with Engine.load(pkg, threads=1) as engine:
        expected = engine.answer("Where is Normandy?", CONTEXT).text
    assert r.stdout.splitlines()[1].startswith(f"  -> {expected}  (p=")

    r = CliRunner().invoke(
        main, ["bench", "--model", str(pkg), "--dataset", str(data), "--batch-sizes", "4", "--repeat", "1", "--json"]
    )
    assert r.exit_code == 0, r.output
    bench = json.loads(r.stdout)
    assert [m["target"] for m in bench["models"]] == [target]


def test_another_target_with_a_package_is_one_line(package, tmp_path, monkeypatch):
    from spanqa.engine import Engine
    from spanqa.errors import UsageError

    monkeypatch.setenv("SPANQA_HOME", str(tmp_path / "home"))
    target, pkg, data = package
    r = CliRunner().invoke(main, ["run", str(data), "--model", str(pkg), "--target", "cpu-fp32", "-o", str(tmp_path / "r")])
    assert r.exit_code == 2
    assert r.output == (
        f"Error: --target cpu-fp32: {pkg} is a {target} model package, which runs as it is; drop --target "
        f"(or pass --target {target}), or for cpu-fp32 pass the checkpoint or its exported .onnx\n"  # compiled: none kept
    )
    assert not (tmp_path / "r").exists()
    with pytest.raises(UsageError, match=f"is a {target} model package, which runs as it is"):
        Engine.load(pkg, "cpu-fp32")
    r = CliRunner().invoke(main, ["run", str(data), "--model", str(pkg), "--target", target, "-o", str(tmp_path / "r2")])
    assert r.exit_code == 0, r.output  # repeating its own target is fine
