"""The typed manifest of a model package (``manifest.json``), with a format version.

A package written by a newer spanqa (a higher ``format_version``) is refused with a message
saying so, instead of being half understood. Fields a target adds (fusions, calibration, ...)
are typed here too; keys this version does not know are kept in ``extra`` and written back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from spanqa.errors import PackageError

FORMAT = "spanqa-model-package"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class Shapes:
    batch_size: int | None = None  # fixed batch axis; None = dynamic
    seq_len: int | None = None  # fixed sequence axis; None = dynamic
    max_positions: int | None = None  # the model's position embeddings


@dataclass(frozen=True)
class Manifest:
    target: str
    precision: str
    runtime: str
    model_file: str
    shapes: Shapes = Shapes()
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    spanqa_version: str | None = None
    description: str | None = None
    model: dict = field(default_factory=dict)  # num_layers, num_heads, hidden_size, vocab_size, max_positions
    source: dict = field(default_factory=dict)  # onnx, sha256, checkpoint_sha256
    tokenizer: dict = field(default_factory=dict)  # vocab_file, do_lower_case, vocab_sha256
    settings: dict = field(default_factory=dict)  # CompileSettings as JSON
    created: str | None = None
    fusions: dict | None = None  # fused operator counts found in the graph
    verification: dict | None = None  # logits against the unfused fp32 source
    guard: dict | None = None  # the accuracy guard's figures, or {"unguarded": true, ...}
    calibration: dict | None = None
    quantization: str | None = None
    inference_precision: str | None = None  # OpenVINO's precision hint
    cpu_capabilities: list | None = None
    tensorrt: dict | None = None  # shape profiles
    warnings: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # keys this version does not know, kept as they were

    @property
    def guarded(self) -> bool:
        return bool(self.guard) and bool(self.guard.get("passed"))

    def to_json(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "extra":
                continue
            if f.name == "shapes":
                value = dataclasses.asdict(value)
            if value is None or (f.name == "warnings" and not value):
                continue
            out[f.name] = value
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, data: Any, where: str) -> Manifest:
        if not isinstance(data, dict):
            raise PackageError(f"{where}: the manifest is not a JSON object; re-run 'spanqa compile'")
        version = data.get("format_version", FORMAT_VERSION)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise PackageError(
                f"{where}: package format version {version!r} is newer than this spanqa understands "
                f"({FORMAT_VERSION}); upgrade spanqa or re-run 'spanqa compile' with this one"
            )
        missing = [k for k in ("target", "precision", "runtime", "model_file") if not isinstance(data.get(k), str)]
        if missing:
            raise PackageError(f"{where}: the manifest lacks {', '.join(missing)}; re-run 'spanqa compile'")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra", "shapes"}
        shapes = data.get("shapes") or {}
        try:
            shape = Shapes(**{k: shapes.get(k) for k in ("batch_size", "seq_len", "max_positions")})
        except AttributeError:
            raise PackageError(f"{where}: 'shapes' is not an object; re-run 'spanqa compile'") from None
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known and k != "shapes"}
        return cls(shapes=shape, extra=extra, **kwargs)
