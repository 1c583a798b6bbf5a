import json

import numpy as np
import onnx
from click.testing import CliRunner

from spanqa.build.compile import compile_model
from spanqa.cli import main
from spanqa.models.checkpoint import load_checkpoint
from spanqa.models.export import sample_inputs, torch_logits
from spanqa.registry import TARGETS
from spanqa.runtimes import open_runtime
from spanqa.settings import CompileSettings


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
    manifest = compile_model(tiny_package / "exported.onnx", out, CompileSettings(batch_size=4, seq_len=64))
    assert manifest["shapes"]["batch_size"] == 4 and manifest["shapes"]["seq_len"] == 64
    model = onnx.load(str(out / "model.onnx"))
    for value in (*model.graph.input, *model.graph.output):
        assert [d.dim_value for d in value.type.tensor_type.shape.dim] == [4, 64]
    runtime = open_runtime(out)
    assert (runtime.batch_size, runtime.seq_len) == (4, 64)
    assert [s["batch"] for s in manifest["verification"]["shapes"]] == [4]


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
    assert result.exit_code == 1
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


def test_seq_len_beyond_positions(tiny_package, tmp_path):
    result = CliRunner().invoke(
        main, ["compile", str(tiny_package / "exported.onnx"), "-o", str(tmp_path / "p"), "--seq-len", "513"]
    )
    assert result.exit_code == 1
    assert result.output.strip() == "Error: --seq-len 513: the model has only 512 positions"


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
