"""HF pipeline: ``transformers.pipeline("question-answering")`` with its defaults (max_seq_len 384,
doc_stride 128, batch 1), PyTorch eager. It runs in the peers venv: transformers 5 dropped the
question-answering pipeline."""

from __future__ import annotations

from .base import QA_PIPELINE, Context, Meter, System, pipeline_answerer, qa_pipeline, set_torch_threads


def load(ctx: Context, meter: Meter):
    import transformers
    from transformers import AutoModelForQuestionAnswering

    set_torch_threads(ctx.threads)
    model = AutoModelForQuestionAnswering.from_pretrained(ctx.hf_dir).eval()
    qa = qa_pipeline(model, ctx.hf_dir)
    info = {"transformers": transformers.__version__, "attention": model.config._attn_implementation}
    return pipeline_answerer(qa, model, meter), info


def systems() -> list[System]:
    return [System("HF pipeline (PyTorch eager)", "fp32", load, requires=(QA_PIPELINE,))]
