"""Compile an exported ONNX model for a target into a self-contained model package.

This is the recipe's ONNX -> .om step. Each target is an entry in ``TARGETS``: it says which
runtime runs its model, what precision it computes in, and how to build it; the CLI only looks
targets up by name, so new targets slot in here without touching it.
"""

from __future__ import annotations

import datetime as _dt
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from spanqa import __version__
from spanqa.errors import CompileError, missing_backend
from spanqa.fileutil import atomic_dir, sha256_file, write_json_atomic
from spanqa.package import INPUT_NAMES, MANIFEST_NAME, OUTPUT_NAMES, ModelPackage
from spanqa.vocab import TokenizerSettings, resolve_tokenizer, write_tokenizer_files

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


@dataclass(frozen=True)
class CompileSettings:
    target: str = "cpu-fp32"
    batch_size: int | None = None  # fixed batch axis (None = dynamic)
    seq_len: int | None = None  # fixed sequence axis (None = dynamic)
    seed: int = 0
    calibration: str | None = None  # SQuAD JSON whose features calibrate static int8
    calibration_size: int = 300  # features used for calibration
    guard: str | None = None  # SQuAD JSON on which the new model must keep 99.5% of fp32's F1
    guard_questions: int = 1000


@dataclass
class BuildContext:
    source: Path  # the exported (unfused, fp32) ONNX model
    out_dir: Path  # the package being built (a temp dir until it is complete)
    settings: CompileSettings
    model_info: dict  # num_layers, num_heads, hidden_size, vocab_size, max_positions
    tokenizer: TokenizerSettings
    manifest: dict = field(default_factory=dict)  # targets add their own keys


@dataclass(frozen=True)
class Target:
    name: str
    precision: str
    runtime: str  # key into spanqa.runtime.RUNTIMES
    description: str
    build: Callable[[BuildContext], None]  # writes ctx.out_dir/<model_file>, fills ctx.manifest
    tolerance: float | None  # max |logit diff| vs the fp32 source; None: judged by the accuracy guard
    extra: str = "cpu"  # the pip extra that provides its backend
    provider: str | None = None  # an ONNX Runtime execution provider the target cannot do without


TARGETS: dict[str, Target] = {}


def register_target(target: Target) -> Target:
    TARGETS[target.name] = target
    return target


def _require_provider(target: Target) -> None:
    try:
        import onnxruntime as ort
    except ImportError:
        raise missing_backend("onnxruntime", target.extra) from None
    if target.provider not in ort.get_available_providers():
        raise CompileError(
            f"--target {target.name} needs onnxruntime's {target.provider} to build and verify the model, and this "
            f"machine has none; run it where an NVIDIA GPU is, after pip install 'spanqa[{target.extra}]'"
        )


def get_target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise CompileError(f"unknown target '{name}'; choose one of: {', '.join(sorted(TARGETS))}") from None


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


def _build_cpu_fp32(ctx: BuildContext) -> None:
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


register_target(
    Target(
        name="cpu-fp32",
        precision="fp32",
        runtime="onnxruntime",
        description="ONNX Runtime CPU, fp32, fused attention/LayerNorm/GELU",
        build=_build_cpu_fp32,
        tolerance=1e-3,
    )
)


def calibration_inputs(ctx: BuildContext) -> list[dict[str, np.ndarray]]:
    """Real SQuAD features (batch 1, cut to their length) spread evenly over the calibration set."""
    from spanqa.squad import FeatureSettings, build_features, read_squad

    if not ctx.settings.calibration:
        raise CompileError(
            f"--target {ctx.settings.target} is calibrated on real SQuAD features: pass --calibration DATASET.json "
            "(or --guard DATASET.json, which is then used for both)"
        )
    examples = read_squad(ctx.settings.calibration)
    if ctx.settings.guard and Path(ctx.settings.guard).resolve() == Path(ctx.settings.calibration).resolve():
        # The guard scores the first questions: calibrate on the others so it stays a fair test.
        examples = examples[ctx.settings.guard_questions :] or examples
    seq = ctx.settings.seq_len or min(512, ctx.model_info.get("max_positions", 512))
    step = max(1, len(examples) // max(1, ctx.settings.calibration_size))
    features = build_features(examples[::step][: ctx.settings.calibration_size], ctx.tokenizer, FeatureSettings(max_seq_length=seq))
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


def _build_openvino(precision: str) -> Callable[[BuildContext], None]:
    def build(ctx: BuildContext) -> None:
        from spanqa import openvino_rt, progress

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
        elif precision == "bf16":
            ctx.manifest["inference_precision"] = "bf16"
            caps = openvino_rt.cpu_capabilities()
            ctx.manifest["cpu_capabilities"] = caps
            if "BF16" not in caps:
                ctx.manifest.setdefault("warnings", []).append(
                    "this CPU has no native bf16 (AVX512-BF16/AMX): OpenVINO will emulate or fall back to fp32"
                )
        openvino_rt.save(model, ctx.out_dir)
        ctx.manifest["model_file"] = openvino_rt.MODEL_XML

    return build


def _build_ort_int8(ctx: BuildContext) -> None:
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


register_target(
    Target(
        name="cpu-int8",
        precision="int8",
        runtime="openvino",
        description="OpenVINO CPU, static int8 (NNCF, calibrated on SQuAD features), VNNI",
        build=_build_openvino("int8"),
        tolerance=None,
        extra="openvino",
    )
)
register_target(
    Target(
        name="cpu-bf16",
        precision="bf16",
        runtime="openvino",
        description="OpenVINO CPU, bf16 compute (AVX512-BF16/AMX)",
        build=_build_openvino("bf16"),
        tolerance=None,
        extra="openvino",
    )
)
register_target(
    Target(
        name="cpu-int8-ort",
        precision="int8",
        runtime="onnxruntime",
        description="ONNX Runtime CPU, dynamic int8 (portable)",
        build=_build_ort_int8,
        tolerance=None,
    )
)


def _build_gpu_fp16(ctx: BuildContext) -> None:
    optimized, counts = fuse_bert(ctx.source, ctx.model_info, use_gpu=True)
    # fp16 inside, int64 ids in and fp32 logits out, so callers see the same interface.
    optimized.convert_float_to_float16(keep_io_types=True)
    fix_shapes(optimized.model, ctx.settings.batch_size, ctx.settings.seq_len)
    optimized.save_model_to_file(str(ctx.out_dir / "model.onnx"))
    ctx.manifest["model_file"] = "model.onnx"
    ctx.manifest["fusions"] = counts


def _build_gpu_trt(ctx: BuildContext) -> None:
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


register_target(
    Target(
        name="gpu-fp16",
        precision="fp16",
        runtime="onnxruntime-cuda",
        description="ONNX Runtime CUDA, fp16 with fused attention, IO binding",
        build=_build_gpu_fp16,
        tolerance=None,
        extra="gpu",
        provider="CUDAExecutionProvider",
    )
)
register_target(
    Target(
        name="gpu-trt",
        precision="fp16",
        runtime="onnxruntime-tensorrt",
        description="ONNX Runtime TensorRT provider, fp16 engines cached in the package",
        build=_build_gpu_trt,
        tolerance=None,
        extra="gpu",
        provider="TensorrtExecutionProvider",
    )
)


def model_info_from_onnx(source: Path) -> tuple[dict, dict]:
    """(model_info, metadata) read from an ONNX file exported by spanqa (empty info otherwise)."""
    from spanqa.export import read_metadata

    meta = read_metadata(source)
    info = {}
    for key in ("num_layers", "num_heads", "hidden_size", "vocab_size", "max_positions"):
        if f"spanqa.{key}" in meta:
            info[key] = int(meta[f"spanqa.{key}"])
    return info, meta


def tokenizer_for_onnx(source: Path, meta: dict, work_dir: Path) -> TokenizerSettings:
    """The tokenizer an exported ONNX carries in its metadata, else that of its directory."""
    if "spanqa.vocab" in meta:
        vocab = work_dir / "vocab.txt"
        vocab.write_text(meta["spanqa.vocab"], encoding="utf-8")
        return TokenizerSettings(vocab, meta.get("spanqa.do_lower_case", "false") == "true")
    return resolve_tokenizer(source.parent)


def verification_shapes(settings: CompileSettings, max_positions: int) -> list[tuple[int, int]]:
    if settings.batch_size is not None or settings.seq_len is not None:
        return [(settings.batch_size or 2, settings.seq_len or min(128, max_positions))]
    return [(1, min(512, max_positions)), (4, min(128, max_positions)), (3, min(37, max_positions))]


def verify_package(package: ModelPackage, source: Path, shapes: list[tuple[int, int]], vocab_size: int, seed: int = 0) -> dict:
    """Max |diff| of a package's logits against the unfused source model on ONNX Runtime CPU."""
    from spanqa.export import ort_session, sample_inputs
    from spanqa.runtime import open_runtime

    reference = ort_session(source)
    runtime = open_runtime(package)
    results = []
    for batch, seq in shapes:
        inputs = sample_inputs(batch, seq, vocab_size, seed)
        ref_start, ref_end = reference.run(list(OUTPUT_NAMES), inputs)
        start, end = runtime.run(*(inputs[n] for n in INPUT_NAMES))
        results.append(
            {
                "batch": batch,
                "seq_len": seq,
                "start_logits": float(np.abs(start - ref_start).max()),
                "end_logits": float(np.abs(end - ref_end).max()),
            }
        )
    worst = max(max(r["start_logits"], r["end_logits"]) for r in results)
    return {"reference": f"{source.name} (unfused, ONNX Runtime CPU fp32)", "max_abs_diff": worst, "shapes": results}


def compile_model(
    source: str | Path,
    out_dir: str | Path,
    settings: CompileSettings | None = None,
    extra_files: dict[str, Path] | None = None,
) -> dict:
    """Build a model package for ``settings.target`` from an exported ONNX model; returns its manifest.

    ``extra_files`` (name in package -> existing path) are moved into the package, e.g. the
    intermediate ONNX that ``convert`` keeps. OUT_DIR appears only once everything, including
    verification, has succeeded.
    """
    settings = settings or CompileSettings()
    source = Path(source)
    if not source.is_file():
        raise CompileError(f"{source}: no such ONNX file; make one with 'spanqa export'")
    for name, value in (("--batch-size", settings.batch_size), ("--seq-len", settings.seq_len)):
        if value is not None and value < 1:
            raise CompileError(f"{name} {value}: must be a positive integer")
    target = get_target(settings.target)
    if target.provider:
        _require_provider(target)
    try:
        model_info, meta = model_info_from_onnx(source)
    except Exception as exc:
        raise CompileError(f"{source}: not a readable ONNX model ({str(exc).splitlines()[0]})") from None
    max_positions = model_info.get("max_positions", 512)
    if settings.seq_len is not None and settings.seq_len > max_positions:
        raise CompileError(f"--seq-len {settings.seq_len}: the model has only {max_positions} positions")
    source_sha256 = sha256_file(source)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as work:
        tokenizer = tokenizer_for_onnx(source, meta, work)
        ctx = BuildContext(source, work, settings, model_info, tokenizer)
        target.build(ctx)
        write_tokenizer_files(tokenizer, work)
        manifest = {
            "format": "spanqa-model-package",
            "format_version": 1,
            "spanqa_version": __version__,
            "target": target.name,
            "precision": target.precision,
            "runtime": target.runtime,
            "description": target.description,
            "shapes": {"batch_size": settings.batch_size, "seq_len": settings.seq_len, "max_positions": max_positions},
            "model": model_info,
            "source": {
                "onnx": source.name,
                "sha256": source_sha256,
                "checkpoint_sha256": meta.get("spanqa.checkpoint_sha256"),
            },
            "tokenizer": {
                "vocab_file": "vocab.txt",
                "do_lower_case": tokenizer.do_lower_case,
                "vocab_sha256": sha256_file(work / "vocab.txt"),
            },
            "settings": asdict(settings),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            **ctx.manifest,
        }
        package = ModelPackage(work, work / manifest["model_file"], manifest, TokenizerSettings(work / "vocab.txt", tokenizer.do_lower_case))
        shapes = verification_shapes(settings, max_positions)
        verification = verify_package(package, source, shapes, model_info.get("vocab_size", 1000), settings.seed)
        verification["tolerance"] = target.tolerance
        manifest["verification"] = verification
        if target.tolerance is not None and verification["max_abs_diff"] > target.tolerance:
            raise CompileError(
                f"{source}: the {target.name} model's logits differ from the source by "
                f"{verification['max_abs_diff']:.3g} (tolerance {target.tolerance:g}); nothing written to {out_dir}"
            )
        if settings.guard:
            from spanqa.pipeline import guard_check

            manifest["guard"] = guard_check(package, source, settings.guard, settings.guard_questions)
        for name, path in (extra_files or {}).items():
            shutil.move(str(path), work / name)
        write_json_atomic(work / MANIFEST_NAME, manifest)
    return manifest


EXPORTED_NAME = "exported.onnx"


def convert_checkpoint(
    checkpoint: str | Path,
    out_dir: str | Path,
    settings: CompileSettings | None = None,
    export_settings=None,
):
    """Export + compile in one (the recipe's pth2om.sh); the exported ONNX stays in the package.

    Returns (ExportReport, manifest).
    """
    import tempfile

    from spanqa.export import export_checkpoint

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.export.", dir=out_dir.parent) as tmp:
        exported = Path(tmp) / EXPORTED_NAME
        report = export_checkpoint(checkpoint, exported, export_settings)
        record = exported.with_name(exported.name + ".json")
        manifest = compile_model(
            exported,
            out_dir,
            settings,
            extra_files={EXPORTED_NAME: exported, EXPORTED_NAME + ".json": record},
        )
    report.onnx_path = out_dir / EXPORTED_NAME
    return report, manifest
