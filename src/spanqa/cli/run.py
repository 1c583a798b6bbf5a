"""CLI command: run (the recipe's eval_acc_perf.sh: the whole job in one step)."""

from __future__ import annotations

from pathlib import Path

import click

from spanqa.cli._common import overwrite_option, quiet_option, setting
from spanqa.settings import AnswerSettings, BatchingSettings, FeatureSettings, GuardSettings, RunSettings

COMMANDS: list[click.Command] = []


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None or value != value else format(value, spec)


def print_run_table(report) -> None:
    """The one table ``spanqa run`` ends with."""
    s = report.summary
    r = report.result
    lat = s["inference"].get("latency_ms") or {}
    rows = [("questions", f"{s['questions']}"), ("features", f"{s['features']}")]
    if r is not None:
        rows += [("exact match", f"{r['exact_match']:.2f}"), ("F1", f"{r['f1']:.2f}")]
    rows += [
        ("end-to-end questions/s", _fmt(s["end_to_end_questions_per_s"], ".2f")),
        ("model rows/s", _fmt(s["model_rows_per_s"], ".2f")),
        ("batch latency p50 / p99 (ms)", f"{_fmt(lat.get('median'), '.1f')} / {_fmt(lat.get('p99'), '.1f')}"),
        ("target / runtime / threads", f"{s['target']} / {s['runtime']['name']} / {s['threads']}"),
    ]
    width = max(len(k) for k, _ in rows)
    click.echo("-" * (width + 16))
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value:>12}")
    click.echo("-" * (width + 16))
    written = "predictions.json, nbest_predictions.json, result.json and summary.json"
    if r is None:
        written = "predictions.json, nbest_predictions.json and summary.json (no gold answers: nothing scored)"
    click.echo(f"Wrote {written} to {report.result_dir}")


def warn_unguarded(package) -> None:
    """One line when a reduced-precision model nobody measured is about to answer."""
    if package.precision != "fp32" and not package.manifest.guarded:
        click.echo(
            f"warning: {package.root} is a {package.precision} model built without the accuracy guard: "
            "its answers are unmeasured against fp32",
            err=True,
        )


@click.command("run")
@click.argument("dataset", type=click.Path(path_type=Path), required=False)
@click.option(
    "--model",
    type=click.Path(path_type=Path),
    default=None,
    help="A model package, a .onnx file or a checkpoint directory (converted once and cached). "
    "Default: the official SpanBERT squad1 checkpoint, downloaded on first use.",
)
@click.option("-o", "--output", "result_dir", type=click.Path(path_type=Path), default=Path("spanqa-result"), show_default=True)
@setting(
    RunSettings,
    "target",
    "--target",
    help="Compile target when MODEL is a checkpoint or .onnx; 'auto': the fastest for this CPU.",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Rows per batch (default: by token budget).")
@click.option(
    "--threads", type=click.IntRange(min=1), default=None, help="Inference threads [default: the usable physical cores]."
)
@click.option("--keep-files", is_flag=True, help="Also keep the features and output .bin files (recipe layout) in RESULT_DIR.")
@click.option("--no-length-aware", is_flag=True, help="Pad every feature to --max-seq-length, as the recipe does.")
@setting(BatchingSettings, "token_budget", "--token-budget", type=click.IntRange(min=64), help="Max rows x length per batch.")
@click.option(
    "--max-seq-length",
    type=click.IntRange(min=8),
    default=None,
    help=f"Window length [default: {FeatureSettings().max_seq_length}, or a fixed-shape model's own].",
)
@setting(FeatureSettings, "doc_stride", "--doc-stride", type=click.IntRange(min=1))
@setting(FeatureSettings, "max_query_length", "--max-query-length", type=click.IntRange(min=1))
@setting(AnswerSettings, "n_best_size", "--n-best", type=click.IntRange(min=1))
@setting(AnswerSettings, "max_answer_length", "--max-answer-length", type=click.IntRange(min=1))
@click.option(
    "--guard",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Accuracy guard dataset when a reduced-precision target is built [default: DATASET].",
)
@click.option("--no-guard", is_flag=True, help="Build a reduced-precision target without the accuracy guard.")
@setting(GuardSettings, "questions", "--guard-questions", type=click.IntRange(min=1))
@click.option(
    "--calibration",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="SQuAD JSON calibrating a cpu-int8 conversion [default: the guard set minus the questions it scores].",
)
@click.option(
    "--mirror",
    envvar="SPANQA_MIRROR",
    default=None,
    help="Base URL serving the default checkpoint and dataset (env SPANQA_MIRROR).",
)
@overwrite_option
@quiet_option
def run_cmd(
    dataset,
    model,
    result_dir,
    target,
    batch_size,
    threads,
    keep_files,
    no_length_aware,
    token_budget,
    max_seq_length,
    doc_stride,
    max_query_length,
    n_best,
    max_answer_length,
    guard,
    no_guard,
    guard_questions,
    calibration,
    mirror,
    overwrite,
) -> None:
    """Preprocess DATASET, run the model, extract answers and score them, in one step (the
    recipe's eval_acc_perf.sh). With no arguments: the official SpanBERT squad1 checkpoint on the
    official SQuAD v1.1 dev set, each fetched and cached on first use. Reduced-precision targets
    are guarded on DATASET's first questions unless --no-guard."""
    from spanqa.download import ensure_assets
    from spanqa.engine.resolve import resolve_model
    from spanqa.fileutil import check_output
    from spanqa.jobs.run import run

    if guard and no_guard:
        raise click.UsageError("give either --guard or --no-guard, not both")
    dataset, model = ensure_assets(dataset, model, mirror=mirror)
    check_output(result_dir, "result", overwrite=overwrite, inputs=(dataset, model))
    if target == "auto":
        from spanqa.build.suitability import auto_target

        target = auto_target()
        click.echo(f"--target auto: {target} suits this CPU best", err=True)
    guard_settings = GuardSettings(dataset=str(guard or dataset), questions=guard_questions)
    package, converted = resolve_model(
        model, target, guard=guard_settings, unguarded=no_guard, calibration=calibration, threads=threads
    )
    if converted:
        click.echo(f"Converted {model} for {package.target} -> {package.root}", err=True)
        cal = (package.manifest.calibration or {}).get("dataset")
        if cal and Path(cal).resolve() == Path(dataset).resolve():
            click.echo(
                f"note: int8 calibrated on {dataset} (its questions past the guard's first {guard_questions}); "
                "pass --calibration OTHER.json to keep calibration and scoring apart",
                err=True,
            )
    warn_unguarded(package)
    length = max_seq_length or package.seq_len or min(FeatureSettings().max_seq_length, package.max_positions)
    settings = RunSettings(
        target=package.target,
        batch_size=batch_size,
        threads=threads,
        features=FeatureSettings(max_seq_length=length, doc_stride=doc_stride, max_query_length=max_query_length),
        answers=AnswerSettings(n_best_size=n_best, max_answer_length=max_answer_length),
        batching=BatchingSettings(token_budget=token_budget, length_aware=not no_length_aware),
    )
    report = run(dataset, package, result_dir, settings, keep_files=keep_files, overwrite=overwrite)
    print_run_table(report)


COMMANDS.append(run_cmd)
