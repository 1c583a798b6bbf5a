"""Reduced-precision and GPU targets (spanqa.targets.builders via spanqa.registry), the accuracy
guard (spanqa.engine.guard) that every one of them needs, and which targets suit this CPU."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from spanqa.cli import main
from spanqa.engine.guard import Guard
from spanqa.registry import TARGETS, TargetEntry
from spanqa.runtimes import open_runtime
from spanqa.settings import CompileSettings, GuardSettings
from spanqa.targets.compile import compile_model
from spanqa.targets.suitability import auto_target, suitability
from squad_files import subset

GUARD_Q = "200"  # GuardSettings.min_questions: fewer make the decision noise


STREAMS_CHECK = """
import sys, numpy as np
from spanqa.errors import InferenceError
from spanqa.runtimes import RuntimeOptions, open_runtime
streams = open_runtime(sys.argv[1], RuntimeOptions(threads=2, throughput=True))
assert streams.parallel == streams.info()["streams"] >= 1
ids = np.full((2, 24), 1037, dtype=np.int64)
start, _ = streams.run(ids, np.zeros_like(ids), np.ones_like(ids))
np.testing.assert_allclose(start, np.load(sys.argv[2]), atol=0.05)
hint = streams.info()["performance_hint"]
streams.close()
try:
    streams.run(ids, np.zeros_like(ids), np.ones_like(ids))
except InferenceError as exc:
    print(hint, "closed" if "closed" in str(exc) else exc)
"""


@pytest.fixture(scope="module")
def guard_set(heldout_json, tmp_path_factory):
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
        # What is not int8 runs in bf16 where the CPU has it (the guard measured exactly that).
        native_bf16 = "BF16" in manifest["cpu_capabilities"]
        assert manifest["inference_precision"] == ("bf16" if native_bf16 else "f32")
        assert runtime.info()["inference_precision"] == ("bf16" if native_bf16 else "f32")
        assert runtime.info()["performance_hint"] == "LATENCY"
        # Whole-dataset mode: a request per stream, the same logits as one batch on all threads.
        # In a child process: OpenVINO's stream threads outlive the model, and a later test that
        # sends this process SIGTERM crashed with them alive.
        np.save(tmp_path / "start.npy", start)
        child = subprocess.run(
            [sys.executable, "-c", STREAMS_CHECK, str(out), str(tmp_path / "start.npy")], capture_output=True, text=True
        )
        assert child.returncode == 0, child.stderr
        assert child.stdout.strip() == "THROUGHPUT closed"
    if target == "cpu-bf16":
        assert manifest["inference_precision"] == "bf16"


def test_ort_dynamic_int8_builds(standin_package, tmp_path):
    """cpu-int8-ort is borderline on the guard (98.5-100.5% of fp32 F1 depending on the questions
    and batch shapes: its activation scales are per batch), so only its build is checked here."""
    manifest = compile_model(
        standin_package / "exported.onnx", tmp_path / "q", CompileSettings(target="cpu-int8-ort", unguarded=True)
    )
    assert manifest.precision == "int8" and manifest.fusions["Attention"] == 6
    assert manifest.quantization == "ONNX Runtime dynamic int8 (QInt8 weights, per-channel)"
    ops = {n.op_type for n in onnx.load(str(tmp_path / "q" / "model.onnx")).graph.node}
    assert {"MatMulInteger", "DynamicQuantizeLinear"} & ops
    ids = np.full((2, 24), 1037, dtype=np.int64)
    start, end = open_runtime(tmp_path / "q").run(ids, np.zeros_like(ids), np.ones_like(ids))
    assert start.shape == end.shape == (2, 24)


def test_guard_refuses_broken_model(standin_package, guard_set, tmp_path, monkeypatch):
    monkeypatch.setitem(
        TARGETS,
        "cpu-broken",
        TargetEntry("cpu-broken", "int8", "onnxruntime", "deliberately broken", "models:build_broken", tolerance=None),
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
            GUARD_Q,
        ],
    )
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Error: accuracy guard: F1 ")
    assert "of the fp32 model's" in lines[0] and "(needs >= 99.5%); model not written" in lines[0]
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_reduced_precision_needs_the_guard_or_no_guard(tiny_package, tmp_path):
    for target in ("cpu-int8", "cpu-bf16", "cpu-int8-ort", "gpu-fp16", "gpu-trt"):
        result = CliRunner().invoke(
            main, ["compile", str(tiny_package / "exported.onnx"), "-o", str(tmp_path / "q"), "--target", target]
        )
        assert result.exit_code == 2, (target, result.output)
        assert result.output == (
            f"Error: --target {target} is reduced precision: pass --guard DATASET.json (its F1 must stay within "
            "0.5% of fp32's) or --no-guard to build it unmeasured\n"
        )
    both = ["--guard", str(tiny_package / "manifest.json"), "--no-guard"]
    result = CliRunner().invoke(main, ["compile", str(tiny_package / "exported.onnx"), "-o", str(tmp_path / "q"), *both])
    assert result.exit_code == 2 and result.output.endswith("Error: give either --guard or --no-guard, not both\n")
    assert not (tmp_path / "q").exists()


def test_guard_needs_enough_questions(tiny_package, guard_set, tmp_path):
    small = subset(guard_set, tmp_path / "sixty.json", 60)
    cases = [(["--guard", str(small)], "60", small), (["--guard", str(guard_set), "--guard-questions", "150"], "150", guard_set)]
    for options, count, dataset in cases:
        result = CliRunner().invoke(
            main,
            ["compile", str(tiny_package / "exported.onnx"), "-o", str(tmp_path / "b"), "--target", "cpu-int8-ort", *options],
        )
        assert result.exit_code == 2, result.output
        assert result.output == (
            f"Error: --guard {dataset}: {count} questions are too few for a guard decision (at least 200: below that "
            "one answer moves F1 by more than the 0.5% margin); pass a larger set (--guard FILE.json, up to --guard-questions of it), or --no-guard to build the model unmeasured\n"
        )
        assert not (tmp_path / "b").exists()


def test_int8_needs_real_calibration(tiny_package, tmp_path):
    result = CliRunner().invoke(
        main, ["compile", str(tiny_package / "exported.onnx"), "-o", str(tmp_path / "q"), "--target", "cpu-int8", "--no-guard"]
    )
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: --target cpu-int8 is calibrated on real SQuAD features: pass --calibration DATASET.json "
        "(or --guard DATASET.json, which is then used for both)"
    )
    assert not (tmp_path / "q").exists()


def test_bf16_refuses_a_cpu_without_bf16(tiny_package, tmp_path, monkeypatch):
    import spanqa.runtimes.openvino

    monkeypatch.setattr(spanqa.runtimes.openvino, "cpu_capabilities", lambda: ["FP32", "INT8"])
    result = CliRunner().invoke(
        main, ["compile", str(tiny_package / "exported.onnx"), "-o", str(tmp_path / "b"), "--target", "cpu-bf16", "--no-guard"]
    )
    assert result.exit_code == 1
    assert result.output == (
        "Error: --target cpu-bf16: this CPU has no native bf16 (AVX512-BF16 or AMX), so the model would run fp32; "
        "use cpu-fp32 or cpu-int8 here ('spanqa targets' shows what suits this CPU)\n"
    )
    assert not (tmp_path / "b").exists()


def test_openvino_fixed_shape_unguarded(tiny_package, tmp_path):
    manifest = compile_model(
        tiny_package / "exported.onnx",
        tmp_path / "bf",
        CompileSettings(target="cpu-bf16", batch_size=2, seq_len=96, unguarded=True),
    )
    runtime = open_runtime(tmp_path / "bf")
    assert (runtime.batch_size, runtime.seq_len) == (2, 96)
    assert manifest.verification["shapes"][0]["batch"] == 2
    assert manifest.guard == {"unguarded": True, "passed": False, "reason": "--no-guard"} and not manifest.guarded
    assert manifest.inference_precision == "bf16" and "BF16" in manifest.cpu_capabilities


def _has_provider(name):
    import onnxruntime as ort

    return name in ort.get_available_providers()


@pytest.mark.gpu
@pytest.mark.parametrize("target,provider", [("gpu-fp16", "CUDAExecutionProvider"), ("gpu-trt", "TensorrtExecutionProvider")])
def test_gpu_targets(target, provider, standin_package, guard_set, tmp_path):
    if not _has_provider(provider):
        pytest.skip(f"onnxruntime has no {provider} here (no NVIDIA GPU / onnxruntime-gpu)")
    out = tmp_path / target
    guard = Guard(GuardSettings(dataset=str(guard_set), questions=int(GUARD_Q)))
    settings = CompileSettings(target=target, guard=str(guard_set), guard_questions=int(GUARD_Q))
    manifest = compile_model(standin_package / "exported.onnx", out, settings, guard=guard)
    assert manifest.guard["passed"] and manifest.guarded
    assert open_runtime(out).name in ("onnxruntime-cuda", "onnxruntime-tensorrt")


def test_gpu_target_without_gpu_is_one_line(tiny_package, tmp_path):
    if _has_provider("CUDAExecutionProvider"):
        pytest.skip("this machine has a CUDA provider")
    result = CliRunner().invoke(
        main, ["compile", str(tiny_package / "exported.onnx"), "-o", str(tmp_path / "g"), "--target", "gpu-fp16", "--no-guard"]
    )
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: --target gpu-fp16 needs onnxruntime's CUDAExecutionProvider to build and verify the model, and this "
        "machine has none; run it where an NVIDIA GPU is, after pip install 'spanqa[gpu]'"
    )


def test_which_targets_suit_a_cpu():
    def status(flags):
        return {r.target.name: r.status for r in suitability(flags)}

    avx2 = status(["avx2", "fma"])
    assert (avx2["cpu-fp32"], avx2["cpu-bf16"], avx2["cpu-int8"], avx2["cpu-int8-ort"]) == (
        "ok",
        "no bf16",
        "slow here",
        "slow here",
    )
    vnni = status(["avx2", "avx512f", "avx512_vnni"])
    assert (vnni["cpu-int8"], vnni["cpu-bf16"]) == ("ok", "no bf16")
    assert status(["amx_bf16", "amx_int8"])["cpu-bf16"] == "ok"
    rows = suitability(["avx2"])
    assert [r.target.name for r in rows if r.best] == ["cpu-fp32"]
    assert auto_target({r.target.name: r for r in suitability(["avx512_vnni", "avx512_bf16"])}) == "cpu-int8"
    assert auto_target({r.target.name: r for r in suitability(["avx512_bf16"])}) == "cpu-bf16"


def test_targets_command_lists_every_target():
    result = CliRunner().invoke(main, ["targets"])
    assert result.exit_code == 0, result.output
    names = [line.split()[0] for line in result.output.splitlines() if not line.startswith("Fastest here")]
    assert names == sorted(TARGETS)
    assert result.output.splitlines()[-1] == f"Fastest here: {auto_target()} (spanqa run --target auto picks it)"
