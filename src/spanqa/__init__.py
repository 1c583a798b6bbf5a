"""spanqa: extractive QA checkpoints to fast, verified inference.

``spanqa.Engine`` (and ``Question``, ``Answer``) load lazily, so ``import spanqa`` and
``spanqa --help`` import nothing heavy.
"""

__version__ = "0.1.0"

_ENGINE_NAMES = ("Engine", "Question", "Answer")


def __getattr__(name: str):
    if name in _ENGINE_NAMES:
        import importlib

        return getattr(importlib.import_module("spanqa.engine"), name)
    raise AttributeError(f"module 'spanqa' has no attribute {name!r}")
