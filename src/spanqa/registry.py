"""The one registry of compile targets and runtimes: names to lazily imported code.

Entries are data (the module and attribute that implement them), so listing targets, checking
a name or printing help imports no backend; ``load`` imports the implementation when a model is
actually built or run. A target names the runtime that runs its model; a model package records
that runtime, so running a package never needs to know about targets.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from spanqa.errors import UsageError


@dataclass(frozen=True)
class RuntimeEntry:
    name: str
    loader: str  # "module:function" taking (ModelPackage, RuntimeOptions)
    extra: str  # the pip extra that provides its backend
    device: str = "cpu"


@dataclass(frozen=True)
class TargetEntry:
    name: str
    precision: str
    runtime: str  # a RUNTIMES key
    description: str
    builder: str  # "module:function" taking a BuildContext
    tolerance: float | None  # max |logit diff| vs the fp32 source; None: judged by the accuracy guard
    extra: str = "cpu"
    provider: str | None = None  # an ONNX Runtime execution provider the target cannot do without
    cpu_flag: str | None = None  # a CPU capability the precision needs to run natively (OpenVINO's name)

    @property
    def guarded(self) -> bool:
        """Reduced precision: no logit tolerance, so only the accuracy guard can vouch for it."""
        return self.tolerance is None


RUNTIMES: dict[str, RuntimeEntry] = {
    e.name: e
    for e in (
        RuntimeEntry("onnxruntime", "spanqa.runtimes.ort:load_cpu", "cpu"),
        RuntimeEntry("onnxruntime-cuda", "spanqa.runtimes.gpu:load_cuda", "gpu", "cuda"),
        RuntimeEntry("onnxruntime-tensorrt", "spanqa.runtimes.gpu:load_tensorrt", "gpu", "cuda"),
        RuntimeEntry("openvino", "spanqa.runtimes.openvino:load", "openvino"),
    )
}

_BUILDERS = "spanqa.targets.builders"
TARGETS: dict[str, TargetEntry] = {
    e.name: e
    for e in (
        TargetEntry(
            "cpu-fp32",
            "fp32",
            "onnxruntime",
            "ONNX Runtime CPU, fp32, fused attention/LayerNorm/GELU",
            f"{_BUILDERS}:build_cpu_fp32",
            tolerance=1e-3,
        ),
        TargetEntry(
            "cpu-int8",
            "int8",
            "openvino",
            "OpenVINO CPU, static int8 (NNCF, calibrated on SQuAD features), VNNI",
            f"{_BUILDERS}:build_openvino_int8",
            tolerance=None,
            extra="openvino",
            cpu_flag="INT8",
        ),
        TargetEntry(
            "cpu-bf16",
            "bf16",
            "openvino",
            "OpenVINO CPU, bf16 compute (AVX512-BF16/AMX)",
            f"{_BUILDERS}:build_openvino_bf16",
            tolerance=None,
            extra="openvino",
            cpu_flag="BF16",
        ),
        TargetEntry(
            "cpu-int8-ort",
            "int8",
            "onnxruntime",
            "ONNX Runtime CPU, dynamic int8 (portable)",
            f"{_BUILDERS}:build_ort_int8",
            tolerance=None,
        ),
        TargetEntry(
            "gpu-fp16",
            "fp16",
            "onnxruntime-cuda",
            "ONNX Runtime CUDA, fp16 with fused attention",
            f"{_BUILDERS}:build_gpu_fp16",
            tolerance=None,
            extra="gpu",
            provider="CUDAExecutionProvider",
        ),
        TargetEntry(
            "gpu-trt",
            "fp16",
            "onnxruntime-tensorrt",
            "ONNX Runtime TensorRT provider, fp16 engines cached in spanqa's cache",
            f"{_BUILDERS}:build_gpu_trt",
            tolerance=None,
            extra="gpu",
            provider="TensorrtExecutionProvider",
        ),
    )
}


def get_target(name: str) -> TargetEntry:
    try:
        return TARGETS[name]
    except KeyError:
        raise UsageError(f"unknown target '{name}'; choose one of: {', '.join(sorted(TARGETS))}") from None


def get_runtime(name: str, where: str = "model") -> RuntimeEntry:
    try:
        return RUNTIMES[name]
    except KeyError:
        raise UsageError(f"{where}: runtime '{name}' is unknown to this spanqa; known: {', '.join(sorted(RUNTIMES))}") from None


def load(ref: str) -> Any:
    """The object a "module:attribute" reference names (imported now)."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)
