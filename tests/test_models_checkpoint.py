"""Loading SpanBERT and Hugging Face checkpoints (spanqa.models.checkpoint) safely, with one-line
errors for every way a checkpoint directory can be wrong."""

import json
import os
import pickle

import pytest
import torch
from click.testing import CliRunner

from models import bert_config, make_checkpoint
from spanqa.cli import main
from spanqa.errors import CheckpointError
from spanqa.models.checkpoint import load_checkpoint


def _error_line(result) -> str:
    assert result.exit_code == 3, result.output  # a bad checkpoint is bad input data
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


def test_spanbert_fp16_gamma_beta_loads_widened(tmp_path):
    ckpt = make_checkpoint(tmp_path / "c", dtype="float16", gamma_beta=True)
    loaded = load_checkpoint(ckpt)
    assert loaded.info.format == "spanbert"
    assert loaded.info.weights_dtype == "float16"
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    raw = torch.load(ckpt / "pytorch_model.bin", weights_only=True)
    widened = raw["bert.encoder.layer.0.output.LayerNorm.gamma"].float()
    assert torch.equal(loaded.model.bert.encoder.layer[0].output.LayerNorm.weight.data, widened)
    # SpanBERT's checkpoints carry no vocab: the shipped cased vocab, no lower-casing.
    assert loaded.info.tokenizer.do_lower_case is False
    assert loaded.info.tokenizer.vocab_path.name == "bert-base-cased-vocab.txt"


def test_huggingface_directory_loads(tmp_path):
    ckpt = make_checkpoint(tmp_path / "hf", fmt="huggingface")
    assert (ckpt / "model.safetensors").is_file()
    loaded = load_checkpoint(ckpt)
    assert loaded.info.format == "huggingface"


def test_standin_tokenizer_settings(standin_dir):
    loaded = load_checkpoint(standin_dir)
    assert loaded.info.weights_dtype == "float16"
    assert loaded.info.tokenizer.do_lower_case is True
    assert loaded.info.tokenizer.vocab_path == standin_dir / "vocab.txt"


@pytest.fixture
def good(tmp_path):
    return make_checkpoint(tmp_path / "good")


def _export(ckpt, tmp_path):
    return CliRunner().invoke(main, ["export", str(ckpt), "-o", str(tmp_path / "m.onnx")])


def test_missing_config(good, tmp_path):
    (good / "config.json").unlink()
    line = _error_line(_export(good, tmp_path))
    assert line == f"Error: {good}: missing config.json; a checkpoint directory needs config.json beside its weights"
    assert not (tmp_path / "m.onnx").exists()


def test_truncated_weights(good, tmp_path):
    weights = good / "pytorch_model.bin"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    line = _error_line(_export(good, tmp_path))
    assert line.startswith(f"Error: {weights}: truncated or corrupt (")
    assert line.endswith("); re-download it")
    assert not (tmp_path / "m.onnx").exists()


class _RunsCode:
    """A pickle payload that creates a marker file when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_code_running_pickle_refused(good, tmp_path):
    marker = tmp_path / "pwned"
    state = torch.load(good / "pytorch_model.bin", weights_only=True)
    state["evil"] = _RunsCode(marker)
    torch.save(state, good / "pytorch_model.bin")
    # Proof that the payload really runs code when loaded unsafely.
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_RunsCode(probe)))
    assert probe.exists()
    line = _error_line(_export(good, tmp_path))
    assert line == (
        f"Error: {good / 'pytorch_model.bin'}: refused: the file is not a plain tensor state dict and loading it "
        "would run arbitrary code; re-save it as a state dict (torch.save(model.state_dict())) or as safetensors"
    )
    assert not marker.exists()


def test_missing_qa_outputs(good, tmp_path):
    state = torch.load(good / "pytorch_model.bin", weights_only=True)
    del state["qa_outputs.weight"], state["qa_outputs.bias"]
    torch.save(state, good / "pytorch_model.bin")
    line = _error_line(_export(good, tmp_path))
    assert line == (
        f"Error: {good / 'pytorch_model.bin'}: missing tensor(s) qa_outputs.bias, qa_outputs.weight; "
        "this is not a fine-tuned QA checkpoint"
    )


def test_shape_mismatch(good, tmp_path):
    (good / "config.json").write_text(json.dumps(bert_config(intermediate_size=96)))
    line = _error_line(_export(good, tmp_path))
    assert line.startswith(
        f"Error: {good / 'pytorch_model.bin'}: tensor shape(s) do not match config.json: "
        "bert.encoder.layer.0.intermediate.dense.weight (128, 64) (config implies (96, 64))"
    )


def test_unexpected_tensor(good, tmp_path):
    state = torch.load(good / "pytorch_model.bin", weights_only=True)
    state["cls.predictions.bias"] = torch.zeros(3)
    torch.save(state, good / "pytorch_model.bin")
    with pytest.raises(
        CheckpointError, match=r"unexpected tensor\(s\) cls.predictions.bias; expected a BertForQuestionAnswering"
    ):
        load_checkpoint(good)


def test_not_a_directory(tmp_path):
    line = _error_line(_export(tmp_path / "nope", tmp_path))
    assert line == f"Error: {tmp_path / 'nope'}: not a checkpoint directory (expected config.json and pytorch_model.bin inside)"


def test_config_not_json(good, tmp_path):
    (good / "config.json").write_text("{nope")
    line = _error_line(_export(good, tmp_path))
    assert line.startswith(f"Error: {good / 'config.json'}: not valid JSON (")
