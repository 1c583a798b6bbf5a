"""Runtimes behind one small protocol: load a model, run a batch, get start/end logits.

A registry maps a runtime name to a loader. Compile targets name the runtime their model needs
in the manifest (``runtime``), so ``infer``/``run``/``bench`` never need to know about targets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from spanqa.errors import InferenceError, missing_backend
from spanqa.package import INPUT_NAMES, ModelPackage, open_package


@dataclass(frozen=True)
class RuntimeOptions:
    threads: int | None = None  # intra-op threads; None = the runtime's default (all cores)
    device: str = "cpu"  # "cpu" or "cuda"


class Runtime(Protocol):
    name: str  # e.g. "onnxruntime-cpu"
    batch_size: int | None  # fixed batch size, None if dynamic
    seq_len: int | None  # fixed sequence length, None if dynamic

    def run(
        self, input_ids: np.ndarray, token_type_ids: np.ndarray, attention_mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """int64 [B, L] inputs -> float32 [B, L] start and end logits."""
        ...


RuntimeLoader = Callable[[ModelPackage, RuntimeOptions], Runtime]
RUNTIMES: dict[str, RuntimeLoader] = {}
# Runtimes whose module (and heavy backend) is imported only when a model needs them.
LAZY_RUNTIMES = {"openvino": "spanqa.openvino_rt"}


def register_runtime(name: str) -> Callable[[RuntimeLoader], RuntimeLoader]:
    def deco(fn: RuntimeLoader) -> RuntimeLoader:
        RUNTIMES[name] = fn
        return fn

    return deco


class OrtRuntime:
    """ONNX Runtime session (CPU, CUDA or TensorRT execution provider)."""

    def __init__(self, package: ModelPackage, options: RuntimeOptions, providers: list | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise missing_backend("onnxruntime", "cpu") from None
        so = ort.SessionOptions()
        if options.threads:
            so.intra_op_num_threads = options.threads
            so.inter_op_num_threads = 1
        so.log_severity_level = 3
        if providers is None:
            providers = ["CPUExecutionProvider"]
            if options.device == "cuda":
                if "CUDAExecutionProvider" not in ort.get_available_providers():
                    raise InferenceError(
                        "--device cuda: onnxruntime has no CUDA provider here; install 'spanqa[gpu]' on a machine with an NVIDIA GPU"
                    )
                providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(package.model_path), so, providers=providers)
        except Exception as exc:
            raise InferenceError(f"{package.model_path}: onnxruntime cannot load it ({str(exc).splitlines()[0]})") from None
        names = [i.name for i in self.session.get_inputs()]
        missing = [n for n in INPUT_NAMES if n not in names]
        if missing:
            raise InferenceError(f"{package.model_path}: model lacks input(s) {', '.join(missing)}; export it with 'spanqa export'")
        shape = next(i.shape for i in self.session.get_inputs() if i.name == "input_ids")
        self.batch_size = shape[0] if isinstance(shape[0], int) else None
        self.seq_len = shape[1] if isinstance(shape[1], int) else None
        active = self.session.get_providers()[0]
        self.name = {
            "CUDAExecutionProvider": "onnxruntime-cuda",
            "TensorrtExecutionProvider": "onnxruntime-tensorrt",
        }.get(active, f"onnxruntime-{options.device}")
        self._output_names = [o.name for o in self.session.get_outputs()][:2]
        # On a GPU, IO binding copies inputs once and lets ORT allocate outputs where it likes.
        self._bind = active != "CPUExecutionProvider"

    def run(self, input_ids, token_type_ids, attention_mask):
        feeds = {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask}
        if self._bind:
            binding = self.session.io_binding()
            for name, value in feeds.items():
                binding.bind_cpu_input(name, value)
            for name in self._output_names:
                binding.bind_output(name)
            self.session.run_with_iobinding(binding)
            start, end = binding.copy_outputs_to_cpu()
            return start, end
        start, end = self.session.run(self._output_names, feeds)
        return start, end

    def info(self) -> dict:
        import onnxruntime as ort

        options = self.session.get_session_options()
        return {
            "name": self.name,
            "backend": "onnxruntime",
            "version": ort.__version__,
            "providers": self.session.get_providers(),
            "intra_op_threads": options.intra_op_num_threads or None,  # 0 = ORT's default
        }


@register_runtime("onnxruntime")
def _load_ort(package: ModelPackage, options: RuntimeOptions) -> Runtime:
    return OrtRuntime(package, options)


def _gpu_providers(package: ModelPackage, tensorrt: bool) -> list:
    try:
        import onnxruntime as ort
    except ImportError:
        raise missing_backend("onnxruntime-gpu", "gpu") from None
    wanted = "TensorrtExecutionProvider" if tensorrt else "CUDAExecutionProvider"
    if wanted not in ort.get_available_providers():
        raise InferenceError(
            f"{package.root}: a {package.target} model needs onnxruntime's {wanted}, which is not available here; "
            "run it on a machine with an NVIDIA GPU after pip install 'spanqa[gpu]'"
        )
    cuda = ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"})
    if not tensorrt:
        return [cuda, "CPUExecutionProvider"]
    trt = package.manifest.get("tensorrt", {})
    cache = package.root / "trt-cache"
    cache.mkdir(exist_ok=True)
    options = {
        "trt_fp16_enable": True,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache),
    }
    for key in ("trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes"):
        if key in trt:
            options[key] = trt[key]
    return [("TensorrtExecutionProvider", options), cuda, "CPUExecutionProvider"]


@register_runtime("onnxruntime-cuda")
def _load_ort_cuda(package: ModelPackage, options: RuntimeOptions) -> Runtime:
    return OrtRuntime(package, options, _gpu_providers(package, tensorrt=False))


@register_runtime("onnxruntime-tensorrt")
def _load_ort_trt(package: ModelPackage, options: RuntimeOptions) -> Runtime:
    return OrtRuntime(package, options, _gpu_providers(package, tensorrt=True))


def open_runtime(model: str | Path | ModelPackage, options: RuntimeOptions | None = None) -> Runtime:
    """Load a model package (or bare .onnx) into the runtime its manifest names."""
    package = model if isinstance(model, ModelPackage) else open_package(model)
    options = options or RuntimeOptions()
    runtime_name = package.manifest.get("runtime", "onnxruntime")
    if runtime_name not in RUNTIMES and runtime_name in LAZY_RUNTIMES:
        import importlib

        importlib.import_module(LAZY_RUNTIMES[runtime_name])  # registers itself
    loader = RUNTIMES.get(runtime_name)
    if loader is None:
        raise InferenceError(
            f"{package.root}: runtime '{runtime_name}' is unknown to this spanqa; known: {', '.join(sorted(RUNTIMES))}"
        )
    return loader(package, options)


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def runtime_info(runtime: Runtime) -> dict:
    """What a loaded runtime is, for logs and summaries: at least ``name``; more where it says.

    ``info()`` is optional in the protocol, so runtimes that lack it still work.
    """
    info = {"name": runtime.name}
    describe = getattr(runtime, "info", None)
    if callable(describe):
        info.update(describe())
    return info
