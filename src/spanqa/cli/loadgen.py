"""CLI command: loadgen (MLPerf LoadGen's scenarios on the engine or on a server)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from spanqa.cli._common import input_path, output_path, overwrite_option, quiet_option, setting
from spanqa.settings import GuardSettings, LoadgenSettings, RunSettings

COMMANDS: list[click.Command] = []
S = LoadgenSettings


@click.command("loadgen")
@click.argument("dataset", metavar="DATA", type=input_path("squad", exists=True, dir_okay=False))
@click.option(
    "--model",
    type=input_path("model"),
    default=None,
    help="The system under test in this process: a model package, a .onnx or a checkpoint directory (built once for --target).",
)
@click.option(
    "--url",
    "server_url",
    default=None,
    help="The system under test is a server: its base URL; questions go one a request to URL/v1/answer "
    "(Hugging Face's question-answering schema). SPANQA_API_KEY is sent as a bearer token when set.",
)
@setting(
    RunSettings,
    "target",
    "--target",
    help="Compile target when MODEL is a checkpoint or .onnx; 'auto': the fastest for this CPU.",
)
@click.option(
    "--threads", type=click.IntRange(min=1), default=None, help="Inference threads [default: the usable physical cores]."
)
@setting(S, "scenario", "--scenario", type=click.Choice(["offline", "server", "singlestream"]), help="LoadGen's scenario.")
@setting(
    S,
    "mode",
    "--mode",
    type=click.Choice(["performance", "accuracy", "find-peak"]),
    help="performance: one timed run; accuracy: every sample once, answers scored (EM/F1); "
    "find-peak: the highest Server rate that is still VALID (a bisection of full Server runs).",
)
@setting(
    S,
    "latency_ms",
    "--latency-ms",
    type=click.FloatRange(min=0, min_open=True),
    help="Server: the p99 latency bound (MLPerf BERT's).",
)
@setting(
    S,
    "target_qps",
    "--target-qps",
    type=click.FloatRange(min=0, min_open=True),
    help="Server: queries/s arriving (Poisson); Offline: the expected rate [default: measured]; find-peak: the highest rate tried [default: an Offline run's].",
)
@setting(
    S,
    "duration_s",
    "--duration",
    "duration_s",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds each run lasts at least.",
)
@setting(S, "min_queries", "--min-queries", type=click.IntRange(min=1), help="Queries each run issues at least.")
@click.option(
    "--features",
    is_flag=True,
    help="A sample is one pre-tokenised 384-token window (stride 128, question 64) as MLPerf BERT's, answered with its logits.",
)
@setting(
    S, "token_budget", "--token-budget", type=click.IntRange(min=8), help="Server: padded tokens per batch of the online batcher."
)
@setting(
    S,
    "max_wait_ms",
    "--max-wait-ms",
    type=click.FloatRange(min=0),
    help="Server: how long a batch waits for more queries when none are waiting.",
)
@setting(S, "peak_steps", "--peak-steps", type=click.IntRange(min=1), help="find-peak: Server runs after the first.")
@click.option("-o", "--out", "out_dir", type=output_path("loadgen", file=False), default=Path("spanqa-loadgen"), show_default=True,
              help="Directory for LoadGen's logs (mlperf_log_summary.txt, mlperf_log_detail.txt, mlperf_log_accuracy.json) and loadgen.json.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of the table.")
@overwrite_option
@quiet_option
def loadgen_cmd(dataset, model, server_url, target, threads, out_dir, as_json, overwrite, features, **options) -> None:
    """Measure as MLPerf Inference does: LoadGen drives the engine (--model) or a server (--url)
    over DATA's questions in the Offline, Server or SingleStream scenario, and its logs decide
    VALID or INVALID. Needs pip install 'spanqa[loadgen]'. docs/loadgen.md."""
    from spanqa.loadgen.harness import loadgen
    from spanqa.loadgen.report import table
    from spanqa.loadgen.run import run_loadgen

    settings = LoadgenSettings(**options)
    settings.check()
    if (model is None) == (server_url is None):
        raise click.UsageError("give --model MODEL (the engine in this process) or --url URL (a server)")
    if server_url is not None and threads is not None:
        raise click.UsageError("--threads is for --model (a server has its own threads)")
    loadgen()  # the install hint before any conversion
    package = None
    if model is not None:
        from spanqa.cli.run import warn_unguarded
        from spanqa.engine.resolve import resolve_model

        if target == "auto":
            from spanqa.targets.suitability import auto_target

            target = auto_target()
            click.echo(f"--target auto: {target} suits this CPU best", err=True)
        package, converted = resolve_model(model, target, guard=GuardSettings(dataset=str(dataset)), threads=threads)
        if converted:
            click.echo(f"Converted {model} for {package.target} -> {package.root}", err=True)
        warn_unguarded(package)
    try:
        report = run_loadgen(
            dataset,
            out_dir,
            settings,
            package=package,
            url=server_url,
            threads=threads,
            features=features,
            overwrite=overwrite,
            say=lambda message: click.echo(message, err=True),
        )
    except KeyboardInterrupt:
        # The output is already gone (atomic_dir). LoadGen's test cannot be stopped mid-run and
        # its threads (and the SUT's, still in the runtime) crash a normal interpreter exit:
        # leave now, with the interrupt's exit code.
        import os
        import sys

        from spanqa.errors import EXIT_INTERRUPTED

        click.echo("Interrupted.", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(table(report))
        click.echo(f"Wrote LoadGen's logs and loadgen.json to {out_dir}")


COMMANDS.append(loadgen_cmd)
