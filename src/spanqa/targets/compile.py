"""Compile an exported ONNX model for a target into a self-contained model package (the
recipe's ONNX -> .om step). Targets are looked up in ``spanqa.registry``; the CLI never needs to
know them."""

from __future__ import annotations

import datetime as _dt
import shutil
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from spanqa import __version__, registry
from spanqa.data.vocab import TokenizerSettings, resolve_tokenizer, write_tokenizer_files
from spanqa.errors import CompileError, UsageError, missing_backend, one_line
from spanqa.fileutil import atomic_dir, check_output, sha256_file, write_json_atomic
from spanqa.models.manifest import Manifest, Shapes
from spanqa.models.package import INPUT_NAMES, MANIFEST_NAME, OUTPUT_NAMES, ModelPackage
from spanqa.settings import CompileSettings, FeatureSettings
from spanqa.targets.builders import BuildContext


def check_buildable(name: str) -> registry.TargetEntry:
    """The target ``name``, when this machine can build it: an unknown name or a GPU target on a
    machine without its provider is refused before any work (and before the guard set is read)."""
    target = registry.get_target(name)
    if target.provider:
        _require_provider(target)
    return target


def _require_provider(target: registry.TargetEntry) -> None:
    try:
        import onnxruntime as ort
    except ImportError:
        raise missing_backend("onnxruntime", target.extra) from None
    if target.provider not in ort.get_available_providers():
        raise CompileError(
            f"--target {target.name} needs onnxruntime's {target.provider} to build and verify the model, and this "
            f"machine has none; run it where an NVIDIA GPU is, after pip install 'spanqa[{target.extra}]'"
        )


def model_info_from_onnx(source: Path) -> tuple[dict, dict]:
    """(model_info, metadata) read from an ONNX file exported by spanqa (empty info otherwise)."""
    from spanqa.models.export import read_graph_info

    meta, inputs = read_graph_info(source)
    missing = [n for n in INPUT_NAMES if n not in inputs]
    if missing:
        raise CompileError(
            f"{source}: not an extractive-QA BERT model (no input {', '.join(missing)}); export one with 'spanqa export'"
        )
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
    from spanqa.models.export import ort_session, sample_inputs
    from spanqa.runtimes import open_runtime

    reference = ort_session(source)
    runtime = open_runtime(package)
    try:
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
    finally:
        runtime.close()
    worst = max(max(r["start_logits"], r["end_logits"]) for r in results)
    return {"reference": f"{source.name} (unfused, ONNX Runtime CPU fp32)", "max_abs_diff": worst, "shapes": results}


def require_guard(settings: CompileSettings, guard) -> None:
    """A reduced-precision target is built only with the accuracy guard or an explicit --no-guard."""
    target = registry.get_target(settings.target)
    if target.guarded and guard is None and not settings.unguarded:
        raise UsageError(
            f"--target {target.name} is reduced precision: pass --guard DATASET.json (its F1 must stay within "
            "0.5% of fp32's) or --no-guard to build it unmeasured"
        )


GuardCheck = Callable[[ModelPackage, Path], dict]  # (candidate, fp32 source) -> figures; raises GuardError


def compile_model(
    source: str | Path,
    out_dir: str | Path,
    settings: CompileSettings | None = None,
    extra_files: dict[str, Path] | None = None,
    *,
    guard: GuardCheck | None = None,
    overwrite: bool = False,
) -> Manifest:
    """Build a model package for ``settings.target`` from an exported ONNX model; returns its manifest.

    A reduced-precision target (no logit tolerance) needs ``guard`` (the accuracy guard, which
    refuses a model below the bar) or ``settings.unguarded``, recorded in the manifest.
    ``extra_files`` (name in package -> existing path) are moved into the package, e.g. the
    intermediate ONNX that ``convert`` keeps. OUT_DIR appears only once everything, including
    verification and the guard, has succeeded.
    """
    settings = settings or CompileSettings()
    source = Path(source)
    if not source.is_file():
        raise CompileError(f"{source}: no such ONNX file; make one with 'spanqa export'")
    for name, value in (("--batch-size", settings.batch_size), ("--seq-len", settings.seq_len)):
        if value is not None and value < 1:
            raise UsageError(f"{name} {value}: must be a positive integer")
    require_guard(settings, guard)  # a usage error first: it holds on every machine
    target = check_buildable(settings.target)
    check_output(out_dir, "model package", overwrite=overwrite, inputs=(source,))
    try:
        model_info, meta = model_info_from_onnx(source)
    except CompileError:
        raise
    except Exception as exc:
        raise CompileError(f"{source}: not a readable ONNX model ({one_line(str(exc))[:200]})") from None
    max_positions = model_info.get("max_positions", 512)
    min_seq = FeatureSettings().min_seq_length
    if settings.seq_len is not None and not min_seq <= settings.seq_len <= max_positions:
        raise UsageError(
            f"--seq-len {settings.seq_len}: must lie between {min_seq} (a 64-piece question, 3 special tokens and "
            f"one context piece) and the model's {max_positions} positions"
        )
    source_sha256 = sha256_file(source)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, "model package", overwrite=overwrite, inputs=(source,)) as work:
        tokenizer = tokenizer_for_onnx(source, meta, work)
        ctx = BuildContext(source, work, settings, model_info, tokenizer)
        registry.load(target.builder)(ctx)
        write_tokenizer_files(tokenizer, work)
        manifest = Manifest(
            target=target.name,
            precision=target.precision,
            runtime=target.runtime,
            description=target.description,
            shapes=Shapes(settings.batch_size, settings.seq_len, max_positions),
            spanqa_version=__version__,
            model=model_info,
            source={
                "onnx": source.name,
                "sha256": source_sha256,
                "checkpoint_sha256": meta.get("spanqa.checkpoint_sha256"),
            },
            tokenizer={
                "vocab_file": "vocab.txt",
                "do_lower_case": tokenizer.do_lower_case,
                "vocab_sha256": sha256_file(work / "vocab.txt"),
            },
            settings=asdict(settings),
            created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            **ctx.manifest,
        )
        package = ModelPackage(
            work, work / manifest.model_file, manifest, TokenizerSettings(work / "vocab.txt", tokenizer.do_lower_case)
        )
        shapes = verification_shapes(settings, max_positions)
        verification = verify_package(package, source, shapes, model_info.get("vocab_size", 1000), settings.seed)
        verification["tolerance"] = target.tolerance
        if target.tolerance is not None and verification["max_abs_diff"] > target.tolerance:
            raise CompileError(
                f"{source}: the {target.name} model's logits differ from the source by "
                f"{verification['max_abs_diff']:.3g} (tolerance {target.tolerance:g}); nothing written to {out_dir}"
            )
        figures = None
        if target.guarded:
            figures = (
                guard(package, source) if guard is not None else {"unguarded": True, "passed": False, "reason": "--no-guard"}
            )
        manifest = replace(manifest, verification=verification, guard=figures)
        for name, path in (extra_files or {}).items():
            shutil.move(str(path), work / name)
        write_json_atomic(work / MANIFEST_NAME, manifest.to_json())
    return manifest


EXPORTED_NAME = "exported.onnx"


def convert_checkpoint(
    checkpoint: str | Path,
    out_dir: str | Path,
    settings: CompileSettings | None = None,
    export_settings=None,
    *,
    guard: GuardCheck | None = None,
    overwrite: bool = False,
):
    """Export + compile in one (the recipe's pth2om.sh); the exported ONNX stays in the package.

    Returns (ExportReport, manifest).
    """
    import tempfile

    from spanqa.models.export import export_checkpoint

    out_dir = check_output(out_dir, "model package", overwrite=overwrite, inputs=(checkpoint,))
    require_guard(settings or CompileSettings(), guard)
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
            guard=guard,
            overwrite=overwrite,
        )
    report.onnx_path = out_dir / EXPORTED_NAME
    return report, manifest
