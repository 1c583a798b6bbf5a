"""Tiny random checkpoints in SpanBERT's and Hugging Face's formats, made on the fly."""

from __future__ import annotations

import json
from pathlib import Path

SPANBERT_BASE = dict(vocab_size=28996, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
TINY = dict(vocab_size=28996, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)


def bert_config(**overrides) -> dict:
    """Plain BertConfig fields, as pytorch_pretrained_bert writes them (no model_type)."""
    cfg = dict(
        attention_probs_dropout_prob=0.1,
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        initializer_range=0.02,
        max_position_embeddings=512,
        type_vocab_size=2,
        **TINY,
    )
    cfg.update(overrides)
    return cfg


def make_checkpoint(
    out_dir: Path,
    config: dict | None = None,
    *,
    fmt: str = "spanbert",
    dtype: str = "float32",
    gamma_beta: bool = False,
    seed: int = 0,
    std: float = 0.2,
) -> Path:
    """Write a random BertForQuestionAnswering checkpoint.

    fmt "spanbert": config.json without model_type + pytorch_model.bin with bert.* (pooler
    included) and qa_outputs.*; fmt "huggingface": save_pretrained (model.safetensors).
    ``std`` is large enough that logits vary by whole units, so numerical checks mean something.
    """
    import torch
    from transformers import BertConfig, BertForQuestionAnswering, BertModel

    config = dict(config or bert_config())
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    hf_config = BertConfig(**config)
    model = BertForQuestionAnswering(hf_config)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, std)
    if fmt == "huggingface":
        model.save_pretrained(out_dir)
        return out_dir
    state = {k: v for k, v in model.state_dict().items() if not k.endswith(("position_ids", "token_type_ids"))}
    pooler = BertModel(hf_config, add_pooling_layer=True).pooler.state_dict()
    state.update({f"bert.pooler.{k}": v for k, v in pooler.items()})
    if gamma_beta:
        state = {
            (
                k[:-6] + "gamma"
                if "LayerNorm" in k and k.endswith("weight")
                else k[:-4] + "beta"
                if "LayerNorm" in k and k.endswith("bias")
                else k
            ): v
            for k, v in state.items()
        }
    if dtype == "float16":
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    torch.save(state, out_dir / "pytorch_model.bin")
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    return out_dir


def build_broken(ctx) -> None:
    """A target builder (registry entry "models:build_broken"): fp32, then the QA head's weights
    scrambled, so the model still runs but its answers are noise."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from spanqa.targets.builders import build_cpu_fp32

    build_cpu_fp32(ctx)
    path = ctx.out_dir / "model.onnx"
    model = onnx.load(str(path))
    hidden = ctx.model_info["hidden_size"]
    for init in model.graph.initializer:
        if list(init.dims) == [hidden, 2]:
            rng = np.random.default_rng(0)
            init.CopyFrom(numpy_helper.from_array(rng.normal(size=(hidden, 2)).astype(np.float32), init.name))
    onnx.save(model, str(path))
