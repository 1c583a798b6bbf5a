"""Checkpoint -> ONNX (spanqa.models.export): dynamic axes, metadata, and logits verified against
PyTorch on the shapes of the export and on new ones."""

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from models import SPANBERT_BASE, bert_config, make_checkpoint
from spanqa.cli import main
from spanqa.models.checkpoint import load_checkpoint
from spanqa.models.export import export_checkpoint, ort_session, read_metadata, sample_inputs, torch_logits
from spanqa.settings import ExportSettings


@pytest.fixture(scope="module")
def spanbert_base(tmp_path_factory):
    """Random SpanBERT-base-shaped checkpoint (12 layers, hidden 768, cased vocab of 28,996)."""
    return make_checkpoint(tmp_path_factory.mktemp("base") / "spanbert-base", bert_config(**SPANBERT_BASE), std=0.05)


def _diff_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip().startswith("verify ")]


def test_export_spanbert_base_verified(spanbert_base, tmp_path):
    out = tmp_path / "base.onnx"
    result = CliRunner().invoke(main, ["export", str(spanbert_base), "-o", str(out)])
    assert result.exit_code == 0, result.output
    lines = _diff_lines(result.output)
    assert [line.split(":")[0].strip() for line in lines] == ["verify 1x512", "verify 4x384", "verify 3x37"]
    record = json.loads(out.with_name("base.onnx.json").read_text())
    assert record["max_abs_diff"] <= 1e-4
    assert record["checkpoint"]["config"]["num_hidden_layers"] == 12
    assert "max |diff| vs PyTorch" in result.output


def test_export_dynamic_axes_and_io(tiny_checkpoint, tmp_path):
    out = tmp_path / "tiny.onnx"
    report = export_checkpoint(tiny_checkpoint, out)
    model = onnx.load(str(out))
    io = {
        v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in (*model.graph.input, *model.graph.output)
    }
    assert io == {
        "input_ids": ["batch", "sequence"],
        "token_type_ids": ["batch", "sequence"],
        "attention_mask": ["batch", "sequence"],
        "start_logits": ["batch", "sequence"],
        "end_logits": ["batch", "sequence"],
    }
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.INT64 for i in model.graph.input)
    assert [(d.batch, d.seq_len) for d in report.diffs] == [(1, 512), (4, 384), (3, 37)]
    assert report.max_diff <= 1e-4
    meta = read_metadata(out)
    assert meta["spanqa.do_lower_case"] == "false"
    assert meta["spanqa.num_layers"] == "2"


def test_exported_logits_match_pytorch_on_new_shapes(tiny_checkpoint, tmp_path):
    """Shapes the export never saw, with padding, against transformers' own eager forward."""
    out = tmp_path / "tiny.onnx"
    export_checkpoint(tiny_checkpoint, out)
    model = load_checkpoint(tiny_checkpoint).model
    session = ort_session(out)
    for batch, seq in ((2, 200), (5, 17), (1, 1)):
        inputs = sample_inputs(batch, seq, 28996, seed=7)
        ref_start, ref_end = torch_logits(model, inputs)
        start, end = session.run(["start_logits", "end_logits"], inputs)
        assert start.shape == (batch, seq)
        if seq > 1:  # the logits vary by whole units, so 1e-4 is a real check
            assert np.ptp(ref_start) > 1.0
        np.testing.assert_allclose(start, ref_start, atol=1e-4, rtol=0)
        np.testing.assert_allclose(end, ref_end, atol=1e-4, rtol=0)


def test_export_standin_fp16_uncased(standin_dir, tmp_path):
    out = tmp_path / "standin.onnx"
    result = CliRunner().invoke(main, ["export", str(standin_dir), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "spanbert format, float16 weights" in result.output
    assert len(_diff_lines(result.output)) == 3
    assert read_metadata(out)["spanqa.do_lower_case"] == "true"


def test_export_huggingface_directory(tmp_path):
    ckpt = make_checkpoint(tmp_path / "hf", fmt="huggingface")
    out = tmp_path / "hf.onnx"
    result = CliRunner().invoke(main, ["export", str(ckpt), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "huggingface format" in result.output
    assert len(_diff_lines(result.output)) == 3


def test_export_fails_above_tolerance(tiny_checkpoint, tmp_path):
    out = tmp_path / "t.onnx"
    from spanqa.errors import ExportError

    with pytest.raises(ExportError, match=r"ONNX and PyTorch logits differ by .* \(tolerance 1e-12\); not writing"):
        export_checkpoint(tiny_checkpoint, out, ExportSettings(tolerance=1e-12))
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_export_output_name_must_be_onnx(tiny_checkpoint, tmp_path):
    result = CliRunner().invoke(main, ["export", str(tiny_checkpoint), "-o", str(tmp_path / "m.bin")])
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: {tmp_path / 'm.bin'}: the output file name must end in .onnx"
