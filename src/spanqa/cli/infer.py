"""CLI command: infer (the recipe's msame step; its report, parse.py, is ``spanqa report``)."""

from __future__ import annotations

import click

from spanqa.cli._common import input_path, output_path, overwrite_option, quiet_option, setting
from spanqa.settings import InferSettings

COMMANDS: list[click.Command] = []


@click.command("infer")
@click.option(
    "--model",
    "model",
    type=input_path("model"),
    required=True,
    help="A model package from compile/convert, or a .onnx file.",
)
@click.option(
    "--input",
    "inputs",
    type=input_path("features", separator=",", path_type=str),
    default=None,
    help="The features directory from 'spanqa preprocess', or comma-separated folders "
    "(input_ids,segment_ids,input_mask; msame style). Omit to time synthetic inputs (perf-only mode).",
)
@click.option(
    "-o",
    "--output",
    type=output_path("infer run", reuse="resume"),
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
@overwrite_option
@quiet_option
def infer_cmd(model, inputs, output, outfmt, warmup, loop, threads, device, batch_size, seq_len, resume, overwrite) -> None:
    """Run MODEL over feature folders and write start/end logits per batch, msame style.

    Writes OUTPUT/{i}_output_0.bin (start logits) and {i}_output_1.bin (end logits), float32
    [batch, seq_len], one pair per input file i, plus infer.log (msame's lines, also printed)
    and summary.json. Inputs are checked against the model before anything runs; headerless
    .bin folders without manifest.json take their shape from a fixed-shape model, or from
    --seq-len / --batch-size.

    OUTPUT must be new or empty, or infer's own earlier OUTPUT: --overwrite starts it afresh,
    --resume continues it: batches whose two outputs are complete are skipped (the run must use the same model,
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
        overwrite=overwrite,
    )
    if resume and overwrite:
        raise click.UsageError("give either --resume (continue OUTPUT) or --overwrite (start it afresh), not both")
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


COMMANDS.append(infer_cmd)
