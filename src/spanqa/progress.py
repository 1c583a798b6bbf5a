"""Progress bars on stderr that stay quiet when stderr is not a terminal or --quiet is set."""

from __future__ import annotations

import sys
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def enabled() -> bool:
    return not _quiet and sys.stderr.isatty()


def bar(total: int | None = None, desc: str = "", unit: str = "it", unit_scale: bool = False):
    """A tqdm bar on stderr, disabled when not interactive. Use as a context manager."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=unit_scale,
        file=sys.stderr,
        disable=not enabled(),
        leave=False,
        dynamic_ncols=True,
    )


def track(items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it") -> Iterator[T]:
    with bar(total=total, desc=desc, unit=unit) as b:
        for item in items:
            yield item
            b.update(1)
