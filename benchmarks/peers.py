"""spanqa against its peers: one run, same machine, same questions, same thread count.

    # once: the peers live in their own venv so their pins never touch the project's environment
    python -m venv --system-site-packages /tmp/peers-venv
    /tmp/peers-venv/bin/pip install -r benchmarks/requirements-peers.txt

    python benchmarks/peers.py [--peers-python /tmp/peers-venv/bin/python] [--threads 2]
        [--models standin,base] [--questions-standin 1000] [--questions-base 300]
        [--systems SUBSTRING,...] [--repeats 1] [--work /tmp/spanqa-peers] [--json out.json]

Systems (rows), each run in its own fresh process with the same thread count:
  HF pipeline                 transformers.pipeline("question-answering") with its defaults
                              (max_seq_len 384, doc_stride 128, batch 1), PyTorch eager. It runs in
                              the peers venv: transformers 5 dropped the question-answering pipeline.
  PyTorch eager, batched 384  BertForQuestionAnswering (the project's transformers, default
                              attention), fast tokenizer windows of 384 / stride 128 padded to 384,
                              8 rows a batch, n-best 20, answers <= 30 tokens.
  Optimum ORT fp32 / int8     ORTModelForQuestionAnswering.from_pretrained(export=True); int8 =
                              ORTQuantizer + AutoQuantizationConfig.avx512_vnni(is_static=False,
                              per_channel=False), as Optimum's quantization guide shows; both run
                              through pipeline("question-answering", model=ort_model), as its docs do.
  optimum-intel OpenVINO      OVModelForQuestionAnswering.from_pretrained(export=True) in the pipeline.
  spanqa <target>             every target of ``spanqa_systems()``: converted from the checkpoint
                              (static int8 calibrated on the non-held-out dev articles), then
                              spanqa's Engine (question/context strings in): features 512/128/64, length-aware
                              batching, run_squad answers.

Models: the stand-in (../shared/models/standin-minilm-squad, 6 x 384, scored only on the held-out
dev articles) and a random SpanBERT-base-shaped model (12 x 768, std 0.05; speed does not depend on
weight values, so its F1 means nothing). Questions: a fixed subset of dev-v1.1-heldout.json taken
evenly through the file (so context lengths are representative), the same for every system.

Timing: each system first answers the first 8 questions of the subset (warm-up, untimed), then the
whole subset once per --repeats; the median pass is reported. A pass is end to end: question and
context strings in, answer strings out (tokenising, windows, model, answer extraction), reading the
JSON and scoring excluded. "model s" is the time inside the model's forward/run calls alone.
F1/EM: spanqa.answers.scoring.score (the official v1.1 metric) over the same subset.

Model FLOPs (stated in the output): per sequence of padded length L,
  2 * P * L + 4 * layers * hidden * L^2,   P = layers * (4 * hidden^2 + 2 * hidden * intermediate) + 2 * hidden
(the weight matmuls, then QK^T and attention x V; embeddings, softmax, LayerNorm and GELU are not
counted). "model GFLOP/s" uses the shapes each system actually ran (its padding included) over its
model time, and is compared with the ceiling of its precision: the best of several matmul kernels
(torch, OpenVINO, ONNX Runtime) on 2048 x 2048 x 2048, measured in the same run with the same threads.
"useful" counts only real tokens (L = real length), so padding shows as the gap between the two.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
HELDOUT = SHARED / "data" / "squad" / "dev-v1.1-heldout.json"
DEV = SHARED / "data" / "squad" / "dev-v1.1.json"
STANDIN = SHARED / "models" / "standin-minilm-squad"
WARMUP_QUESTIONS = 8
F1_RATIO = 0.995  # a reduced-precision target must keep 99.5% of spanqa fp32's F1 on the stand-in
CEILING_TARGET = {"int8": 85.0, "bf16": 85.0, "fp32": 85.0}  # % of the precision's matmul ceiling
E2E_TARGET = 0.95  # end-to-end questions/s over model-only rows/s
# spanqa's targets in the benchmark; adding one is adding its name here.
SPANQA_TARGETS = ("cpu-fp32", "cpu-int8-ort", "cpu-bf16", "cpu-int8")


# ---------------------------------------------------------------------------------------------
# Systems


@dataclass
class Context:
    """What a worker process gets: one model, one subset, one thread count."""

    model: str  # "standin" or "base"
    hf_dir: str  # Hugging Face BertForQuestionAnswering directory + tokenizer files
    checkpoint: str  # the checkpoint spanqa converts
    packages: dict  # spanqa target -> model package directory
    subset: str  # SQuAD JSON of the timed questions
    threads: int
    repeats: int
    cache: str  # where peers keep their exports between runs


@dataclass
class Meter:
    """Times the model's own calls and records the shapes they ran."""

    seconds: float = 0.0
    calls: list = field(default_factory=list)  # [rows, padded length, real tokens, sum of real length^2]
    inputs: list = field(default_factory=list)  # spanqa only: each call's inputs, replayed model-only
    replay: Callable | None = None  # spanqa only: runs one call's inputs on the bare runtime
    streams: int = 1  # calls the runtime runs at once

    def record(self, seconds: float, input_ids, attention_mask) -> None:
        import numpy as np

        ids = np.asarray(input_ids)
        mask = np.asarray(attention_mask) if attention_mask is not None else np.ones_like(ids)
        real = mask.reshape(ids.shape[0], -1).sum(axis=1).astype(np.int64)
        self.seconds += seconds
        self.calls.append([int(ids.shape[0]), int(ids.shape[1]), int(real.sum()), int((real * real).sum())])

    def wrap_forward(self, model) -> None:
        """Meter ``model.forward`` (torch modules, Optimum's ORT and OpenVINO models call it)."""
        inner = model.forward

        def forward(*args, **kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
            t0 = time.perf_counter()
            out = inner(*args, **kwargs)
            self.record(time.perf_counter() - t0, _numpy(ids), _numpy(mask))
            return out

        model.forward = forward


def _numpy(x):
    return x.detach().cpu().numpy() if hasattr(x, "detach") else x


class MeteredRuntime:
    """A spanqa runtime whose ``run`` calls are metered; the protocol is otherwise unchanged."""

    def __init__(self, runtime, meter: Meter):
        self.inner, self.meter = runtime, meter
        self.name, self.batch_size, self.seq_len = runtime.name, runtime.batch_size, runtime.seq_len
        # Several batches in flight (OpenVINO streams): time inside the model is the sum of the
        # calls' times over this many.
        self.parallel = meter.streams = getattr(runtime, "parallel", 1)

    def run(self, input_ids, token_type_ids, attention_mask):
        t0 = time.perf_counter()
        out = self.inner.run(input_ids, token_type_ids, attention_mask)
        self.meter.record(time.perf_counter() - t0, input_ids, attention_mask)
        self.meter.inputs.append((input_ids, token_type_ids, attention_mask))
        return out

    def info(self) -> dict:
        describe = getattr(self.inner, "info", None)
        return describe() if callable(describe) else {"name": self.name}


# An answerer turns (qid, question, context) triples into {qid: answer}; a system's ``load`` builds
# one inside the worker process and returns it with facts about itself (precision, versions).
Answerer = Callable[[list], dict]


@dataclass(frozen=True)
class System:
    name: str
    precision: str  # fp32 / bf16 / int8: which ceiling it is held against (a worker may correct it)
    env: str  # "project": this interpreter; "peers": --peers-python
    load: Callable[[Context, Meter], tuple[Answerer, dict]]
    spanqa: bool = False


def peer_systems() -> list[System]:
    return [
        System("HF pipeline (PyTorch eager)", "fp32", "peers", load_hf_pipeline),
        System("PyTorch eager, batched 384", "fp32", "project", load_torch_batched),
        System("Optimum ORT fp32", "fp32", "peers", lambda c, m: load_optimum_ort(c, m, quantize=False)),
        System("Optimum ORT int8 (dynamic, avx512_vnni)", "int8", "peers", lambda c, m: load_optimum_ort(c, m, quantize=True)),
        System("optimum-intel OpenVINO", "fp32", "peers", load_optimum_openvino),
    ]


def spanqa_systems() -> Iterator[tuple[str, System]]:
    """spanqa's targets, one per entry of SPANQA_TARGETS that this spanqa knows."""
    from spanqa.registry import TARGETS

    for target in SPANQA_TARGETS:
        if target in TARGETS:
            name = f"spanqa {target}"
            yield name, System(name, TARGETS[target].precision, "project", _spanqa_loader(target), spanqa=True)


def all_systems() -> list[System]:
    return peer_systems() + [s for _, s in spanqa_systems()]


def _spanqa_loader(target: str):
    return lambda ctx, meter: load_spanqa(ctx, meter, target)


# --- the peers -------------------------------------------------------------------------------


def _hf_pipeline_answerer(qa, meter_model, meter: Meter) -> Answerer:
    meter.wrap_forward(meter_model)

    def answer(items):
        outs = qa(question=[q for _, q, _ in items], context=[c for _, _, c in items])
        outs = outs if isinstance(outs, list) else [outs]
        return {qid: out["answer"] for (qid, _, _), out in zip(items, outs)}

    return answer


def _set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def load_hf_pipeline(ctx: Context, meter: Meter):
    import transformers
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, pipeline

    _set_torch_threads(ctx.threads)
    model = AutoModelForQuestionAnswering.from_pretrained(ctx.hf_dir).eval()
    tok = AutoTokenizer.from_pretrained(ctx.hf_dir)
    qa = pipeline("question-answering", model=model, tokenizer=tok, device=-1)
    info = {"transformers": transformers.__version__, "attention": model.config._attn_implementation}
    return _hf_pipeline_answerer(qa, model, meter), info


def load_torch_batched(ctx: Context, meter: Meter, batch_size: int = 8, max_len: int = 384, stride: int = 128):
    import numpy as np
    import torch
    import transformers
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    _set_torch_threads(ctx.threads)
    model = AutoModelForQuestionAnswering.from_pretrained(ctx.hf_dir).eval()
    tok = AutoTokenizer.from_pretrained(ctx.hf_dir)
    meter.wrap_forward(model)

    def answer(items):
        enc = tok(
            [q for _, q, _ in items],
            [c for _, _, c in items],
            truncation="only_second",
            max_length=max_len,
            stride=stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding="max_length",
            return_tensors="np",
        )
        n = enc["input_ids"].shape[0]
        starts, ends = np.empty((n, max_len), np.float32), np.empty((n, max_len), np.float32)
        with torch.inference_mode():
            for lo in range(0, n, batch_size):
                out = model(
                    input_ids=torch.from_numpy(enc["input_ids"][lo : lo + batch_size]),
                    token_type_ids=torch.from_numpy(enc["token_type_ids"][lo : lo + batch_size]),
                    attention_mask=torch.from_numpy(enc["attention_mask"][lo : lo + batch_size]),
                )
                starts[lo : lo + batch_size] = out.start_logits.numpy()
                ends[lo : lo + batch_size] = out.end_logits.numpy()
        best: dict[int, tuple[float, str]] = {}
        for f in range(n):
            ex = int(enc["overflow_to_sample_mapping"][f])
            context = items[ex][2]
            offsets = enc["offset_mapping"][f]
            in_context = np.array([s == 1 for s in enc.sequence_ids(f)])
            cand = _best_span(starts[f], ends[f], in_context)
            if cand is not None and (ex not in best or cand[0] > best[ex][0]):
                s, e = cand[1], cand[2]
                best[ex] = (cand[0], context[offsets[s][0] : offsets[e][1]])
        return {qid: best.get(i, (0.0, ""))[1] for i, (qid, _, _) in enumerate(items)}

    return answer, {
        "transformers": transformers.__version__,
        "attention": model.config._attn_implementation,
        "batch_size": batch_size,
    }


def _best_span(start, end, in_context, n_best: int = 20, max_answer: int = 30):
    """Highest start+end logit span inside the context among the n-best starts and ends."""
    import numpy as np

    idx = np.flatnonzero(in_context)
    if idx.size == 0:
        return None
    s_top = idx[np.argsort(-start[idx], kind="stable")[:n_best]]
    e_top = idx[np.argsort(-end[idx], kind="stable")[:n_best]]
    score = start[s_top][:, None] + end[e_top][None, :]
    length = e_top[None, :] - s_top[:, None]
    score = np.where((length >= 0) & (length < max_answer), score, -np.inf)
    i, j = np.unravel_index(int(np.argmax(score)), score.shape)
    if not np.isfinite(score[i, j]):
        return None
    return float(score[i, j]), int(s_top[i]), int(e_top[j])


def load_optimum_ort(ctx: Context, meter: Meter, quantize: bool):
    import onnxruntime as ort
    import optimum.version
    import transformers
    from optimum.onnxruntime import ORTModelForQuestionAnswering
    from transformers import AutoTokenizer, pipeline

    _set_torch_threads(ctx.threads)
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
    tok = AutoTokenizer.from_pretrained(ctx.hf_dir)
    qa = pipeline("question-answering", model=model, tokenizer=tok, device=-1)
    info = {
        "optimum": optimum.version.__version__,
        "transformers": transformers.__version__,
        "onnxruntime": ort.__version__,
        "model_file": file_name,
    }
    return _hf_pipeline_answerer(qa, model, meter), info


def load_optimum_openvino(ctx: Context, meter: Meter):
    import openvino as ov
    import transformers
    from optimum.intel import OVModelForQuestionAnswering
    from optimum.intel.version import __version__ as intel_version
    from transformers import AutoTokenizer, pipeline

    _set_torch_threads(ctx.threads)
    exported = Path(ctx.cache) / f"{ctx.model}-optimum-openvino"
    ov_config = {"INFERENCE_NUM_THREADS": ctx.threads}
    if not (exported / "openvino_model.xml").is_file():
        model = OVModelForQuestionAnswering.from_pretrained(ctx.hf_dir, export=True, compile=False)
        model.save_pretrained(exported)
    model = OVModelForQuestionAnswering.from_pretrained(exported, ov_config=ov_config)
    tok = AutoTokenizer.from_pretrained(ctx.hf_dir)
    qa = pipeline("question-answering", model=model, tokenizer=tok, device=-1)
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
    return _hf_pipeline_answerer(qa, model, meter), info


# --- spanqa ----------------------------------------------------------------------------------


def load_spanqa(ctx: Context, meter: Meter, target: str):
    """spanqa's engine, taking question and context strings like every other system here."""
    from spanqa import __version__
    from spanqa.engine import Engine, Question
    from spanqa.engine.core import examples_from_questions
    from spanqa.models.package import open_package
    from spanqa.runtimes import RuntimeOptions, open_runtime

    package = open_package(ctx.packages[target])
    # As `spanqa run` opens it: several batches in flight where the runtime has streams.
    runtime = MeteredRuntime(open_runtime(package, RuntimeOptions(threads=ctx.threads, throughput=True)), meter)
    engine = Engine(package, threads=ctx.threads, runtime=runtime)
    meter.replay = runtime.inner.run

    def answer(items):
        # The predictions.json text (run_squad's), which is what the SQuAD scores read.
        examples = [Question(q, c, qid) for qid, q, c in items]
        return engine.predict(examples_from_questions(examples)).predictions

    info = {"spanqa": __version__, "target": target, "runtime": runtime.info(), "precision": package.precision}
    return answer, info


# ---------------------------------------------------------------------------------------------
# Worker side (one system, one model, in a fresh process)


def _items(subset: Path) -> list[tuple[str, str, str]]:
    data = json.loads(subset.read_text(encoding="utf-8"))["data"]
    return [(qa["id"], qa["question"], p["context"]) for a in data for p in a["paragraphs"] for qa in p["qas"]]


def worker(name: str, spec: Path, out: Path) -> None:
    ctx = Context(**json.loads(spec.read_text()))
    result: dict[str, Any] = {"system": name, "model": ctx.model}
    try:
        system = next(s for s in all_systems() if s.name == name)
        items = _items(Path(ctx.subset))
        meter = Meter()
        t0 = time.perf_counter()
        answer, info = system.load(ctx, meter)
        result["load_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        answer(items[:WARMUP_QUESTIONS])
        result["warmup_s"] = time.perf_counter() - t0
        passes = []
        for _ in range(ctx.repeats):
            meter.seconds, meter.calls, meter.inputs = 0.0, [], []
            t0 = time.perf_counter()
            predictions = answer(items)
            seconds = time.perf_counter() - t0
            passes.append({"seconds": seconds, "model_s": meter.seconds / meter.streams, "calls": meter.calls})
        median = sorted(passes, key=lambda p: p["seconds"])[(len(passes) - 1) // 2]
        if meter.replay is not None:
            # Model only: the last pass's batches again, on the bare runtime, nothing else running.
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(meter.streams) as pool:
                t0 = time.perf_counter()
                list(pool.map(lambda batch: meter.replay(*batch), meter.inputs))
                result["model_only_s"] = time.perf_counter() - t0
            result["model_only_rows"] = int(sum(int(m.any(axis=1).sum()) for *_, m in meter.inputs))
        result.update(info=info, passes=[{k: p[k] for k in ("seconds", "model_s")} for p in passes], median=median)
        result["questions"] = len(items)
        result["predictions"] = predictions
    except ImportError as exc:
        result["unavailable"] = f"not installed here ({exc})"
    except Exception as exc:  # reported as a row, not a crash of the whole benchmark
        traceback.print_exc()
        result["unavailable"] = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"
    out.write_text(json.dumps(result))


class SlowKernel(Exception):
    """A ceiling kernel that runs emulated on this CPU."""


def matmul_worker(out: Path, threads: int, n: int = 2048, reps: int = 7) -> None:
    """Median GFLOP/s (GOP/s for int8) of an n x n x n matmul per kernel, same threads as the systems."""
    import numpy as np

    flops = 2.0 * n**3
    results: dict[str, dict[str, float]] = {"fp32": {}, "bf16": {}, "int8": {}}
    errors = {}

    def timed(fn) -> float:
        # Time-boxed: on a CPU without the kernel's instructions (AVX2 only: no VNNI, no BF16)
        # torch._int_mm and torch's bf16 matmul fall back to code at about 1 GOP/s, and 9 runs of
        # it take many minutes. Two slow calls in a row (under 10 GFLOP/s; the first also pays
        # one-off set-up) end the kernel's timing.
        for _ in range(2):
            t0 = time.perf_counter()
            fn()
            call = time.perf_counter() - t0
            if call <= flops / 10e9:
                break
        else:
            raise SlowKernel(f"fell back to slow code: {flops / call / 1e9:.1f} GFLOP/s per call; not a ceiling")
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return flops / statistics.median(ts) / 1e9

    def kernel(prec: str, name: str, fn) -> None:
        try:
            results[prec][name] = timed(fn)
        except SlowKernel as exc:
            errors[f"{prec} {name}"] = str(exc)

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, n)).astype(np.float32)
    w = rng.standard_normal((n, n)).astype(np.float32)

    def torch_kernels():
        import torch

        torch.set_num_threads(threads)
        for prec, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            a, b = torch.from_numpy(x).to(dt), torch.from_numpy(w).to(dt)
            kernel(prec, "torch.matmul", lambda: torch.matmul(a, b))
        a8 = torch.randint(-127, 127, (n, n), dtype=torch.int8)
        b8 = torch.randint(-127, 127, (n, n), dtype=torch.int8)
        kernel("int8", "torch._int_mm", lambda: torch._int_mm(a8, b8))

    def openvino_kernels():
        import openvino as ov
        import openvino.opset13 as ops

        core = ov.Core()

        def run(model, hint, feed):
            config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
            request = core.compile_model(model, "CPU", config).create_infer_request()
            return timed(lambda: request.infer(feed))

        p = ops.parameter([n, n], np.float32, name="x")
        plain = ov.Model([ops.matmul(p, ops.constant(w), False, False)], [p])
        results["fp32"]["openvino MatMul"] = run(plain, "f32", {"x": x})
        results["bf16"]["openvino MatMul"] = run(plain, "bf16", {"x": x})

        def fq(node, lo, hi, levels):
            c = lambda v: ops.constant(np.array(v, np.float32))  # noqa: E731
            return ops.fake_quantize(node, c(lo), c(hi), c(lo), c(hi), levels)

        # FakeQuantize on both inputs: the CPU plugin runs the MatMul on u8 x i8 (VNNI).
        p = ops.parameter([n, n], np.float32, name="x")
        q = ov.Model([ops.matmul(fq(p, 0.0, 4.0, 256), fq(ops.constant(w), -4.0, 4.0, 255), False, False)], [p])
        results["int8"]["openvino MatMul (FakeQuantize)"] = run(q, "f32", {"x": np.abs(x)})

    def ort_kernels():
        import onnxruntime as ort
        from onnx import TensorProto, helper

        b = rng.integers(-127, 127, (n, n)).astype(np.int8)
        graph = helper.make_graph(
            [helper.make_node("MatMulInteger", ["a", "b"], ["y"])],
            "mm",
            [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n])],
            [helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])],
            [helper.make_tensor("b", TensorProto.INT8, [n, n], b.tobytes(), raw=True)],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        session = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        a = rng.integers(0, 255, (n, n)).astype(np.uint8)
        results["int8"]["onnxruntime MatMulInteger"] = timed(lambda: session.run(None, {"a": a}))

    for name, fn in (("torch", torch_kernels), ("openvino", openvino_kernels), ("onnxruntime", ort_kernels)):
        try:
            fn()
        except Exception as exc:
            errors[name] = f"{type(exc).__name__}: {str(exc)[:200]}"
    out.write_text(json.dumps({"n": n, "reps": reps, "gflops": results, "errors": errors}))


# ---------------------------------------------------------------------------------------------
# Parent side: data, models, running the workers, the table


def machine_info(threads: int) -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8") if f in flags]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": model,
        "cores": cores,
        "threads": threads,
        "isa": isa,
        "python": platform.python_version(),
        "load_avg": os.getloadavg(),
    }


def write_subset(heldout: Path, n: int, out: Path) -> int:
    """Every (total/n)-th question of the held-out file, articles and paragraphs kept in order."""
    data = json.loads(heldout.read_text(encoding="utf-8"))
    total = sum(len(p["qas"]) for a in data["data"] for p in a["paragraphs"])
    n = min(n, total)
    keep = {int(i * total / n) for i in range(n)}
    k = 0
    articles = []
    for a in data["data"]:
        paragraphs = []
        for p in a["paragraphs"]:
            qas = []
            for qa in p["qas"]:
                if k in keep:
                    qas.append(qa)
                k += 1
            if qas:
                paragraphs.append({"context": p["context"], "qas": qas})
        if paragraphs:
            articles.append({"title": a["title"], "paragraphs": paragraphs})
    out.write_text(json.dumps({"version": data.get("version", "1.1"), "data": articles}), encoding="utf-8")
    return n


def write_calibration(dev: Path, heldout: Path, out: Path) -> None:
    """The dev articles that are not held out (the stand-in trained on them): int8 calibration
    inputs never overlap the questions it is scored on."""
    held = {a["title"] for a in json.loads(heldout.read_text(encoding="utf-8"))["data"]}
    data = json.loads(dev.read_text(encoding="utf-8"))
    data["data"] = [a for a in data["data"] if a["title"] not in held]
    out.write_text(json.dumps(data), encoding="utf-8")


def make_base_checkpoint(out: Path) -> Path:
    if not (out / "config.json").is_file():
        sys.path.insert(0, str(ROOT / "tests"))
        from models import SPANBERT_BASE, bert_config, make_checkpoint

        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        make_checkpoint(tmp, bert_config(**SPANBERT_BASE), std=0.05)
        tmp.rename(out)
    return out


def make_hf_dir(checkpoint: Path, out: Path) -> Path:
    """The checkpoint as a Hugging Face directory the peers load: weights plus vocab.txt and a
    tokenizer_config.json from which every transformers version builds the same fast tokenizer."""
    if (out / "config.json").is_file():
        return out
    from spanqa.models.checkpoint import load_checkpoint

    loaded = load_checkpoint(checkpoint)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    loaded.model.save_pretrained(tmp)
    shutil.copyfile(loaded.info.tokenizer.vocab_path, tmp / "vocab.txt")
    config = {"do_lower_case": loaded.info.tokenizer.do_lower_case, "tokenizer_class": "BertTokenizer", "model_max_length": 512}
    (tmp / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    tmp.rename(out)
    return out


def make_package(checkpoint: Path, target: str, out: Path, calibration: Path) -> Path:
    from spanqa.models.manifest import MANIFEST_NAME
    from spanqa.settings import CompileSettings
    from spanqa.targets.compile import convert_checkpoint

    if not (out / MANIFEST_NAME).is_file():
        # The accuracy guard is measured by this script itself (F1 against spanqa fp32, per row).
        convert_checkpoint(
            checkpoint, out, CompileSettings(target=target, calibration=str(calibration), unguarded=target != "cpu-fp32")
        )
    return out


def model_config(hf_dir: Path) -> dict:
    cfg = json.loads((hf_dir / "config.json").read_text())
    return {k: cfg[k] for k in ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads")}


def flops(cfg: dict, calls: list) -> tuple[float, float, int, int]:
    """(executed, useful) FLOPs of metered calls; also padded and real token counts."""
    layers, h, i = cfg["num_hidden_layers"], cfg["hidden_size"], cfg["intermediate_size"]
    p = layers * (4 * h * h + 2 * h * i) + 2 * h
    executed = useful = 0.0
    padded = real = 0
    for rows, length, real_tokens, real_sq in calls:
        executed += rows * (2 * p * length + 4 * layers * h * length * length)
        useful += 2 * p * real_tokens + 4 * layers * h * real_sq
        padded += rows * length
        real += real_tokens
    return executed, useful, padded, real


def run_worker(python: str, args: list[str], log: Path, timeout: float, threads: int) -> tuple[int, str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false")
    env["PYTHONWARNINGS"] = "ignore"
    with open(log, "w") as f:
        try:
            proc = subprocess.run(
                [python, str(Path(__file__).resolve()), *args],
                stdout=f,
                stderr=subprocess.STDOUT,
                env=env,
                timeout=timeout,
                cwd=ROOT,
            )
            code = proc.returncode
        except subprocess.TimeoutExpired:
            return -1, f"timed out after {timeout:.0f} s"
    tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-1:] or [""]
    return code, tail[0][:200]


def prepare_model(model: str, work: Path, calibration: Path, targets: list[str], say) -> tuple[Path, Path, dict]:
    checkpoint = STANDIN if model == "standin" else make_base_checkpoint(work / "base-checkpoint")
    hf_dir = make_hf_dir(checkpoint, work / f"{model}-hf")
    packages = {}
    for target in targets:
        out = work / "packages" / f"{model}-{target}"
        if not out.exists():
            say(f"  converting {model} for {target} ...")
        try:
            packages[target] = str(make_package(checkpoint, target, out, calibration))
        except Exception as exc:
            say(f"  spanqa {target} on {model}: conversion failed: {type(exc).__name__}: {exc}")
    return checkpoint, hf_dir, packages


def fmt(x, spec=".2f", missing="–"):
    return missing if x is None else format(x, spec)


def floor(x, digits: int = 2, missing: str = "–") -> str:
    """``x`` cut (not rounded) to ``digits`` decimals: a figure under a bar never prints at or
    over it (99.46% is not 99.5%)."""
    if x is None:
        return missing
    scale = 10**digits
    return f"{math.floor(x * scale) / scale:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="standin,base", help="comma list of: standin, base")
    ap.add_argument("--questions-standin", type=int, default=1000, help="timed questions on the stand-in")
    ap.add_argument("--questions-base", type=int, default=300, help="timed questions on the SpanBERT-base-shaped model")
    ap.add_argument("--questions", type=int, help="set both counts")
    ap.add_argument("--threads", type=int, default=None, help="threads for every system (default: all cores)")
    ap.add_argument("--repeats", type=int, default=1, help="timed passes per system (median reported)")
    ap.add_argument("--systems", default="", help="comma list of substrings; run only matching systems")
    ap.add_argument("--peers-python", default="/tmp/peers-venv/bin/python", help="interpreter with the peers installed")
    ap.add_argument(
        "--work",
        type=Path,
        default=Path(tempfile.gettempdir()) / "spanqa-peers",
        help="cache of converted models, exports and logs",
    )
    ap.add_argument("--fresh", action="store_true", help="delete --work first (converted models, exports) and rebuild everything")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per system before it is reported as unavailable")
    ap.add_argument("--json", type=Path, help="also write the raw numbers here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()

    threads = args.threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    if args.worker == "matmul":
        return matmul_worker(args.out, threads)
    if args.worker:
        return worker(args.worker, args.spec, args.out)

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if args.questions:
        args.questions_standin = args.questions_base = args.questions
    work = args.work.resolve()
    if args.fresh and work.exists():
        shutil.rmtree(work)
    (work / "logs").mkdir(parents=True, exist_ok=True)
    (work / "cache").mkdir(exist_ok=True)
    machine = machine_info(threads)
    report: dict[str, Any] = {"machine": machine, "threads": threads, "repeats": args.repeats, "models": {}}

    wanted = [s.strip().lower() for s in args.systems.split(",") if s.strip()]
    systems = [s for s in all_systems() if not wanted or any(w in s.name.lower() for w in wanted)]
    peers_ok = Path(args.peers_python).is_file()
    calibration = work / "calibration-dev-train-articles.json"
    if not calibration.is_file():
        write_calibration(DEV, HELDOUT, calibration)

    report["matmul"] = {"runs": []}

    def measure_ceilings(when: str) -> None:
        # Other work on the machine lowers a measurement, never raises it: the ceiling is the best
        # of the runs (start and end), each kernel's own figure a median of 7.
        say(f"matmul ceilings ({when}, {threads} threads) ...")
        out = work / f"matmul-{when}.json"
        code, tail = run_worker(
            sys.executable,
            ["--worker", "matmul", "--out", str(out), "--threads", str(threads)],
            work / "logs" / f"matmul-{when}.log",
            args.timeout,
            threads,
        )
        run = json.loads(out.read_text()) if code == 0 else {"gflops": {}, "errors": {"worker": tail}}
        run["when"], run["load_avg"] = when, os.getloadavg()
        report["matmul"]["runs"].append(run)
        best: dict[str, dict[str, float]] = {}
        for r in report["matmul"]["runs"]:
            for prec, kernels in r["gflops"].items():
                for kernel, g in kernels.items():
                    best.setdefault(prec, {})[kernel] = max(g, best.get(prec, {}).get(kernel, 0.0))
        report["matmul"]["gflops"] = best
        report["matmul"]["ceiling"] = {prec: max(v.values()) for prec, v in best.items() if v}

    measure_ceilings("start")

    targets = [s.name.split(" ", 1)[1] for s in systems if s.spanqa]
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        say(f"[{model}] preparing ...")
        checkpoint, hf_dir, packages = prepare_model(model, work, calibration, targets, say)
        n = args.questions_standin if model == "standin" else args.questions_base
        subset = work / f"{model}-subset-{n}.json"
        n = write_subset(HELDOUT, n, subset)
        ctx = Context(model, str(hf_dir), str(checkpoint), packages, str(subset), threads, args.repeats, str(work / "cache"))
        spec = work / f"{model}-spec.json"
        spec.write_text(json.dumps(dataclasses.asdict(ctx)))
        cfg = model_config(hf_dir)
        from spanqa.answers.scoring import score
        from spanqa.data.squad import read_squad

        gold = read_squad(subset)
        rows = []
        for system in systems:
            row: dict[str, Any] = {"system": system.name, "precision": system.precision, "spanqa": system.spanqa}
            rows.append(row)
            if system.env == "peers" and not peers_ok:
                row["unavailable"] = f"no peers interpreter at {args.peers_python} (see requirements-peers.txt)"
                continue
            if system.spanqa and system.name.split(" ", 1)[1] not in packages:
                row["unavailable"] = "conversion failed (see stderr)"
                continue
            say(f"[{model}] {system.name} on {n} questions ...")
            out = work / f"{model}-{_slug(system.name)}.json"
            out.unlink(missing_ok=True)
            python = sys.executable if system.env == "project" else args.peers_python
            log = work / "logs" / f"{model}-{_slug(system.name)}.log"
            code, tail = run_worker(
                python,
                ["--worker", system.name, "--spec", str(spec), "--out", str(out), "--threads", str(threads)],
                log,
                args.timeout,
                threads,
            )
            if not out.is_file():
                row["unavailable"] = f"worker exited {code}: {tail} (log: {log})"
                continue
            res = json.loads(out.read_text())
            if "unavailable" in res:
                row["unavailable"] = res["unavailable"]
                continue
            med = res["median"]
            executed, useful, padded, real = flops(cfg, med["calls"])
            precision = res["info"].get("precision") or system.precision
            row.update(
                precision=precision,
                info=res["info"],
                questions=res["questions"],
                seconds=med["seconds"],
                passes=res["passes"],
                load_s=res["load_s"],
                questions_per_s=res["questions"] / med["seconds"],
                model_s=med["model_s"],
                model_share=med["model_s"] / med["seconds"],
                sequences=sum(c[0] for c in med["calls"]),
                padded_tokens=padded,
                real_tokens=real,
                model_gflops=executed / med["model_s"] / 1e9 if med["model_s"] else None,
                useful_gflops=useful / med["model_s"] / 1e9 if med["model_s"] else None,
            )
            if res.get("model_only_s"):
                row["model_only_rows_per_s"] = res["model_only_rows"] / res["model_only_s"]
                row["e2e_vs_model_only"] = row["questions_per_s"] / row["model_only_rows_per_s"]
            row.update(score(gold, res["predictions"]))
            say(f"    {row['questions_per_s']:.2f} q/s, F1 {row['f1']:.2f}")
        report["models"][model] = {"config": cfg, "questions": n, "rows": rows}

    report["machine"]["load_avg_end"] = os.getloadavg()
    measure_ceilings("end")
    for model, block in report["models"].items():
        for row in block["rows"]:
            row["ceiling_gflops"] = report["matmul"]["ceiling"].get(row["precision"])
            if row.get("model_gflops") and row["ceiling_gflops"]:
                row["ceiling_pct"] = 100 * row["model_gflops"] / row["ceiling_gflops"]
    _finish(report)
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def _finish(report: dict) -> None:
    """spanqa's best per model (the fastest target that keeps F1 >= 99.5% of spanqa fp32's on the
    stand-in), each row's ratio to it, and the issue's targets."""
    standin = report["models"].get("standin")
    passing = None
    if standin:
        by_name = {r["system"]: r for r in standin["rows"] if "f1" in r}
        fp32 = by_name.get("spanqa cpu-fp32")
        if fp32:
            passing = {n for n, r in by_name.items() if r["spanqa"] and r["f1"] >= F1_RATIO * fp32["f1"]}
            for r in standin["rows"]:
                if "f1" in r:
                    r["f1_vs_spanqa_fp32"] = r["f1"] / fp32["f1"] if fp32["f1"] else None
    checks = {}
    for model, block in report["models"].items():
        rows = [r for r in block["rows"] if "questions_per_s" in r]
        candidates = [r for r in rows if r["spanqa"] and (passing is None or r["system"] in passing)]
        if not candidates:
            continue
        best = max(candidates, key=lambda r: r["questions_per_s"])
        block["spanqa_best"] = best["system"]
        for r in rows:
            r["vs_spanqa_best"] = r["questions_per_s"] / best["questions_per_s"]
        by_name = {r["system"]: r for r in rows}
        c = {"spanqa_best": best["system"], "f1_guard_from": "standin" if passing is not None else "not measured"}
        for peer, key, need in (
            ("HF pipeline (PyTorch eager)", "x_hf_pipeline", None),
            ("Optimum ORT int8 (dynamic, avx512_vnni)", "x_optimum_int8", 1.5),
            ("optimum-intel OpenVINO", "x_optimum_openvino", 2.5),
        ):
            if peer in by_name:
                c[key] = best["questions_per_s"] / by_name[peer]["questions_per_s"]
                c[key + "_target"] = need
        c["best_ceiling_pct"] = best.get("ceiling_pct")
        c["best_precision"] = best.get("precision")
        c["e2e_vs_model_only"] = best.get("e2e_vs_model_only")
        fastest = max((r for r in rows if r["spanqa"]), key=lambda r: r["questions_per_s"])
        if fastest is not best:
            c["fastest"] = fastest["system"]
            for peer, key in (
                ("HF pipeline (PyTorch eager)", "fastest_x_hf_pipeline"),
                ("Optimum ORT int8 (dynamic, avx512_vnni)", "fastest_x_optimum_int8"),
            ):
                if peer in by_name:
                    c[key] = fastest["questions_per_s"] / by_name[peer]["questions_per_s"]
        checks[model] = c
    report["targets"] = checks


def render(report: dict) -> str:
    m = report["machine"]
    out = [
        f"# spanqa vs peers — {m['cpu']}, {m['cores']} cores, {report['threads']} threads for every system",
        "",
        f"ISA: {', '.join(m['isa'])}; load average at start {m['load_avg'][0]:.2f}, at end {m['load_avg_end'][0]:.2f}. "
        f"Timing: one warm-up pass over {WARMUP_QUESTIONS} questions, then "
        + ("one timed pass" if report["repeats"] == 1 else f"the median of {report['repeats']} timed passes")
        + " over the subset, end to end (strings in, answers out).",
        "",
        "Matmul ceilings (2048³; per kernel the median of 7, best of the runs at start and end): "
        + "; ".join(
            f"**{prec} {v:.0f} G{'OP' if prec == 'int8' else 'FLOP'}/s** ("
            + ", ".join(f"{k} {g:.0f}" for k, g in report["matmul"]["gflops"][prec].items())
            + ")"
            for prec, v in report["matmul"]["ceiling"].items()
        ),
        "",
        "Model FLOPs per sequence of length L: 2·P·L + 4·layers·hidden·L², P = layers·(4·hidden² + 2·hidden·intermediate) + 2·hidden. "
        "*model GFLOP/s*: the shapes each system ran (padding included) over its time inside the model; "
        "*useful*: real tokens only; *% ceil*: model GFLOP/s over the matmul ceiling of its precision.",
    ]
    for model, block in report["models"].items():
        title = "stand-in (MiniLM-L6, 6 × 384)" if model == "standin" else "random SpanBERT-base shape (12 × 768; F1 meaningless)"
        out += ["", f"## {title} — {block['questions']} held-out questions", ""]
        out.append(
            "| system | precision | questions/s | × spanqa best | F1 | EM | F1 / spanqa fp32 | model share | model GFLOP/s | useful GFLOP/s | % ceil | e2e % of model-only |"
        )
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in block["rows"]:
            if "unavailable" in r:
                out.append(f"| {r['system']} | {r['precision']} | unavailable: {r['unavailable']} | | | | | | | | | |")
                continue
            mark = " **(best)**" if block.get("spanqa_best") == r["system"] else ""
            out.append(
                f"| {r['system']}{mark} | {r['precision']} | {r['questions_per_s']:.2f} | {fmt(r.get('vs_spanqa_best'))} | "
                f"{r['f1']:.2f} | {r['exact_match']:.2f} | {floor(r.get('f1_vs_spanqa_fp32') and 100 * r['f1_vs_spanqa_fp32'])}{'%' if r.get('f1_vs_spanqa_fp32') else ''} | {100 * r['model_share']:.0f}% | {fmt(r['model_gflops'], '.0f')} | "
                f"{fmt(r['useful_gflops'], '.0f')} | {floor(r.get('ceiling_pct'), 1)} | {floor(r.get('e2e_vs_model_only') and 100 * r['e2e_vs_model_only'], 1)} |"
            )
    if report.get("targets"):
        out += ["", "## Targets", ""]
        for model, c in report["targets"].items():
            parts = [f"spanqa best = {c['spanqa_best']} (F1 guard: {c['f1_guard_from']})"]
            for key, label in (
                ("x_hf_pipeline", "HF pipeline"),
                ("x_optimum_int8", "Optimum ORT int8"),
                ("x_optimum_openvino", "optimum-intel OpenVINO"),
            ):
                if key in c and c[key + "_target"] is None:
                    parts.append(f"{floor(c[key])}× {label}")
                elif key in c:
                    ok = "met" if c[key] >= c[key + "_target"] else "NOT met"
                    parts.append(f"{floor(c[key])}× {label} (target ≥ {c[key + '_target']}×: {ok})")
            if c.get("best_ceiling_pct") is not None:
                need = CEILING_TARGET.get(c.get("best_precision"), 0)
                ok = "met" if c["best_ceiling_pct"] >= need else "NOT met"
                parts.append(
                    f"model compute {floor(c['best_ceiling_pct'], 1)}% of its precision's ceiling (target ≥ {need}%: {ok})"
                )
            if c.get("e2e_vs_model_only") is not None:
                ok = "met" if c["e2e_vs_model_only"] >= E2E_TARGET else "NOT met"
                parts.append(
                    f"end-to-end questions/s {floor(100 * c['e2e_vs_model_only'], 1)}% of model-only rows/s "
                    f"(target ≥ {100 * E2E_TARGET:.0f}%: {ok})"
                )
            out.append(f"- **{model}**: " + "; ".join(parts))
            if "fastest" in c:
                extra = ", ".join(
                    f"{c[k]:.2f}× {label}"
                    for k, label in (("fastest_x_hf_pipeline", "HF pipeline"), ("fastest_x_optimum_int8", "Optimum ORT int8"))
                    if k in c
                )
                out.append(f"  - fastest spanqa target, F1 guard aside: {c['fastest']} ({extra})")
        standin = report["models"].get("standin", {})
        f1s = [
            f"{r['system']} {floor(100 * r['f1_vs_spanqa_fp32'])}%"
            for r in standin.get("rows", [])
            if r.get("spanqa") and r.get("f1_vs_spanqa_fp32")
        ]
        if f1s:
            out.append(f"- F1 relative to spanqa cpu-fp32 on the stand-in (guard ≥ {100 * F1_RATIO:.1f}%): " + ", ".join(f1s))
    return "\n".join(out)


if __name__ == "__main__":
    main()
