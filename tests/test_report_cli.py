"""``spanqa report`` and ``spanqa run --report`` on the command line: the plain lines on a run's
result directory, exit codes and one-line errors, the HTML/JSON outputs under the output rule,
and an HTML page that references nothing on a network."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from spanqa.cli import main
from squad_files import tiny_squad_json
from test_report import squad_file, synthetic_result


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def run_dir(tiny_package, tmp_path_factory):
    """A result directory 'spanqa run --report' wrote (the tiny random model, five questions)."""
    root = tmp_path_factory.mktemp("run")
    dataset = tiny_squad_json(root / "tiny.json")
    out = root / "result"
    r = invoke("run", dataset, "--model", tiny_package, "-o", out, "--report", "--threads", "1")
    assert r.exit_code == 0, r.output
    assert f"Wrote report.html and report.json to {out}" in r.output
    return out


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    data = squad_file(root / "bridges.json")
    a = synthetic_result(root / "fp32", data, seed=1)
    b = synthetic_result(root / "int8", data, seed=2)
    v2 = synthetic_result(root / "v2", squad_file(root / "bridges2.json", version_2=True), seed=4)
    return a, b, v2


def test_plain_report_of_a_run_directory(run_dir):
    """Issue 19: 'report RESULT_DIR' on what 'spanqa run' wrote failed ("neither an infer
    summary.json nor an evaluate result.json")."""
    r = invoke("report", run_dir)
    assert r.exit_code == 0, r.output
    summary = json.loads((run_dir / "summary.json").read_text())
    result = json.loads((run_dir / "result.json").read_text())
    inference = summary["inference"]
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith(f"{run_dir / 'summary.json'}: {inference['batches']} batches (")
    assert f"{inference['average_ms_without_first']:.3f} ms per batch" in lines[0]
    assert f"{inference['throughput_rows_per_s']:.3f} rows/s" in lines[0]
    assert f"{summary['end_to_end_questions_per_s']:.3f} questions/s end to end" in lines[0]
    assert lines[1] == f"{run_dir / 'result.json'}: EM {result['exact_match']:.3f}, F1 {result['f1']:.3f} (5 questions)"
    # --batch-size belongs to msame logs; a run's summary says its batches.
    r = invoke("report", run_dir / "summary.json", "--batch-size", "4")
    assert r.exit_code == 2
    assert r.stderr.strip().endswith("is a 'spanqa run' summary and says its batches; drop --batch-size")


def test_missing_and_non_json_files_exit_2_and_3(tmp_path):
    """Issue 19: both exited 1; docs/reliability.md documents 2 (usage) and 3 (bad data)."""
    missing = tmp_path / "nope.json"
    r = invoke("report", missing)
    assert r.exit_code == 2
    assert r.stderr.strip() == (
        f"Error: {missing}: no such file or directory; pass an infer log, a summary.json, a result.json or a result directory"
    )
    bad = tmp_path / "summary.json"
    bad.write_text("{not json", encoding="utf-8")
    r = invoke("report", bad)
    assert r.exit_code == 3
    assert r.stderr.strip() == (
        f"Error: {bad}: not valid JSON (Expecting property name enclosed in double quotes at line 1 column 2); "
        "pass a summary.json or result.json that spanqa wrote"
    )
    (tmp_path / "d").mkdir()
    r = invoke("report", tmp_path / "d", "--html", tmp_path / "r.html")
    assert r.exit_code == 3 and "no predictions.json; pass a result directory" in r.stderr
    assert not (tmp_path / "r.html").exists()


def test_run_report_is_the_report_of_its_result(run_dir):
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    data = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    result = json.loads((run_dir / "result.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    (block,) = data["results"]
    assert block["accuracy"]["f1"] == pytest.approx(result["f1"], abs=1e-9)
    assert block["questions"] == 5 and len(block["worst"]) == 5
    # The run records every timed batch; the report plots them.
    assert len(summary["batch_timings"]["latency_ms"]) == summary["inference"]["timed_runs"] > 0
    assert block["speed"]["batches"] == summary["batch_timings"]
    assert block["package"]["target"] == "cpu-fp32" and block["machine"]["cpu"] == summary["cpu"]
    assert block["notes"] == []  # the package is there: its tokenizer counted the word pieces
    assert sum(q["windows"] for q in block["per_question"]) == summary["features"]
    for fig in ("accuracy-figure", "by-context-pieces-figure", "by-windows-figure", "by-question-type-figure", "latency-figure"):
        assert f'<figure id="{fig}"><svg' in page, fig


def test_html_and_json_outputs_follow_the_output_rule(synthetic, tmp_path):
    a, b, _ = synthetic
    html, data = tmp_path / "cmp.html", tmp_path / "cmp.json"
    r = invoke("report", a, b, "--html", html, "--json", data)
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == [f"Wrote {html}", f"Wrote {data}"]
    report = json.loads(data.read_text())
    assert [x["name"] for x in report["results"]] == ["fp32", "int8"] and report["comparison"]["disagreements"]
    again = invoke("report", a, b, "--html", html)
    assert again.exit_code == 4 and "pass --overwrite to replace it" in again.stderr
    before = html.read_bytes()
    assert invoke("report", a, "--html", html, "--overwrite").exit_code == 0
    assert html.read_bytes() != before  # one result now: no comparison
    mine = tmp_path / "mine.html"
    mine.write_text("my page")
    r = invoke("report", a, "--html", mine, "--overwrite")
    assert r.exit_code == 4 and mine.read_text() == "my page"
    r = invoke("report", a, "--dataset", tmp_path / "cmp.json")
    assert r.exit_code == 2 and "--dataset is for the HTML/JSON report" in r.stderr


# A reference to anything outside the page: a URL with a scheme or a scheme-relative one, an
# external resource element, a CSS import or url() not pointing inside the page.
NETWORK = re.compile(
    r"[a-z][a-z0-9+.-]*://|(?:src|href|action|srcset|xlink:href)\s*=\s*(?![\"']?#)|<(?:script|link|iframe|object|embed|img|base)\b"
    r"|@import|url\((?!#)|//[a-z0-9-]+\.[a-z]",
    re.I,
)


def test_html_references_nothing_on_a_network(synthetic, run_dir, tmp_path):
    a, b, v2 = synthetic
    pages = [(run_dir / "report.html").read_text(encoding="utf-8")]
    for name, dirs in (("cmp", (a, b)), ("v2", (v2,))):
        html = tmp_path / f"{name}.html"
        assert invoke("report", *dirs, "--html", html).exit_code == 0
        pages.append(html.read_text(encoding="utf-8"))
    for page in pages:
        assert NETWORK.findall(page) == []
        assert page.count("<svg") >= 4 and "<style>" in page
    # The check itself finds what it must.
    for bad in ('<img src="x.png">', "<a href='https://x.org'>", "url(http:x)", "@import 'a.css'", '<link rel="stylesheet">'):
        assert NETWORK.search(bad), bad
    # Text from the data that looks like an address is written so that it no longer reads as one.
    from spanqa.report.html import esc

    assert NETWORK.findall(esc("see https://example.org/x")) == []
