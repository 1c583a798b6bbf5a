"""``spanqa.Engine``: the answering engine with ``load``, from what a user names to a loaded model.

Loading may build a package (``resolve``), and building a reduced-precision one asks the accuracy
guard, which answers its questions through ``core.Engine``; so ``load`` lives here, above both,
and dependencies point one way: loading -> resolve -> guard -> core.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spanqa.engine import core
from spanqa.settings import EngineSettings


class Engine(core.Engine):
    @classmethod
    def load(
        cls,
        model: str | Path,
        target: str | None = None,
        *,
        threads: int | None = None,
        settings: EngineSettings = EngineSettings(),
        throughput: bool = False,
        **resolve: Any,
    ) -> Engine:
        """Load ``model``: a model package as it is (``target`` None or its own), or a
        checkpoint / .onnx built for ``target`` (once, into the package cache; ``resolve``
        passes guard and calibration settings)."""
        from spanqa.engine.resolve import resolve_model

        package, _ = resolve_model(model, target, **resolve)
        return cls(package, threads=threads, settings=settings, throughput=throughput)
