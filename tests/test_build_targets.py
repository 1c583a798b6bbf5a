"""Reduced-precision and GPU targets, and the accuracy guard."""

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from spanqa.build.compile import Target, _build_cpu_fp32, compile_model
from spanqa.cli import main
from spanqa.registry import TARGETS
from spanqa.runtimes import open_runtime
from spanqa.settings import CompileSettings

GUARD_Q = "150"


@pytest.fixture(scope="module")
def guard_set(heldout_json, tmp_path_factory):
    from test_pipeline import subset

    return subset(heldout_json, tmp_path_factory.mktemp("guard") / "heldout-400.json", 400)


@pytest.mark.parametrize("target", ["cpu-int8", "cpu-bf16"])
def test_reduced_precision_passes_guard(target, standin_package, guard_set, tmp_path):
    out = tmp_path / target
    result = CliRunner().invoke(
        main,
        [
            "compile",
            str(standin_package / "exported.onnx"),
            "-o",
            str(out),
            "--target",
            target,
            "--guard",
            str(guard_set),
            "--guard-questions",
            GUARD_Q,
            "--calibration-size",
            "64",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    guard = manifest["guard"]
    assert guard["questions"] == int(GUARD_Q)
    assert guard["passed"] and guard["ratio"] >= 0.995
    assert guard["f1"] > 40 and guard["reference_f1"] > 40  # a real model on real questions
    assert "accuracy guard: F1" in result.output
    assert manifest["precision"] == TARGETS[target].precision
    runtime = open_runtime(out)
    ids = np.full((2, 24), 1037, dtype=np.int64)
    start, end = runtime.run(ids, np.zeros_like(ids), np.ones_like(ids))
    assert start.shape == (2, 24) and start.dtype == np.float32
    if target == "cpu-int8":
        assert manifest["calibration"]["features"] == 64
        model_xml = (out / "model.xml").read_text()
        assert "FakeQuantize" in model_xml or "FakeConvert" in model_xml
    if target == "cpu-bf16":
        assert manifest["inference_precision"] == "bf16"


def test_ort_dynamic_int8_builds(standin_package, tmp_path):
    """cpu-int8-ort is borderline on the guard (98.5-100.5% of fp32 F1 depending on the questions
    and batch shapes: its activation scales are per batch), so only its build is checked here."""
    manifest = compile_model(standin_package / "exported.onnx", tmp_path / "q", CompileSettings(target="cpu-int8-ort"))
    assert manifest["precision"] == "int8" and manifest["fusions"]["Attention"] == 6
    ops = {n.op_type for n in onnx.load(str(tmp_path / "q" / "model.onnx")).graph.node}
    assert {"MatMulInteger", "DynamicQuantizeLinear"} & ops
    ids = np.full((2, 24), 1037, dtype=np.int64)
    start, end = open_runtime(tmp_path / "q").run(ids, np.zeros_like(ids), np.ones_like(ids))
    assert start.shape == end.shape == (2, 24)


def _build_broken(ctx):
    """fp32, then the QA head's weights scrambled: the model still runs, its answers are noise."""
    _build_cpu_fp32(ctx)
    path = ctx.out_dir / "model.onnx"
    model = onnx.load(str(path))
    hidden = ctx.model_info["hidden_size"]
    for init in model.graph.initializer:
        if list(init.dims) == [hidden, 2]:
            rng = np.random.default_rng(0)
            init.CopyFrom(numpy_helper.from_array(rng.normal(size=(hidden, 2)).astype(np.float32), init.name))
    onnx.save(model, str(path))


def test_guard_refuses_broken_model(standin_package, guard_set, tmp_path, monkeypatch):
    monkeypatch.setitem(
        TARGETS, "cpu-broken", Target("cpu-broken", "int8", "onnxruntime", "deliberately broken", _build_broken, None)
    )
    out = tmp_path / "broken"
    result = CliRunner().invoke(
        main,
        [
            "compile",
            str(standin_package / "exported.onnx"),
            "-o",
            str(out),
            "--target",
            "cpu-broken",
            "--guard",
            str(guard_set),
            "--guard-questions",
            "100",
        ],
    )
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Error: accuracy guard: F1 ")
    assert "of the fp32 model's" in lines[0] and "(needs >= 99.5%); model not written" in lines[0]
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_int8_needs_real_calibration(tiny_package, tmp_path):
    result = CliRunner().invoke(
        main, ["compile", str(tiny_package / "exported.onnx"), "-o", str(tmp_path / "q"), "--target", "cpu-int8"]
    )
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: --target cpu-int8 is calibrated on real SQuAD features: pass --calibration DATASET.json "
        "(or --guard DATASET.json, which is then used for both)"
    )
    assert not (tmp_path / "q").exists()


def test_openvino_fixed_shape(tiny_package, tmp_path):
    manifest = compile_model(
        tiny_package / "exported.onnx", tmp_path / "bf", CompileSettings(target="cpu-bf16", batch_size=2, seq_len=32)
    )
    runtime = open_runtime(tmp_path / "bf")
    assert (runtime.batch_size, runtime.seq_len) == (2, 32)
    assert manifest["verification"]["shapes"][0]["batch"] == 2


def _has_provider(name):
    import onnxruntime as ort

    return name in ort.get_available_providers()


@pytest.mark.gpu
@pytest.mark.parametrize("target,provider", [("gpu-fp16", "CUDAExecutionProvider"), ("gpu-trt", "TensorrtExecutionProvider")])
def test_gpu_targets(target, provider, standin_package, guard_set, tmp_path):
    if not _has_provider(provider):
        pytest.skip(f"onnxruntime has no {provider} here (no NVIDIA GPU / onnxruntime-gpu)")
    out = tmp_path / target
    manifest = compile_model(
        standin_package / "exported.onnx", out, CompileSettings(target=target, guard=str(guard_set), guard_questions=150)
    )
    assert manifest["guard"]["passed"]
    assert open_runtime(out).name in ("onnxruntime-cuda", "onnxruntime-tensorrt")


def test_gpu_target_without_gpu_is_one_line(tiny_package, tmp_path):
    if _has_provider("CUDAExecutionProvider"):
        pytest.skip("this machine has a CUDA provider")
    result = CliRunner().invoke(
        main, ["compile", str(tiny_package / "exported.onnx"), "-o", str(tmp_path / "g"), "--target", "gpu-fp16"]
    )
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: --target gpu-fp16 needs onnxruntime's CUDAExecutionProvider to build and verify the model, and this "
        "machine has none; run it where an NVIDIA GPU is, after pip install 'spanqa[gpu]'"
    )
