"""How each target's model is built from the exported fp32 ONNX (named in ``spanqa.registry``).

Each builder takes a ``BuildContext``, writes the model into ``ctx.out_dir`` and fills
``ctx.manifest`` (at least ``model_file``); verification, the guard and the manifest are the
compiler's job.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spanqa.data.vocab import TokenizerSettings
from spanqa.errors import CompileError, missing_backend
from spanqa.models.package import INPUT_NAMES
from spanqa.settings import CompileSettings

# Fused operators worth reporting (ONNX Runtime's names).
FUSION_OPS = (
    "Attention",
    "MultiHeadAttention",
    "EmbedLayerNormalization",
    "SkipLayerNormalization",
    "LayerNormalization",
    "BiasGelu",
    "FastGelu",
    "Gelu",
)


@dataclass
class BuildContext:
    source: Path  # the exported (unfused, fp32) ONNX model
    out_dir: Path  # the package being built (a temp dir until it is complete)
    settings: CompileSettings
    model_info: dict  # num_layers, num_heads, hidden_size, vocab_size, max_positions
    tokenizer: TokenizerSettings
    manifest: dict = field(default_factory=dict)  # targets add their own keys


def _ort_optimizer():
    try:
        from onnxruntime.transformers import optimizer
    except ImportError:
        raise missing_backend("onnxruntime", "cpu") from None
    return optimizer


def fuse_bert(source: Path, model_info: dict, use_gpu: bool = False):
    """ONNX Runtime's transformer optimizer with BERT fusions (the GPU set with ``use_gpu``);
    returns (OnnxModel, counts)."""
    optimizer = _ort_optimizer()
    import logging

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    try:
        optimized = optimizer.optimize_model(
            str(source),
            model_type="bert",
            num_heads=int(model_info.get("num_heads", 0)),
            hidden_size=int(model_info.get("hidden_size", 0)),
            opt_level=0,  # graph fusions in Python only; the session applies its own at load
            use_gpu=use_gpu,
        )
    except Exception as exc:
        raise CompileError(f"{source}: ONNX Runtime's optimizer failed ({str(exc).splitlines()[0]})") from None
    stats = optimized.get_fused_operator_statistics()
    counts = {op: int(stats.get(op, 0)) for op in FUSION_OPS}
    return optimized, counts


def fix_shapes(model, batch_size: int | None, seq_len: int | None) -> None:
    """Pin the batch and/or sequence axis of every input and output (an onnx.ModelProto)."""
    if batch_size is None and seq_len is None:
        return
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) != 2:
            continue
        for dim, fixed in ((dims[0], batch_size), (dims[1], seq_len)):
            if fixed is not None:
                dim.ClearField("dim_param")
                dim.dim_value = fixed


def build_cpu_fp32(ctx: BuildContext) -> None:
    optimized, counts = fuse_bert(ctx.source, ctx.model_info)
    fix_shapes(optimized.model, ctx.settings.batch_size, ctx.settings.seq_len)
    optimized.save_model_to_file(str(ctx.out_dir / "model.onnx"))
    ctx.manifest["model_file"] = "model.onnx"
    ctx.manifest["fusions"] = counts
    layers = ctx.model_info.get("num_layers")
    if layers and counts["Attention"] != layers:
        ctx.manifest.setdefault("warnings", []).append(
            f"{counts['Attention']} fused Attention nodes for {layers} layers: attention runs unfused "
            "(slower, same results); export the checkpoint with 'spanqa export' for full fusion"
        )


def calibration_inputs(ctx: BuildContext) -> list[dict[str, np.ndarray]]:
    """Real SQuAD features (batch 1, cut to their length) spread evenly over the calibration set."""
    from spanqa.data.features import build_features
    from spanqa.data.squad import read_squad
    from spanqa.fileutil import sha256_file
    from spanqa.settings import FeatureSettings

    if not ctx.settings.calibration:
        raise CompileError(
            f"--target {ctx.settings.target} is calibrated on real SQuAD features: pass --calibration DATASET.json "
            "(or --guard DATASET.json, which is then used for both)"
        )
    examples = read_squad(ctx.settings.calibration)
    guard = ctx.settings.guard
    if guard and sha256_file(guard) == sha256_file(ctx.settings.calibration):
        # The guard scores the first questions: calibrate on the others, or it is no test.
        examples = examples[ctx.settings.guard_questions :]
        if not examples:
            raise CompileError(
                f"{ctx.settings.calibration}: too small to calibrate on questions the guard does not score "
                f"(the guard takes its first {ctx.settings.guard_questions}); pass --calibration OTHER.json "
                "or fewer --guard-questions"
            )
    seq = ctx.settings.seq_len or min(512, ctx.model_info.get("max_positions", 512))
    step = max(1, len(examples) // max(1, ctx.settings.calibration_size))
    features = build_features(
        examples[::step][: ctx.settings.calibration_size], ctx.tokenizer, FeatureSettings(max_seq_length=seq)
    )
    items = []
    for i in range(len(features)):
        real = seq if ctx.settings.seq_len else int(features.input_mask[i].sum())
        rows = ctx.settings.batch_size or 1
        item = {
            "input_ids": features.input_ids[i : i + 1, :real],
            "token_type_ids": features.segment_ids[i : i + 1, :real],
            "attention_mask": features.input_mask[i : i + 1, :real],
        }
        items.append({k: np.repeat(v, rows, axis=0) for k, v in item.items()})
    return items[: ctx.settings.calibration_size]


def _build_openvino(ctx: BuildContext, precision: str) -> None:
    from spanqa import progress
    from spanqa.runtimes.openvino import cpu_capabilities
    from spanqa.targets import openvino as openvino_rt

    model = openvino_rt.read_and_shape(ctx.source, ctx.settings.batch_size, ctx.settings.seq_len)
    ctx.manifest["inference_precision"] = "f32"
    if precision == "int8":
        calibration = calibration_inputs(ctx)
        import contextlib
        import os
        import sys

        # NNCF draws its own progress bars on stdout; keep stdout for results.
        sink = sys.stderr if progress.enabled() else open(os.devnull, "w")
        with contextlib.redirect_stdout(sink):
            model = openvino_rt.quantize_int8(model, calibration, ctx.settings.calibration_size)
        if sink is not sys.stderr:
            sink.close()
        ctx.manifest["calibration"] = {
            "dataset": str(ctx.settings.calibration),
            "features": len(calibration),
            "method": "NNCF post-training static quantisation (ModelType.TRANSFORMER)",
        }
        caps = cpu_capabilities()
        ctx.manifest["cpu_capabilities"] = caps
        if "BF16" in caps:
            # What stays outside the int8 kernels (softmax, LayerNorm, GELU, the residual adds)
            # runs in bf16 where the CPU has it natively: measured 5-10% faster on SpanBERT-base
            # (benchmarks/profile_int8.py); the guard measures this very configuration.
            ctx.manifest["inference_precision"] = "bf16"
    elif precision == "bf16":
        ctx.manifest["inference_precision"] = "bf16"
        caps = cpu_capabilities()
        ctx.manifest["cpu_capabilities"] = caps
        if "BF16" not in caps:
            # OpenVINO would quietly run fp32 (or emulate bf16 slowly): a package named bf16
            # must compute in bf16.
            raise CompileError(
                "--target cpu-bf16: this CPU has no native bf16 (AVX512-BF16 or AMX), so the model would run fp32; "
                "use cpu-fp32 or cpu-int8 here ('spanqa targets' shows what suits this CPU)"
            )
    openvino_rt.save(model, ctx.out_dir)
    ctx.manifest["model_file"] = openvino_rt.MODEL_XML


def build_openvino_int8(ctx: BuildContext) -> None:
    _build_openvino(ctx, "int8")


def build_openvino_bf16(ctx: BuildContext) -> None:
    _build_openvino(ctx, "bf16")


def build_ort_int8(ctx: BuildContext) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fused = ctx.out_dir / ".fused.onnx"
    optimized, counts = fuse_bert(ctx.source, ctx.model_info)
    fix_shapes(optimized.model, ctx.settings.batch_size, ctx.settings.seq_len)
    optimized.save_model_to_file(str(fused))
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs advice on the root logger
    try:
        # Without DefaultTensorType the quantizer cannot type the fused graph's weights.
        quantize_dynamic(
            str(fused),
            str(ctx.out_dir / "model.onnx"),
            weight_type=QuantType.QInt8,
            # Per-tensor scales cost the stand-in 5.6% of its F1 (fails the guard); per-channel
            # keeps it within noise of fp32.
            per_channel=True,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        root.setLevel(level)
    fused.unlink()
    ctx.manifest["model_file"] = "model.onnx"
    ctx.manifest["fusions"] = counts
    ctx.manifest["quantization"] = "ONNX Runtime dynamic int8 (QInt8 weights, per-channel)"


def build_gpu_fp16(ctx: BuildContext) -> None:
    optimized, counts = fuse_bert(ctx.source, ctx.model_info, use_gpu=True)
    # fp16 inside, int64 ids in and fp32 logits out, so callers see the same interface.
    optimized.convert_float_to_float16(keep_io_types=True)
    fix_shapes(optimized.model, ctx.settings.batch_size, ctx.settings.seq_len)
    optimized.save_model_to_file(str(ctx.out_dir / "model.onnx"))
    ctx.manifest["model_file"] = "model.onnx"
    ctx.manifest["fusions"] = counts


def build_gpu_trt(ctx: BuildContext) -> None:
    # TensorRT fuses the plain graph itself; it only needs the shape range of each input.
    shutil.copyfile(ctx.source, ctx.out_dir / "model.onnx")
    import onnx

    model = onnx.load(str(ctx.out_dir / "model.onnx"))
    fix_shapes(model, ctx.settings.batch_size, ctx.settings.seq_len)
    onnx.save(model, str(ctx.out_dir / "model.onnx"))
    max_seq = ctx.settings.seq_len or ctx.model_info.get("max_positions", 512)
    min_seq = ctx.settings.seq_len or 1
    max_batch = ctx.settings.batch_size or 64
    min_batch = ctx.settings.batch_size or 1
    opt_batch = ctx.settings.batch_size or 8

    def profile(b: int, s: int) -> str:
        return ",".join(f"{name}:{b}x{s}" for name in INPUT_NAMES)

    ctx.manifest["model_file"] = "model.onnx"
    ctx.manifest["tensorrt"] = {
        "trt_profile_min_shapes": profile(min_batch, min_seq),
        "trt_profile_opt_shapes": profile(opt_batch, ctx.settings.seq_len or min(256, max_seq)),
        "trt_profile_max_shapes": profile(max_batch, max_seq),
        "fp16": True,
    }
