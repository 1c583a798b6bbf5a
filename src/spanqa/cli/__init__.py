"""The ``spanqa`` command line: a thin click group that parses options and forwards to the library.

Heavy libraries (torch, onnxruntime, openvino, ray) are imported inside the library functions,
never here, so ``spanqa --help`` stays instant. Every failure a user can cause ends as one line
and an exit code (``spanqa.errors``); ``--debug`` or ``SPANQA_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import os
import sys

import click

from spanqa import __version__
from spanqa.errors import EXIT_DATA, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OUTPUT, SpanQAError, one_line

_debug_flag = False  # --debug of the current invocation


def _debug() -> bool:
    return _debug_flag or os.environ.get("SPANQA_DEBUG", "") not in ("", "0")


def _fail(message: str, code: int):
    click.echo(f"Error: {one_line(message)}", err=True)
    sys.exit(code)


class _Group(click.Group):
    """Turns every failure into a one-line message with a documented exit code, never a traceback."""

    def invoke(self, ctx: click.Context):
        from spanqa.sysinfo import sigterm_as_interrupt

        try:
            with sigterm_as_interrupt():  # `kill` unwinds like Ctrl-C: temp files go, nothing half-made stays
                return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            hint = ctx.meta.get("spanqa.interrupt_hint", "")
            click.echo(f"Interrupted.{' ' + hint if hint else ''}", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except BaseException as exc:
            if _debug():
                raise
            if isinstance(exc, SpanQAError):
                _fail(str(exc), exc.exit_code)
            if isinstance(exc, OSError):  # permissions, a full disk, a path that vanished
                where = f"{exc.filename}: " if exc.filename else ""
                _fail(f"{where}{exc.strerror or exc}; check the path, its permissions and the free space", EXIT_OUTPUT)
            if isinstance(exc, (UnicodeDecodeError, RecursionError)):
                _fail(f"unreadable input ({type(exc).__name__}: {exc})", EXIT_DATA)
            _fail(
                f"internal error ({type(exc).__name__}: {str(exc)[:300]}); this is a bug in spanqa, "
                "rerun with --debug (or SPANQA_DEBUG=1) for the traceback and report it",
                EXIT_INTERNAL,
            )


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="spanqa")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@click.option("--debug", is_flag=True, help="Show the traceback of an error (also SPANQA_DEBUG=1).")
def main(quiet: bool, debug: bool) -> None:
    """spanqa: SpanBERT/BERT extractive QA from checkpoint to fast, verified inference."""
    from spanqa import progress

    global _debug_flag
    _debug_flag = debug
    progress.set_quiet(quiet)


def _register() -> None:
    from spanqa.cli import ask, bench, data, download, evaluate, infer, loadgen, model, report, run, serve

    for module in (download, model, data, infer, evaluate, run, report, ask, bench, serve, loadgen):
        for command in module.COMMANDS:
            main.add_command(_checked(command))


def _checked(command: click.Command) -> click.Command:
    """Run the output rule over the command's declared paths before its own code."""
    import functools

    from spanqa.cli._common import check_declared_paths

    callback = command.callback

    @functools.wraps(callback)
    def checked(*args, **kwargs):
        check_declared_paths(click.get_current_context())
        return callback(*args, **kwargs)

    command.callback = checked
    return command


_register()
