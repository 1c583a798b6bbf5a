"""Load fine-tuned extractive-QA checkpoints into a PyTorch ``BertForQuestionAnswering``.

Two layouts are accepted:

* SpanBERT's, as its run_squad.py (pytorch_pretrained_bert) saves a fine-tuned model:
  ``config.json`` with plain BertConfig fields (no ``model_type``) and ``pytorch_model.bin`` with
  ``bert.*`` tensors (pooler included, unused for QA) and ``qa_outputs.{weight,bias}``; LayerNorm
  tensors named ``weight/bias`` or the older ``gamma/beta``; float32 or float16.
* Hugging Face's BertForQuestionAnswering directory (``model.safetensors`` or
  ``pytorch_model.bin``, ``config.json`` with ``model_type``).

Weights are read with ``torch.load(weights_only=True)`` or safetensors, never as arbitrary
pickles. torch and transformers are imported inside functions so the CLI stays light.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spanqa.data.vocab import TokenizerSettings, resolve_tokenizer
from spanqa.errors import CheckpointError, missing_backend
from spanqa.fileutil import sha256_file

REQUIRED_CONFIG = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# Tensors a QA checkpoint may carry that the QA model does not use.
IGNORED_PREFIXES = ("bert.pooler.",)
IGNORED_NAMES = ("bert.embeddings.position_ids", "bert.embeddings.token_type_ids")
ATTENTION_IMPLEMENTATION = "spanqa_bert"


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    format: str  # "spanbert" or "huggingface"
    weights_file: Path
    weights_sha256: str
    weights_dtype: str  # dtype of the stored floating tensors, before widening to float32
    config: dict = field(repr=False)
    tokenizer: TokenizerSettings = None  # type: ignore[assignment]

    @property
    def num_heads(self) -> int:
        return int(self.config["num_attention_heads"])

    @property
    def hidden_size(self) -> int:
        return int(self.config["hidden_size"])

    @property
    def num_layers(self) -> int:
        return int(self.config["num_hidden_layers"])

    @property
    def max_positions(self) -> int:
        return int(self.config.get("max_position_embeddings", 512))

    def to_json(self) -> dict:
        return {
            "path": str(self.path),
            "format": self.format,
            "weights_file": self.weights_file.name,
            "weights_sha256": self.weights_sha256,
            "weights_dtype": self.weights_dtype,
            "config": self.config,
            "tokenizer": {"do_lower_case": self.tokenizer.do_lower_case, "vocab_sha256": sha256_file(self.tokenizer.vocab_path)},
        }


def _short_list(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def read_config(path: Path) -> dict:
    cfg_path = path / "config.json"
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a checkpoint directory (expected config.json and pytorch_model.bin inside)")
    if not cfg_path.is_file():
        raise CheckpointError(f"{path}: missing config.json; a checkpoint directory needs config.json beside its weights")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{cfg_path}: not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{cfg_path}: expected a JSON object of BertConfig fields")
    missing = [k for k in REQUIRED_CONFIG if not isinstance(config.get(k), int)]
    if missing:
        raise CheckpointError(f"{cfg_path}: missing or non-integer field(s) {', '.join(missing)}")
    model_type = config.get("model_type")
    if model_type not in (None, "bert"):
        raise CheckpointError(
            f"{cfg_path}: model_type '{model_type}' is not supported; spanqa handles BERT-family (model_type 'bert') checkpoints"
        )
    if config["hidden_size"] % config["num_attention_heads"]:
        raise CheckpointError(
            f"{cfg_path}: hidden_size {config['hidden_size']} is not a multiple of num_attention_heads {config['num_attention_heads']}"
        )
    act = config.get("hidden_act", "gelu")
    if act not in ("gelu", "gelu_new", "gelu_python", "relu"):
        raise CheckpointError(f"{cfg_path}: hidden_act '{act}' is not supported (gelu, gelu_new, relu)")
    return config


def _find_weights(path: Path) -> Path:
    for name in WEIGHT_FILES:
        if (path / name).is_file():
            return path / name
    raise CheckpointError(f"{path}: no weights found; expected {' or '.join(WEIGHT_FILES)}")


def _load_tensors(weights: Path) -> dict[str, Any]:
    import torch

    if weights.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise missing_backend("safetensors", "export") from None
        try:
            return load_file(str(weights), device="cpu")
        except Exception as exc:
            raise CheckpointError(f"{weights}: unreadable safetensors file ({exc}); re-download or re-save it") from None
    import pickle

    try:
        obj = torch.load(str(weights), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights only" in str(exc).lower() or "weights_only" in str(exc):
            raise CheckpointError(
                f"{weights}: refused: the file is not a plain tensor state dict and loading it would run "
                "arbitrary code; re-save it as a state dict (torch.save(model.state_dict())) or as safetensors"
            ) from None
        raise CheckpointError(f"{weights}: truncated or corrupt ({first}); re-download it") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{weights}: truncated or corrupt ({first}); re-download it") from None
    # Some training scripts wrap the state dict.
    if isinstance(obj, dict) and len(obj) == 1 and next(iter(obj)) in ("state_dict", "model"):
        obj = next(iter(obj.values()))
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{weights}: expected a state dict of tensors, found {type(obj).__name__}")
    return obj


def _normalise_names(tensors: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in tensors.items():
        if name.startswith("module."):  # saved from DataParallel
            name = name[len("module.") :]
        if "LayerNorm" in name or "layer_norm" in name:
            if name.endswith(".gamma"):
                name = name[: -len("gamma")] + "weight"
            elif name.endswith(".beta"):
                name = name[: -len("beta")] + "bias"
        out[name] = value
    return out


def _register_attention() -> None:
    """Attention written as SpanBERT's original code computes it: scores / sqrt(d) + mask.

    transformers 5's eager attention multiplies by a scale, and its SDPA path exports to a graph
    ONNX Runtime cannot fuse; this form exports to the canonical BERT pattern that ORT fuses into
    one Attention node per layer, and is numerically the same model.
    """
    import torch
    from transformers import AttentionInterface

    def spanbert_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        scores = torch.matmul(query, key.transpose(2, 3)) / math.sqrt(module.attention_head_size)
        if attention_mask is not None:
            scores = scores + attention_mask
        probs = torch.softmax(scores, dim=-1)
        return torch.matmul(probs, value).transpose(1, 2).contiguous(), probs

    AttentionInterface.register(ATTENTION_IMPLEMENTATION, spanbert_attention)


def inspect_checkpoint(path: str | Path) -> CheckpointInfo:
    """Validate the directory layout and config; hash the weights. Loads no tensors."""
    path = Path(path)
    config = read_config(path)
    weights = _find_weights(path)
    fmt = "huggingface" if "model_type" in config else "spanbert"
    return CheckpointInfo(path, fmt, weights, sha256_file(weights), "unknown", config, resolve_tokenizer(path))


@dataclass
class LoadedCheckpoint:
    model: Any  # transformers BertForQuestionAnswering, eval mode, float32
    info: CheckpointInfo


def load_checkpoint(path: str | Path, attention: str = "eager") -> LoadedCheckpoint:
    """Load a checkpoint into ``BertForQuestionAnswering`` (eval, float32).

    ``attention``: "eager" (transformers' own) or "export" (the SpanBERT-form attention that
    ONNX Runtime fuses; same numbers).
    """
    try:
        import torch  # noqa: F401  (missing torch must say which extra to install)
        from transformers import BertConfig, BertForQuestionAnswering
    except ImportError:
        raise missing_backend("torch/transformers", "export") from None
    info = inspect_checkpoint(path)
    tensors = _normalise_names(_load_tensors(info.weights_file))
    float_dtypes = {str(v.dtype).replace("torch.", "") for v in tensors.values() if v.is_floating_point()}
    tensors = {
        k: (v.float() if v.is_floating_point() else v)
        for k, v in tensors.items()
        if not k.startswith(IGNORED_PREFIXES) and k not in IGNORED_NAMES
    }

    config_fields = {k: v for k, v in info.config.items() if k not in ("architectures", "model_type", "transformers_version")}
    config = BertConfig(**config_fields)
    if attention == "export":
        _register_attention()
        config._attn_implementation = ATTENTION_IMPLEMENTATION
    else:
        config._attn_implementation = "eager"
    model = BertForQuestionAnswering(config)
    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in tensors and k not in IGNORED_NAMES)
    unexpected = sorted(k for k in tensors if k not in expected)
    misshaped = [
        f"{k} {tuple(tensors[k].shape)} (config implies {tuple(expected[k].shape)})"
        for k in expected
        if k in tensors and tuple(tensors[k].shape) != tuple(expected[k].shape)
    ]
    where = info.weights_file
    if missing:
        hint = "; this is not a fine-tuned QA checkpoint" if any(k.startswith("qa_outputs") for k in missing) else ""
        raise CheckpointError(f"{where}: missing tensor(s) {_short_list(missing)}{hint}")
    if misshaped:
        raise CheckpointError(f"{where}: tensor shape(s) do not match config.json: {_short_list(misshaped, 2)}")
    if unexpected:
        raise CheckpointError(
            f"{where}: unexpected tensor(s) {_short_list(unexpected)}; expected a BertForQuestionAnswering checkpoint"
        )
    model.load_state_dict(tensors, strict=False)
    model.eval()
    dtype = ",".join(sorted(float_dtypes)) or "none"
    info = CheckpointInfo(info.path, info.format, info.weights_file, info.weights_sha256, dtype, info.config, info.tokenizer)
    return LoadedCheckpoint(model, info)
