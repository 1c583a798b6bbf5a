"""Builders of the OpenVINO targets: read and reshape, NNCF int8 quantisation, save."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spanqa.errors import CompileError, missing_backend
from spanqa.models.package import INPUT_NAMES
from spanqa.runtimes.openvino import MODEL_XML, openvino


def read_and_shape(source: Path, batch_size: int | None, seq_len: int | None):
    ov = openvino()
    model = ov.Core().read_model(str(source))
    if batch_size is not None or seq_len is not None:
        dims = [batch_size if batch_size is not None else -1, seq_len if seq_len is not None else -1]
        model.reshape({name: ov.PartialShape(dims) for name in INPUT_NAMES})
    return model


def save(model, out_dir: Path) -> None:
    ov = openvino()
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
