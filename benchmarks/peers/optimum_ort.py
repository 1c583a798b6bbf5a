"""Optimum ORT fp32 / int8: ``ORTModelForQuestionAnswering.from_pretrained(export=True)``; int8 =
ORTQuantizer + ``AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False)``, as
Optimum's quantization guide shows; both run through ``pipeline("question-answering",
model=ort_model)``, as its docs do."""

from __future__ import annotations

from pathlib import Path

from .base import QA_PIPELINE, Context, Meter, System, pipeline_answerer, qa_pipeline, set_torch_threads

REQUIRES = ("optimum-onnx", QA_PIPELINE)


def load(ctx: Context, meter: Meter, quantize: bool):
    import onnxruntime as ort
    import optimum.version
    import transformers
    from optimum.onnxruntime import ORTModelForQuestionAnswering

    set_torch_threads(ctx.threads)
    exported = Path(ctx.cache) / f"{ctx.model}-optimum-ort"
    if not (exported / "model.onnx").is_file():
        model = ORTModelForQuestionAnswering.from_pretrained(ctx.hf_dir, export=True)
        model.save_pretrained(exported)
    so = ort.SessionOptions()
    so.intra_op_num_threads = ctx.threads
    so.inter_op_num_threads = 1
    file_name = "model.onnx"
    if quantize:
        from optimum.onnxruntime import ORTQuantizer
        from optimum.onnxruntime.configuration import AutoQuantizationConfig

        quantized = Path(ctx.cache) / f"{ctx.model}-optimum-ort-int8"
        if not (quantized / "model_quantized.onnx").is_file():
            quantizer = ORTQuantizer.from_pretrained(exported)
            qconfig = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False)
            quantizer.quantize(save_dir=quantized, quantization_config=qconfig)
        exported, file_name = quantized, "model_quantized.onnx"
    model = ORTModelForQuestionAnswering.from_pretrained(exported, file_name=file_name, session_options=so)
    qa = qa_pipeline(model, ctx.hf_dir)
    info = {
        "optimum": optimum.version.__version__,
        "transformers": transformers.__version__,
        "onnxruntime": ort.__version__,
        "model_file": file_name,
    }
    return pipeline_answerer(qa, model, meter), info


def systems() -> list[System]:
    return [
        System("Optimum ORT fp32", "fp32", lambda c, m: load(c, m, quantize=False), requires=REQUIRES),
        System("Optimum ORT int8 (dynamic, avx512_vnni)", "int8", lambda c, m: load(c, m, quantize=True), requires=REQUIRES),
    ]
