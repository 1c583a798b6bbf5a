"""Options shared by several commands; defaults come from the settings dataclasses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
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


def target_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A --target that names a known target (or 'auto'); anything else is a usage error listing them."""
    from spanqa.registry import TARGETS

    if value is None or value == "auto" or value in TARGETS:
        return value
    from spanqa.errors import UsageError

    raise UsageError(f"--target {value}: unknown target; choose one of: {', '.join(sorted(TARGETS))}, or auto")


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


# --------------------------------------------------------------------------------------------
# What a command reads and writes. Commands declare their paths with these types; the group
# checks every declared output against the output rule (spanqa.fileutil), with every declared
# input, before the command's own code runs, and tests/test_cli_outputs.py walks the command
# tree with them. One rule, one place: a command added later is covered by declaring its paths.

INPUT_ROLES = ("squad", "model", "checkpoint", "onnx", "features", "outputs", "result", "file")


class InputPath(click.Path):
    """A path a command reads (``role`` says what it must hold); never a place to write."""

    def __init__(self, role: str, *, separator: str | None = None, **kwargs: Any):
        if role not in INPUT_ROLES:
            raise ValueError(f"unknown input role {role!r}")
        kwargs.setdefault("path_type", Path)
        super().__init__(**kwargs)
        self.role = role
        self.separator = separator  # e.g. infer --input a,b,c

    def paths(self, value: Any) -> list[str]:
        values = value if isinstance(value, (tuple, list)) else [value]
        out: list[str] = []
        for item in values:
            if item is None:
                continue
            out += [p for p in str(item).split(self.separator) if p] if self.separator else [str(item)]
        return out


class OutputPath(click.Path):
    """A path a command writes: a directory artifact of ``kind``, or one file (``file=True``).
    ``reuse``: the flag that continues the command's own earlier artifact (``--resume``);
    ``overwrite``: the flag that replaces it; ``idempotent``: the command's own earlier artifact
    is taken as it is (a cache: ``download`` says it is already there and writes nothing);
    ``locate``: where the output really goes, when the option names a place rather than the
    output itself."""

    def __init__(
        self,
        kind: str,
        *,
        file: bool = False,
        reuse: str | None = None,
        overwrite: str = "overwrite",
        idempotent: bool = False,
        locate: Callable[[dict, Any], tuple[Path, str, bool]] | None = None,
    ):
        super().__init__(path_type=Path)
        self.kind, self.file, self.reuse, self.overwrite, self.locate = kind, file, reuse, overwrite, locate
        self.idempotent = idempotent

    def check(self, params: dict, value: Any, inputs: list[str], option: str) -> None:
        from spanqa.fileutil import check_output, check_output_file

        path, kind, is_file = self.locate(params, value) if self.locate else (Path(value), self.kind, self.file)
        overwrite = self.idempotent or bool(params.get(self.overwrite)) or bool(self.reuse and params.get(self.reuse))
        if is_file:
            check_output_file(path, kind, overwrite=overwrite, inputs=tuple(inputs), option=option)
        else:
            check_output(path, kind, overwrite=overwrite, inputs=tuple(inputs), option=option)


def output_path(kind: str, *, file: bool = False, **kwargs: Any) -> OutputPath:
    return OutputPath(kind, file=file, **kwargs)


def input_path(role: str, **kwargs: Any) -> InputPath:
    return InputPath(role, **kwargs)


def param_label(param: click.Parameter) -> str:
    """How messages name a parameter: its short option (``-o``) or its metavar."""
    if isinstance(param, click.Option):
        return min(param.opts, key=len)
    return (param.name or "").upper()


def check_declared_paths(ctx: click.Context) -> None:
    """The output rule for every output ``ctx``'s command declares, before any work."""
    inputs: list[str] = []
    for param in ctx.command.params:
        if isinstance(param.type, InputPath):
            inputs += param.type.paths(ctx.params.get(param.name))
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if isinstance(param.type, OutputPath) and value is not None:
            param.type.check(ctx.params, value, inputs, param_label(param))
