"""OpenVINO behind spanqa's runtime protocol, and the builders of the OpenVINO targets.

Measured on this project's 2-core AVX-512 CPU (random SpanBERT-base, batch 8, length 160): the
OpenVINO CPU plugin runs real bf16 (AVX512-BF16) at about twice ONNX Runtime's fp32 speed, and a
static int8 model quantised by NNCF on real SQuAD features faster still; both sit behind the same
protocol as ONNX Runtime.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spanqa.errors import CompileError, InferenceError, missing_backend
from spanqa.package import INPUT_NAMES, OUTPUT_NAMES, ModelPackage

MODEL_XML = "model.xml"


def _openvino():
    try:
        import openvino as ov
    except ImportError:
        raise missing_backend("openvino", "openvino") from None
    return ov


def cpu_capabilities() -> list[str]:
    ov = _openvino()
    return list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


class OpenVinoRuntime:
    """An OpenVINO CPU compiled model; precision from the manifest's ``inference_precision``."""

    def __init__(self, package: ModelPackage, threads: int | None = None, device: str = "cpu"):
        ov = _openvino()
        if device != "cpu":
            raise InferenceError(f"{package.root}: OpenVINO targets run on the CPU; drop --device {device}")
        core = ov.Core()
        try:
            model = core.read_model(str(package.model_path))
        except Exception as exc:
            raise InferenceError(f"{package.model_path}: OpenVINO cannot read it ({str(exc).splitlines()[0]})") from None
        config = {
            "INFERENCE_PRECISION_HINT": package.manifest.get("inference_precision", "f32"),
            "PERFORMANCE_HINT": "LATENCY",
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        shape = self.compiled.input("input_ids").get_partial_shape()
        self.batch_size = shape[0].get_length() if shape[0].is_static else None
        self.seq_len = shape[1].get_length() if shape[1].is_static else None
        self.name = "openvino-cpu"
        self._outputs = [self.compiled.output(name) for name in OUTPUT_NAMES]

    def info(self) -> dict:
        ov = _openvino()
        return {
            "name": self.name,
            "backend": "openvino",
            "version": ov.get_version(),
            "inference_precision": self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
            "threads": int(self.compiled.get_property("INFERENCE_NUM_THREADS")),
        }

    def run(self, input_ids, token_type_ids, attention_mask):
        result = self.request.infer(
            {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask},
            share_inputs=True,
        )
        # The request reuses its output buffers on the next call: copy.
        return np.array(result[self._outputs[0]]), np.array(result[self._outputs[1]])


def read_and_shape(source: Path, batch_size: int | None, seq_len: int | None):
    ov = _openvino()
    model = ov.Core().read_model(str(source))
    if batch_size is not None or seq_len is not None:
        dims = [batch_size if batch_size is not None else -1, seq_len if seq_len is not None else -1]
        model.reshape({name: ov.PartialShape(dims) for name in INPUT_NAMES})
    return model


def save(model, out_dir: Path) -> None:
    ov = _openvino()
    # Keep fp32 weights on disk: the precision is chosen at load time by the inference hint.
    ov.save_model(model, str(out_dir / MODEL_XML), compress_to_fp16=False)


def quantize_int8(model, calibration: list[dict[str, np.ndarray]], subset_size: int):
    """Static post-training int8 quantisation with NNCF, calibrated on real inputs."""
    try:
        import nncf
    except ImportError:
        raise missing_backend("nncf", "openvino") from None
    if not calibration:
        raise CompileError("int8 calibration needs at least one feature")
    import logging

    nncf_logger = logging.getLogger("nncf")
    level = nncf_logger.level
    nncf_logger.setLevel(logging.ERROR)
    try:
        return nncf.quantize(
            model,
            nncf.Dataset(calibration),
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=min(subset_size, len(calibration)),
        )
    finally:
        nncf_logger.setLevel(level)


def _register() -> None:
    from spanqa.runtime import register_runtime

    @register_runtime("openvino")
    def _load(package: ModelPackage, options) -> OpenVinoRuntime:
        return OpenVinoRuntime(package, options.threads, options.device)


_register()
