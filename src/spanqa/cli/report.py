"""CLI command: report (the recipe's parse.py, and the HTML report of result directories)."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from spanqa.cli._common import input_path, output_path, overwrite_option

COMMANDS: list[click.Command] = []

HTML_NAME = "report.html"  # what `run --report` writes into its result directory
JSON_NAME = "report.json"


@click.command("report")
@click.argument("result_dirs", nargs=-1, required=True, metavar="RESULT_DIR...", type=input_path("result"))
@click.option("--html", "html", type=output_path("html report", file=True), default=None, help="Write the HTML report here.")
@click.option(
    "--json", "data", type=output_path("report data", file=True), default=None, help="Write the report's data (JSON) here."
)
@click.option(
    "--dataset",
    type=input_path("squad", exists=True, dir_okay=False),
    default=None,
    help="The SQuAD file the results answered [default: the one their summary.json names].",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Batch size of an msame log that does not state it.")
@overwrite_option
def report_cmd(
    result_dirs: tuple[Path, ...], html: Path | None, data: Path | None, dataset: Path | None, batch_size, overwrite
) -> None:
    """Report on result directories of 'spanqa run' or 'spanqa evaluate'.

    Without --html/--json: one line per file, as the recipe's parse.py: fps from an infer log
    or infer summary.json, rows/s and questions/s from a run's summary.json, EM/F1 from a
    result.json (RESULT_DIR may also be any of those files). fps = batch size x 1000 / average
    ms per batch without the first run (msame's "without first time" line), as parse.py has it.

    --html writes one self-contained page (figures inline, no network): EM/F1 with 95%
    intervals, F1/EM by context length, windows and question type, the 30 worst questions,
    throughput and batch latency over the run, the package and the machine; SQuAD 2.0's
    has-answer/no-answer figures and F1 against the threshold. Two or more results of the same
    questions are compared: a paired interval of the F1 difference and every question answered
    differently. --json writes the data behind every figure (docs/report.md).
    """
    if not (html or data):
        if dataset is not None:
            raise click.UsageError("--dataset is for the HTML/JSON report: add --html FILE or --json FILE")
        from spanqa.offline.report import report_lines

        for path in result_dirs:
            for line in report_lines(path, batch_size):
                click.echo(line)
        return
    if batch_size is not None:
        raise click.UsageError("--batch-size is for the plain report of an msame log; drop it with --html/--json")
    if html:
        _check_plot()
    from spanqa.report import write_report

    write_report(list(result_dirs), html, data, dataset=dataset, overwrite=overwrite)
    for path in (html, data):
        if path:
            click.echo(f"Wrote {path}")


def _check_plot() -> None:
    """The install hint before any work: the figures need matplotlib."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        from spanqa.errors import missing_backend

        raise missing_backend("matplotlib", "plot")


def report_option(command):
    """``--report`` for ``spanqa run``: after the run, report.html and report.json in its
    result directory (the HTML report of that one result)."""

    @functools.wraps(command)
    def wrapper(*args, report: bool = False, **kwargs):
        if report:
            _check_plot()
            inputs = kwargs.get("inputs") or ()
            if kwargs.get("engine") == "ray" and not (len(inputs) == 1 and str(inputs[0]).endswith(".json")):
                raise click.UsageError("--report with --engine ray needs one SQuAD .json INPUT (the report reads its questions)")
        out = command(*args, **kwargs)
        if report:
            from spanqa.report import write_report

            result_dir = Path(kwargs["result_dir"])
            write_report([result_dir], result_dir / HTML_NAME, result_dir / JSON_NAME, inside_result=True)
            click.echo(f"Wrote {HTML_NAME} and {JSON_NAME} to {result_dir}")
        return out

    return click.option(
        "--report", is_flag=True, help=f"Also write the HTML report ({HTML_NAME}, with {JSON_NAME}) into the result directory."
    )(wrapper)


COMMANDS.append(report_cmd)
