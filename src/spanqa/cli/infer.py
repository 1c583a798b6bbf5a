"""CLI commands: infer (the recipe's msame step) and report (its parse.py)."""

from __future__ import annotations

from pathlib import Path

import click

from spanqa.cli._common import quiet_option, setting
from spanqa.settings import InferSettings

COMMANDS: list[click.Command] = []


@click.command("infer")
@click.option(
    "--model",
    "model",
    type=click.Path(path_type=Path),
    required=True,
    help="A model package from compile/convert, or a .onnx file.",
)
@click.option(
    "--input",
    "inputs",
    default=None,
    help="The features directory from 'spanqa preprocess', or comma-separated folders "
    "(input_ids,segment_ids,input_mask; msame style). Omit to time synthetic inputs (perf-only mode).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write {i}_output_0/1 files, infer.log and summary.json.",
)
@setting(
    InferSettings, "outfmt", "--outfmt", type=click.Choice(["bin", "npy"], case_sensitive=False), help="Output format (float32)."
)
@setting(InferSettings, "warmup", "--warmup", type=click.IntRange(min=0), help="Untimed runs of the first batch before timing.")
@setting(InferSettings, "loop", "--loop", type=click.IntRange(min=1), help="Timed runs of each batch (outputs written once).")
@setting(
    InferSettings,
    "threads",
    "--threads",
    type=click.IntRange(min=1),
    help="Intra-op threads [default: the usable physical cores, within a container's CPU quota].",
)
@setting(InferSettings, "device", "--device", type=click.Choice(["cpu", "cuda"]))
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Batch size of headerless .bin folders without manifest.json, or of synthetic inputs for a dynamic model.",
)
@click.option("--seq-len", type=click.IntRange(min=1), default=None, help="Sequence length, likewise.")
@click.option("--resume", is_flag=True, help="Keep the complete outputs already in OUTPUT and run only the rest.")
@quiet_option
def infer_cmd(model, inputs, output, outfmt, warmup, loop, threads, device, batch_size, seq_len, resume) -> None:
    """Run MODEL over feature folders and write start/end logits per batch, msame style.

    Writes OUTPUT/{i}_output_0.bin (start logits) and {i}_output_1.bin (end logits), float32
    [batch, seq_len], one pair per input file i, plus infer.log (msame's lines, also printed)
    and summary.json. Inputs are checked against the model before anything runs; headerless
    .bin folders without manifest.json take their shape from a fixed-shape model, or from
    --seq-len / --batch-size.

    Without --resume an existing OUTPUT's old *_output_0/1 files are removed first; with it,
    batches whose two outputs are complete are skipped (the run must use the same model,
    shapes and --outfmt). Interrupting (Ctrl-C, kill) never leaves a partial file under a final name.
    """
    from spanqa.offline.infer import infer_folders, infer_synthetic

    settings = InferSettings(
        outfmt=outfmt.lower(),
        warmup=warmup,
        loop=loop,
        threads=threads,
        device=device,
        batch_size=batch_size,
        seq_len=seq_len,
        resume=resume,
    )
    if inputs is None:
        if resume:
            raise click.UsageError("--resume needs --input (synthetic runs write no outputs)")
        infer_synthetic(model, output, settings, echo=click.echo)
        return
    if output is None:
        raise click.UsageError("--input needs -o/--output for the logits")
    click.get_current_context().meta["spanqa.interrupt_hint"] = (
        f"Finished batches are kept: rerun with --resume to complete {output}."
    )
    infer_folders(model, inputs, output, settings, echo=click.echo)


@click.command("report")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Batch size of an msame log that does not state it.")
def report_cmd(path: Path, batch_size: int | None) -> None:
    """Print fps from an infer log or summary.json, and EM/F1 from a result.json (or a directory holding them).

    fps = batch size x 1000 / average ms per batch, the average taken without the first run
    (msame's "without first time" line), as the recipe's parse.py computes it.
    """
    from spanqa.offline.report import report_lines

    for line in report_lines(path, batch_size):
        click.echo(line)


COMMANDS += [infer_cmd, report_cmd]
