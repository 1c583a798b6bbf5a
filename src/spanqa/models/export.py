"""Checkpoint -> ONNX with dynamic batch and sequence axes, verified against PyTorch.

The exported graph is the classic BERT one (extended mask ``(1 - mask) * -10000``, attention
``softmax(QK^T / sqrt(d) + mask) V``) so ONNX Runtime's transformer optimizer can fuse it. The
reference it is checked against is transformers' own eager ``BertForQuestionAnswering``, a
separate code path, so a wrong graph cannot pass by agreeing with itself.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from spanqa import __version__
from spanqa.errors import ExportError, missing_backend
from spanqa.fileutil import atomic_path, sha256_file
from spanqa.models.package import INPUT_NAMES, OUTPUT_NAMES
from spanqa.sysinfo import passive_wait

DEFAULT_OPSET = 17
DEFAULT_TOLERANCE = 1e-4
# (batch, sequence) shapes checked after export; 512 is clipped to the model's position limit.
VERIFY_SHAPES = ((1, 512), (4, 384), (3, 37))
METADATA_PREFIX = "spanqa."


@dataclass(frozen=True)
class ExportSettings:
    opset: int = DEFAULT_OPSET
    tolerance: float = DEFAULT_TOLERANCE
    verify_shapes: tuple[tuple[int, int], ...] = VERIFY_SHAPES
    seed: int = 0


@dataclass
class ShapeDiff:
    batch: int
    seq_len: int
    start_logits: float
    end_logits: float

    @property
    def max(self) -> float:
        return max(self.start_logits, self.end_logits)


@dataclass
class ExportReport:
    onnx_path: Path
    settings: ExportSettings
    checkpoint: dict
    diffs: list[ShapeDiff] = field(default_factory=list)

    @property
    def max_diff(self) -> float:
        return max((d.max for d in self.diffs), default=float("nan"))

    def to_json(self) -> dict:
        return {
            "onnx": self.onnx_path.name,
            "settings": asdict(self.settings),
            "checkpoint": self.checkpoint,
            "verification": [asdict(d) for d in self.diffs],
            "max_abs_diff": self.max_diff,
            "spanqa_version": __version__,
        }


def _graph_module(model):
    import torch

    class QAGraph(torch.nn.Module):
        """BertForQuestionAnswering with SpanBERT's extended attention mask and plain outputs."""

        def __init__(self, qa_model):
            super().__init__()
            self.bert = qa_model.bert
            self.qa_outputs = qa_model.qa_outputs

        def forward(self, input_ids, token_type_ids, attention_mask):
            hidden = self.bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
            mask = (1.0 - attention_mask.unsqueeze(1).unsqueeze(2).to(hidden.dtype)) * -10000.0
            for layer in self.bert.encoder.layer:
                hidden = layer(hidden, mask)
                if isinstance(hidden, tuple):
                    hidden = hidden[0]
            start, end = self.qa_outputs(hidden).split(1, dim=-1)
            return start.squeeze(-1), end.squeeze(-1)

    return QAGraph(model).eval()


def sample_inputs(batch: int, seq_len: int, vocab_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random but realistic inputs: [CLS]-like start, two segments, right padding on some rows."""
    rng = np.random.default_rng(seed + 1000 * batch + seq_len)
    ids = rng.integers(1000 if vocab_size > 2000 else 1, vocab_size, size=(batch, seq_len), dtype=np.int64)
    token_type = np.zeros((batch, seq_len), dtype=np.int64)
    mask = np.ones((batch, seq_len), dtype=np.int64)
    for row in range(batch):
        q_len = min(seq_len - 1, int(rng.integers(1, max(2, seq_len // 4))))
        real = seq_len if row == 0 else int(rng.integers(max(q_len + 1, seq_len // 2), seq_len + 1))
        token_type[row, q_len:real] = 1
        mask[row, real:] = 0
        ids[row, real:] = 0
    return {"input_ids": ids, "token_type_ids": token_type, "attention_mask": mask}


def torch_logits(model, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Reference logits from transformers' own forward pass."""
    import torch

    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in inputs.items()}, return_dict=True)
    return out.start_logits.numpy(), out.end_logits.numpy()


def ort_session(path: str | Path, threads: int | None = None):
    try:
        import onnxruntime as ort
    except ImportError:
        raise missing_backend("onnxruntime", "cpu") from None
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    if passive_wait():
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _write_metadata(onnx_path: Path, info, settings: ExportSettings) -> None:
    """Store how the model was made and its tokenizer inside the ONNX file, so it is self-contained."""
    import onnx

    model = onnx.load(str(onnx_path))
    vocab_text = info.tokenizer.vocab_path.read_text(encoding="utf-8")
    meta = {
        "spanqa.version": __version__,
        "spanqa.checkpoint_sha256": info.weights_sha256,
        "spanqa.checkpoint_format": info.format,
        "spanqa.num_heads": str(info.num_heads),
        "spanqa.hidden_size": str(info.hidden_size),
        "spanqa.num_layers": str(info.num_layers),
        "spanqa.max_positions": str(info.max_positions),
        "spanqa.vocab_size": str(info.config["vocab_size"]),
        "spanqa.opset": str(settings.opset),
        "spanqa.do_lower_case": json.dumps(info.tokenizer.do_lower_case),
        "spanqa.vocab": vocab_text,
    }
    del model.metadata_props[:]
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "spanqa"
    model.producer_version = __version__
    onnx.save(model, str(onnx_path))


def read_metadata(onnx_path: str | Path) -> dict[str, str]:
    return read_graph_info(onnx_path)[0]


def read_graph_info(onnx_path: str | Path) -> tuple[dict[str, str], list[str]]:
    """spanqa's metadata of an ONNX file and the names of its graph inputs."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props if p.key.startswith(METADATA_PREFIX)}
    return meta, [i.name for i in model.graph.input]


def verify_against_torch(
    model, onnx_path: Path, max_positions: int, vocab_size: int, settings: ExportSettings
) -> list[ShapeDiff]:
    session = ort_session(onnx_path)
    diffs = []
    for batch, seq in settings.verify_shapes:
        seq = min(seq, max_positions)
        inputs = sample_inputs(batch, seq, vocab_size, settings.seed)
        ref_start, ref_end = torch_logits(model, inputs)
        start, end = session.run(list(OUTPUT_NAMES), inputs)
        if start.shape != (batch, seq) or end.shape != (batch, seq):
            raise ExportError(f"{onnx_path}: output shape {start.shape} for input ({batch}, {seq}); the export is broken")
        diffs.append(ShapeDiff(batch, seq, float(np.abs(start - ref_start).max()), float(np.abs(end - ref_end).max())))
    return diffs


EXPORT_KIND = "ONNX model"  # what the output rule records for an exported .onnx
EXPORT_RECORD_KIND = "export record"


def export_checkpoint(
    checkpoint: str | Path, out_path: str | Path, settings: ExportSettings | None = None, *, overwrite: bool = False
) -> ExportReport:
    """Export a checkpoint directory to ONNX and verify it; raises ExportError above tolerance.

    The ONNX file appears under ``out_path`` only after it passed verification, with a JSON
    record (``<out>.json``) of how it was made beside it. Neither replaces a file spanqa did not
    write (``fileutil.check_output_file``); an earlier export is replaced only with ``overwrite``.
    """
    from spanqa.fileutil import check_output_file, mark_file

    settings = settings or ExportSettings()
    try:
        import torch
    except ImportError:
        raise missing_backend("torch", "export") from None
    from spanqa.models.checkpoint import load_checkpoint

    out_path = Path(out_path)
    if out_path.suffix != ".onnx":
        raise ExportError(f"{out_path}: the output file name must end in .onnx")
    record = out_path.with_name(out_path.name + ".json")
    check_output_file(out_path, EXPORT_KIND, overwrite=overwrite, inputs=(checkpoint,))
    check_output_file(record, EXPORT_RECORD_KIND, overwrite=overwrite, inputs=(checkpoint,))
    graph_source = load_checkpoint(checkpoint, attention="export")
    reference = load_checkpoint(checkpoint, attention="eager").model
    info = graph_source.info
    graph = _graph_module(graph_source.model)
    trace_seq = min(64, info.max_positions)
    # Trace with a padded row so no mask handling can be specialised away.
    trace = sample_inputs(2, trace_seq, info.config["vocab_size"], settings.seed)
    trace["attention_mask"][1, trace_seq // 2 :] = 0
    dynamic = {name: {0: "batch", 1: "sequence"} for name in (*INPUT_NAMES, *OUTPUT_NAMES)}
    report = ExportReport(out_path, settings, info.to_json())
    with atomic_path(out_path) as tmp:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(
                    graph,
                    tuple(torch.from_numpy(trace[n]) for n in INPUT_NAMES),
                    str(tmp),
                    input_names=list(INPUT_NAMES),
                    output_names=list(OUTPUT_NAMES),
                    dynamic_axes=dynamic,
                    opset_version=settings.opset,
                    do_constant_folding=True,
                    dynamo=False,
                )
            except Exception as exc:
                raise ExportError(f"{checkpoint}: ONNX export failed ({str(exc).splitlines()[0]})") from None
        _write_metadata(tmp, info, settings)
        report.diffs = verify_against_torch(reference, tmp, info.max_positions, info.config["vocab_size"], settings)
        if report.max_diff > settings.tolerance:
            worst = max(report.diffs, key=lambda d: d.max)
            raise ExportError(
                f"{checkpoint}: ONNX and PyTorch logits differ by {worst.max:.3g} at shape "
                f"{worst.batch}x{worst.seq_len} (tolerance {settings.tolerance:g}); not writing {out_path}"
            )
        from spanqa.fileutil import write_json_atomic

        record_data = report.to_json()
        record_data["onnx_sha256"] = sha256_file(tmp)
    mark_file(out_path, EXPORT_KIND)
    write_json_atomic(record, record_data)
    mark_file(record, EXPORT_RECORD_KIND)
    return report
