"""Model packages: the self-contained directory ``compile``/``convert`` write (the recipe's .om).

Layout::

    OUT_DIR/
      model.onnx (or model.xml/.bin for OpenVINO targets)   the optimised model
      vocab.txt, tokenizer_config.json                       tokenizer settings
      manifest.json                                          how it was made (see ``Manifest``)

A bare ``.onnx`` file is accepted wherever a package is: it is treated as an fp32 ONNX model
with shapes read from its graph and the tokenizer settings of its directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from spanqa.data.vocab import TokenizerSettings, resolve_tokenizer
from spanqa.errors import PackageError
from spanqa.models.manifest import FORMAT, MANIFEST_NAME, Manifest, Shapes

INPUT_NAMES = ("input_ids", "token_type_ids", "attention_mask")
OUTPUT_NAMES = ("start_logits", "end_logits")


@dataclass(frozen=True)
class ModelPackage:
    root: Path
    model_path: Path
    manifest: Manifest
    tokenizer: TokenizerSettings

    @property
    def target(self) -> str:
        return self.manifest.target

    @property
    def runtime(self) -> str:
        return self.manifest.runtime

    @property
    def precision(self) -> str:
        return self.manifest.precision

    @property
    def batch_size(self) -> int | None:
        """Fixed batch size, or None when the batch axis is dynamic."""
        return self.manifest.shapes.batch_size

    @property
    def seq_len(self) -> int | None:
        """Fixed sequence length, or None when the sequence axis is dynamic."""
        return self.manifest.shapes.seq_len

    @property
    def max_positions(self) -> int:
        return int(self.manifest.shapes.max_positions or self.manifest.model.get("max_positions") or 512)

    @property
    def is_package(self) -> bool:
        """A package directory spanqa wrote (not a bare .onnx)."""
        return self.manifest.format == FORMAT and (self.root / MANIFEST_NAME).is_file()

    def files(self) -> list[Path]:
        """The model's files: the graph and, for OpenVINO, its weights."""
        paths = [self.model_path]
        weights = self.model_path.with_suffix(".bin")
        if self.model_path.suffix == ".xml" and weights.is_file():
            paths.append(weights)
        return paths

    def sha256(self) -> str:
        """One hash over every file of the model (an OpenVINO model's weights included)."""
        import hashlib

        from spanqa.fileutil import sha256_file

        if len(self.files()) == 1:
            return sha256_file(self.model_path)
        h = hashlib.sha256()
        for path in self.files():
            h.update(sha256_file(path).encode())
        return h.hexdigest()


def _bare_onnx(model_path: Path) -> tuple[Shapes, TokenizerSettings]:
    """Shapes and tokenizer of a bare .onnx: from its graph and the metadata spanqa export wrote."""
    import hashlib

    import onnx

    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as exc:  # onnx raises several types for a bad file
        raise PackageError(f"{model_path}: not a readable ONNX model ({str(exc).splitlines()[0]})") from None
    meta = {p.key: p.value for p in model.metadata_props}
    tokenizer = resolve_tokenizer(model_path.parent)
    if "spanqa.vocab" in meta and not (model_path.parent / "vocab.txt").is_file():
        from spanqa.paths import cache_home

        text = meta["spanqa.vocab"]
        vocab = cache_home() / "vocab" / f"{hashlib.sha256(text.encode()).hexdigest()}.txt"
        if not vocab.is_file():
            from spanqa.fileutil import atomic_path

            with atomic_path(vocab) as tmp:
                tmp.write_text(text, encoding="utf-8")
        tokenizer = TokenizerSettings(vocab, meta.get("spanqa.do_lower_case") == "true")
    batch = seq = None
    for inp in model.graph.input:
        if inp.name != "input_ids":
            continue
        dims = inp.type.tensor_type.shape.dim
        if len(dims) == 2:
            batch = dims[0].dim_value or None
            seq = dims[1].dim_value or None
    return Shapes(batch, seq, int(meta["spanqa.max_positions"]) if "spanqa.max_positions" in meta else None), tokenizer


def is_package(path: str | Path | None) -> bool:
    """Whether ``path`` is a model package directory (its manifest is there)."""
    return path is not None and (Path(path) / MANIFEST_NAME).is_file()


def open_package(path: str | Path) -> ModelPackage:
    """Open a model package directory or a bare ``.onnx`` file."""
    path = Path(path)
    if path.is_dir():
        manifest_path = path / MANIFEST_NAME
        if not manifest_path.is_file():
            raise PackageError(
                f"{path}: not a model package (no {MANIFEST_NAME}); make one with "
                "'spanqa compile' or 'spanqa convert', or pass a .onnx file"
            )
        try:
            data = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PackageError(f"{manifest_path}: unreadable manifest ({exc}); re-run 'spanqa compile'") from None
        if isinstance(data, dict) and data.get("kind") == "spanqa-features":
            raise PackageError(
                f"{path}: a features folder (from 'spanqa preprocess'), not a model package; pass a model package, .onnx or checkpoint"
            )
        manifest = Manifest.from_json(data, str(manifest_path))
        model_path = path / manifest.model_file
        if not model_path.is_file():
            raise PackageError(f"{path}: the manifest names {model_path.name}, which is missing; re-run 'spanqa compile'")
        return ModelPackage(path, model_path, manifest, resolve_tokenizer(path))
    if path.is_file() and path.suffix == ".onnx":
        shapes, tokenizer = _bare_onnx(path)
        manifest = Manifest("onnx", "fp32", "onnxruntime", path.name, shapes, format="onnx")
        return ModelPackage(path.parent, path, manifest, tokenizer)
    if not path.exists():
        raise PackageError(f"{path}: no such model package or .onnx file")
    raise PackageError(f"{path}: expected a model package directory or a .onnx file")
