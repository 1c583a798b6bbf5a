"""CLI commands: export, compile, convert (the recipe's pth2onnx, atc and pth2om steps)."""

from __future__ import annotations

from pathlib import Path

import click

from spanqa.cli._common import input_path, output_path, overwrite_option, quiet_option, setting
from spanqa.settings import CompileSettings, ExportSettings, GuardSettings

COMMANDS: list[click.Command] = []

_TARGET_HELP = "Compile target; 'spanqa targets' lists them and says which suit this CPU."


def _echo_export(report) -> None:
    for d in report.diffs:
        click.echo(f"  verify {d.batch}x{d.seq_len}: max |diff| start_logits {d.start_logits:.2e}, end_logits {d.end_logits:.2e}")
    click.echo(f"  max |diff| vs PyTorch: {report.max_diff:.2e} (tolerance {report.settings.tolerance:g})")


def _echo_manifest(out_dir: Path, manifest) -> None:
    fusions = ", ".join(f"{k} {v}" for k, v in (manifest.fusions or {}).items() if v) or "none"
    shapes = manifest.shapes
    shape_text = f"batch {shapes.batch_size or 'dynamic'}, sequence {shapes.seq_len or 'dynamic'}"
    click.echo(f"Compiled {manifest.target} ({manifest.precision}, {shape_text}) -> {out_dir}")
    click.echo(f"  fused: {fusions}")
    v = manifest.verification or {}
    if v:
        tol = v.get("tolerance")
        click.echo(f"  max |diff| vs source: {v['max_abs_diff']:.2e}" + (f" (tolerance {tol:g})" if tol is not None else ""))
    guard = manifest.guard
    if guard and guard.get("unguarded"):
        click.echo("  warning: built with --no-guard: nobody measured this model's accuracy", err=True)
    elif guard:
        click.echo(
            f"  accuracy guard: F1 {guard['f1']:.2f} vs fp32 {guard['reference_f1']:.2f} "
            f"({100 * guard['ratio']:.2f}%, needs >= {100 * guard['required_ratio']:.1f}%) on {guard['questions']} questions"
        )
    for line in manifest.warnings:
        click.echo(f"  warning: {line}", err=True)


def _shape_options(fn):
    fn = click.option(
        "--squad-version",
        type=click.Choice(["1", "2"]),
        default=None,
        help="The SQuAD version the model was fine-tuned for, recorded in the package: 2 makes run/ask/the "
        'engine let it answer "" (no answer) [default: 2 when the checkpoint\'s name or config says squad2/'
        "squad_v2/squad-2.0, else 1].",
    )(fn)
    fn = click.option(
        "--no-guard", is_flag=True, help="Build a reduced-precision target without the accuracy guard (recorded as unguarded)."
    )(fn)
    fn = setting(
        GuardSettings, "questions", "--guard-questions", type=click.IntRange(min=1), help="Questions the accuracy guard scores."
    )(fn)
    fn = click.option(
        "--guard",
        type=input_path("squad", exists=True, dir_okay=False),
        default=None,
        help="SQuAD JSON: refuse the model if its F1 falls below 99.5% of the fp32 model's on it. "
        "Needed by reduced-precision targets (or --no-guard).",
    )(fn)
    fn = setting(
        CompileSettings,
        "calibration_size",
        "--calibration-size",
        type=click.IntRange(min=1),
        help="Features used to calibrate static int8.",
    )(fn)
    fn = click.option(
        "--calibration",
        type=input_path("squad", exists=True, dir_okay=False),
        default=None,
        help="SQuAD JSON whose features calibrate static int8 (default: the --guard dataset, minus the questions it scores).",
    )(fn)
    fn = click.option("--seq-len", type=click.IntRange(min=1), default=None, help="Fix the sequence length (default: dynamic).")(
        fn
    )
    fn = click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Fix the batch size (default: dynamic).")(fn)
    fn = setting(CompileSettings, "target", "--target", help=_TARGET_HELP)(fn)
    return fn


@click.command("export")
@click.argument("checkpoint", type=input_path("checkpoint"))
@click.option("-o", "--output", type=output_path("ONNX model", file=True), required=True, help="The .onnx file to write.")
@setting(ExportSettings, "opset", "--opset", type=click.IntRange(min=14), help="ONNX opset.")
@overwrite_option
@quiet_option
def export_cmd(checkpoint: Path, output: Path, opset: int, overwrite: bool) -> None:
    """Export CHECKPOINT (SpanBERT or Hugging Face format) to ONNX with dynamic batch and sequence axes,
    then check ONNX Runtime's logits against PyTorch's."""
    from spanqa.models.export import export_checkpoint

    report = export_checkpoint(checkpoint, output, ExportSettings(opset=opset), overwrite=overwrite)
    click.echo(
        f"Exported {checkpoint} ({report.checkpoint['format']} format, {report.checkpoint['weights_dtype']} weights) -> {output}"
    )
    _echo_export(report)


@click.command("compile")
@click.argument("model", type=input_path("onnx"))
@click.option("-o", "--output", type=output_path("model package"), required=True, help="The model package directory to write.")
@_shape_options
@overwrite_option
@quiet_option
def compile_cmd(model: Path, output: Path, overwrite: bool, **options) -> None:
    """Compile an exported ONNX MODEL for a target into a model package (the recipe's .om step).
    Reduced-precision targets need --guard DATASET (or an explicit --no-guard)."""
    from spanqa.targets.compile import compile_model

    settings, guard = _compile_settings(model, **options)
    manifest = compile_model(model, output, settings, guard=guard, overwrite=overwrite)
    _echo_manifest(output, manifest)


def _compile_settings(
    source, target, batch_size, seq_len, calibration, calibration_size, guard, guard_questions, no_guard, squad_version
):
    """CompileSettings and the guard check the options ask for."""
    from spanqa.answers.squad2 import detect_squad_version

    if guard and no_guard:
        raise click.UsageError("give either --guard or --no-guard, not both")
    from spanqa.targets.compile import check_buildable, require_guard

    require_guard(CompileSettings(target=target, unguarded=no_guard), guard)  # a usage error on every machine
    check_buildable(target)  # an unknown target or a missing GPU provider, before the guard's questions
    settings = CompileSettings(
        target=target,
        batch_size=batch_size,
        seq_len=seq_len,
        calibration=str(calibration or guard) if (calibration or guard) else None,
        calibration_size=calibration_size,
        guard=str(guard) if guard else None,
        guard_questions=guard_questions,
        unguarded=no_guard,
        squad_version=int(squad_version) if squad_version else detect_squad_version(source),
    )
    check = None
    if guard:
        from spanqa.engine.guard import Guard

        check = Guard(GuardSettings(dataset=str(guard), questions=guard_questions))
    return settings, check


@click.command("convert")
@click.argument("checkpoint", type=input_path("checkpoint"))
@click.option("-o", "--output", type=output_path("model package"), required=True, help="The model package directory to write.")
@_shape_options
@setting(ExportSettings, "opset", "--opset", type=click.IntRange(min=14), help="ONNX opset.")
@overwrite_option
@quiet_option
def convert_cmd(checkpoint: Path, output: Path, opset: int, overwrite: bool, **options) -> None:
    """Export CHECKPOINT and compile it in one step (the recipe's pth2om.sh); keeps the exported ONNX."""
    from spanqa.targets.compile import convert_checkpoint

    settings, guard = _compile_settings(checkpoint, **options)
    report, manifest = convert_checkpoint(
        checkpoint, output, settings, ExportSettings(opset=opset), guard=guard, overwrite=overwrite
    )
    click.echo(f"Exported {checkpoint} -> {report.onnx_path}")
    _echo_export(report)
    _echo_manifest(output, manifest)


@click.command("targets")
def targets_cmd() -> None:
    """List the compile targets, and which suit this machine's CPU."""
    from spanqa.targets.suitability import suitability

    rows = suitability()
    for row in rows:
        t = row.target
        click.echo(f"{t.name:<13} {t.precision:<5} {t.runtime:<21} {row.status:<10} {t.description}")
    best = next((r.target.name for r in rows if r.best), None)
    if best:
        click.echo(f"Fastest here: {best} (spanqa run --target auto picks it)")


COMMANDS.extend([export_cmd, compile_cmd, convert_cmd, targets_cmd])
