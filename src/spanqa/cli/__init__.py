"""The ``spanqa`` command line: a thin click group that parses options and forwards to the library.

Heavy libraries (torch, onnxruntime, openvino) are imported inside the library functions, never
here, so ``spanqa --help`` stays instant.
"""

from __future__ import annotations

import sys

import click

from spanqa import __version__
from spanqa.errors import SpanQAError


class _Group(click.Group):
    """Turns library errors into one-line messages with a non-zero exit, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SpanQAError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="spanqa")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def main(quiet: bool) -> None:
    """spanqa: SpanBERT/BERT extractive QA from checkpoint to fast, verified offline inference."""
    from spanqa import progress

    progress.set_quiet(quiet)


def _register() -> None:
    from spanqa.cli import bench, data, download, evaluate, infer, model, serve

    for module in (download, model, data, infer, evaluate, bench, serve):
        for command in module.COMMANDS:
            main.add_command(command)


_register()
