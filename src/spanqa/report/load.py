"""Reading result directories (``spanqa run``, ``spanqa evaluate``, ``spanqa run --engine ray``)
and the dataset they answered, for the report."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spanqa.errors import ResultError, UsageError

PREDICTIONS = "predictions.json"
NBEST = "nbest_predictions.json"
RESULT = "result.json"
SUMMARY = "summary.json"


@dataclass
class Dataset:
    path: Path
    examples: list  # spanqa.data.squad.Example, in file order
    answer_starts: dict[str, list[int]]  # question id -> the gold answers' character offsets
    sha256: str


@dataclass
class Result:
    """One result directory and what the report needs beside it."""

    path: Path
    name: str
    predictions: dict[str, str]
    result: dict | None  # result.json (None: the questions had no gold answers)
    summary: dict | None  # summary.json (a run's; absent for 'spanqa evaluate')
    nbest: dict[str, list[dict]] | None
    null_odds: dict[str, float] | None  # SQuAD 2.0
    dataset: Dataset
    package: Any = None  # spanqa.models.package.ModelPackage, when it is still there
    notes: list[str] = field(default_factory=list)  # what the report could not do, in words

    @property
    def squad2(self) -> bool:
        return self.null_odds is not None or (self.result is not None and "exact" in self.result)


def _read_json(path: Path, what: str, required: bool = True) -> Any:
    if not path.is_file():
        if required:
            raise ResultError(
                f"{path.parent}: no {path.name}; pass a result directory written by 'spanqa run' or 'spanqa evaluate'"
            )
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultError(f"{path}: unreadable ({getattr(exc, 'strerror', None) or exc})") from None
    except json.JSONDecodeError as exc:
        raise ResultError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); {what}") from None


def _dataset_path(path: Path, summary: dict | None, result: dict | None) -> Path:
    named = (summary or {}).get("dataset")
    if isinstance(named, list):  # a Ray run names its inputs
        named = named[0] if len(named) == 1 else None
    named = named or (result or {}).get("dataset")
    if not isinstance(named, str) or not named.endswith(".json") or "://" in named:
        raise UsageError(f"{path}: its summary names no SQuAD .json file the report can read; pass the dataset with --dataset")
    if not Path(named).is_file():
        raise UsageError(f"{path}: the dataset it answered, {named}, is not there; pass it with --dataset")
    return Path(named)


def read_dataset(path: Path) -> Dataset:
    from spanqa.data.squad import read_squad
    from spanqa.fileutil import sha256_file

    examples = read_squad(path)
    raw = json.loads(path.read_text(encoding="utf-8"))  # read_squad checked it; it keeps no offsets
    starts: dict[str, list[int]] = {}
    for article in raw["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph.get("qas") or []:
                offsets = [a.get("answer_start") for a in qa.get("answers") or [] if isinstance(a, dict)]
                starts[qa["id"]] = [o for o in offsets if isinstance(o, int)]
    return Dataset(path, examples, starts, sha256_file(path))


def _open_package(named: Any):
    from spanqa.errors import SpanQAError
    from spanqa.models.package import open_package

    if not isinstance(named, str) or not Path(named).exists():
        return None
    try:
        return open_package(named)
    except SpanQAError:
        return None


def load_result(path: str | Path, dataset: str | Path | None = None, cache: dict | None = None) -> Result:
    """A result directory with its dataset (``dataset`` overrides the one its summary names;
    ``cache`` shares datasets between results)."""
    path = Path(path)
    if not path.is_dir():
        raise UsageError(
            f"{path}: not a directory; the HTML report reads result directories of 'spanqa run' or 'spanqa evaluate'"
        )
    fix = "rerun the command that wrote it"
    predictions = _read_json(path / PREDICTIONS, fix)
    if not isinstance(predictions, dict) or not all(isinstance(v, str) for v in predictions.values()):
        raise ResultError(f"{path / PREDICTIONS}: not a question id -> answer object; {fix}")
    result = _read_json(path / RESULT, fix, required=False)
    summary = _read_json(path / SUMMARY, fix, required=False)
    for name, obj in ((RESULT, result), (SUMMARY, summary)):
        if obj is not None and not isinstance(obj, dict):
            raise ResultError(f"{path / name}: not a JSON object; {fix}")
    nbest = _read_json(path / NBEST, fix, required=False)
    null_odds = _read_json(path / "null_odds.json", fix, required=False)

    data_path = Path(dataset) if dataset is not None else _dataset_path(path, summary, result)
    key = str(data_path.resolve())
    cache = cache if cache is not None else {}
    if key not in cache:
        cache[key] = read_dataset(data_path)
    data = cache[key]
    recorded = (summary or {}).get("dataset_sha256")
    if recorded and recorded != data.sha256:
        raise ResultError(
            f"{data_path}: not the dataset {path} answered (its sha256 differs from summary.json's); pass that file"
        )
    known = {ex.qas_id for ex in data.examples}
    stray = [q for q in predictions if q not in known]
    if stray:
        raise ResultError(
            f"{path / PREDICTIONS}: question {stray[0]!r} (and {len(stray) - 1} more) is not in {data_path}; "
            "pass the dataset the run answered with --dataset"
        )
    out = Result(path, path.name or str(path), predictions, result, summary, nbest, null_odds, data)
    out.package = _open_package((summary or {}).get("model") or (result or {}).get("model"))
    if out.package is None:
        out.notes.append("the model package is not on this machine: its guard figures are not shown")
    return out


def name_results(results: list[Result]) -> None:
    """Distinct short names: the directory names, with as much of their path as makes them differ."""
    for depth in range(1, 8):
        names = ["/".join(r.path.resolve().parts[-depth:]) for r in results]
        if len(set(names)) == len(names):
            break
    else:
        names = [str(r.path) for r in results]
    for r, name in zip(results, names):
        r.name = name
    if len(set(names)) < len(names):  # the same directory twice
        for i, r in enumerate(results):
            r.name = f"{i + 1}: {r.name}"
