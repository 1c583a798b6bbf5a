"""CLI commands (bench)."""

from __future__ import annotations

import json

import click

from spanqa.cli._common import input_path, output_path, overwrite_option, quiet_option, setting
from spanqa.settings import BenchSettings, default

COMMANDS: list[click.Command] = []
_DEFAULT_BATCH_SIZES = ",".join(map(str, default(BenchSettings, "batch_sizes")))


def _batch_sizes(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    sizes = []
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            size = int(part)
        except ValueError:
            raise click.BadParameter(f"'{part}' is not an integer; give comma-separated batch sizes, e.g. 1,4,8") from None
        if size < 1:
            raise click.BadParameter(f"{size} is not a positive batch size; give e.g. 1,4,8")
        if size not in sizes:
            sizes.append(size)
    if not sizes:
        raise click.BadParameter("give at least one batch size, e.g. 1,4,8")
    return tuple(sizes)


@click.command("bench")
@click.option(
    "--model",
    "models",
    type=input_path("model"),
    multiple=True,
    required=True,
    help="A model package (or .onnx). Repeat to compare several side by side in one run.",
)
@click.option(
    "--batch-sizes", default=_DEFAULT_BATCH_SIZES, show_default=True, callback=_batch_sizes, help="Comma-separated batch sizes."
)
@setting(
    BenchSettings,
    "seq_len",
    "--seq-len",
    type=click.IntRange(min=1),
    help="Sequence length (dataset mode: max_seq_length of the features).",
)
@click.option(
    "--dataset",
    type=input_path("squad"),
    default=None,
    help="A SQuAD JSON: time the real job end to end (questions/s, model rows/s) instead of synthetic batches.",
)
@click.option(
    "--questions", type=click.IntRange(min=1), default=None, help="Dataset mode: only the first N questions [default: all]."
)
@click.option(
    "--token-budget",
    type=click.IntRange(min=1),
    default=None,
    help="Dataset mode: max rows x padded length per batch [default: spanqa run's]; the batch size caps rows under it.",
)
@setting(BenchSettings, "warmup", "--warmup", type=click.IntRange(min=0), help="Untimed runs per cell before timing.")
@setting(
    BenchSettings, "repeat", "--repeat", type=click.IntRange(min=1), help="Timed runs per cell (dataset mode: timed passes)."
)
@click.option(
    "--max-seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=default(BenchSettings, "max_seconds"),
    show_default=True,
    help="Per cell: start no new run after this long (warm-up included); at least one warm-up and one timed run always happen.",
)
@click.option(
    "--threads", type=click.IntRange(min=1), default=None, help="Intra-op threads [default: the usable physical cores]."
)
@click.option(
    "--plot",
    "plot_path",
    type=output_path("bench plot", file=True),
    default=None,
    help="Write throughput vs batch size as a PNG (needs spanqa[plot]).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the raw numbers as JSON on stdout instead of the table.")
@click.option(
    "-o", "--output", type=output_path("bench results", file=True), default=None, help="Also save the JSON to this file."
)
@overwrite_option
@quiet_option
def bench_cmd(
    models,
    batch_sizes,
    seq_len,
    dataset,
    questions,
    token_budget,
    warmup,
    repeat,
    max_seconds,
    threads,
    plot_path,
    as_json,
    output,
    overwrite,
) -> None:
    """Throughput of each MODEL per batch size: the recipe's fps table.

    Synthetic mode (default): one random batch of every size at --seq-len; fps = batch x 1000 /
    median ms over --repeat timed runs, after --warmup untimed ones; min-max from the fastest and
    slowest run. With --dataset: end-to-end questions/s (preprocess + inference + answers, with
    length-aware batching) and model rows/s over --repeat passes. A fixed-shape model runs only its own
    shape (noted under the table). Compare models within one run; machines are noisy.
    """
    from spanqa.bench import bench, footer_lines, header_lines, plot, row_line
    from spanqa.errors import missing_backend

    if plot_path is not None:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:  # fail before the benchmark, not after it
            raise missing_backend("matplotlib", "plot")
    if questions is not None and dataset is None:
        raise click.UsageError("--questions needs --dataset")
    if token_budget is not None and dataset is None:
        raise click.UsageError("--token-budget needs --dataset")
    settings = BenchSettings(
        batch_sizes=batch_sizes,
        seq_len=seq_len,
        warmup=warmup,
        repeat=repeat,
        max_seconds=max_seconds,
        threads=threads,
        dataset=str(dataset) if dataset is not None else None,
        questions=questions,
        token_budget=token_budget,
    )
    printed_header = []

    def stream(report, result) -> None:
        if as_json:
            return
        if not printed_header:
            for line in header_lines(report):
                click.echo(line)
            printed_header.append(True)
        click.echo(row_line(report, result))

    report = bench(list(models), settings, on_result=stream)
    data = report.to_json()
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        for line in footer_lines(report):
            click.echo(line)
    if output is not None:
        from spanqa.fileutil import atomic_file

        with atomic_file(output, "bench results", overwrite=overwrite, inputs=(*models, dataset)) as tmp:
            tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if plot_path is not None:
        plot(report, plot_path, overwrite=overwrite)
        click.echo(f"plot: {plot_path}", err=True)


COMMANDS += [bench_cmd]
