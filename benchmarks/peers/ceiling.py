"""The matmul ceilings each row is held against: the best of several kernels (torch, OpenVINO,
ONNX Runtime) per precision on n x n x n, run in a worker process of its own with the systems'
thread count."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path


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
