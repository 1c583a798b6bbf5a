"""One report from one or more result directories: every figure's data (report.json)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from spanqa import __version__
from spanqa.errors import ResultError
from spanqa.report import figures
from spanqa.report.load import Result, load_result, name_results

FORMAT = "spanqa-report"
FORMAT_VERSION = 1


def result_block(result: Result) -> tuple[dict, list[dict]]:
    """The figures of one result, and its per-question rows."""
    rows = figures.question_rows(result)
    scored = bool(rows) and "f1" in rows[0]
    block: dict[str, Any] = {
        "name": result.name,
        "path": str(result.path),
        "dataset": str(result.dataset.path),
        "dataset_sha256": result.dataset.sha256,
        "squad_version": 2 if result.squad2 else 1,
        "questions": len(rows),
        "answered": sum(r["prediction"] is not None for r in rows),
        "scored": scored,
        "accuracy": None,
        "by_context_pieces": None,
        "by_windows": None,
        "by_question_type": None,
        "worst": None,
        "squad2": None,
    }
    if scored:
        block["accuracy"] = figures.ci_block([r["exact_match"] for r in rows], [r["f1"] for r in rows])
        recorded = result.result or {}
        f1 = recorded.get("f1")
        if isinstance(f1, (int, float)) and abs(f1 - block["accuracy"]["f1"]) > 1e-6:
            raise ResultError(
                f"{result.path}: its predictions score F1 {block['accuracy']['f1']:.4f} on {result.dataset.path} "
                f"but result.json says {f1:.4f}; pass the dataset the run answered with --dataset"
            )
        for key in ("context_pieces", "windows", "question_type"):
            block[f"by_{key}"] = figures.by_bucket(rows, key)
        block["worst"] = figures.worst(result, rows)
        block["squad2"] = figures.squad2_block(result)
    else:
        result.notes.append("the questions carry no gold answers: nothing is scored")
    block["speed"] = figures.speed(result.summary)
    block["package"] = figures.package(result)
    block["machine"] = figures.machine(result.summary)
    block["settings"] = (result.summary or {}).get("settings")
    block["notes"] = list(dict.fromkeys(result.notes))
    block["per_question"] = [{k: v for k, v in r.items() if k != "buckets"} for r in rows]
    return block, rows


def _p_value(mean: float, low: float, high: float) -> float | None:
    """Two-sided p of a zero mean difference, from the same normal approximation as the interval."""
    se = (high - low) / (2 * 1.96)
    if not se > 0:
        return None if mean == 0 else 0.0
    return math.erfc(abs(mean / se) / math.sqrt(2))


def comparison(results: list[Result], rows: list[list[dict]]) -> dict:
    """The first result against each other one on the same questions: the paired interval of
    the F1 (and EM) difference, and every question whose answers differ."""
    from spanqa.engine.guard import mean_ci95

    base = results[0]
    ids = [r["id"] for r in rows[0]]
    indexed = []
    for result, its_rows in zip(results, rows):
        by_id = {r["id"]: r for r in its_rows}
        if set(by_id) != set(ids):
            differ = len(set(by_id) ^ set(ids))
            raise ResultError(
                f"{result.path} answers other questions than {base.path} ({differ} question ids differ); "
                "compare results of the same dataset"
            )
        indexed.append(by_id)
    scored = all(r and "f1" in r[0] for r in rows)
    pairs = []
    for result, by_id in zip(results[1:], indexed[1:]):
        pair: dict[str, Any] = {"baseline": base.name, "other": result.name}
        pair["answers_differ"] = sum(by_id[q]["prediction"] != indexed[0][q]["prediction"] for q in ids)
        if scored:
            for name in ("f1", "exact_match"):
                diffs = [by_id[q][name] - indexed[0][q][name] for q in ids]
                mean, low, high = mean_ci95(diffs)
                pair[f"{name}_difference"] = 100.0 * mean
                pair[f"{name}_difference_ci95"] = [100.0 * low, 100.0 * high]
                pair[f"{name}_p_value"] = _p_value(mean, low, high)
                if name == "f1":
                    pair["f1_better"] = sum(d > 0 for d in diffs)
                    pair["f1_worse"] = sum(d < 0 for d in diffs)
            low, high = pair["f1_difference_ci95"]
            pair["significant"] = not (low <= 0.0 <= high)
        pairs.append(pair)

    by_example = {ex.qas_id: ex for ex in base.dataset.examples}
    disagreements = []
    for q in ids:
        answers = {r.name: idx[q]["prediction"] for r, idx in zip(results, indexed)}
        if len(set(answers.values())) == 1:
            continue
        entry = {"id": q, "question": indexed[0][q]["question"], "type": indexed[0][q]["type"]}
        entry |= figures.answer_view(by_example, base.dataset.answer_starts, q, answers)
        entry["answers"] = {
            r.name: {"text": idx[q]["prediction"], "f1": idx[q].get("f1"), "exact_match": idx[q].get("exact_match")}
            for r, idx in zip(results, indexed)
        }
        disagreements.append(entry)
    return {"baseline": base.name, "pairs": pairs, "disagreements": disagreements}


def build_report(paths: list[str | Path], dataset: str | Path | None = None) -> dict:
    """The report of one or more result directories (``dataset`` overrides the SQuAD file each
    summary names)."""
    cache: dict = {}
    results = [load_result(p, dataset, cache) for p in paths]
    name_results(results)
    blocks, rows = [], []
    for result in results:
        block, its_rows = result_block(result)
        blocks.append(block)
        rows.append(its_rows)
    report = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "spanqa_version": __version__,
        "results": blocks,
        "comparison": comparison(results, rows) if len(results) > 1 else None,
    }
    return figures.finite(report)
