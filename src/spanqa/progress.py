"""Progress bars on stderr that stay quiet when stderr is not a terminal or --quiet is set."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def enabled() -> bool:
    return not _quiet and sys.stderr.isatty()


class LineProgress:
    """For logs (stderr not a terminal): one plain line every ``interval`` seconds, so a long
    run in a batch job or CI shows it is alive; tqdm's carriage returns garble log files."""

    def __init__(self, total: int | None, desc: str, unit: str, interval: float = 30.0):
        self.total, self.desc, self.unit, self.interval = total, desc, unit, interval
        self.n = 0
        self.began = self.last = time.monotonic()

    def update(self, k: int = 1) -> None:
        self.n += k
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            of = f"/{self.total}" if self.total else ""
            pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
            print(f"{self.desc}: {self.n}{of} {self.unit}{pct} after {now - self.began:.0f} s", file=sys.stderr, flush=True)

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc) -> None:
        pass


def bar(total: int | None = None, desc: str = "", unit: str = "it", unit_scale: bool = False, lines: bool = False):
    """A tqdm bar on stderr, disabled when not interactive. Use as a context manager.
    ``lines``: when stderr is not a terminal (and not --quiet), log a plain line every 30 s."""
    from tqdm import tqdm

    if lines and not _quiet and not sys.stderr.isatty():
        return LineProgress(total, desc, unit)

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
