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


def test_ask_empty_context(standin_package):
    result = CliRunner().invoke(main, ["ask", "--model", str(standin_package), "--context", "   ", "Why?"])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: --context is empty: give a passage or a text file"
