"""spanqa <target>: every target of ``SPANQA_TARGETS`` this spanqa knows, converted from the
checkpoint (static int8 calibrated on the non-held-out dev articles), then spanqa's Engine
(question/context strings in): features 512/128/64, length-aware batching, run_squad answers."""

from __future__ import annotations

import time

from .base import Context, Meter, System

# spanqa's targets in the benchmark; adding one is adding its name here.
SPANQA_TARGETS = ("cpu-fp32", "cpu-int8-ort", "cpu-bf16", "cpu-int8")


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


def load(ctx: Context, meter: Meter, target: str):
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


def _loader(target: str):
    return lambda ctx, meter: load(ctx, meter, target)


def systems() -> list[System]:
    from spanqa.registry import TARGETS

    return [
        System(f"spanqa {target}", TARGETS[target].precision, _loader(target), spanqa=True)
        for target in SPANQA_TARGETS
        if target in TARGETS
    ]


def target_of(system: System) -> str:
    """The spanqa target a spanqa row runs ("spanqa cpu-int8" -> "cpu-int8")."""
    return system.name.split(" ", 1)[1]
