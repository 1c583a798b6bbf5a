"""docs/reliability.md's table is generated from tests/reliability_table.py, and every row is proven
by the tests it cites: they exist, each message the row quotes is among their strings, and the
exit code is what they assert (or what the error class they expect carries)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from reliability_table import DOC, END, ROWS, START, fragments, render

ROOT = Path(__file__).resolve().parents[1]


def _strings(node: ast.AST) -> list[str]:
    """The string constants under ``node`` (implicit concatenation joined by the parser;
    f-strings with their placeholders as {})."""
    out = []
    for n in ast.walk(node):
        if isinstance(n, ast.Constant) and isinstance(n.value, str):
            out.append(n.value)
        elif isinstance(n, ast.JoinedStr):
            out.append("".join(v.value if isinstance(v, ast.Constant) else "{}" for v in n.values))
    return out


def _evidence(ref: str) -> tuple[list[str], str] | None:
    """(strings, source) of a cited test: its body, decorators and the module-level helpers it calls."""
    path, name = ref.split("::")
    text = (ROOT / path).read_text(encoding="utf-8")
    tree = ast.parse(text)
    helpers = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    test = helpers.get(name)
    if test is None:
        return None
    nodes = [test, *test.decorator_list]
    called = {c.func.id for c in ast.walk(test) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)}
    nodes += [helpers[c] for c in sorted(called) if c in helpers and c != name]
    strings = [s for n in nodes for s in _strings(n)]
    source = re.sub(r"\(\s+", "(", "\n".join(ast.get_source_segment(text, n) or "" for n in nodes))
    return strings, source


def _classes_with_exit(code: int) -> list[str]:
    import spanqa.errors as errors

    return [
        name
        for name, obj in vars(errors).items()
        if isinstance(obj, type) and issubclass(obj, errors.SpanQAError) and obj.exit_code == code
    ]


def test_the_doc_table_is_the_rendering_of_the_rows():
    text = DOC.read_text(encoding="utf-8")
    assert START in text and END in text
    section = START + text.split(START, 1)[1].split(END, 1)[0] + END
    assert section == render(), "docs/reliability.md is stale: run `python tests/reliability_table.py`"


@pytest.mark.parametrize("row", ROWS, ids=[r.tried[:50] for r in ROWS])
def test_every_row_is_proven_by_its_tests(row):
    strings, sources = [], []
    for ref in row.tests:
        found = _evidence(ref)
        assert found is not None, f"{ref}: no such test"
        strings += found[0]
        sources.append(found[1])
    for fragment in fragments(row):
        assert any(fragment in s for s in strings), f"no cited test of this row checks {fragment!r}"
    if row.exit.isdigit() and row.exit != "0":
        code = int(row.exit)
        asserted = [f"exit_code == {code}", f"returncode == {code}", *(f"raises({c}" for c in _classes_with_exit(code))]
        in_params = any(f"], {code}," in s or f"({code}, " in s for s in sources)
        assert in_params or any(a in s for a in asserted for s in sources), f"no cited test checks exit {code}"
