"""optimum-intel OpenVINO: ``OVModelForQuestionAnswering.from_pretrained(export=True)`` in the
question-answering pipeline; its precision is the one OpenVINO compiled it for (bf16 on a bf16 CPU)."""

from __future__ import annotations

from pathlib import Path

from .base import QA_PIPELINE, Context, Meter, System, pipeline_answerer, qa_pipeline, set_torch_threads


def load(ctx: Context, meter: Meter):
    import openvino as ov
    import transformers
    from optimum.intel import OVModelForQuestionAnswering
    from optimum.intel.version import __version__ as intel_version

    set_torch_threads(ctx.threads)
    exported = Path(ctx.cache) / f"{ctx.model}-optimum-openvino"
    ov_config = {"INFERENCE_NUM_THREADS": ctx.threads}
    if not (exported / "openvino_model.xml").is_file():
        model = OVModelForQuestionAnswering.from_pretrained(ctx.hf_dir, export=True, compile=False)
        model.save_pretrained(exported)
    model = OVModelForQuestionAnswering.from_pretrained(exported, ov_config=ov_config)
    qa = qa_pipeline(model, ctx.hf_dir)
    model.compile()
    compiled = model.request
    compiled = compiled.get_compiled_model() if hasattr(compiled, "get_compiled_model") else compiled
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    hint = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
    precision = {"bf16": "bf16", "f16": "fp16"}.get(hint, "fp32")
    info = {
        "optimum-intel": intel_version,
        "openvino": ov.__version__,
        "transformers": transformers.__version__,
        "inference_precision_hint": hint,
        "performance_hint": str(compiled.get_property("PERFORMANCE_HINT")),
        "precision": precision,
    }
    return pipeline_answerer(qa, model, meter), info


def systems() -> list[System]:
    return [System("optimum-intel OpenVINO", "fp32", load, requires=("optimum-intel", QA_PIPELINE))]
