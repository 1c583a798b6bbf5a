"""OpenVINO behind spanqa's runtime protocol (the OpenVINO targets are built in build/openvino.py).

Measured on this project's 2-core AVX-512 CPU (random SpanBERT-base, batch 8, length 160): the
OpenVINO CPU plugin runs real bf16 (AVX512-BF16) at about twice ONNX Runtime's fp32 speed, and a
static int8 model quantised by NNCF on real SQuAD features faster still; both sit behind the same
protocol as ONNX Runtime.
"""

from __future__ import annotations

import queue

import numpy as np

from spanqa.errors import InferenceError, missing_backend
from spanqa.models.package import OUTPUT_NAMES, ModelPackage

MODEL_XML = "model.xml"


def openvino():
    try:
        import openvino as ov
    except ImportError:
        raise missing_backend("openvino", "openvino") from None
    return ov


def cpu_capabilities() -> list[str]:
    ov = openvino()
    return list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


class OpenVinoRuntime:
    """An OpenVINO CPU compiled model; precision from the manifest's ``inference_precision``."""

    def __init__(
        self,
        package: ModelPackage,
        threads: int | None = None,
        device: str = "cpu",
        pin_threads: bool | None = None,
        throughput: bool = False,
    ):
        ov = openvino()
        if device != "cpu":
            raise InferenceError(f"{package.root}: OpenVINO targets run on the CPU; drop --device {device}")
        core = ov.Core()
        try:
            model = core.read_model(str(package.model_path))
        except Exception as exc:
            raise InferenceError(f"{package.model_path}: OpenVINO cannot read it ({str(exc).splitlines()[0]})") from None
        precision = package.manifest.inference_precision or "f32"
        if (
            precision == "bf16"
            and package.precision == "int8"
            and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        ):
            # An int8 package built on a bf16 CPU runs its non-int8 parts in fp32 elsewhere.
            precision = "f32"
        config = {
            "INFERENCE_PRECISION_HINT": precision,
            "PERFORMANCE_HINT": "THROUGHPUT" if throughput else "LATENCY",
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if pin_threads is not None:
            # Several processes on one machine (Ray actors, Serve replicas) would otherwise all
            # pin their threads to the same first cores.
            config["ENABLE_CPU_PINNING"] = bool(pin_threads)
        self.compiled = core.compile_model(model, "CPU", config)
        # One infer request per stream; ``run`` borrows one, so ``parallel`` threads may call it.
        self.parallel = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")) if throughput else 1
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(self.parallel):
            self._requests.put(self.compiled.create_infer_request())
        shape = self.compiled.input("input_ids").get_partial_shape()
        self.batch_size = shape[0].get_length() if shape[0].is_static else None
        self.seq_len = shape[1].get_length() if shape[1].is_static else None
        self.name = "openvino-cpu"
        self._outputs = [self.compiled.output(name) for name in OUTPUT_NAMES]

    def info(self) -> dict:
        ov = openvino()
        return {
            "name": self.name,
            "backend": "openvino",
            "version": ov.get_version(),
            "inference_precision": self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
            "threads": int(self.compiled.get_property("INFERENCE_NUM_THREADS")),
            "performance_hint": str(self.compiled.get_property("PERFORMANCE_HINT")),
            "streams": int(self.compiled.get_property("NUM_STREAMS")),
        }

    def run(self, input_ids, token_type_ids, attention_mask):
        if self.compiled is None:
            raise InferenceError("the OpenVINO model was closed")
        request = self._requests.get()
        try:
            result = request.infer(
                {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask},
                share_inputs=True,
            )
            # The request reuses its output buffers on the next call: copy.
            return np.array(result[self._outputs[0]]), np.array(result[self._outputs[1]])
        finally:
            self._requests.put(request)

    def close(self) -> None:
        self._requests = queue.SimpleQueue()
        self.compiled = None


def load(package: ModelPackage, options) -> OpenVinoRuntime:
    return OpenVinoRuntime(package, options.threads, options.device, options.pin_threads, options.throughput)
