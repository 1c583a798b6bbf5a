"""CLI command: ask (questions about a passage, answered by a loaded model)."""

from __future__ import annotations

import re
from pathlib import Path

import click

from spanqa.cli._common import input_path, quiet_option, squad2_options

COMMANDS: list[click.Command] = []
_LOOKS_LIKE_FILE = re.compile(r"^\S+(\.[A-Za-z0-9]{1,5}|/\S*)$")


def read_context(context: str | None, context_file: Path | None) -> str:
    """The passage: ``--context-file``, ``--context @FILE``, an existing file named by
    ``--context``, or the text of ``--context`` itself. A short passage that looks like a file
    name ("Node.js") but names none is a passage: a note on stderr says how to read a file."""
    from spanqa.errors import DatasetError, UsageError

    if (context is None) == (context_file is None):
        raise UsageError("give the passage with --context TEXT (or @FILE) or --context-file FILE")
    path = context_file
    if context is not None:
        if context.startswith("@"):
            path = Path(context[1:])
        elif len(context) < 4096 and Path(context).is_file():
            path = Path(context)
        elif _LOOKS_LIKE_FILE.match(context):
            click.echo(
                f"note: --context {context}: no such file, so it is the passage itself (a file: --context @FILE)", err=True
            )
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{path}: cannot read the passage ({getattr(exc, 'strerror', None) or exc})") from None
    else:
        text = context
    if not text.strip():
        raise UsageError("--context is empty: give a passage or a text file")
    return text


@click.command("ask")
@click.option("--model", type=input_path("model"), required=True, help="A model package, .onnx or checkpoint directory.")
@click.option("--context", default=None, help="The passage itself, or @FILE to read it from a file.")
@click.option("--context-file", type=input_path("file"), default=None, help="A text file holding the passage.")
@click.argument("questions", nargs=-1)
@click.option("--n-best", type=click.IntRange(min=1), default=1, show_default=True, help="Answers shown per question.")
@click.option("--threads", type=click.IntRange(min=1), default=None)
@squad2_options
@quiet_option
def ask_cmd(
    model: Path,
    context: str | None,
    context_file: Path | None,
    questions: tuple[str, ...],
    n_best: int,
    threads: int | None,
    version_2: bool | None,
    null_score_diff_threshold: float,
) -> None:
    """Answer QUESTIONS about a passage; with no QUESTIONS, read one per line from stdin
    (interactive when stdin is a terminal; an empty line or Ctrl-D ends)."""
    import sys

    from spanqa.cli.run import warn_unguarded
    from spanqa.engine import Engine
    from spanqa.errors import UsageError
    from spanqa.settings import AnswerSettings, EngineSettings

    text = read_context(context, context_file)
    for q in questions:
        if not q.strip():
            raise UsageError("a question is empty; ask something, e.g. spanqa ask --context ... 'Who?'")
    answers = AnswerSettings(version_2_with_negative=version_2, null_score_diff_threshold=null_score_diff_threshold)
    engine = Engine.load(model, threads=threads, settings=EngineSettings(answers=answers))
    warn_unguarded(engine.package)

    def show(qs: list[str]) -> None:
        for q, answers in zip(qs, engine.answer_many([(q, text) for q in qs], top_k=n_best)):
            for k, a in enumerate(answers):
                prefix = f"{q}\n  -> " if k == 0 else "  -> "
                odds = f", null odds {a.null_odds:.3f}" if a.null_odds is not None and k == 0 else ""
                click.echo(f"{prefix}{a.text or '(no answer)'}  (p={a.score:.3f}{odds})")

    with engine:
        if questions:
            show(list(questions))
            return
        interactive = sys.stdin.isatty()
        while True:
            if interactive:
                click.echo("? ", nl=False)
            line = sys.stdin.readline()
            if not line or not line.strip():
                break
            show([line.strip()])


COMMANDS.append(ask_cmd)
