"""ONNX Runtime's CUDA and TensorRT execution providers.

ONNX Runtime falls back to the CPU, silently, when a GPU provider cannot start (a missing CUDA
or TensorRT library): after creating the session we check that the provider asked for is the one
that runs, and fail naming it otherwise. TensorRT engines are cached in spanqa's cache, keyed by
the model file's hash, never inside the package (which may be read-only or shared).
"""

from __future__ import annotations

from spanqa.errors import InferenceError
from spanqa.models.package import ModelPackage
from spanqa.runtimes.ort import OrtRuntime, onnxruntime

CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
_LIBRARIES = {CUDA: "the CUDA 12 runtime and cuDNN 9", TENSORRT: "TensorRT 10 (libnvinfer)"}


def _require(package: ModelPackage, provider: str) -> None:
    ort = onnxruntime("gpu")
    if provider not in ort.get_available_providers():
        raise InferenceError(
            f"{package.root}: a {package.target} model needs onnxruntime's {provider}, which this onnxruntime lacks; "
            "run it on a machine with an NVIDIA GPU after pip install 'spanqa[gpu]'"
        )


def _started(runtime: OrtRuntime, package: ModelPackage, provider: str) -> OrtRuntime:
    if runtime.provider != provider:
        raise InferenceError(
            f"{package.root}: onnxruntime's {provider} did not start (the session runs on {runtime.provider}); "
            f"check that {_LIBRARIES[provider]} and an NVIDIA driver are installed and visible (LD_LIBRARY_PATH)"
        )
    return runtime


def load_cuda(package: ModelPackage, options) -> OrtRuntime:
    _require(package, CUDA)
    cuda = (CUDA, {"cudnn_conv_algo_search": "HEURISTIC"})
    return _started(OrtRuntime(package, options, [cuda, "CPUExecutionProvider"], extra="gpu"), package, CUDA)


def trt_cache_dir(package: ModelPackage):
    """Where this package's TensorRT engines live: spanqa's cache, keyed by the model's hash."""
    from spanqa.fileutil import sha256_file
    from spanqa.paths import cache_home

    path = cache_home() / "tensorrt" / sha256_file(package.model_path)[:16]
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_tensorrt(package: ModelPackage, options) -> OrtRuntime:
    _require(package, TENSORRT)
    cache = str(trt_cache_dir(package))
    trt_options = {
        "trt_fp16_enable": True,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": cache,
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": cache,
    }
    trt_options.update({k: v for k, v in (package.manifest.tensorrt or {}).items() if k.startswith("trt_profile_")})
    providers = [(TENSORRT, trt_options), (CUDA, {"cudnn_conv_algo_search": "HEURISTIC"}), "CPUExecutionProvider"]
    return _started(OrtRuntime(package, options, providers, extra="gpu"), package, TENSORRT)
