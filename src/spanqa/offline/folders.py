"""Feature folders, msame's inputs: found, matched to model inputs by name and checked before
anything runs.

Shapes of headerless ``.bin`` folders come from, in order: the features' ``manifest.json``
(written by ``spanqa preprocess``), the model's fixed axes, the caller's ``batch_size`` /
``seq_len``, and the file size once one of the two is known. ``.npy`` files carry their own
shape and dtype.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spanqa.errors import FeaturesError, InferenceError, UsageError
from spanqa.runtimes.loop import Batch, check_model_fit

# Model input -> folder names that feed it (the recipe's names first).
INPUT_FOLDERS: dict[str, tuple[str, ...]] = {
    "input_ids": ("input_ids",),
    "token_type_ids": ("segment_ids", "token_type_ids"),
    "attention_mask": ("input_mask", "attention_mask"),
}
MODEL_INPUTS = tuple(INPUT_FOLDERS)
FEATURES_MANIFEST = "manifest.json"


@dataclass(frozen=True)
class FeatureFolders:
    """Validated input folders: every file exists, has the same name in every folder, and holds
    int64 [batch_size, seq_len]."""

    folders: dict[str, Path]  # model input name -> folder
    keys: tuple[str, ...]  # file stems in run order; also the output names' prefixes
    fmt: str  # "bin" or "npy"
    batch_size: int
    seq_len: int
    manifest: dict | None  # the features manifest, when there is one

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def num_features(self) -> int | None:
        return int(self.manifest["num_features"]) if self.manifest else None

    def path(self, name: str, key: str) -> Path:
        return self.folders[name] / f"{key}.{self.fmt}"

    def load(self, key: str) -> Batch:
        arrays = []
        for name in MODEL_INPUTS:
            path = self.path(name, key)
            try:
                if self.fmt == "bin":
                    a = np.fromfile(path, dtype="<i8")
                else:
                    a = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise FeaturesError(f"{path}: unreadable ({exc}); re-run 'spanqa preprocess'") from None
            if a.size != self.batch_size * self.seq_len:  # changed since it was checked
                raise FeaturesError(f"{path}: changed while running; expected int64 [{self.batch_size}, {self.seq_len}]")
            arrays.append(np.ascontiguousarray(a.reshape(self.batch_size, self.seq_len), dtype=np.int64))
        return Batch(key, *arrays)

    def batches(self, keys: Iterable[str] | None = None) -> Iterator[Batch]:
        for key in self.keys if keys is None else keys:
            yield self.load(key)


def _resolve_folders(inputs: str | Path | Sequence[str | Path]) -> tuple[dict[str, Path], Path | None]:
    """Map model inputs to folders; also return the directory that may hold manifest.json."""
    if isinstance(inputs, (str, Path)):
        text = str(inputs)
        parts = [p for p in text.split(",") if p.strip()] if "," in text else [text]
    else:
        parts = [str(p) for p in inputs]
    paths = [Path(p.strip()) for p in parts]
    if not paths:
        raise UsageError("--input: no folder given; pass the features directory from 'spanqa preprocess'")
    for p in paths:
        if not p.exists():
            raise UsageError(f"--input {p}: no such folder; pass the features directory from 'spanqa preprocess'")
        if not p.is_dir():
            raise UsageError(f"{p}: not a folder; --input takes a features directory or comma-separated folders")

    if len(paths) == 1 and paths[0].name not in {a for names in INPUT_FOLDERS.values() for a in names}:
        root = paths[0]
        folders = {}
        for name, aliases in INPUT_FOLDERS.items():
            found = [root / a for a in aliases if (root / a).is_dir()]
            if not found:
                raise InferenceError(
                    f"{root}: no {aliases[0]}/ folder (model input {name}); point --input at the directory "
                    "'spanqa preprocess' wrote, or list the folders: input_ids,segment_ids,input_mask"
                )
            if len(found) > 1:
                raise InferenceError(f"{root}: both {found[0].name}/ and {found[1].name}/ feed {name}; keep one")
            folders[name] = found[0]
        return folders, root

    # A list of folders: by name when every name is known, else by position (msame's rule).
    alias_of = {a: name for name, aliases in INPUT_FOLDERS.items() for a in aliases}
    known = [alias_of.get(p.name) for p in paths]
    if all(known):
        folders: dict[str, Path] = {}
        for name, p in zip(known, paths):
            if name in folders:
                raise InferenceError(f"--input: {folders[name]} and {p} both feed {name}; give each input once")
            folders[name] = p
        for name in MODEL_INPUTS:
            if name not in folders:
                raise InferenceError(
                    f"--input: no folder for model input {name} (expected one named {' or '.join(INPUT_FOLDERS[name])})"
                )
    elif not any(known) and len(paths) == len(MODEL_INPUTS):
        folders = dict(zip(MODEL_INPUTS, paths))
    elif len(paths) != len(MODEL_INPUTS):
        raise InferenceError(
            f"--input: {len(paths)} folder(s) for the model's {len(MODEL_INPUTS)} inputs (input_ids, segment_ids, input_mask)"
        )
    else:
        odd = [p.name for p, k in zip(paths, known) if not k]
        raise InferenceError(
            f"--input: cannot tell which model input {', '.join(odd)} feeds; name the folders "
            "input_ids, segment_ids, input_mask (or give all three unnamed, in that order)"
        )
    parents = {p.resolve().parent for p in folders.values()}
    return folders, (parents.pop() if len(parents) == 1 else None)


def _list_files(folder: Path) -> tuple[str, dict[str, Path]]:
    bins, npys = {}, {}
    for p in folder.iterdir():
        if p.name.startswith(".") or not p.is_file():
            continue
        if p.suffix == ".bin":
            bins[p.stem] = p
        elif p.suffix == ".npy":
            npys[p.stem] = p
    if bins and npys:
        raise FeaturesError(f"{folder}: holds both .bin and .npy files; keep one format")
    if not bins and not npys:
        raise FeaturesError(f"{folder}: no .bin or .npy files; make features with 'spanqa preprocess'")
    return ("bin", bins) if bins else ("npy", npys)


def _sort_keys(keys: Iterable[str]) -> list[str]:
    keys = list(keys)
    if all(k.isdigit() for k in keys):
        return sorted(keys, key=int)
    return sorted(keys)


def npy_header(path: Path) -> tuple[tuple, np.dtype, int]:
    """Shape, dtype and data offset of a .npy file, read without loading it."""
    from numpy.lib import format as npf

    try:
        with open(path, "rb") as f:
            version = npf.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = npf.read_array_header_1_0(f)
            else:
                shape, _, dtype = npf.read_array_header_2_0(f)
            return shape, dtype, f.tell()
    except (OSError, ValueError) as exc:
        raise FeaturesError(
            f"{path}: not a readable .npy file ({str(exc).splitlines()[0]}); re-run 'spanqa preprocess'"
        ) from None


def _bin_size_error(path: Path, size: int, batch: int, seq: int) -> FeaturesError:
    expected = 8 * batch * seq
    hint = " (int32 data? the inputs must be int64)" if size * 2 == expected else ""
    return FeaturesError(
        f"{path}: {size} bytes, expected {expected} (int64 [{batch}, {seq}]){hint}; "
        "the file is truncated or not int64 token ids: re-run 'spanqa preprocess'"
    )


def open_features(
    inputs: str | Path | Sequence[str | Path],
    *,
    model_batch: int | None = None,
    model_seq: int | None = None,
    max_positions: int | None = None,
    batch_size: int | None = None,
    seq_len: int | None = None,
) -> FeatureFolders:
    """Find, list and check the feature files against the model before anything runs.

    ``inputs``: a features directory (with ``input_ids/``, ``segment_ids/``, ``input_mask/``;
    ``token_type_ids/`` and ``attention_mask/`` are accepted too) or a comma-separated list /
    sequence of folders. ``batch_size``/``seq_len`` describe headerless ``.bin`` folders that
    have no manifest.json when the model does not fix them.
    """
    folders, root = _resolve_folders(inputs)
    manifest = None
    if root is not None and (root / FEATURES_MANIFEST).is_file():
        from spanqa.data.folders import read_features_manifest

        manifest = read_features_manifest(root)

    listings = {name: _list_files(folder) for name, folder in folders.items()}
    fmts = {fmt for fmt, _ in listings.values()}
    if len(fmts) > 1:
        raise FeaturesError(
            "--input: "
            + ", ".join(f"{folders[n].name}/ holds .{listings[n][0]}" for n in MODEL_INPUTS)
            + "; all folders must use one format"
        )
    fmt = fmts.pop()
    counts = {name: len(files) for name, (_, files) in listings.items()}
    if len(set(counts.values())) > 1:
        raise FeaturesError(
            "unequal file counts: "
            + ", ".join(f"{folders[n]} has {counts[n]}" for n in MODEL_INPUTS)
            + "; every input folder needs one file per batch (re-run 'spanqa preprocess')"
        )
    first = listings["input_ids"][1]
    for name in MODEL_INPUTS[1:]:
        files = listings[name][1]
        missing = _sort_keys(set(first) - set(files))
        if missing:
            raise FeaturesError(
                f"{folders[name]}: no {missing[0]}.{fmt} to match {folders['input_ids'] / (missing[0] + '.' + fmt)}; "
                "the input folders must hold the same file names"
            )
    keys = tuple(_sort_keys(first))

    # Shapes: manifest first, then the caller's, then the model's, then the files themselves.
    if manifest is not None:
        m_batch, m_seq = int(manifest["batch_size"]), int(manifest["max_seq_length"])
        for opt, given, have in (("--batch-size", batch_size, m_batch), ("--seq-len", seq_len, m_seq)):
            if given is not None and given != have:
                raise UsageError(f"{opt} {given}: the features' manifest.json says {have}; drop {opt}")
        if manifest.get("dtype", "int64") != "int64":
            raise FeaturesError(
                f"{root / FEATURES_MANIFEST}: dtype {manifest['dtype']}, expected int64; re-run 'spanqa preprocess'"
            )
        if int(manifest.get("num_batches", len(keys))) != len(keys):
            raise FeaturesError(
                f"{root}: manifest.json lists {manifest['num_batches']} batches but the folders hold {len(keys)} files; re-run 'spanqa preprocess'"
            )
        batch_size, seq_len = m_batch, m_seq
    declared = {"batch size": batch_size, "sequence length": seq_len}  # by the manifest or the caller
    batch_size = batch_size or model_batch
    seq_len = seq_len or model_seq

    if fmt == "npy":
        shapes = {}
        for name in MODEL_INPUTS:
            for key in keys:
                path = folders[name] / f"{key}.npy"
                shape, dtype, offset = npy_header(path)
                if dtype != np.dtype("<i8"):
                    raise FeaturesError(
                        f"{path}: dtype {dtype}, expected int64; write features with 'spanqa preprocess' or convert with .astype('int64')"
                    )
                if len(shape) != 2:
                    raise FeaturesError(f"{path}: shape {shape}, expected 2-D int64 [batch, seq_len]")
                size = path.stat().st_size
                if size < offset + 8 * shape[0] * shape[1]:
                    raise FeaturesError(f"{path}: truncated ({size} bytes for int64 {list(shape)}); re-run 'spanqa preprocess'")
                shapes.setdefault(shape, path)
                if len(shapes) > 1:
                    (s0, p0), (s1, p1) = list(shapes.items())[:2]
                    raise FeaturesError(f"{p1}: shape {list(s1)} differs from {p0}'s {list(s0)}; every batch must have one shape")
        file_batch, file_seq = next(iter(shapes))
        for what, have in (("batch size", file_batch), ("sequence length", file_seq)):
            want = declared[what]
            if want is not None and want != have:
                source = (
                    "the manifest"
                    if manifest is not None
                    else "--" + what.replace("sequence length", "seq-len").replace(" ", "-")
                )
                raise FeaturesError(f"{shapes[(file_batch, file_seq)]}: {what} {have}, {source} says {want}")
        check_model_fit(model_batch, model_seq, max_positions, file_batch, file_seq)
        batch_size, seq_len = file_batch, file_seq
    else:
        sizes = {(name, key): (folders[name] / f"{key}.bin").stat().st_size for name in MODEL_INPUTS for key in keys}
        some = sizes[("input_ids", keys[0])]
        if batch_size is None and seq_len is None:
            raise InferenceError(
                f"{folders['input_ids']}: headerless .bin files, no manifest.json and a dynamic model: "
                "pass --seq-len (and --batch-size if the batch size is not 1)"
            )
        if seq_len is None:
            seq_len = some // (8 * batch_size) if some % (8 * batch_size) == 0 else None
            if not seq_len:
                raise _bin_size_error(folders["input_ids"] / f"{keys[0]}.bin", some, batch_size, max(1, some // (8 * batch_size)))
        elif batch_size is None:
            batch_size = some // (8 * seq_len) if some % (8 * seq_len) == 0 else None
            if not batch_size:
                raise _bin_size_error(folders["input_ids"] / f"{keys[0]}.bin", some, max(1, some // (8 * seq_len)), seq_len)
        # The shapes first: a wrong batch size or sequence length says more than a wrong file size.
        check_model_fit(model_batch, model_seq, max_positions, batch_size, seq_len)
        expected = 8 * batch_size * seq_len
        for (name, key), size in sizes.items():
            if size != expected:
                raise _bin_size_error(folders[name] / f"{key}.bin", size, batch_size, seq_len)
    return FeatureFolders(folders, keys, fmt, int(batch_size), int(seq_len), manifest)


# --------------------------------------------------------------------------------------------
# Outputs.
