"""Where spanqa keeps what it fetches and builds: ``$SPANQA_HOME`` or ``~/.cache/spanqa``."""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "SPANQA_HOME"


def cache_home() -> Path:
    """``$SPANQA_HOME`` or ``~/.cache/spanqa``."""
    env = os.environ.get(HOME_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "spanqa"
