"""The files of a Ray run's result directory, streamed from its store in input order.

Byte for byte what a local run writes for the same answers: ``predictions.json``,
``nbest_predictions.json`` and ``null_odds.json`` are ``json.dump(d, indent=2,
ensure_ascii=False)`` plus a newline (``spanqa.answers.results``), written one question at a
time instead of from a dictionary in memory. ``predictions.jsonl`` adds, per question, which
worker answered it, when, and in which run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spanqa.scale.store import Store

PARTIAL = "predictions.jsonl"


class _JsonObjectWriter:
    """A JSON object written key by key as ``json.dump(obj, indent=2)`` writes it."""

    def __init__(self, path: Path):
        self.file = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.first = True

    def add(self, key: str, value_json: str) -> None:
        self.file.write("{\n  " if self.first else ",\n  ")
        self.file.write(json.dumps(key, ensure_ascii=False))
        self.file.write(": ")
        self.file.write(value_json)
        self.first = False

    def close(self) -> None:
        self.file.write("{}\n" if self.first else "\n}\n")
        self.file.close()


def _nested(value_json: str) -> str:
    """A value's ``indent=2`` JSON as it sits one level down in ``json.dump``'s output."""
    return json.dumps(json.loads(value_json), indent=2, ensure_ascii=False).replace("\n", "\n  ")


def write_files(store: Store, directory: Path, *, nbest: bool, null_odds: bool, threshold: float | None = None) -> dict[str, Any]:
    """predictions.json, [nbest_predictions.json], [null_odds.json] and predictions.jsonl into
    ``directory``. ``threshold`` re-answers 2.0 questions at it (a tuned threshold). Returns
    figures of what was written."""
    writers = {"predictions": _JsonObjectWriter(directory / "predictions.json")}
    if nbest:
        writers["nbest"] = _JsonObjectWriter(directory / "nbest_predictions.json")
    if null_odds:
        writers["null_odds"] = _JsonObjectWriter(directory / "null_odds.json")
    questions = 0
    try:
        with open(directory / PARTIAL, "w", encoding="utf-8") as lines:
            for qid, pred, odds, span, _, _, nb, features, seconds, worker, node, pid, run in store.rows_in_order(nbest):
                if threshold is not None and odds is not None:
                    pred = "" if odds > threshold else span
                writers["predictions"].add(qid, json.dumps(pred, ensure_ascii=False))
                if nbest:
                    writers["nbest"].add(qid, _nested(nb))
                if null_odds:
                    writers["null_odds"].add(qid, json.dumps(odds))
                record = {"id": qid, "prediction": pred, "features": features, "seconds": seconds}
                record.update(worker=worker, node=node, pid=pid, run=run)
                lines.write(json.dumps(record, ensure_ascii=False) + "\n")
                questions += 1
    finally:
        for w in writers.values():
            w.close()
    return {"questions": questions}


def dump_json(obj: Any, path: Path) -> None:
    """As ``spanqa.answers.results`` writes result.json and summary.json."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")
