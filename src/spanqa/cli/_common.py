"""Options shared by several commands; defaults come from the settings dataclasses."""

from __future__ import annotations

from typing import Any

import click

from spanqa.settings import default


def _set_quiet(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        from spanqa import progress

        progress.set_quiet(True)
    return value


quiet_option = click.option(
    "-q",
    "--quiet",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_set_quiet,
    help="No progress bars.",
)

overwrite_option = click.option(
    "--overwrite", is_flag=True, help="Replace the output if it is already a spanqa artifact of the same kind."
)


def setting(cls: type, name: str, *decls: str, **kwargs: Any):
    """A click option whose default is ``cls``'s default for field ``name``."""
    value = default(cls, name)
    kwargs.setdefault("default", value)
    if value is not None and not isinstance(value, bool):
        kwargs.setdefault("show_default", True)
    return click.option(*decls, **kwargs)


def squad2_options(fn):
    """--version-2-with-negative and --null-score-diff-threshold (run, evaluate)."""
    from spanqa.settings import AnswerSettings

    fn = setting(
        AnswerSettings,
        "null_score_diff_threshold",
        "--null-score-diff-threshold",
        type=float,
        help='SQuAD 2.0: answer "" when the null score minus the best span\'s score exceeds this '
        "(a run's best_f1_thresh tunes it).",
    )(fn)
    return click.option(
        "--version-2-with-negative/--no-version-2-with-negative",
        "version_2",
        default=None,
        help='SQuAD 2.0: let the model answer "" (no answer) [default: on for a 2.0 dataset, features '
        "preprocessed for 2.0, or a model built for 2.0].",
    )(fn)


def squad2_rows(result: dict) -> list[tuple[str, str]]:
    """The 2.0 metrics as table rows (official names in result.json)."""
    rows = [("exact", f"{result['exact']:.2f}"), ("F1", f"{result['f1']:.2f}")]
    for prefix, label in (("HasAns_", "has answer"), ("NoAns_", "no answer")):
        if f"{prefix}total" in result:
            rows.append(
                (
                    f"{label}: exact / F1 (n)",
                    f"{result[prefix + 'exact']:.2f} / {result[prefix + 'f1']:.2f} ({result[prefix + 'total']})",
                )
            )
    if "null_score_diff_threshold" in result:
        tuned = " (tuned)" if result.get("threshold_tuned") else ""
        rows.append(("null score diff threshold", f"{result['null_score_diff_threshold']:.4f}{tuned}"))
    for name in ("exact", "f1"):
        if f"best_{name}" in result:
            label = "best exact" if name == "exact" else "best F1"
            rows.append((f"{label} / threshold", f"{result[f'best_{name}']:.2f} / {result[f'best_{name}_thresh']:.4f}"))
    return rows
