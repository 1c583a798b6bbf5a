"""INPUT of ``spanqa run --engine ray``: files named, found and read into question rows.

INPUT is one or many SQuAD JSON files, JSON-lines or Parquet files of ``{id, question,
context[, answers]}``, directories or globs of them, on the local disk or any filesystem fsspec
(and so Ray Data) can open. Every format becomes the same rows: ``id``, ``question``,
``context``, ``answers`` (gold texts, possibly empty) and ``source`` (the file, for messages).

Naming and finding files happens on the driver (cheap, and a bad path fails before Ray starts);
reading and parsing happens in Ray Data read tasks, so a large INPUT is read where it lies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from spanqa.errors import DatasetError, UsageError

if TYPE_CHECKING:
    from collections.abc import Sequence

SQUAD = "squad"
JSONL = "jsonl"
PARQUET = "parquet"
SUFFIXES = {".json": SQUAD, ".jsonl": JSONL, ".ndjson": JSONL, ".parquet": PARQUET, ".pq": PARQUET}
_GLOB = set("*?[")


@dataclass
class InputFiles:
    """The files of INPUT, grouped by filesystem and format (one Ray read per group)."""

    groups: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (protocol, format) -> paths
    filesystems: dict[str, Any] = field(default_factory=dict)  # protocol -> fsspec filesystem

    @property
    def paths(self) -> list[str]:
        return [p for paths in self.groups.values() for p in paths]

    @property
    def local_paths(self) -> list[str]:
        return [p for (protocol, _), paths in self.groups.items() if protocol in ("file", "local") for p in paths]


def _format(path: str) -> str | None:
    name = path.rsplit("/", 1)[-1].lower()
    for suffix, fmt in SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    return None


def find_inputs(inputs: Sequence[str]) -> InputFiles:
    """The files INPUT names: files as they are, directories searched recursively for known
    suffixes, globs expanded. UsageError when something names nothing or an unknown format."""
    import fsspec

    if not inputs:
        raise UsageError("no INPUT: give SQuAD JSON, JSON-lines or Parquet files, a directory or a glob")
    found = InputFiles()
    seen: set[tuple[str, str]] = set()
    for item in inputs:
        item = str(item)
        try:
            fs, root = fsspec.core.url_to_fs(item)
        except (ImportError, ValueError) as exc:
            raise UsageError(f"{item}: cannot open its filesystem ({exc})") from None
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        found.filesystems.setdefault(protocol, fs)
        if _GLOB & set(root):
            paths = sorted(p for p in fs.glob(root) if fs.isfile(p))
            if not paths:
                raise UsageError(f"{item}: the glob matches no file")
        elif fs.isdir(root):
            paths = sorted(p for p in fs.find(root) if _format(p))
            if not paths:
                raise UsageError(f"{item}: a directory with no .json, .jsonl or .parquet file")
        elif fs.isfile(root):
            paths = [root]
        else:
            raise UsageError(f"{item}: no such file or directory")
        for path in paths:
            fmt = _format(path)
            if fmt is None:
                raise UsageError(f"{path}: unknown input format; name it .json (SQuAD), .jsonl or .parquet")
            if (protocol, path) not in seen:  # the same file named twice is read once
                seen.add((protocol, path))
                found.groups.setdefault((protocol, fmt), []).append(path)
    return found


# ---------------------------------------------------------------------------------------------
# Parsing, inside Ray Data read tasks (module-level functions: they are pickled by reference)


def squad_batch(batch) -> Any:
    """The question rows of SQuAD files (``read_binary_files`` rows: bytes and path)."""
    import pyarrow as pa

    rows = []
    for raw, path in zip(batch.column("bytes").to_pylist(), batch.column("path").to_pylist()):
        rows.extend(squad_rows(raw, path))
    # One schema for every block: a file whose answers are all empty must not make list<null>.
    return pa.Table.from_pylist(rows, schema=row_schema())


def squad_rows(raw: bytes, path: str) -> list[dict]:
    """The question rows of one SQuAD file."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise DatasetError(f"{path}: not a SQuAD JSON file ({exc}); name JSON-lines files .jsonl") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DatasetError(f"{path}: not a SQuAD file: expected a JSON object with a 'data' list of articles")
    out = []
    for a, article in enumerate(data["data"]):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise DatasetError(f"{path}: article {a}: expected an object with a 'paragraphs' list")
        for p, paragraph in enumerate(paragraphs):
            where = f"{path}: article {a}, paragraph {p}"
            if not isinstance(paragraph, dict) or not isinstance(paragraph.get("qas"), list):
                raise DatasetError(f"{where}: expected an object with 'context' and a 'qas' list")
            for q, qa in enumerate(paragraph["qas"]):
                if not isinstance(qa, dict):
                    raise DatasetError(f"{where}, question {q}: not an object with 'id' and 'question'")
                qa = dict(qa, context=paragraph.get("context"))
                out.append(_row(qa, path, f"article {a}, paragraph {p}, question {q}"))
    return out


def normalise_batch(batch) -> Any:
    """JSON-lines / Parquet rows (a pyarrow Table with a ``path`` column) as the common rows."""
    import pyarrow as pa

    names = set(batch.column_names)
    n = batch.num_rows
    cols = {k: batch.column(k).to_pylist() if k in names else [None] * n for k in ("id", "question", "context", "answers")}
    paths = batch.column("path").to_pylist()
    rows = [_row({k: cols[k][i] for k in cols}, paths[i], f"row {i} of its block") for i in range(n)]
    return pa.Table.from_pylist(rows, schema=row_schema())


def row_schema():
    """The columns every format becomes (pyarrow is imported on first use)."""
    import pyarrow as pa

    return pa.schema(
        [
            ("id", pa.string()),
            ("question", pa.string()),
            ("context", pa.string()),
            ("answers", pa.list_(pa.string())),
            ("source", pa.string()),
        ]
    )


def _row(item: dict, source: str, where: str) -> dict:
    """One validated row; ids may be numbers in JSON-lines (kept as their text)."""
    qid = item.get("id")
    if isinstance(qid, (int, float)) and not isinstance(qid, bool):
        qid = str(qid)
    if not isinstance(qid, str) or not qid:
        raise DatasetError(f"{source}: {where}: missing 'id' (a non-empty string)")
    for key in ("question", "context"):
        if not isinstance(item.get(key), str) or not item[key].strip():
            raise DatasetError(f"{source}: question {qid!r}: missing or empty {key!r}")
    answers = item.get("answers") or []
    try:
        gold = [a if isinstance(a, str) else a["text"] for a in answers]
    except (TypeError, KeyError):
        gold = None
    if gold is None or not all(isinstance(t, str) for t in gold):
        raise DatasetError(f"{source}: question {qid!r}: 'answers' must be a list of strings or of {{'text': ...}}")
    return {"id": qid, "question": item["question"], "context": item["context"], "answers": gold, "source": source}


# ---------------------------------------------------------------------------------------------
# The Ray dataset of INPUT


def read_dataset(files: InputFiles, read_cpus: float):
    """One Ray dataset of every question row of ``files``, in input order."""
    import ray.data

    parts = []
    for (protocol, fmt), paths in files.groups.items():
        fs = files.filesystems[protocol]
        if fmt == SQUAD:
            ds = ray.data.read_binary_files(paths, filesystem=fs, include_paths=True, num_cpus=read_cpus)
            ds = ds.map_batches(squad_batch, batch_size=1, batch_format="pyarrow", num_cpus=read_cpus)
        else:
            reader = ray.data.read_parquet if fmt == PARQUET else ray.data.read_json
            # Arrow's JSON reader reads newline-delimited JSON (lines=True would refuse filesystem=).
            kwargs = {} if fmt == PARQUET else {"file_extensions": None}
            ds = reader(paths, filesystem=fs, include_paths=True, num_cpus=read_cpus, **kwargs)
            ds = ds.map_batches(normalise_batch, batch_format="pyarrow", num_cpus=read_cpus)
        parts.append(ds)
    ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    # Input order is the order predictions.json is written in (as a local run writes it).
    ds.context.execution_options.preserve_order = True
    return ds


@dataclass
class Questions:
    """What the driver keeps of INPUT: every id in input order and the gold answers."""

    ids: list[str]
    answers: dict[str, list[str]]
    sources: dict[str, str]

    @property
    def has_gold(self) -> bool:
        return bool(self.ids) and all(self.answers[i] for i in self.ids)


def check_ids(dataset) -> Questions:
    """The ids and gold answers of a (materialised) dataset; DatasetError on a repeated id,
    naming both files, before any question is answered."""
    ids: list[str] = []
    answers: dict[str, list[str]] = {}
    sources: dict[str, str] = {}
    for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
        for qid, gold, source in zip(*(batch.column(k).to_pylist() for k in ("id", "answers", "source"))):
            if qid in sources:
                raise DatasetError(
                    f"duplicate question id {qid!r} in {sources[qid]} and {source}; question ids must be unique across INPUT"
                )
            ids.append(qid)
            answers[qid] = gold or []
            sources[qid] = source
    if not ids:
        raise DatasetError("INPUT holds no questions")
    return Questions(ids, answers, sources)
