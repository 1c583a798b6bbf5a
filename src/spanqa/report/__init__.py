"""``spanqa report``: one self-contained HTML page (and its data as JSON) from one or more
result directories: accuracy with intervals, where the answers fail, the worst questions,
throughput and latency over the run, the package and the machine; two or more results of the
same questions side by side, with a paired test and every question answered differently.

load.py reads result directories and their dataset; questions.py holds per-question facts;
figures.py and build.py compute the data (report.json, docs/report.md); plots.py draws it with
matplotlib; html.py writes the page.
"""

from __future__ import annotations

import json
from pathlib import Path

HTML_KIND = "html report"
JSON_KIND = "report data"


def write_report(
    paths: list[str | Path],
    html: str | Path | None = None,
    data: str | Path | None = None,
    *,
    dataset: str | Path | None = None,
    overwrite: bool = False,
    inside_result: bool = False,
) -> dict:
    """Build the report of ``paths`` and write it as HTML and/or JSON (each file appears whole
    or not at all, and only where the output rule allows); returns the report's data.
    ``inside_result``: the files go into the one result directory reported on (``run --report``),
    which the output rule otherwise refuses as a place inside an input."""
    from spanqa.fileutil import atomic_file, check_output_file
    from spanqa.report.build import build_report

    inputs = () if inside_result else tuple(str(p) for p in paths) + ((str(dataset),) if dataset else ())
    outputs = [(path, kind, option) for path, kind, option in ((html, HTML_KIND, "--html"), (data, JSON_KIND, "--json")) if path]
    for path, kind, option in outputs:  # before the work, not after
        check_output_file(path, kind, overwrite=overwrite, inputs=inputs, option=option)
    report = build_report(list(paths), dataset)
    if html:
        from spanqa.report.html import render

        page = render(report)
        with atomic_file(html, HTML_KIND, overwrite=overwrite, inputs=inputs, option="--html") as tmp:
            tmp.write_text(page, encoding="utf-8")
    if data:
        with atomic_file(data, JSON_KIND, overwrite=overwrite, inputs=inputs, option="--json") as tmp:
            tmp.write_text(json.dumps(report, indent=1, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    return report
