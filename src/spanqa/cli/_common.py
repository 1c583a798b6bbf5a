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
