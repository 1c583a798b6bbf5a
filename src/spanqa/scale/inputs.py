"""INPUT of ``spanqa run --engine ray``: files named, found and read into question rows.

INPUT is one or many SQuAD JSON files, JSON-lines or Parquet files of ``{id, question,
context[, answers]}``, directories or globs of them, on the local disk or any filesystem fsspec
(and so Ray Data) can open. Every format becomes the same rows: ``id``, ``question``,
``context``, ``answers`` (gold texts, possibly empty), ``impossible`` (SQuAD 2.0's
``is_impossible``; null for a 1.1 question) and ``source`` (the file, for messages).

Naming and finding files happens on the driver (cheap, and a bad path fails before Ray starts);
reading and parsing happens in Ray Data read tasks, so a large INPUT is read where it lies and
streams on in blocks of ``--batch-questions`` rows: nothing is materialised before answering.
A SQuAD JSON file is one JSON document, so one read task parses it whole (split a very large
one into several files, or give JSON-lines or Parquet, which are read in blocks).
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


def input_format(path: str) -> str | None:
    """squad, jsonl or parquet by the file's suffix; None for another."""
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
            paths = sorted(p for p in fs.find(root) if input_format(p))
            if not paths:
                raise UsageError(f"{item}: a directory with no .json, .jsonl or .parquet file")
        elif fs.isfile(root):
            paths = [root]
        else:
            raise UsageError(f"{item}: no such file or directory")
        for path in paths:
            fmt = input_format(path)
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
    """The question rows of one SQuAD file, read as ``spanqa.data.squad.read_squad`` reads it
    (a 2.0 file says so by its version or by ``is_impossible`` on its questions)."""
    data = _squad_json(raw, path)
    version_2 = str(data.get("version", "")).startswith("v2")
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
                row = _row(dict(qa, context=paragraph.get("context")), path, f"article {a}, paragraph {p}, question {q}")
                if row["impossible"] is None and version_2:
                    row["impossible"] = not row["answers"]  # a "v2.0" file: no answers means impossible
                out.append(row)
    return out


def _squad_json(raw: bytes, path: str) -> dict:
    """The parsed SQuAD document; one line naming the file and the fix when it is not one."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); SQuAD JSON is UTF-8: re-save the file as UTF-8"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        hint = "pass a SQuAD .json file"
        if _looks_like_json_lines(text):
            hint = "it holds one JSON object per line: name it .jsonl"
        raise DatasetError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); {hint}") from None
    except RecursionError:
        raise DatasetError(f"{path}: JSON nested too deeply; pass a SQuAD .json file") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DatasetError(f"{path}: not a SQuAD file: expected a JSON object with a 'data' list of articles")
    return data


def _looks_like_json_lines(text: str) -> bool:
    """Whether the first two non-empty lines are each a JSON object (a .jsonl file named .json)."""
    lines = [line for line in text.splitlines()[:50] if line.strip()][:2]
    try:
        return len(lines) == 2 and all(isinstance(json.loads(line), dict) for line in lines)
    except ValueError:
        return False


def normalise_batch(batch) -> Any:
    """JSON-lines / Parquet rows (a pyarrow Table with a ``path`` column) as the common rows."""
    import pyarrow as pa

    names = set(batch.column_names)
    n = batch.num_rows
    keys = ("id", "question", "context", "answers", "is_impossible")
    cols = {k: batch.column(k).to_pylist() if k in names else [None] * n for k in keys}
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
            ("impossible", pa.bool_()),
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
    impossible = item.get("is_impossible")
    if impossible is not None:
        if not isinstance(impossible, bool):
            raise DatasetError(f"{source}: question {qid!r}: 'is_impossible' is not true/false")
        if impossible and gold:
            raise DatasetError(
                f"{source}: question {qid!r}: marked is_impossible but has answers; an unanswerable question takes 'answers': []"
            )
        if not impossible and not gold:
            raise DatasetError(
                f"{source}: question {qid!r}: answerable (is_impossible false) but has no answers; give its answers "
                "or set is_impossible true"
            )
    return {
        "id": qid,
        "question": item["question"],
        "context": item["context"],
        "answers": gold,
        "impossible": impossible,
        "source": source,
    }


# ---------------------------------------------------------------------------------------------
# The Ray dataset of INPUT


def read_dataset(files: InputFiles, block_rows: int, index=None, concurrency: int | None = None):
    """One Ray dataset of every question row of ``files``, in input order, in blocks of at most
    ``block_rows`` rows (a block is one actor call and one commit), streamed: nothing is read
    before the pool asks for it. With ``index`` (the ref of the committed ids, ``--resume``)
    rows get ``skip``: true for the ids already answered.

    Reading, parsing and splitting ask for no CPU: the actor pool may hold every CPU, and Ray
    Data starts the actors before any other task, so a read task that needed a CPU would wait
    for ever (ray-project/ray#44687). They are light next to answering and share the cores;
    ``concurrency`` caps how many run at once (with no CPU asked, nothing else would, and Ray
    would start a worker process for each)."""
    import ray.data

    parts = []
    for (protocol, fmt), paths in files.groups.items():
        fs = files.filesystems[protocol]
        readers = min(concurrency, len(paths)) if concurrency else None  # no more than there are files
        if fmt == SQUAD:
            ds = ray.data.read_binary_files(paths, filesystem=fs, include_paths=True, num_cpus=0, concurrency=readers)
            ds = ds.map_batches(squad_batch, batch_size=1, batch_format="pyarrow", num_cpus=0, concurrency=concurrency)
        else:
            reader = ray.data.read_parquet if fmt == PARQUET else ray.data.read_json
            # Arrow's JSON reader reads newline-delimited JSON (lines=True would refuse filesystem=).
            kwargs = {} if fmt == PARQUET else {"file_extensions": None}
            ds = reader(paths, filesystem=fs, include_paths=True, num_cpus=0, concurrency=readers, **kwargs)
            ds = ds.map_batches(normalise_batch, batch_format="pyarrow", num_cpus=0, concurrency=concurrency)
        parts.append(ds)
    ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    if index is not None:
        from spanqa.scale.answerer import mark_committed

        ds = ds.map_batches(
            mark_committed, fn_kwargs={"index": [index]}, batch_format="pyarrow", num_cpus=0, concurrency=concurrency
        )
    return split_blocks(ds, block_rows)


def split_blocks(ds, rows: int):
    """``ds`` cut into blocks of at most ``rows`` rows by Ray Data's streaming repartition, with
    that operator asking for no CPU.

    ``repartition(target_num_rows_per_block=...)`` has no resource argument and its tasks ask
    for one CPU, which a pool holding every CPU never frees (the hang above). Its logical
    operator carries the remote arguments: with ``num_cpus=0`` there, Ray Data fuses it into the
    parsing before it (same arguments), so parsing yields the blocks directly. A Ray whose plan
    no longer looks like this fails here, loudly, instead of hanging."""
    ds = ds.repartition(target_num_rows_per_block=rows)
    try:
        op = ds._logical_plan.dag
        assert type(op).__name__ == "StreamingRepartition" and isinstance(op.ray_remote_args, dict)
    except (AttributeError, AssertionError):
        from spanqa.errors import ClusterError

        raise ClusterError(
            "this Ray's Data plan has no StreamingRepartition operator to run without a CPU; use the Ray "
            "version spanqa is tested with (pip install 'spanqa[ray]')"
        ) from None
    op.ray_remote_args["num_cpus"] = 0
    return ds
