"""The report as one self-contained HTML page: styles inline, figures as inline SVG, no script,
no font, nothing fetched; it opens on an air-gapped machine and prints."""

from __future__ import annotations

import html as _html
from typing import Any

from spanqa.report import plots

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1f24; margin: 0 auto;
       max-width: 1100px; padding: 1em 1.5em 3em; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .2em; margin-top: 2em; }
h3 { margin-top: 1.4em; }
nav ol { columns: 2; } nav a, a { color: #0550ae; }
table { border-collapse: collapse; margin: .6em 0 1em; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: .25em .6em; text-align: right; vertical-align: top; }
th:first-child, td:first-child, table.left td { text-align: left; }
thead th { background: #f6f8fa; }
figure { margin: 1em 0; break-inside: avoid; page-break-inside: avoid; }
figure svg.plot { max-width: 100%; height: auto; }
figcaption { font-size: 12px; color: #57606a; }
.q { border: 1px solid #d0d7de; border-radius: 6px; padding: .5em .8em; margin: .6em 0; break-inside: avoid; page-break-inside: avoid; }
.q .meta { font-size: 12px; color: #57606a; } .q .ctx { font-size: 13px; margin: .4em 0 .2em; }
.legend > span { margin-right: 1.2em; padding: 0 .2em; }
.g { box-shadow: inset 0 -3px 0 #1a7f37; font-weight: 600; }
.a0 { background: #cfe2ff; } .a1 { background: #ffd8a8; } .a2 { background: #d3f9d8; }
.a3 { background: #eebefa; } .a4 { background: #ffc9c9; } .a5 { background: #c5f6fa; }
.a0.a1 { background: linear-gradient(#cfe2ff 50%, #ffd8a8 50%); }
.good { color: #1a7f37; } .bad { color: #cf222e; } .muted { color: #57606a; }
* { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
@media print { nav { display: none; } body { max-width: none; padding: 0; } h2 { break-after: avoid; } }
"""


def esc(value: Any) -> str:
    """Text for HTML; "://" is written with entities so that no text from a dataset or path
    reads as a network address (a browser shows it unchanged)."""
    return _html.escape("" if value is None else str(value)).replace("://", ":&#47;&#47;")


def num(value: Any, spec: str = ".2f") -> str:
    return "n/a" if value is None else format(value, spec)


def ci(block: dict, name: str) -> str:
    low, high = block[f"{name}_ci95"]
    return f"{num(block[name])} <span class=muted>[{num(low)}, {num(high)}]</span>"


def table(head: list[str], rows: list[list[str]], cls: str = "") -> str:
    out = [f"<table{' class=' + cls if cls else ''}><thead><tr>", *(f"<th>{h}</th>" for h in head), "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def figure(svg: str | None, caption: str, fig_id: str) -> str:
    if not svg:
        return ""
    return f'<figure id="{fig_id}">{svg}<figcaption>{caption}</figcaption></figure>'


def highlighted(text: str, gold: list, answers: list) -> str:
    """``text`` with the gold spans underlined and answer k's span on colour k (overlaps show both)."""
    marks: list[tuple[str, list[int]]] = [("g", s) for s in gold] + [(f"a{k % 6}", s) for k, s in answers if s]
    cuts = sorted({0, len(text), *(p for _, s in marks for p in s)})
    out = []
    for lo, hi in zip(cuts, cuts[1:]):
        classes = " ".join(dict.fromkeys(c for c, (s, e) in marks if s <= lo and hi <= e))
        piece = esc(text[lo:hi])
        out.append(f'<span class="{classes}">{piece}</span>' if classes else piece)
    return "".join(out)


def question_card(entry: dict, names: list[str], heading: str) -> str:
    cut = entry["excerpt_cut"]
    ctx = ("… " if cut[0] else "") + highlighted(
        entry["excerpt"], entry["gold_spans"], [(k, entry["answer_spans"].get(n)) for k, n in enumerate(names)]
    )
    ctx += " …" if cut[1] else ""
    gold = " | ".join(f'<span class="g">{esc(g)}</span>' for g in dict.fromkeys(entry["gold"])) or "<i>no answer</i>"
    return (
        f'<div class="q"><div class="meta">{heading} · id {esc(entry["id"])} · {esc(entry["type"])}-question</div>'
        f"<div><b>{esc(entry['question'])}</b></div><div class=ctx>{ctx}</div><div>gold: {gold}</div>"
    )


def legend(names: list[str]) -> str:
    spans = ['<span class="g">gold answer</span>']
    spans += [f'<span class="a{k % 6}">answer of {esc(n)}</span>' for k, n in enumerate(names)]
    return f'<p class="legend">{"".join(spans)}</p>'


def _accuracy(blocks: list[dict]) -> str:
    scored = [b for b in blocks if b["accuracy"]]
    if not scored:
        return "<p>No gold answers: nothing was scored.</p>"
    rows = [[esc(b["name"]), str(b["questions"]), ci(b["accuracy"], "exact_match"), ci(b["accuracy"], "f1")] for b in scored]
    out = table(["result", "questions", "exact match [95% interval]", "F1 [95% interval]"], rows)
    out += figure(
        plots.accuracy(scored), "Exact match and F1 with the 95% interval of the mean over questions.", "accuracy-figure"
    )
    v2 = [b for b in scored if b["squad2"]]
    if v2:
        head = ["result", "has answer: EM / F1 (n)", "no answer: EM / F1 (n)", "chosen threshold", "best F1 / threshold"]
        rows = []
        for b in v2:
            s = b["squad2"]
            cells = [esc(b["name"])]
            for p in ("HasAns_", "NoAns_"):
                cells.append(f"{num(s.get(p + 'exact'))} / {num(s.get(p + 'f1'))} ({s.get(p + 'total', 0)})")
            tuned = " (tuned)" if s.get("threshold_tuned") else ""
            cells += [
                num(s.get("chosen_threshold"), ".4f") + tuned,
                f"{num(s.get('best_f1'))} / {num(s.get('best_f1_thresh'), '.4f')}",
            ]
            rows.append(cells)
        out += "<h3>SQuAD 2.0</h3>" + table(head, rows)
        out += figure(
            plots.threshold(v2),
            "F1 against the null-score difference threshold: a question is answered "
            "when its null odds are at most the threshold. Dashed: the threshold the run used; dot: the best.",
            "threshold-figure",
        )
    return out


def _comparison(comparison: dict) -> str:
    rows = []
    for p in comparison["pairs"]:
        if "f1_difference" in p:
            verdict = '<span class="bad">real</span>' if p["significant"] else "<span class=good>within noise</span>"
            low, high = p["f1_difference_ci95"]
            rows.append(
                [
                    esc(f"{p['other']} − {p['baseline']}"),
                    f"{num(p['f1_difference'], '+.2f')} [{num(low, '+.2f')}, {num(high, '+.2f')}]",
                    num(p["f1_p_value"], ".3g"),
                    verdict,
                    f"{p['f1_better']} / {p['f1_worse']}",
                    str(p["answers_differ"]),
                ]
            )
        else:
            rows.append([esc(f"{p['other']} − {p['baseline']}"), "n/a", "n/a", "unscored", "n/a", str(p["answers_differ"])])
    head = [
        "results",
        "F1 difference [paired 95% interval]",
        "p (two-sided)",
        "difference",
        "questions better / worse",
        "answers differ",
    ]
    out = table(head, rows)
    return out + figure(
        plots.differences(comparison),
        "F1 difference per question pair, mean with the paired 95% interval (the accuracy guard's interval).",
        "difference-figure",
    )


def _buckets(blocks: list[dict]) -> str:
    out = []
    for key, title, xlabel in (
        ("by_context_pieces", "F1 and EM by context length", "context length (word pieces)"),
        ("by_windows", "F1 and EM by number of windows", "windows per question"),
        ("by_question_type", "F1 and EM by question type", "first wh-word of the question"),
    ):
        scored = [b for b in blocks if b[key]]
        if not scored:
            continue
        fig_id = key.replace("_", "-") + "-figure"
        out.append(f'<h3 id="{key}">{title}</h3>')
        out.append(figure(plots.buckets(scored, key, xlabel, "fig-" + key.replace("_", "-")), f"{title} ({xlabel}).", fig_id))
        labels = list(dict.fromkeys(x["bucket"] for b in scored for x in b[key]))
        head = [xlabel] + [f"{esc(b['name'])}: n / EM / F1" for b in scored]
        rows = []
        for lab in labels:
            row = [esc(lab)]
            for b in scored:
                got = next((x for x in b[key] if x["bucket"] == lab), None)
                row.append(f"{got['questions']} / {num(got['exact_match'])} / {num(got['f1'])}" if got else "")
            rows.append(row)
        out.append(table(head, rows))
    return "".join(out)


def _speed(blocks: list[dict]) -> str:
    head = ["", *(esc(b["name"]) for b in blocks)]
    keys = [
        ("end-to-end questions/s", lambda s: num(s["end_to_end_questions_per_s"])),
        ("model rows/s", lambda s: num(s["model_rows_per_s"])),
    ]
    for p in ("p50", "p90", "p99", "max"):
        keys.append(
            (
                f"batch latency {p} (ms)",
                lambda s, p=p: num(
                    (s["latency_ms"] or {}).get(p, (s["latency_ms"] or {}).get("median") if p == "p50" else None), ".1f"
                ),
            )
        )
    for p in ("p50", "p90"):
        keys.append(
            (
                f"rows/s over the run, {p} of slices",
                lambda s, p=p: num(((s["throughput_over_time"] or {}).get("percentiles") or {}).get(p)),
            )
        )
    keys.append(("batches timed", lambda s: str(len(s["batches"]["done_s"])) if s["batches"] else "not recorded"))
    rows = [[name, *(fn(b["speed"]) for b in blocks)] for name, fn in keys]
    out = table(head, rows)
    out += figure(
        plots.latency(blocks),
        "Latency of every batch over the run (dashed: the median). Batches are length-aware, so their sizes differ.",
        "latency-figure",
    )
    out += figure(plots.throughput(blocks), "Rows (windows) finished per second, in slices of the run.", "throughput-figure")
    return out


def _package_machine(blocks: list[dict]) -> str:
    def guard(pkg: dict) -> str:
        g = pkg.get("guard")
        if not g:
            return "not guarded (fp32, or the package is not here)" if pkg.get("guarded") is not True else "passed"
        if g.get("unguarded"):
            return '<span class="bad">built without the guard</span>'
        low, high = g.get("f1_difference_ci95") or [None, None]
        return (
            f"F1 {num(g.get('f1'))} vs fp32 {num(g.get('reference_f1'))} ({num(100 * (g.get('ratio') or 0), '.2f')}% ≥ "
            f"{num(100 * (g.get('required_ratio') or 0), '.1f')}% needed) on {g.get('questions')} questions; "
            f"difference [{num(low, '+.2f')}, {num(high, '+.2f')}]"
        )

    def runtime(pkg: dict) -> str:
        r = pkg.get("runtime") or {}
        return esc(" ".join(str(x) for x in (r.get("name"), r.get("version")) if x)) if isinstance(r, dict) else esc(r)

    def cpu(m: dict) -> list[str]:
        c = m.get("cpu") or {}
        cores = f"{c.get('cores')} usable, {c.get('physical_cores')} physical" if c else "n/a"
        limit = c.get("cgroup_cpu_limit")
        return [
            esc(c.get("model", "n/a")),
            esc(", ".join(c.get("flags") or []) or "none of note"),
            cores + (f", cgroup limit {limit:g}" if limit else ""),
            esc(m.get("threads")),
        ]

    head = ["", *(esc(b["name"]) for b in blocks)]
    fields = [
        ("target", lambda b: esc(b["package"]["target"])),
        ("precision", lambda b: esc(b["package"]["precision"])),
        ("runtime", lambda b: runtime(b["package"])),
        ("accuracy guard", lambda b: guard(b["package"])),
        ("model", lambda b: esc(b["package"]["model"])),
        ("engine", lambda b: esc(b["package"]["engine"])),
    ]
    for i, name in enumerate(("CPU", "CPU flags", "cores", "inference threads")):
        fields.append((name, lambda b, i=i: cpu(b["machine"])[i]))
    fields.append(("spanqa", lambda b: esc(b["package"]["spanqa_version"])))
    return table(head, [[name, *(fn(b) for b in blocks)] for name, fn in fields], cls="left")


def _worst(block: dict) -> str:
    cards = []
    for rank, entry in enumerate(block["worst"], 1):
        card = question_card(entry, [block["name"]], f"#{rank}")
        prob = f" (probability {entry['probability']:.2f})" if entry.get("probability") is not None else ""
        answer = esc(entry["prediction"]) if entry["prediction"] else "<i>no answer</i>"
        cards.append(card + f'<div>answer: <span class="a0">{answer}</span>{prob} · F1 {100 * entry["f1"]:.0f}</div></div>')
    return legend([block["name"]]) + "".join(cards)


def _disagreements(comparison: dict, names: list[str]) -> str:
    items = comparison["disagreements"]
    out = [f"<p>{len(items)} questions where the answers differ.</p>", legend(names)]
    for entry in items:
        card = question_card(entry, names, "differs")
        rows = []
        for k, name in enumerate(names):
            a = entry["answers"][name]
            text = esc(a["text"]) if a["text"] else "<i>no answer</i>"
            f1 = f" · F1 {100 * a['f1']:.0f}" if a["f1"] is not None else ""
            rows.append(f'<div>{esc(name)}: <span class="a{k % 6}">{text}</span>{f1}</div>')
        out.append(card + "".join(rows) + "</div>")
    return "".join(out)


def render(report: dict) -> str:
    """The HTML page of a report (``build_report``'s dict)."""
    blocks = report["results"]
    names = [b["name"] for b in blocks]
    sections: list[tuple[str, str, str]] = [("accuracy", "Accuracy", _accuracy(blocks))]
    if report["comparison"]:
        sections.append(("comparison", "Comparison (paired)", _comparison(report["comparison"])))
    sections.append(("groups", "Where the answers fail", _buckets(blocks) or "<p>Nothing scored.</p>"))
    sections.append(("speed", "Throughput and latency", _speed(blocks)))
    sections.append(("package", "Package and machine", _package_machine(blocks)))
    for k, b in enumerate(blocks):
        if b["worst"]:
            sections.append((f"worst-{k}", f"The {len(b['worst'])} worst questions: {esc(b['name'])}", _worst(b)))
    if report["comparison"]:
        sections.append(("differences", "Questions answered differently", _disagreements(report["comparison"], names)))
    notes = [f"<li>{esc(b['name'])}: {esc(n)}</li>" for b in blocks for n in b["notes"]]
    if notes:
        sections.append(("notes", "Notes", f"<ul>{''.join(notes)}</ul>"))

    about = table(
        ["result", "directory", "dataset", "questions", "SQuAD"],
        [
            [esc(b["name"]), esc(b["path"]), esc(b["dataset"]), str(b["questions"]), "2.0" if b["squad_version"] == 2 else "1.1"]
            for b in blocks
        ],
        cls="left",
    )
    toc = "".join(f'<li><a href="#{sid}">{title}</a></li>' for sid, title, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{title}</h2>{content}</section>' for sid, title, content in sections)
    title = "spanqa report: " + ", ".join(names)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{esc(title)}</title>'
        f"<style>{STYLE}</style></head><body><header><h1>{esc(title)}</h1>{about}"
        f'<p class="muted">Written by spanqa {esc(report["spanqa_version"])}; the data of every figure is in the '
        f"report's JSON (spanqa report --json).</p></header><nav><ol>{toc}</ol></nav>{body}</body></html>\n"
    )
