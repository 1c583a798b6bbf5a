"""The one small interface every system of the table implements, and what timing it shares.

A peer module (``hf_pipeline``, ``torch_eager``, ``optimum_ort``, ``optimum_openvino``,
``spanqa_targets``) exposes ``systems() -> list[System]``; ``systems.all_systems`` lists them in
the table's row order. A system's ``load`` runs inside its own worker process: it builds the
system for one model and returns an ``Answerer`` with facts about itself (versions, precision),
having wrapped the model's calls in the ``Meter`` it is given.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

WARMUP_QUESTIONS = 8


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


# An answerer turns (qid, question, context) triples into {qid: answer}; a system's ``load`` builds
# one inside the worker process and returns it with facts about itself (precision, versions).
Answerer = Callable[[list], dict]


@dataclass(frozen=True)
class System:
    """One row of the table."""

    name: str
    precision: str  # fp32 / bf16 / int8: which ceiling it is held against (a worker may correct it)
    load: Callable[[Context, Meter], tuple[Answerer, dict]]
    # What it needs beyond the project's environment, as pip requirements (the peers venv of
    # benchmarks/requirements-peers.txt provides them); a system with any runs in --peers-python.
    requires: tuple[str, ...] = ()
    spanqa: bool = False

    @property
    def env(self) -> str:
        """Where its worker runs: "project" (this interpreter) or "peers" (--peers-python)."""
        return "peers" if self.requires else "project"


# The peers that run in the peers venv need transformers 4: transformers 5 dropped the
# question-answering pipeline they answer through.
QA_PIPELINE = "transformers<5"


def set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def pipeline_answerer(qa, meter_model, meter: Meter) -> Answerer:
    """Answers through a transformers question-answering pipeline, metering ``meter_model``."""
    meter.wrap_forward(meter_model)

    def answer(items):
        outs = qa(question=[q for _, q, _ in items], context=[c for _, _, c in items])
        outs = outs if isinstance(outs, list) else [outs]
        return {qid: out["answer"] for (qid, _, _), out in zip(items, outs)}

    return answer


def qa_pipeline(model, hf_dir: str):
    """``pipeline("question-answering")`` on ``model`` with the directory's tokenizer, on the CPU."""
    from transformers import AutoTokenizer, pipeline

    tok = AutoTokenizer.from_pretrained(hf_dir)
    return pipeline("question-answering", model=model, tokenizer=tok, device=-1)
