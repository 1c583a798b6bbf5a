"""Options shared by several commands."""

from __future__ import annotations

import click


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
