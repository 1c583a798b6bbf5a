"""CLI commands: evaluate (the recipe's spanBert_postprocess.py step)."""

from __future__ import annotations

from pathlib import Path

import click

from spanqa.cli._common import input_path, output_path, overwrite_option, quiet_option, setting, squad2_options, squad2_rows
from spanqa.settings import AnswerSettings

COMMANDS: list[click.Command] = []


@click.command("evaluate")
@click.argument("dataset", type=input_path("squad"))
@click.option(
    "--features",
    "features_dir",
    type=input_path("features"),
    required=True,
    help="The features directory made by 'spanqa preprocess'.",
)
@click.option(
    "--outputs",
    "outputs_dir",
    type=input_path("outputs"),
    required=True,
    help="The inference outputs: {i}_output_0 (start) and {i}_output_1 (end) logits per batch, .bin or .npy.",
)
@click.option(
    "-o",
    "--output",
    "result_dir",
    type=output_path("result"),
    required=True,
    help="The result directory to write (predictions.json, nbest_predictions.json, result.json).",
)
@setting(AnswerSettings, "n_best_size", "--n-best", type=click.IntRange(min=1), help="Candidates kept per question.")
@setting(
    AnswerSettings, "max_answer_length", "--max-answer-length", type=click.IntRange(min=1), help="Longest answer, in word pieces."
)
@click.option(
    "--rank-padding",
    is_flag=True,
    help="Let padding positions take part in the n-best ranking, exactly as run_squad.py on padded outputs.",
)
@squad2_options
@overwrite_option
@quiet_option
def evaluate_cmd(
    dataset: Path,
    features_dir: Path,
    outputs_dir: Path,
    result_dir: Path,
    n_best: int,
    max_answer_length: int,
    rank_padding: bool,
    version_2: bool | None,
    null_score_diff_threshold: float,
    overwrite: bool,
) -> None:
    """Turn inference outputs into answers and score them against DATASET (SQuAD v1.1 or 2.0
    JSON): exact match and F1 as the official scripts compute them (2.0: also HasAns / NoAns and
    the best thresholds; null_odds.json beside the predictions)."""
    from spanqa.offline.evaluate import evaluate

    result = evaluate(
        dataset,
        features_dir,
        outputs_dir,
        result_dir,
        AnswerSettings(
            n_best_size=n_best,
            max_answer_length=max_answer_length,
            rank_padding=rank_padding,
            version_2_with_negative=version_2,
            null_score_diff_threshold=null_score_diff_threshold,
        ),
        overwrite=overwrite,
    )
    if "exact" in result:  # SQuAD 2.0
        click.echo(f"SQuAD 2.0 over {result['total']} questions ({result['num_features']} features):")
        for key, value in squad2_rows(result):
            click.echo(f"  {key}: {value}")
    else:
        click.echo(
            f"Exact match {result['exact_match']:.2f}  F1 {result['f1']:.2f}  "
            f"over {result['total']} questions ({result['num_features']} features)"
        )
    if result["unanswered"]:
        click.echo(
            f"warning: {result['unanswered']} of {result['total']} questions in {dataset} had no prediction and scored 0",
            err=True,
        )
    odds = "null_odds.json, " if "best_f1" in result else ""
    click.echo(f"Wrote predictions.json, nbest_predictions.json, {odds}and result.json to {result_dir}")


COMMANDS.append(evaluate_cmd)
