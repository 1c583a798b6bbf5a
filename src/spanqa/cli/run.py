"""CLI command: run (the recipe's eval_acc_perf.sh: the whole job in one step)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from spanqa.cli._common import (
    input_path,
    output_path,
    overwrite_option,
    quiet_option,
    setting,
    squad2_options,
    squad2_rows,
    target_name,
)
from spanqa.cli.report import report_option
from spanqa.settings import AnswerSettings, BatchingSettings, FeatureSettings, GuardSettings, RaySettings, RunSettings

COMMANDS: list[click.Command] = []


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None or value != value else format(value, spec)


def print_run_table(report) -> None:
    """The one table ``spanqa run`` ends with."""
    s = report.summary
    r = report.result
    lat = s["inference"].get("latency_ms") or {}
    rows = [("questions", f"{s['questions']}"), ("features", f"{s['features']}")]
    if r is not None and "exact" in r:  # SQuAD 2.0 metrics
        rows += squad2_rows(r)
    elif r is not None:
        rows += [("exact match", f"{r['exact_match']:.2f}"), ("F1", f"{r['f1']:.2f}")]
        if r.get("unlabelled"):
            rows.append(("scored / without gold answers", f"{r['total']} / {r['unlabelled']}"))
    rows += [
        ("end-to-end questions/s", _fmt(s["end_to_end_questions_per_s"], ".2f")),
        ("model rows/s", _fmt(s["model_rows_per_s"], ".2f")),
        ("batch latency p50 / p99 (ms)", f"{_fmt(lat.get('median'), '.1f')} / {_fmt(lat.get('p99'), '.1f')}"),
        ("target / runtime / threads", f"{s['target']} / {s['runtime']['name']} / {s['threads']}"),
    ]
    width = max(len(k) for k, _ in rows)
    cell = max(12, *(len(v) for _, v in rows))
    click.echo("-" * (width + cell + 4))
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value:>{cell}}")
    click.echo("-" * (width + cell + 4))
    names = ["predictions.json", "nbest_predictions.json", "null_odds.json", "result.json", "summary.json", "predictions.jsonl"]
    names = [n for n in names if (report.result_dir / n).is_file()]
    written = f"{', '.join(names[:-1])} and {names[-1]}"
    if r is None:
        written += " (no gold answers: nothing scored)"
    elif r.get("unlabelled"):
        written += f" ({r['unlabelled']} questions without gold answers were not scored)"
    click.echo(f"Wrote {written} to {report.result_dir}")


def warn_unguarded(package) -> None:
    """One line when a reduced-precision model nobody measured is about to answer."""
    if package.precision != "fp32" and not package.manifest.guarded:
        click.echo(
            f"warning: {package.root} is a {package.precision} model built without the accuracy guard: "
            "its answers are unmeasured against fp32",
            err=True,
        )


def print_workers(report) -> None:
    """Per-worker questions/s of a Ray run, after the run table."""
    workers = report.summary["workers"]
    click.echo(f"{'worker':<14}{'node':<14}{'questions':>10}{'seconds':>10}{'questions/s':>13}")
    for wid, w in workers.items():
        restarts = f"  (restarted {len(w['pids']) - 1}x)" if len(w["pids"]) > 1 else ""
        click.echo(
            f"{wid:<14}{w['node']:<14}{w['questions']:>10}{w['seconds']:>10.1f}{_fmt(w['questions_per_s'], '.2f'):>13}{restarts}"
        )
    ray, t = report.summary["ray"], report.summary["timings_s"]
    click.echo(
        f"Ray: {ray['workers']} workers x {ray['threads_per_worker']} threads on {ray['nodes']} node(s), "
        f"{ray['cpus']:g} CPUs; fixed: cluster start {t['cluster_start_s']:.1f} s, actor start {t['actor_start_s']:.1f} s, "
        f"model load {t['model_load_s']:.1f} s, first block {t['first_block_s']:.1f} s; answering {t['answer_s']:.1f} s"
    )
    if report.summary["resumed"]:
        s = report.summary
        click.echo(f"Resumed: {s['resumed']} answers committed by earlier runs, {s['answered_this_run']} answered now")


@click.command("run")
@click.argument("inputs", nargs=-1, metavar="[INPUT]...", type=input_path("squad", path_type=str))
@click.option(
    "--model",
    type=input_path("model"),
    default=None,
    help="A model package, a .onnx file or a checkpoint directory (converted once and cached). "
    "Default: the official SpanBERT squad1 checkpoint, downloaded on first use.",
)
@click.option("-o", "--output", "result_dir", type=output_path("result"), default=Path("spanqa-result"), show_default=True)
@setting(
    RunSettings,
    "target",
    "--target",
    callback=target_name,
    help="Compile target when MODEL is a checkpoint or .onnx [default: cpu-fp32]; 'auto': the fastest for this CPU. "
    "A model package runs as it is: --target may only repeat its own.",
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
@squad2_options
@click.option(
    "--tune-threshold",
    is_flag=True,
    help="SQuAD 2.0: answer at the threshold that maximises F1 on DATASET and record it in result.json.",
)
@click.option(
    "--guard",
    type=input_path("squad", exists=True, dir_okay=False),
    default=None,
    help="Accuracy guard dataset when a reduced-precision target is built [default: DATASET].",
)
@click.option("--no-guard", is_flag=True, help="Build a reduced-precision target without the accuracy guard.")
@setting(GuardSettings, "questions", "--guard-questions", type=click.IntRange(min=1))
@click.option(
    "--calibration",
    type=input_path("squad", exists=True, dir_okay=False),
    default=None,
    help="SQuAD JSON calibrating a cpu-int8 conversion [default: the guard set minus the questions it scores].",
)
@click.option(
    "--mirror",
    envvar="SPANQA_MIRROR",
    default=None,
    help="Base URL serving the default checkpoint and dataset (env SPANQA_MIRROR).",
)
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: this process; ray: the whole job on a Ray cluster with Ray Data (pip install 'spanqa[ray]', docs/ray.md).",
)
@click.option(
    "--address", default=None, help="Ray: attach to a running cluster ('auto' or HOST:PORT) [default: start a local Ray]."
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Ray: actors [default: the cluster's CPUs // --threads-per-worker].",
)
@setting(
    RaySettings,
    "threads_per_worker",
    "--threads-per-worker",
    type=click.IntRange(min=1),
    help="Ray: CPUs and intra-op threads per actor.",
)
@setting(RaySettings, "batch_questions", "--batch-questions", type=click.IntRange(min=1), help="Ray: questions per actor call.")
@click.option("--ship-model", is_flag=True, help="Ray: carry the model package to every node through the object store.")
@click.option(
    "--resume",
    is_flag=True,
    help="Ray: finish the interrupted run into RESULT_DIR (its committed answers are kept in RESULT_DIR.partial).",
)
@click.option("--no-nbest", is_flag=True, help="Ray: no nbest_predictions.json (2-4 KB a question at --n-best 20).")
@report_option
@overwrite_option
@quiet_option
def run_cmd(
    inputs,
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
    version_2,
    null_score_diff_threshold,
    tune_threshold,
    guard,
    no_guard,
    guard_questions,
    calibration,
    mirror,
    engine,
    address,
    workers,
    threads_per_worker,
    batch_questions,
    ship_model,
    resume,
    no_nbest,
    overwrite,
) -> None:
    """Preprocess INPUT, run the model, extract answers and score them, in one step (the
    recipe's eval_acc_perf.sh). With no arguments: the official SpanBERT squad1 checkpoint on the
    official SQuAD v1.1 dev set, each fetched and cached on first use. Reduced-precision targets
    are guarded on INPUT's first questions unless --no-guard.

    The local engine takes one SQuAD JSON file. --engine ray takes any number of SQuAD JSON,
    JSON-lines or Parquet files ({id, question, context[, answers]}), directories or globs of
    them, local or on any fsspec filesystem."""
    from spanqa.download import ensure_assets
    from spanqa.engine.resolve import resolve_model
    from spanqa.fileutil import check_output
    from spanqa.jobs.run import run

    if guard and no_guard:
        raise click.UsageError("give either --guard or --no-guard, not both")
    ray_options = {"--address": address, "--workers": workers, "--ship-model": ship_model, "--resume": resume}
    ray_options["--no-nbest"] = no_nbest
    if engine == "local":
        given = [k for k, v in ray_options.items() if v]
        if given:
            raise click.UsageError(f"{given[0]} is for --engine ray")
        if len(inputs) > 1:
            raise click.UsageError("the local engine takes one SQuAD JSON file; use --engine ray for many inputs")
        if inputs and not str(inputs[0]).lower().endswith(".json") and not Path(inputs[0]).is_dir():
            from spanqa.scale.inputs import input_format

            if input_format(str(inputs[0])) in ("jsonl", "parquet"):
                raise click.UsageError(
                    f"{inputs[0]}: JSON-lines and Parquet input is for --engine ray; the local engine reads one SQuAD .json file"
                )
    else:
        for name, value in (("--threads", threads), ("--keep-files", keep_files)):
            if value:
                raise click.UsageError(f"{name} is for --engine local (with --engine ray: --threads-per-worker)")
        from spanqa.scale.ray_job import import_ray

        import_ray()  # the install hint before any download or conversion
    dataset = Path(inputs[0]) if inputs else None
    if engine == "ray" and (len(inputs) != 1 or "://" in inputs[0] or not inputs[0].endswith(".json")):
        dataset = None  # no one SQuAD file to guard a reduced-precision build on: --guard says which
    if engine == "ray" and inputs:
        if model is None:
            from spanqa.download import ensure_asset

            model = ensure_asset("squad1", mirror=mirror)
    else:
        dataset, model = ensure_assets(dataset, model, mirror=mirror)
        inputs = inputs or (str(dataset),)
    check_output(result_dir, "result", overwrite=overwrite, inputs=(dataset, model))
    if target == "auto":
        from spanqa.models.package import is_package
        from spanqa.targets.suitability import auto_target

        if is_package(model):
            target = None  # a package was chosen already: it runs as it is
        else:
            target = auto_target()
            click.echo(f"--target auto: {target} suits this CPU best", err=True)
    guard_from = guard or dataset
    guard_settings = GuardSettings(dataset=str(guard_from), questions=guard_questions) if guard_from else None
    package, converted = resolve_model(
        model, target, guard=guard_settings, unguarded=no_guard, calibration=calibration, threads=threads
    )
    if converted:
        click.echo(f"Converted {model} for {package.target} -> {package.root}", err=True)
        cal = (package.manifest.calibration or {}).get("dataset")
        if cal and dataset and Path(cal).resolve() == Path(dataset).resolve():
            click.echo(
                f"note: int8 calibrated on {dataset} (its questions past the guard's first {guard_questions}); "
                "pass --calibration OTHER.json to keep calibration and scoring apart",
                err=True,
            )
    warn_unguarded(package)
    settings = RunSettings(
        target=package.target,
        threads=threads,
        engine=replace(
            RunSettings().engine,
            features=FeatureSettings.for_model(
                package.seq_len,
                package.max_positions,
                max_seq_length=max_seq_length,
                doc_stride=doc_stride,
                max_query_length=max_query_length,
            ),
            answers=AnswerSettings(
                n_best_size=n_best,
                max_answer_length=max_answer_length,
                version_2_with_negative=version_2,
                null_score_diff_threshold=null_score_diff_threshold,
            ),
            batching=BatchingSettings(token_budget=token_budget, length_aware=not no_length_aware),
            batch_size=batch_size,
        ),
    )
    if engine == "ray":
        from spanqa import progress
        from spanqa.scale.report import run_job

        ray_settings = RaySettings(
            address=address,
            workers=workers,
            threads_per_worker=threads_per_worker,
            batch_questions=batch_questions,
            ship_model=ship_model,
            nbest=not no_nbest,
        )
        quiet = not progress.enabled()
        from spanqa.scale.report import partial_dir

        click.get_current_context().meta["spanqa.interrupt_hint"] = (
            f"The answers committed so far are kept in {partial_dir(result_dir)}: rerun the same command with --resume."
        )
        report = run_job(
            inputs,
            package,
            result_dir,
            settings.engine,
            ray_settings,
            overwrite=overwrite,
            resume=resume,
            tune_threshold=tune_threshold,
            quiet=quiet,
        )
        print_run_table(report)
        print_workers(report)
        return
    report = run(
        dataset, package, result_dir, settings, keep_files=keep_files, overwrite=overwrite, tune_threshold=tune_threshold
    )
    print_run_table(report)


COMMANDS.append(run_cmd)
