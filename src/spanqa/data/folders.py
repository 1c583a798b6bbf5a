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

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from spanqa.data.features import UNIQUE_ID_BASE, Features, build_features, no_gc
from spanqa.data.squad import Example, is_squad2, read_squad
from spanqa.data.vocab import TokenizerSettings
from spanqa.errors import FeaturesError
from spanqa.fileutil import check_output
from spanqa.settings import FeatureSettings

FEATURES_KIND = "spanqa-features"
INPUT_NAMES = ("input_ids", "input_mask", "segment_ids")
FORMATS = ("bin", "npy")
MANIFEST = "manifest.json"
FEATURES_NPZ = "features.npz"
EXAMPLES_JSON = "examples.json"


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
                "is_impossible": None if ex.is_impossible is None else bool(ex.is_impossible),
            }
        )
    # The id -> token table: each id's token string at its first occurrence.
    lengths = np.fromiter((len(t) for t in features.tokens), dtype=np.int64, count=n)
    valid = np.arange(features.input_ids.shape[1] if n else 0) < lengths[:, None]
    ids_flat = features.input_ids[valid]
    uniq, first = np.unique(ids_flat, return_index=True)
    row_of = np.repeat(np.arange(n), lengths)
    col_of = np.arange(ids_flat.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    id_to_token = {int(t): features.tokens[int(row_of[k])][int(col_of[k])] for t, k in zip(uniq, first)}
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
    overwrite: bool = False,
    version_2_with_negative: bool = False,
) -> dict[str, Any]:
    """Write the recipe's folders (input_ids/, input_mask/, segment_ids/ with one file per
    batch), the metadata and manifest.json; returns the manifest.

    Atomic: built under a temp name beside ``out_dir`` and renamed into place. An existing
    ``out_dir`` is replaced only if it is itself a features directory and ``overwrite`` is set
    (``fileutil.check_output``). ``tokenizer`` and
    ``dataset`` only feed the manifest's provenance (vocab and dataset sha256).
    ``version_2_with_negative`` is recorded (as true only) for ``spanqa evaluate``'s default.
    """
    from spanqa import __version__, progress
    from spanqa.fileutil import atomic_dir, sha256_file

    out_dir = Path(out_dir)
    if fmt not in FORMATS:
        raise FeaturesError(f"format {fmt!r}: use one of {', '.join(FORMATS)}")
    if batch_size < 1:
        raise FeaturesError(f"batch_size={batch_size}: must be at least 1")
    check_output(out_dir, "features", overwrite=overwrite, inputs=(dataset,))

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
    if version_2_with_negative:  # absent otherwise: 1.1 manifests stay as they were
        manifest["version_2_with_negative"] = True
    sources = {
        "input_ids": features.input_ids,
        "input_mask": features.input_mask,
        "segment_ids": features.segment_ids,
    }
    with atomic_dir(out_dir, "features", overwrite=overwrite, inputs=(dataset,)) as tmp:
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
        (tmp / EXAMPLES_JSON).write_text(json.dumps(text, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
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
                    raise ValueError(f"{size} bytes, expected {bs * L * 8} (int64 [{bs}, {L}])")
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
    with no_gc():
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
                is_impossible=None if e.get("is_impossible") is None else bool(e["is_impossible"]),
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
    overwrite: bool = False,
    version_2_with_negative: bool | None = None,
) -> tuple[Features, dict[str, Any] | None]:
    """read_squad + build_features (+ write_features when ``out_dir`` is given). The features
    are the same for SQuAD 2.0; ``version_2_with_negative`` (None: whether the dataset is 2.0)
    is recorded so that ``spanqa evaluate`` turns the null answer on by default."""
    if out_dir is not None:  # refuse a bad output before the work, not after
        check_output(out_dir, "features", overwrite=overwrite, inputs=(dataset,))
    examples = read_squad(dataset)
    features = build_features(examples, tokenizer, settings)
    manifest = None
    if out_dir is not None:
        if version_2_with_negative is None:
            version_2_with_negative = is_squad2(examples)
        manifest = write_features(
            features,
            out_dir,
            batch_size,
            fmt,
            tokenizer=tokenizer,
            dataset=dataset,
            overwrite=overwrite,
            version_2_with_negative=version_2_with_negative,
        )
    return features, manifest
