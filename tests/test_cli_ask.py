"""``spanqa ask``: questions about a passage, answered by a loaded model."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from spanqa.cli import main

CONTEXT = (
    "The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, "
    "a region in France. They were descended from Norse raiders and pirates from Denmark, Iceland and Norway."
)


def test_ask_arguments(standin_package):
    result = CliRunner().invoke(
        main,
        [
            "ask",
            "--model",
            str(standin_package),
            "--context",
            CONTEXT,
            "In what country is Normandy located?",
            "When did the Normans give their name to Normandy?",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "In what country is Normandy located?"
    assert lines[1].startswith("  -> France")
    assert lines[3].startswith("  -> 10th and 11th centuries")


def test_ask_reads_questions_from_stdin(standin_package, tmp_path):
    ctx = tmp_path / "ctx.txt"
    ctx.write_text(CONTEXT, encoding="utf-8")
    result = CliRunner().invoke(
        main,
        ["ask", "--model", str(standin_package), "--context", str(ctx), "--n-best", "2"],
        input="In what country is Normandy located?\n\n",
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 3 and lines[1].startswith("  -> France")


def test_ask_context_from_a_file(standin_package, tmp_path):
    ctx = tmp_path / "ctx.txt"
    ctx.write_text(CONTEXT, encoding="utf-8")
    for option in (["--context", f"@{ctx}"], ["--context-file", str(ctx)]):
        result = CliRunner().invoke(
            main, ["ask", "--model", str(standin_package), *option, "In what country is Normandy located?"]
        )
        assert result.exit_code == 0, result.output
        assert result.output.splitlines()[1].startswith("  -> France")


@pytest.mark.parametrize(
    "options, message",
    [
        (["--context", "   "], "Error: --context is empty: give a passage or a text file"),
        ([], "Error: give the passage with --context TEXT (or @FILE) or --context-file FILE"),
        (
            ["--context", "x", "--context-file", "y"],
            "Error: give the passage with --context TEXT (or @FILE) or --context-file FILE",
        ),
    ],
)
def test_ask_context_errors(standin_package, tmp_path, monkeypatch, options, message):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["ask", "--model", str(standin_package), *options, "Why?"])
    assert result.exit_code == 2
    assert result.output == message + "\n"


def test_ask_unreadable_context_file(standin_package, tmp_path):
    result = CliRunner().invoke(main, ["ask", "--model", str(standin_package), "--context", f"@{tmp_path / 'gone.txt'}", "Why?"])
    assert result.exit_code == 3
    assert result.output == f"Error: {tmp_path / 'gone.txt'}: cannot read the passage (No such file or directory)\n"


def test_a_one_word_passage_is_still_a_passage(standin_package):
    result = CliRunner().invoke(main, ["ask", "--model", str(standin_package), "--context", "Normandy", "Where?"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2 and lines[0] == "Where?" and lines[1].startswith("  -> Normandy  (p=")


@pytest.mark.parametrize("passage", ["Node.js", "notes/today"])
def test_a_passage_that_looks_like_a_file_name_is_a_passage(standin_package, tmp_path, monkeypatch, passage):
    """#19: `ask --context "Node.js"` took the passage for a missing file."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["ask", "--model", str(standin_package), "--context", passage, "What?"])
    assert result.exit_code == 0, result.output
    answer = result.stdout.splitlines()[1]
    assert answer.startswith("  -> ") and answer[5:].split("  (p=")[0] in passage, answer  # a span of the passage
    assert result.stderr == f"note: --context {passage}: no such file, so it is the passage itself (a file: --context @FILE)\n"
