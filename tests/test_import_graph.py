"""No import cycle among spanqa's modules, function-level imports included (and a test of the check)."""

from __future__ import annotations

from pathlib import Path

from import_graph import cycles, graph

SRC = Path(__file__).resolve().parents[1] / "src" / "spanqa"


def test_spanqa_has_no_import_cycle():
    found = cycles(graph(SRC, "spanqa"))
    assert found == [], "import cycles (move what both sides need below them): " + "; ".join(" <-> ".join(c) for c in found)


def _plant(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_the_check_finds_a_planted_function_level_cycle(tmp_path):
    root = _plant(
        tmp_path / "pkg",
        {
            "__init__.py": "",
            "engine/__init__.py": "from pkg.engine.core import Engine\n",
            "engine/core.py": "class Engine:\n    def load(self):\n        from pkg.engine.resolve import resolve\n",
            "engine/resolve.py": "def resolve():\n    from pkg.engine import guard\n",
            "engine/guard.py": "from ..engine.core import Engine\n",
            "runtimes/__init__.py": "",
            "runtimes/ort.py": "import pkg.runtimes.gpu\n",
            "runtimes/gpu.py": "from pkg.runtimes.ort import X\n",
            "utils.py": "import os\nfrom pkg import errors\n",
            "errors.py": "",
        },
    )
    edges = graph(root, "pkg")
    assert edges["pkg.engine.resolve"] == {"pkg.engine.guard"}  # `from pkg.engine import guard`: the submodule
    assert edges["pkg.engine.guard"] == {"pkg.engine.core"}  # relative import resolved
    assert cycles(edges) == [
        ["pkg.engine.core", "pkg.engine.guard", "pkg.engine.resolve"],
        ["pkg.runtimes.gpu", "pkg.runtimes.ort"],
    ]


def test_the_check_passes_an_acyclic_package(tmp_path):
    root = _plant(
        tmp_path / "pkg", {"__init__.py": "", "a.py": "def f():\n    from pkg import b\n", "b.py": "import pkg.c\n", "c.py": ""}
    )
    assert cycles(graph(root, "pkg")) == []
