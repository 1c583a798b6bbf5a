"""Runtimes behind one small adapter protocol: load a model package, run a batch, get logits.

The manifest of a package names its runtime (``runtime``); ``open_runtime`` looks it up in the
registry (``spanqa.registry.RUNTIMES``) and imports its module only then, so a machine without
OpenVINO or a GPU never imports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from spanqa.models.package import ModelPackage, open_package


@dataclass(frozen=True)
class RuntimeOptions:
    threads: int | None = None  # intra-op threads; None = the runtime's default
    device: str = "cpu"  # "cpu" or "cuda"
    pin_threads: bool | None = None  # OpenVINO's CPU pinning; None = its default (on)
    # Many batches in flight (OpenVINO's THROUGHPUT hint: several streams, each with a share of
    # the threads) instead of one batch on all threads: more rows/s over a dataset, longer
    # latency for a single batch. For whole-dataset jobs, not for one question at a time.
    throughput: bool = False


class Runtime(Protocol):
    name: str  # e.g. "onnxruntime-cpu"
    batch_size: int | None  # fixed batch size, None if dynamic
    seq_len: int | None  # fixed sequence length, None if dynamic
    # Optional: ``parallel`` > 1 means ``run`` may be called from that many threads at once
    # (each call gets its own infer request); absent or 1 means one call at a time.

    def run(self, input_ids: np.ndarray, token_type_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """int64 [B, L] inputs -> float32 [B, L] start and end logits."""
        ...

    def info(self) -> dict:
        """What runs: backend, version, device, threads (for logs and summaries)."""
        ...

    def close(self) -> None:
        """Free the session (idempotent)."""
        ...


def open_runtime(model: str | Path | ModelPackage, options: RuntimeOptions | None = None) -> Runtime:
    """Load a model package (or bare .onnx) into the runtime its manifest names."""
    from spanqa import registry

    package = model if isinstance(model, ModelPackage) else open_package(model)
    options = options or RuntimeOptions()
    name = package.runtime
    if options.device == "cuda" and name == CPU_ONNXRUNTIME:  # an fp32 ONNX package on the GPU (infer --device cuda)
        name = CUDA_ONNXRUNTIME
    entry = registry.get_runtime(name, where=str(package.root))
    return registry.load(entry.loader)(package, options)


CPU_ONNXRUNTIME, CUDA_ONNXRUNTIME = "onnxruntime", "onnxruntime-cuda"  # registry.RUNTIMES names


def runtime_info(runtime: Runtime) -> dict:
    """What a loaded runtime is: at least ``name``, more where its ``info()`` says."""
    info = {"name": runtime.name}
    describe = getattr(runtime, "info", None)
    if callable(describe):
        info.update(describe())
    return info
