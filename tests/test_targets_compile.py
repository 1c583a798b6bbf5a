"""Compiling an exported ONNX model into a cpu-fp32 model package (spanqa.targets.compile): fusions
counted from the graph, fixed shapes, verification against PyTorch, one-line errors, output safety."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from spanqa.cli import main
from spanqa.fileutil import MARKER
from spanqa.models.checkpoint import load_checkpoint
from spanqa.models.export import sample_inputs, torch_logits
from spanqa.models.manifest import Shapes
from spanqa.models.package import open_package
from spanqa.registry import TARGETS
from spanqa.runtimes import open_runtime
from spanqa.settings import CompileSettings
from spanqa.targets.compile import compile_model


def _op_counts(path):
    counts = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def test_tiny_package_fusions_counted_from_graph(tiny_package):
    manifest = json.loads((tiny_package / "manifest.json").read_text())
    assert manifest["target"] == "cpu-fp32"
    assert manifest["runtime"] == "onnxruntime"
    ops = _op_counts(tiny_package / "model.onnx")
    # Two layers: one Attention, two SkipLayerNorm and one BiasGelu each; one embedding LayerNorm.
    assert ops["Attention"] == 2
    assert ops["SkipLayerNormalization"] == 4
    assert ops["BiasGelu"] == 2
    assert ops["EmbedLayerNormalization"] == 1
    assert "Softmax" not in ops
    assert manifest["fusions"]["Attention"] == ops["Attention"]
    assert manifest["verification"]["max_abs_diff"] <= 1e-3
    assert manifest["tokenizer"]["do_lower_case"] is False
    assert (tiny_package / "exported.onnx").is_file()
    assert "warnings" not in manifest


def test_fixed_shapes(tiny_package, tmp_path):
    out = tmp_path / "fixed"
    manifest = compile_model(tiny_package / "exported.onnx", out, CompileSettings(batch_size=4, seq_len=128))
    assert manifest.shapes == Shapes(batch_size=4, seq_len=128, max_positions=512)
    model = onnx.load(str(out / "model.onnx"))
    for value in (*model.graph.input, *model.graph.output):
        assert [d.dim_value for d in value.type.tensor_type.shape.dim] == [4, 128]
    runtime = open_runtime(out)
    assert (runtime.batch_size, runtime.seq_len) == (4, 128)
    assert [(s["batch"], s["seq_len"]) for s in manifest.verification["shapes"]] == [(4, 128)]
    assert manifest.verification["max_abs_diff"] <= manifest.verification["tolerance"] == 1e-3
    # What compile returns is what the package's manifest.json says.
    assert open_package(out).manifest == manifest
    assert json.loads((out / "manifest.json").read_text())["shapes"] == {"batch_size": 4, "seq_len": 128, "max_positions": 512}


def test_compile_cli_prints_fusions(tiny_package, tmp_path):
    out = tmp_path / "pkg"
    result = CliRunner().invoke(main, ["compile", str(tiny_package / "exported.onnx"), "-o", str(out), "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert "fused: Attention 2, EmbedLayerNormalization 1, SkipLayerNormalization 4, BiasGelu 2" in result.output
    assert "batch 2, sequence dynamic" in result.output


def test_unknown_target(tiny_package, tmp_path):
    result = CliRunner().invoke(
        main, ["compile", str(tiny_package / "exported.onnx"), "-o", str(tmp_path / "p"), "--target", "npu"]
    )
    assert result.exit_code == 2
    assert result.output.strip() == f"Error: unknown target 'npu'; choose one of: {', '.join(sorted(TARGETS))}"
    assert not (tmp_path / "p").exists()


def test_not_onnx(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    result = CliRunner().invoke(main, ["compile", str(bad), "-o", str(tmp_path / "p")])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {bad}: not a readable ONNX model (")
    assert "Traceback" not in result.output
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("seq_len", ["513", "67"])
def test_seq_len_outside_what_the_model_and_squad_need(tiny_package, tmp_path, seq_len):
    result = CliRunner().invoke(
        main, ["compile", str(tiny_package / "exported.onnx"), "-o", str(tmp_path / "p"), "--seq-len", seq_len]
    )
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"Error: --seq-len {seq_len}: must lie between 68 (a 64-piece question, 3 special tokens and "
        "one context piece) and the model's 512 positions"
    )
    assert not (tmp_path / "p").exists()


def test_convert_standin(standin_package, standin_dir):
    """The issue's acceptance check: 6 fused Attention nodes, logits within 1e-3 of PyTorch, tokenizer kept."""
    manifest = json.loads((standin_package / "manifest.json").read_text())
    assert manifest["fusions"]["Attention"] == 6
    assert _op_counts(standin_package / "model.onnx")["Attention"] == 6
    assert json.loads((standin_package / "tokenizer_config.json").read_text())["do_lower_case"] is True
    assert (standin_package / "vocab.txt").read_bytes() == (standin_dir / "vocab.txt").read_bytes()
    model = load_checkpoint(standin_dir).model
    runtime = open_runtime(standin_package)
    for batch, seq in ((2, 384), (3, 100)):
        inputs = sample_inputs(batch, seq, 30522, seed=3)
        ref = torch_logits(model, inputs)
        got = runtime.run(inputs["input_ids"], inputs["token_type_ids"], inputs["attention_mask"])
        for g, r in zip(got, ref):
            np.testing.assert_allclose(g, r, atol=1e-3, rtol=0)


def test_convert_cli_keeps_exported(tiny_checkpoint, tmp_path):
    out = tmp_path / "X"
    result = CliRunner().invoke(main, ["convert", str(tiny_checkpoint), "-o", str(out), "--batch-size", "1", "--seq-len", "512"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        MARKER,
        "exported.onnx",
        "exported.onnx.json",
        "manifest.json",
        "model.onnx",
        "tokenizer_config.json",
        "vocab.txt",
    ]
    assert "verify 1x512" in result.output
    # No temp directories left beside the package.
    assert [p.name for p in tmp_path.iterdir()] == ["X"]
    # A second convert into it is refused before any work unless --overwrite says so.
    again = CliRunner().invoke(main, ["convert", str(tiny_checkpoint), "-o", str(out)])
    assert again.exit_code == 4
    assert again.output == f"Error: -o {out}: a model package is already there; pass --overwrite to replace it\n"
    assert [p.name for p in tmp_path.iterdir()] == ["X"]


def test_compile_output_safety(tiny_package, tmp_path):
    src = str(tiny_package / "exported.onnx")
    out = tmp_path / "pkg"
    assert CliRunner().invoke(main, ["compile", src, "-o", str(out)]).exit_code == 0
    assert json.loads((out / MARKER).read_text()) == {"kind": "model package"}
    result = CliRunner().invoke(main, ["compile", src, "-o", str(out), "--batch-size", "2"])
    assert result.exit_code == 4
    assert result.output == f"Error: -o {out}: a model package is already there; pass --overwrite to replace it\n"
    result = CliRunner().invoke(main, ["compile", src, "-o", str(out), "--batch-size", "2", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert open_package(out).batch_size == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]  # nothing left beside it
    # Never into what spanqa did not write, nor into the directory that holds the input.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    result = CliRunner().invoke(main, ["compile", src, "-o", str(mine), "--overwrite"])
    assert result.exit_code == 4
    assert result.output == (
        f"Error: -o {mine}: the directory holds files spanqa did not write; name a new or empty directory for the model package\n"
    )
    result = CliRunner().invoke(main, ["compile", src, "-o", str(tiny_package), "--overwrite"])
    assert result.exit_code == 4
    assert result.output == (
        f"Error: -o {tiny_package}: that is (or holds) the input {src}; write the model package somewhere else\n"
    )
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (tiny_package / "exported.onnx").is_file()
