"""CLI commands: export, compile, convert (the recipe's pth2onnx, atc and pth2om steps)."""

from __future__ import annotations

from pathlib import Path

import click

from spanqa.cli._common import quiet_option

COMMANDS: list[click.Command] = []

_TARGET_HELP = "Compile target: cpu-fp32 (default); see 'spanqa targets'."


def _echo_export(report) -> None:
    for d in report.diffs:
        click.echo(
            f"  verify {d.batch}x{d.seq_len}: max |diff| start_logits {d.start_logits:.2e}, end_logits {d.end_logits:.2e}"
        )
    click.echo(f"  max |diff| vs PyTorch: {report.max_diff:.2e} (tolerance {report.settings.tolerance:g})")


def _echo_manifest(out_dir: Path, manifest: dict) -> None:
    fusions = ", ".join(f"{k} {v}" for k, v in manifest.get("fusions", {}).items() if v) or "none"
    shapes = manifest["shapes"]
    shape_text = f"batch {shapes['batch_size'] or 'dynamic'}, sequence {shapes['seq_len'] or 'dynamic'}"
    click.echo(f"Compiled {manifest['target']} ({manifest['precision']}, {shape_text}) -> {out_dir}")
    click.echo(f"  fused: {fusions}")
    v = manifest.get("verification", {})
    if v:
        tol = v.get("tolerance")
        click.echo(f"  max |diff| vs source: {v['max_abs_diff']:.2e}" + (f" (tolerance {tol:g})" if tol is not None else ""))
    guard = manifest.get("guard")
    if guard:
        click.echo(
            f"  accuracy guard: F1 {guard['f1']:.2f} vs fp32 {guard['reference_f1']:.2f} "
            f"({100 * guard['ratio']:.2f}%, needs >= {100 * guard['required_ratio']:.1f}%) on {guard['questions']} questions"
        )
    for line in manifest.get("warnings", []):
        click.echo(f"  warning: {line}", err=True)


def _shape_options(fn):
    fn = click.option("--guard-questions", type=click.IntRange(min=1), default=1000, show_default=True,
                      help="Questions the accuracy guard scores.")(fn)
    fn = click.option("--guard", type=click.Path(path_type=Path), default=None,
                      help="SQuAD JSON: refuse the model if its F1 falls below 99.5% of the fp32 model's on it.")(fn)
    fn = click.option("--calibration-size", type=click.IntRange(min=1), default=300, show_default=True,
                      help="Features used to calibrate static int8.")(fn)
    fn = click.option("--calibration", type=click.Path(path_type=Path), default=None,
                      help="SQuAD JSON whose features calibrate static int8 (default: the --guard dataset).")(fn)
    fn = click.option("--seq-len", type=click.IntRange(min=1), default=None, help="Fix the sequence length (default: dynamic).")(fn)
    fn = click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Fix the batch size (default: dynamic).")(fn)
    fn = click.option("--target", default="cpu-fp32", show_default=True, help=_TARGET_HELP)(fn)
    return fn


@click.command("export")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="The .onnx file to write.")
@click.option("--opset", type=click.IntRange(min=14), default=17, show_default=True, help="ONNX opset.")
@quiet_option
def export_cmd(checkpoint: Path, output: Path, opset: int) -> None:
    """Export CHECKPOINT (SpanBERT or Hugging Face format) to ONNX with dynamic batch and sequence axes,
    then check ONNX Runtime's logits against PyTorch's."""
    from spanqa.export import ExportSettings, export_checkpoint

    report = export_checkpoint(checkpoint, output, ExportSettings(opset=opset))
    click.echo(f"Exported {checkpoint} ({report.checkpoint['format']} format, {report.checkpoint['weights_dtype']} weights) -> {output}")
    _echo_export(report)


@click.command("compile")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="The model package directory to write.")
@_shape_options
@quiet_option
def compile_cmd(model: Path, output: Path, **options) -> None:
    """Compile an exported ONNX MODEL for a target into a model package (the recipe's .om step)."""
    from spanqa.compile import compile_model

    manifest = compile_model(model, output, _compile_settings(**options))
    _echo_manifest(output, manifest)


def _compile_settings(target, batch_size, seq_len, calibration, calibration_size, guard, guard_questions):
    from spanqa.compile import CompileSettings

    return CompileSettings(
        target=target,
        batch_size=batch_size,
        seq_len=seq_len,
        calibration=str(calibration or guard) if (calibration or guard) else None,
        calibration_size=calibration_size,
        guard=str(guard) if guard else None,
        guard_questions=guard_questions,
    )


@click.command("convert")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="The model package directory to write.")
@_shape_options
@click.option("--opset", type=click.IntRange(min=14), default=17, show_default=True, help="ONNX opset.")
@quiet_option
def convert_cmd(checkpoint: Path, output: Path, opset: int, **options) -> None:
    """Export CHECKPOINT and compile it in one step (the recipe's pth2om.sh); keeps the exported ONNX."""
    from spanqa.compile import convert_checkpoint
    from spanqa.export import ExportSettings

    report, manifest = convert_checkpoint(checkpoint, output, _compile_settings(**options), ExportSettings(opset=opset))
    click.echo(f"Exported {checkpoint} -> {report.onnx_path}")
    _echo_export(report)
    _echo_manifest(output, manifest)


@click.command("targets")
def targets_cmd() -> None:
    """List the compile targets."""
    from spanqa.compile import TARGETS

    for name, t in sorted(TARGETS.items()):
        click.echo(f"{name:<13} {t.precision:<5} {t.runtime:<21} {t.description}")


COMMANDS.extend([export_cmd, compile_cmd, convert_cmd, targets_cmd])
