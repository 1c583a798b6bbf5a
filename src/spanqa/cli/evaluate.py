"""CLI commands: evaluate (the recipe's spanBert_postprocess.py step)."""

from __future__ import annotations

from pathlib import Path

import click

from spanqa.cli._common import quiet_option

COMMANDS: list[click.Command] = []


@click.command("evaluate")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option(
    "--features", "features_dir", type=click.Path(path_type=Path), required=True,
    help="The features directory made by 'spanqa preprocess'.",
)
@click.option(
    "--outputs", "outputs_dir", type=click.Path(path_type=Path), required=True,
    help="The inference outputs: {i}_output_0 (start) and {i}_output_1 (end) logits per batch, .bin or .npy.",
)
@click.option(
    "-o", "--output", "result_dir", type=click.Path(path_type=Path), required=True,
    help="The result directory to write (predictions.json, nbest_predictions.json, result.json).",
)
@click.option("--n-best", type=click.IntRange(min=1), default=20, show_default=True, help="Candidates kept per question.")
@click.option(
    "--max-answer-length", type=click.IntRange(min=1), default=30, show_default=True,
    help="Longest answer, in word pieces.",
)
@click.option(
    "--rank-padding", is_flag=True,
    help="Let padding positions take part in the n-best ranking, exactly as run_squad.py on padded outputs.",
)
@quiet_option
def evaluate_cmd(
    dataset: Path, features_dir: Path, outputs_dir: Path, result_dir: Path, n_best: int, max_answer_length: int,
    rank_padding: bool,
) -> None:
    """Turn inference outputs into answers and score them against DATASET (SQuAD v1.1 JSON):
    exact match and F1 as the official script computes them."""
    from spanqa.answers import AnswerSettings, evaluate

    result = evaluate(
        dataset, features_dir, outputs_dir, result_dir,
        AnswerSettings(n_best_size=n_best, max_answer_length=max_answer_length, rank_padding=rank_padding),
    )
    click.echo(
        f"Exact match {result['exact_match']:.2f}  F1 {result['f1']:.2f}  "
        f"over {result['total']} questions ({result['num_features']} features)"
    )
    if result["unanswered"]:
        click.echo(
            f"warning: {result['unanswered']} of {result['total']} questions in {dataset} had no "
            "prediction and scored 0",
            err=True,
        )
    click.echo(f"Wrote predictions.json, nbest_predictions.json and result.json to {result_dir}")


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None or value != value else format(value, spec)


def print_run_table(report) -> None:
    """The one table ``spanqa run`` ends with."""
    s = report.summary
    r = report.result
    lat = s["inference"].get("latency_ms") or {}
    rows = [
        ("questions", f"{s['questions']}"),
        ("features", f"{s['features']}"),
        ("exact match", f"{r['exact_match']:.2f}"),
        ("F1", f"{r['f1']:.2f}"),
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
    click.echo(f"Wrote predictions.json, nbest_predictions.json, result.json and summary.json to {report.result_dir}")


@click.command("run")
@click.argument("dataset", type=click.Path(path_type=Path), required=False)
@click.option(
    "--model", type=click.Path(path_type=Path), default=None,
    help="A model package, a .onnx file or a checkpoint directory (converted once and cached). "
    "Default: the official SpanBERT squad1 checkpoint, downloaded on first use.",
)
@click.option("-o", "--output", "result_dir", type=click.Path(path_type=Path), default=Path("spanqa-result"), show_default=True)
@click.option("--target", default="cpu-fp32", show_default=True, help="Compile target when MODEL is a checkpoint.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Rows per batch (default: by token budget).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Inference threads (default: all cores).")
@click.option("--keep-files", is_flag=True, help="Also keep the features and output .bin files (recipe layout) in RESULT_DIR.")
@click.option("--no-length-aware", is_flag=True, help="Pad every feature to --max-seq-length, as the recipe does.")
@click.option("--token-budget", type=click.IntRange(min=64), default=1024, show_default=True, help="Max rows x length per batch.")
@click.option("--max-seq-length", type=click.IntRange(min=16), default=512, show_default=True)
@click.option("--doc-stride", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--max-query-length", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--n-best", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--max-answer-length", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--guard", type=click.Path(path_type=Path), default=None, help="Accuracy guard dataset when a reduced-precision target is built.")
@click.option("--guard-questions", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--calibration", type=click.Path(path_type=Path), default=None,
              help="SQuAD JSON calibrating a cpu-int8 conversion (default: the --guard set, else DATASET itself).")
@click.option("--mirror", envvar="SPANQA_MIRROR", default=None, help="Base URL serving the default checkpoint and dataset (env SPANQA_MIRROR).")
@quiet_option
def run_cmd(dataset, model, result_dir, target, batch_size, threads, keep_files, no_length_aware, token_budget,
            max_seq_length, doc_stride, max_query_length, n_best, max_answer_length, guard, guard_questions, calibration,
            mirror) -> None:
    """Preprocess DATASET, run the model, extract answers and score them, in one step (the
    recipe's eval_acc_perf.sh). With no arguments: the official SpanBERT squad1 checkpoint on the
    official SQuAD v1.1 dev set, each fetched and cached on first use."""
    from spanqa.answers import AnswerSettings
    from spanqa.batching import BatchingSettings
    from spanqa.download import ensure_asset
    from spanqa.pipeline import RunSettings, resolve_model, run
    from spanqa.squad import FeatureSettings

    if dataset is None:
        dataset = ensure_asset("squad-v1.1-dev", mirror=mirror)
    if model is None:
        model = ensure_asset("squad1", mirror=mirror)
    package, converted = resolve_model(
        model, target, guard=guard, guard_questions=guard_questions, calibration=calibration or guard or dataset
    )
    if converted:
        click.echo(f"Converted {model} for {target} -> {package.root}", err=True)
    settings = RunSettings(
        target=target,
        batch_size=batch_size,
        threads=threads,
        features=FeatureSettings(max_seq_length=max_seq_length, doc_stride=doc_stride, max_query_length=max_query_length),
        answers=AnswerSettings(n_best_size=n_best, max_answer_length=max_answer_length),
        batching=BatchingSettings(token_budget=token_budget, length_aware=not no_length_aware),
    )
    report = run(dataset, package, result_dir, settings, keep_files=keep_files)
    print_run_table(report)


@click.command("ask")
@click.option("--model", type=click.Path(path_type=Path), required=True, help="A model package, .onnx or checkpoint directory.")
@click.option("--context", required=True, help="The passage: a text file's path, or the text itself.")
@click.argument("questions", nargs=-1)
@click.option("--n-best", type=click.IntRange(min=1), default=1, show_default=True, help="Answers shown per question.")
@click.option("--threads", type=click.IntRange(min=1), default=None)
@quiet_option
def ask_cmd(model: Path, context: str, questions: tuple[str, ...], n_best: int, threads: int | None) -> None:
    """Answer QUESTIONS about a context; with no QUESTIONS, read one per line from stdin
    (interactive when stdin is a terminal; an empty line or Ctrl-D ends)."""
    import sys

    from spanqa.ask import Answerer
    from spanqa.errors import DatasetError
    from spanqa.pipeline import resolve_model

    path = Path(context)
    try:
        text = path.read_text(encoding="utf-8") if len(context) < 4096 and path.is_file() else context
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read the context ({exc})") from None
    if not text.strip():
        raise DatasetError("--context is empty: give a passage or a text file")
    package, _ = resolve_model(model)
    answerer = Answerer(package, threads)

    def show(items) -> None:
        for a in items:
            for k, cand in enumerate(a.nbest[:n_best]):
                prefix = f"{a.question}\n  -> " if k == 0 else "  -> "
                click.echo(f"{prefix}{cand['text']}  (p={cand['probability']:.3f})")

    if questions:
        show(answerer.answer(text, list(questions)))
        return
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            click.echo("? ", nl=False)
        line = sys.stdin.readline()
        if not line or not line.strip():
            break
        show(answerer.answer(text, [line.strip()]))


COMMANDS.extend([evaluate_cmd, run_cmd, ask_cmd])
