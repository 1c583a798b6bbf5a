"""SQuAD examples and features, exactly as SpanBERT's run_squad.py makes them.

Data only: reading SQuAD JSON, tokenising, windowing and writing/reading feature folders.
Nothing here knows about models or scores.

A features directory (``write_features``) holds::

    manifest.json            what was made and how (keys below)
    input_ids/0.bin ...      one file per batch: int64 little-endian [batch_size, max_seq_length]
    input_mask/0.bin ...     (``.npy`` files instead with fmt="npy"); the last batch is padded
    segment_ids/0.bin ...    with all-zero rows
    features.npz             per-feature metadata, numeric (no pickles)
    examples.json            questions, the words of each context, the id -> token table

``manifest.json`` keys: ``kind`` ("spanqa-features"), ``spanqa_version``, ``format`` ("bin" or
"npy"), ``dtype`` ("int64"), ``byte_order`` ("little"), ``inputs`` (the three folder names, in
model-input order), ``batch_size``, ``max_seq_length``, ``num_features`` (real rows),
``num_batches``, ``num_padding_rows``, ``num_examples``, ``num_contexts``, ``unique_id_base``
(1000000000: feature i has unique id base + i), ``settings`` (FeatureSettings as JSON),
``do_lower_case``, ``tokenizer`` ({vocab_file, do_lower_case} or null), ``vocab_sha256``,
``dataset`` (file name or null), ``dataset_sha256``, ``metadata`` (the two metadata files).

``features.npz`` arrays, N = num_features: ``unique_id``, ``example_index``, ``span_index``
(int64 [N]); ``doc_offset`` (int64 [N], position of the first context token, i.e. query
length + 2), ``doc_length`` (int64 [N]); ``token_to_orig`` (int64, all features' context
tokens concatenated: the context word each came from) and ``max_context`` (uint8, same
layout). Feature i's context tokens are the slice ``doc_start[i] : doc_start[i] +
doc_length[i]`` of those flat arrays, where ``doc_start`` is the cumulative sum of
``doc_length``. Its tokens are ``id_to_token[input_ids[i, :length]]`` (table in examples.json).
"""

from __future__ import annotations

import gc
import json
import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from spanqa.errors import DatasetError, FeaturesError
from spanqa.vocab import TokenizerSettings

UNIQUE_ID_BASE = 1000000000
FEATURES_KIND = "spanqa-features"
INPUT_NAMES = ("input_ids", "input_mask", "segment_ids")
FORMATS = ("bin", "npy")
MANIFEST = "manifest.json"
FEATURES_NPZ = "features.npz"
EXAMPLES_JSON = "examples.json"


@dataclass(frozen=True)
class FeatureSettings:
    max_seq_length: int = 512
    doc_stride: int = 128
    max_query_length: int = 64
    do_lower_case: bool = False

    def check(self) -> None:
        """Refuse settings under which run_squad.py's window would never advance."""
        if self.doc_stride < 1:
            raise FeaturesError(f"doc_stride={self.doc_stride}: must be at least 1")
        if self.max_query_length < 0:
            raise FeaturesError(f"max_query_length={self.max_query_length}: must be 0 or more")
        if self.max_seq_length < self.max_query_length + 4:
            raise FeaturesError(
                f"max_seq_length={self.max_seq_length} leaves no room for the context after "
                f"[CLS] + {self.max_query_length} question tokens + 2 [SEP]; use at least "
                f"{self.max_query_length + 4} or a smaller max_query_length"
            )


@dataclass
class Example:
    qas_id: str
    question_text: str
    doc_tokens: list[str]  # the context split into words on whitespace (run_squad semantics)
    answers: list[str] = field(default_factory=list)  # gold answer texts (may be empty)
    is_impossible: bool = False


@dataclass
class Features:
    """All features of a dataset. Row i of the arrays is feature i (unique id 1000000000 + i)."""

    settings: FeatureSettings
    input_ids: np.ndarray  # int64 [N, max_seq_length], zero padded
    input_mask: np.ndarray  # int64 [N, max_seq_length]
    segment_ids: np.ndarray  # int64 [N, max_seq_length]
    example_index: np.ndarray  # int64 [N]: index into ``examples``
    span_index: np.ndarray  # int64 [N]: doc_span_index within its example
    tokens: list[list[str]]  # the word pieces of each feature, [CLS] ... [SEP] (unpadded)
    token_to_orig_map: list[dict[int, int]]  # feature token position -> index in doc_tokens
    token_is_max_context: list[dict[int, bool]]  # feature token position -> max-context flag
    examples: list[Example]

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def lengths(self) -> np.ndarray:
        """Real (unpadded) length of each feature."""
        return self.input_mask.sum(axis=1)

    @property
    def unique_ids(self) -> np.ndarray:
        """int64 [N]: 1000000000 + feature index, as run_squad.py numbers features."""
        return UNIQUE_ID_BASE + np.arange(len(self), dtype=np.int64)

    def example_features(self) -> list[list[int]]:
        """For each example, the indices of its features (in span order; may be empty)."""
        out: list[list[int]] = [[] for _ in self.examples]
        for i, ex in enumerate(self.example_index.tolist()):
            out[ex].append(i)
        return out


# ---------------------------------------------------------------------------------------------
# Reading SQuAD

_RUN_SQUAD_WHITESPACE = re.compile("[ \t\r\n\u202f]+")


def split_context(text: str) -> list[str]:
    """run_squad.py's words: maximal runs of characters other than space, tab, CR, LF, U+202F."""
    return [w for w in _RUN_SQUAD_WHITESPACE.split(text) if w]


def _article_label(index: int, article: Any) -> str:
    title = article.get("title") if isinstance(article, dict) else None
    if isinstance(title, str):
        shown = title if len(title) <= 60 else title[:57] + "..."
        return f"article {index} ({shown!r})"
    return f"article {index}"


def read_squad(path: str | Path) -> list[Example]:
    """Every question of a SQuAD v1.1 / v2.0 file, in file order.

    Raises DatasetError (one line, naming the file and the article / question) when the file
    is unreadable, not JSON, not SQuAD-shaped, or repeats a question id.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the dataset ({exc.strerror or exc})") from None
    try:
        data = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); pass a SQuAD .json file"
        ) from None
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            "pass a SQuAD .json file"
        ) from None
    except RecursionError:
        raise DatasetError(f"{path}: JSON nested too deeply; pass a SQuAD .json file") from None

    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DatasetError(
            f"{path}: not a SQuAD file: expected a JSON object with a 'data' list of articles"
        )

    examples: list[Example] = []
    seen: dict[str, str] = {}
    for a, article in enumerate(data["data"]):
        where = _article_label(a, article)
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise DatasetError(
                f"{path}: {where}: not a SQuAD article: expected an object with a 'paragraphs' list"
            )
        for p, paragraph in enumerate(article["paragraphs"]):
            pwhere = f"{where}, paragraph {p}"
            if not isinstance(paragraph, dict):
                raise DatasetError(f"{path}: {pwhere}: not an object with 'context' and 'qas'")
            if "context" not in paragraph:
                raise DatasetError(f"{path}: {pwhere}: missing 'context'")
            context = paragraph["context"]
            if not isinstance(context, str):
                raise DatasetError(f"{path}: {pwhere}: 'context' is not a string")
            qas = paragraph.get("qas")
            if not isinstance(qas, list):
                raise DatasetError(f"{path}: {pwhere}: missing 'qas' list")
            # Questions of one paragraph share its word list: build_features and the
            # metadata writer then tokenise and store each context once.
            doc_tokens = split_context(context)
            for q, qa in enumerate(qas):
                qwhere = f"{pwhere}, question {q}"
                if not isinstance(qa, dict):
                    raise DatasetError(f"{path}: {qwhere}: not an object with 'id' and 'question'")
                if "id" not in qa:
                    raise DatasetError(f"{path}: {qwhere}: missing 'id'")
                qas_id = qa["id"]
                if not isinstance(qas_id, str):
                    raise DatasetError(f"{path}: {qwhere}: 'id' is not a string ({qas_id!r})")
                qwhere = f"{where}, question {qas_id!r}"
                if qas_id in seen:
                    raise DatasetError(
                        f"{path}: {qwhere}: duplicate question id (first in {seen[qas_id]}); "
                        "question ids must be unique"
                    )
                seen[qas_id] = where
                if "question" not in qa:
                    raise DatasetError(f"{path}: {qwhere}: missing 'question'")
                question = qa["question"]
                if not isinstance(question, str):
                    raise DatasetError(f"{path}: {qwhere}: 'question' is not a string")
                impossible = qa.get("is_impossible", False)
                if not isinstance(impossible, bool):
                    raise DatasetError(f"{path}: {qwhere}: 'is_impossible' is not true/false")
                answers = qa.get("answers", [])
                if answers is None:
                    answers = []
                if not isinstance(answers, list) or not all(
                    isinstance(x, dict) and isinstance(x.get("text"), str) for x in answers
                ):
                    raise DatasetError(
                        f"{path}: {qwhere}: 'answers' must be a list of objects with a 'text' string"
                    )
                examples.append(
                    Example(
                        qas_id=qas_id,
                        question_text=question,
                        doc_tokens=doc_tokens,
                        answers=[x["text"] for x in answers],
                        is_impossible=impossible,
                    )
                )
    if not examples:
        raise DatasetError(f"{path}: no questions found; pass a SQuAD file with 'qas'")
    return examples


# ---------------------------------------------------------------------------------------------
# Building features


def doc_spans(num_tokens: int, max_tokens_for_doc: int, doc_stride: int) -> list[tuple[int, int]]:
    """run_squad.py's sliding window: (start, length) spans; the start advances by
    min(length, doc_stride) -- a step, not an overlap."""
    spans: list[tuple[int, int]] = []
    start = 0
    while start < num_tokens:
        length = min(num_tokens - start, max_tokens_for_doc)
        spans.append((start, length))
        if start + length == num_tokens:
            break
        start += min(length, doc_stride)
    return spans


def max_context_flags(spans: list[tuple[int, int]], num_tokens: int) -> list[np.ndarray]:
    """For each span, whether it is each of its tokens' "max context" span.

    A token's score in a span is min(left context, right context) + 0.01 * span length; the
    first span with the best score wins (run_squad.py's _check_is_max_context, vectorised:
    spans are visited in order and only a strictly better score takes over).
    """
    if len(spans) == 1:
        return [np.ones(spans[0][1], dtype=bool)]
    best_score = np.full(num_tokens, -np.inf)
    best_span = np.full(num_tokens, -1, dtype=np.int64)
    for i, (start, length) in enumerate(spans):
        pos = np.arange(length)
        score = np.minimum(pos, length - 1 - pos) + 0.01 * length
        window = slice(start, start + length)
        better = score > best_score[window]
        best_score[window] = np.where(better, score, best_score[window])
        best_span[window] = np.where(better, i, best_span[window])
    return [best_span[start : start + length] == i for i, (start, length) in enumerate(spans)]


def _chunks(n: int, size: int) -> Iterable[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)


@contextmanager
def _no_gc():
    # Building features allocates a few hundred thousand containers and frees none: the cyclic
    # collector would rescan everything alive in the process again and again for nothing.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def build_features(
    examples: list[Example],
    tokenizer: TokenizerSettings,
    settings: FeatureSettings = FeatureSettings(),
) -> Features:
    """run_squad.py's convert_examples_to_features, with the Rust WordPiece.

    Every distinct word (of all contexts and questions) is tokenised once, on its own, by the
    Rust tokenizer in parallel; windows and max-context flags are computed once per (context,
    question length). ``settings.do_lower_case`` is taken from ``tokenizer`` (the casing is the
    tokenizer's property).
    """
    with _no_gc():
        return _build_features(examples, tokenizer, settings)


def _build_features(examples: list[Example], tokenizer: TokenizerSettings, settings: FeatureSettings) -> Features:
    from spanqa import progress
    from spanqa.tokenization import make_tokenizer

    settings = replace(settings, do_lower_case=bool(tokenizer.do_lower_case))
    settings.check()
    wp = make_tokenizer(tokenizer)
    L = settings.max_seq_length

    # Distinct contexts, keyed by their words (questions of one paragraph share them).
    ctx_index: dict[tuple[str, ...], int] = {}
    ctx_words: list[list[str]] = []
    example_ctx: list[int] = []
    for ex in examples:
        key = tuple(ex.doc_tokens)
        c = ctx_index.get(key)
        if c is None:
            c = ctx_index[key] = len(ctx_words)
            ctx_words.append(list(ex.doc_tokens))
        example_ctx.append(c)

    q_words = [split_context(ex.question_text) for ex in examples]
    unique = list(dict.fromkeys(w for words in (*ctx_words, *q_words) for w in words))
    with progress.bar(total=len(unique), desc="tokenize", unit="word", unit_scale=True) as bar:
        table = wp.encode_vocabulary(unique, on_chunk=bar.update)
    ctx_enc = []
    for words in ctx_words:
        ids, toks, word_ids = table.lookup(words)
        ctx_enc.append((ids, toks, word_ids.tolist()))
    q_enc = []
    for words in q_words:
        ids, toks, _ = table.lookup(words)
        q_enc.append((ids, toks))

    # Windows per example; (context, question length) pairs repeat, so cache them.
    window_cache: dict[tuple[int, int], tuple[list[tuple[int, int]], list[np.ndarray]]] = {}
    plan: list[tuple[int, int, list[tuple[int, int]], list[np.ndarray]]] = []
    for e, c in enumerate(example_ctx):
        qlen = min(len(q_enc[e][0]), settings.max_query_length)
        key = (c, qlen)
        if key not in window_cache:
            n = len(ctx_enc[c][0])
            spans = doc_spans(n, L - qlen - 3, settings.doc_stride)
            window_cache[key] = (spans, max_context_flags(spans, n) if spans else [])
        spans, flags = window_cache[key]
        plan.append((e, qlen, spans, flags))

    n_features = sum(len(p[2]) for p in plan)
    input_ids = np.zeros((n_features, L), dtype=np.int64)
    input_mask = np.zeros((n_features, L), dtype=np.int64)
    segment_ids = np.zeros((n_features, L), dtype=np.int64)
    example_index = np.zeros(n_features, dtype=np.int64)
    span_index = np.zeros(n_features, dtype=np.int64)
    tokens: list[list[str]] = []
    token_to_orig_map: list[dict[int, int]] = []
    token_is_max_context: list[dict[int, bool]] = []

    cls_id, sep_id = wp.cls_id, wp.sep_id
    f = 0
    for e, qlen, spans, flags in progress.track(plan, total=len(plan), desc="features", unit="q"):
        q_ids, q_toks = q_enc[e][0][:qlen], q_enc[e][1][:qlen]
        c_ids, c_toks, c_words = ctx_enc[example_ctx[e]]
        head = ["[CLS]", *q_toks, "[SEP]"]
        off = qlen + 2
        for s, ((start, length), flag) in enumerate(zip(spans, flags)):
            end = off + length
            row = input_ids[f]
            row[0] = cls_id
            row[1 : 1 + qlen] = q_ids
            row[1 + qlen] = sep_id
            row[off:end] = c_ids[start : start + length]
            row[end] = sep_id
            input_mask[f, : end + 1] = 1
            segment_ids[f, off : end + 1] = 1
            example_index[f] = e
            span_index[f] = s
            positions = range(off, end)
            tokens.append(head + c_toks[start : start + length] + ["[SEP]"])
            token_to_orig_map.append(dict(zip(positions, c_words[start : start + length])))
            token_is_max_context.append(dict(zip(positions, flag.tolist())))
            f += 1

    return Features(
        settings=settings,
        input_ids=input_ids,
        input_mask=input_mask,
        segment_ids=segment_ids,
        example_index=example_index,
        span_index=span_index,
        tokens=tokens,
        token_to_orig_map=token_to_orig_map,
        token_is_max_context=token_is_max_context,
        examples=list(examples),
    )


# ---------------------------------------------------------------------------------------------
# Writing and reading feature folders


def _is_features_dir(path: Path) -> bool:
    try:
        return json.loads((path / MANIFEST).read_text(encoding="utf-8")).get("kind") == FEATURES_KIND
    except (OSError, ValueError, AttributeError):
        return False


def _metadata(features: Features) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    n = len(features)
    doc_offset = np.zeros(n, dtype=np.int64)
    doc_length = np.zeros(n, dtype=np.int64)
    flat_orig: list[int] = []
    flat_max: list[bool] = []
    for i, (orig, maxc) in enumerate(zip(features.token_to_orig_map, features.token_is_max_context)):
        keys = list(orig)
        if keys:
            first = min(keys)
            if keys != list(range(first, first + len(keys))):
                keys = sorted(keys)
                if keys != list(range(first, first + len(keys))):
                    raise FeaturesError(f"feature {i}: context token positions are not contiguous")
            if list(maxc) != keys and sorted(maxc) != keys:
                raise FeaturesError(f"feature {i}: max-context flags do not cover the context tokens")
            doc_offset[i] = first
            doc_length[i] = len(keys)
            flat_orig.extend(orig[p] for p in keys)
            flat_max.extend(maxc[p] for p in keys)
        else:
            doc_offset[i] = len(features.tokens[i]) - 1
    arrays = {
        "unique_id": features.unique_ids,
        "example_index": np.asarray(features.example_index, dtype=np.int64),
        "span_index": np.asarray(features.span_index, dtype=np.int64),
        "doc_offset": doc_offset,
        "doc_length": doc_length,
        "token_to_orig": np.asarray(flat_orig, dtype=np.int64),
        "max_context": np.asarray(flat_max, dtype=np.uint8),
    }

    ctx_index: dict[tuple[str, ...], int] = {}
    contexts: list[list[str]] = []
    examples = []
    for ex in features.examples:
        key = tuple(ex.doc_tokens)
        if key not in ctx_index:
            ctx_index[key] = len(contexts)
            contexts.append(list(ex.doc_tokens))
        examples.append(
            {
                "id": ex.qas_id,
                "question": ex.question_text,
                "context": ctx_index[key],
                "answers": list(ex.answers),
                "is_impossible": bool(ex.is_impossible),
            }
        )
    # The id -> token table: each id's token string at its first occurrence.
    lengths = np.fromiter((len(t) for t in features.tokens), dtype=np.int64, count=n)
    valid = np.arange(features.input_ids.shape[1] if n else 0) < lengths[:, None]
    ids_flat = features.input_ids[valid]
    uniq, first = np.unique(ids_flat, return_index=True)
    row_of = np.repeat(np.arange(n), lengths)
    col_of = np.arange(ids_flat.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    id_to_token = {
        int(t): features.tokens[int(row_of[k])][int(col_of[k])] for t, k in zip(uniq, first)
    }
    text = {
        "examples": examples,
        "contexts": contexts,
        "id_to_token": [[k, v] for k, v in sorted(id_to_token.items())],
    }
    return arrays, text


def write_features(
    features: Features,
    out_dir: str | Path,
    batch_size: int = 1,
    fmt: str = "bin",
    *,
    tokenizer: TokenizerSettings | None = None,
    dataset: str | Path | None = None,
) -> dict[str, Any]:
    """Write the recipe's folders (input_ids/, input_mask/, segment_ids/ with one file per
    batch), the metadata and manifest.json; returns the manifest.

    Atomic: built under a temp name beside ``out_dir`` and renamed into place. An existing
    ``out_dir`` is replaced only if it is itself a features directory. ``tokenizer`` and
    ``dataset`` only feed the manifest's provenance (vocab and dataset sha256).
    """
    from spanqa import __version__, progress
    from spanqa.fileutil import atomic_dir, sha256_file

    out_dir = Path(out_dir)
    if fmt not in FORMATS:
        raise FeaturesError(f"format {fmt!r}: use one of {', '.join(FORMATS)}")
    if batch_size < 1:
        raise FeaturesError(f"batch_size={batch_size}: must be at least 1")
    if out_dir.exists():
        if not out_dir.is_dir():
            raise FeaturesError(f"{out_dir}: exists and is not a directory; choose another output")
        if any(out_dir.iterdir()) and not _is_features_dir(out_dir):
            raise FeaturesError(
                f"{out_dir}: exists and is not a features directory; choose another output "
                "or delete it"
            )

    n, L = features.input_ids.shape
    num_batches = -(-n // batch_size)
    arrays, text = _metadata(features)
    ctx_count = len(text["contexts"])
    manifest: dict[str, Any] = {
        "kind": FEATURES_KIND,
        "spanqa_version": __version__,
        "format": fmt,
        "dtype": "int64",
        "byte_order": "little",
        "inputs": list(INPUT_NAMES),
        "batch_size": batch_size,
        "max_seq_length": int(L),
        "num_features": int(n),
        "num_batches": num_batches,
        "num_padding_rows": num_batches * batch_size - n,
        "num_examples": len(features.examples),
        "num_contexts": ctx_count,
        "unique_id_base": UNIQUE_ID_BASE,
        "settings": asdict(features.settings),
        "do_lower_case": bool(features.settings.do_lower_case),
        "tokenizer": tokenizer.to_json() if tokenizer is not None else None,
        "vocab_sha256": sha256_file(tokenizer.vocab_path) if tokenizer is not None else None,
        "dataset": Path(dataset).name if dataset is not None else None,
        "dataset_sha256": sha256_file(dataset) if dataset is not None else None,
        "metadata": {"features": FEATURES_NPZ, "examples": EXAMPLES_JSON},
    }
    sources = {
        "input_ids": features.input_ids,
        "input_mask": features.input_mask,
        "segment_ids": features.segment_ids,
    }
    with atomic_dir(out_dir) as tmp:
        for name in INPUT_NAMES:
            (tmp / name).mkdir()
        with progress.bar(total=num_batches, desc="write", unit="batch") as bar:
            for b in range(num_batches):
                lo, hi = b * batch_size, min(n, (b + 1) * batch_size)
                for name in INPUT_NAMES:
                    block = np.zeros((batch_size, L), dtype="<i8")
                    block[: hi - lo] = sources[name][lo:hi]
                    if fmt == "bin":
                        block.tofile(tmp / name / f"{b}.bin")
                    else:
                        np.save(tmp / name / f"{b}.npy", block, allow_pickle=False)
                bar.update(1)
        np.savez_compressed(tmp / FEATURES_NPZ, **arrays)
        (tmp / EXAMPLES_JSON).write_text(
            json.dumps(text, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8"
        )
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def read_features_manifest(features_dir: str | Path) -> dict[str, Any]:
    """The manifest of a features directory (FeaturesError if absent or not one)."""
    features_dir = Path(features_dir)
    path = features_dir / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FeaturesError(
            f"{features_dir}: no {MANIFEST}; not a features directory (make one with spanqa preprocess)"
        ) from None
    except (OSError, ValueError) as exc:
        raise FeaturesError(f"{path}: unreadable ({exc}); re-run spanqa preprocess") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != FEATURES_KIND:
        raise FeaturesError(f"{path}: not a features manifest; re-run spanqa preprocess")
    for key in ("format", "batch_size", "max_seq_length", "num_features", "num_batches", "settings"):
        if key not in manifest:
            raise FeaturesError(f"{path}: no '{key}'; re-run spanqa preprocess")
    if manifest["format"] not in FORMATS:
        raise FeaturesError(f"{path}: unknown format {manifest['format']!r}; re-run spanqa preprocess")
    return manifest


def _read_batches(features_dir: Path, name: str, manifest: dict[str, Any]) -> np.ndarray:
    fmt, bs, L = manifest["format"], int(manifest["batch_size"]), int(manifest["max_seq_length"])
    nb, n = int(manifest["num_batches"]), int(manifest["num_features"])
    folder = features_dir / name
    if not folder.is_dir():
        raise FeaturesError(f"{folder}: missing; the features directory is incomplete")
    expected = {f"{b}.{fmt}" for b in range(nb)}
    present = {p.name for p in folder.iterdir()}
    if present != expected:
        extra = sorted(present - expected)[:3]
        missing = sorted(expected - present, key=lambda s: int(s.split(".")[0]))[:3]
        raise FeaturesError(
            f"{folder}: expected {nb} files 0.{fmt}..{nb - 1}.{fmt}"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unexpected {', '.join(extra)}" if extra else "")
        )
    out = np.empty((nb * bs, L), dtype=np.int64)
    for b in range(nb):
        path = folder / f"{b}.{fmt}"
        try:
            if fmt == "bin":
                size = path.stat().st_size
                if size != bs * L * 8:
                    raise ValueError(
                        f"{size} bytes, expected {bs * L * 8} (int64 [{bs}, {L}])"
                    )
                block = np.fromfile(path, dtype="<i8").reshape(bs, L)
            else:
                block = np.load(path, allow_pickle=False)
                if block.shape != (bs, L) or block.dtype != np.dtype("<i8"):
                    raise ValueError(f"shape {block.shape} {block.dtype}, expected ({bs}, {L}) int64")
        except (OSError, ValueError) as exc:
            raise FeaturesError(f"{path}: {exc}; re-run spanqa preprocess") from None
        out[b * bs : (b + 1) * bs] = block
    if np.any(out[n:]):
        raise FeaturesError(f"{folder}: padding rows after row {n} are not zero; re-run spanqa preprocess")
    return out[:n]


def load_features(features_dir: str | Path) -> Features:
    """Read back everything ``write_features`` wrote; FeaturesError on any inconsistency."""
    with _no_gc():
        return _load_features(features_dir)


def _load_features(features_dir: str | Path) -> Features:
    features_dir = Path(features_dir)
    manifest = read_features_manifest(features_dir)
    n = int(manifest["num_features"])
    try:
        settings = FeatureSettings(**manifest["settings"])
    except TypeError:
        raise FeaturesError(f"{features_dir / MANIFEST}: bad 'settings'; re-run spanqa preprocess") from None
    arrays = {name: _read_batches(features_dir, name, manifest) for name in INPUT_NAMES}

    npz = features_dir / FEATURES_NPZ
    keys = ("unique_id", "example_index", "span_index", "doc_offset", "doc_length", "token_to_orig", "max_context")
    try:
        with np.load(npz, allow_pickle=False) as z:
            meta = {k: z[k] for k in keys}
    except (OSError, ValueError, KeyError) as exc:
        raise FeaturesError(f"{npz}: unreadable or incomplete ({exc}); re-run spanqa preprocess") from None
    ex_path = features_dir / EXAMPLES_JSON
    try:
        text = json.loads(ex_path.read_text(encoding="utf-8"))
        contexts = text["contexts"]
        examples = [
            Example(
                qas_id=e["id"],
                question_text=e["question"],
                doc_tokens=contexts[e["context"]],
                answers=list(e["answers"]),
                is_impossible=bool(e["is_impossible"]),
            )
            for e in text["examples"]
        ]
        id_to_token = {int(k): v for k, v in text["id_to_token"]}
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise FeaturesError(f"{ex_path}: unreadable or incomplete ({exc!r}); re-run spanqa preprocess") from None

    def bad(what: str) -> FeaturesError:
        return FeaturesError(f"{features_dir}: {what}; re-run spanqa preprocess")

    for k in keys[:5]:
        if meta[k].shape != (n,):
            raise bad(f"{FEATURES_NPZ} '{k}' has {meta[k].shape[0] if meta[k].ndim else 0} rows, expected {n}")
    if not np.array_equal(meta["unique_id"], UNIQUE_ID_BASE + np.arange(n)):
        raise bad("unique ids are not 1000000000 + row")
    total = int(meta["doc_length"].sum())
    if meta["token_to_orig"].shape != (total,) or meta["max_context"].shape != (total,):
        raise bad(f"{FEATURES_NPZ} token maps do not add up to the context lengths")
    if n and (meta["example_index"].min() < 0 or meta["example_index"].max() >= len(examples)):
        raise bad("example indices point past the examples")
    lengths = arrays["input_mask"].sum(axis=1)
    if not np.array_equal(lengths, meta["doc_offset"] + meta["doc_length"] + 1):
        raise bad("input_mask lengths disagree with the metadata")

    tokens: list[list[str]] = []
    token_to_orig_map: list[dict[int, int]] = []
    token_is_max_context: list[dict[int, bool]] = []
    starts = np.concatenate([[0], np.cumsum(meta["doc_length"])]).tolist()
    flat_orig = meta["token_to_orig"].tolist()
    flat_max = meta["max_context"].astype(bool).tolist()
    offsets = meta["doc_offset"].tolist()
    ids_rows = arrays["input_ids"]
    for i, length in enumerate(lengths.tolist()):
        try:
            tokens.append([id_to_token[t] for t in ids_rows[i, :length].tolist()])
        except KeyError as exc:
            raise bad(f"feature {i}: token id {exc} is not in the token table") from None
        positions = range(offsets[i], offsets[i] + starts[i + 1] - starts[i])
        token_to_orig_map.append(dict(zip(positions, flat_orig[starts[i] : starts[i + 1]])))
        token_is_max_context.append(dict(zip(positions, flat_max[starts[i] : starts[i + 1]])))

    return Features(
        settings=settings,
        input_ids=arrays["input_ids"],
        input_mask=arrays["input_mask"],
        segment_ids=arrays["segment_ids"],
        example_index=meta["example_index"].astype(np.int64),
        span_index=meta["span_index"].astype(np.int64),
        tokens=tokens,
        token_to_orig_map=token_to_orig_map,
        token_is_max_context=token_is_max_context,
        examples=examples,
    )


def preprocess(
    dataset: str | Path,
    out_dir: str | Path | None,
    tokenizer: TokenizerSettings,
    settings: FeatureSettings = FeatureSettings(),
    batch_size: int = 1,
    fmt: str = "bin",
) -> tuple[Features, dict[str, Any] | None]:
    """read_squad + build_features (+ write_features when ``out_dir`` is given)."""
    examples = read_squad(dataset)
    features = build_features(examples, tokenizer, settings)
    manifest = None
    if out_dir is not None:
        manifest = write_features(features, out_dir, batch_size, fmt, tokenizer=tokenizer, dataset=dataset)
    return features, manifest
