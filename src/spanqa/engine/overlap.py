"""The engine's stages overlapped: while the model runs on one chunk of questions, a helper
thread tokenises the next chunk and extracts the answers of the last one.

ONNX Runtime and OpenVINO release the GIL while they compute, so the tokeniser (Rust) and the
answer extraction (NumPy and Python) run beside the model instead of after it; on a machine
whose cores the model does not keep busy (one Python thread between batches) this turns their
time into model time. Answers do not change: each question's answer depends only on its own
features' logits, whatever they were batched with.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np


def predict_overlapped(engine, examples: Sequence, desc: str, spans: bool, chunk: int):
    """``engine.predict`` of ``examples`` in chunks of ``chunk`` questions, three stages deep."""
    from spanqa import progress
    from spanqa.answers.extraction import predict_answers
    from spanqa.data.features import Features
    from spanqa.engine.types import Prediction
    from spanqa.runtimes.stats import InferenceStats

    parts = [examples[i : i + chunk] for i in range(0, len(examples), chunk)]
    timings = {"preprocess_s": 0.0, "inference_s": 0.0, "answers_s": 0.0}
    warm = engine.settings.warmup

    def features(part):
        t0 = time.perf_counter()
        out = engine.features(part)
        timings["preprocess_s"] += time.perf_counter() - t0
        return out

    def answers(f, start, end):
        t0 = time.perf_counter()
        out = predict_answers(f, start, end, engine.settings.answers, spans=spans)
        timings["answers_s"] += time.perf_counter() - t0
        return out

    began = time.perf_counter()
    stats = InferenceStats(warmup=warm)
    done: list[tuple] = []  # (features, start, end, answers future) per chunk, in order
    # One helper thread: the next chunk's features are asked for before the last chunk's
    # answers, so the model never waits on answers.
    pool = ThreadPoolExecutor(1, thread_name_prefix="spanqa-stages")
    try:
        with progress.bar(total=len(examples), desc=desc, unit="question", lines=True) as bar:
            upcoming: Future = pool.submit(features, parts[0])
            for k in range(len(parts)):
                f = upcoming.result()
                if k + 1 < len(parts):
                    upcoming = pool.submit(features, parts[k + 1])
                t0 = time.perf_counter()
                start, end, _ = engine.logits(f, desc=desc, warmup=warm if k == 0 else 0, stats=stats, bar=_Quiet())
                timings["inference_s"] += time.perf_counter() - t0
                done.append((f, start, end, pool.submit(answers, f, start, end)))
                bar.update(len(parts[k]))
            results = [a.result() for *_, a in done]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    timings["wall_s"] = time.perf_counter() - began

    merged = _merge(results)
    return Prediction(
        merged.predictions,
        merged.nbest,
        Features.concat([f for f, *_ in done]),
        np.concatenate([s for _, s, _, _ in done]),
        np.concatenate([e for _, _, e, _ in done]),
        stats,
        timings,
        merged.null_odds,
        merged.best_spans,
    )


def _merge(results: list):
    from spanqa.answers.extraction import Answers

    out = Answers({}, {}, {} if results[0].null_odds is not None else None, {} if results[0].best_spans is not None else None)
    for r in results:
        out.predictions.update(r.predictions)
        out.nbest.update(r.nbest)
        if out.null_odds is not None:
            out.null_odds.update(r.null_odds)
        if out.best_spans is not None:
            out.best_spans.update(r.best_spans)
    return out


class _Quiet:
    """The per-batch bar of each chunk: the questions bar above shows the progress."""

    def update(self, k: int = 1) -> None:
        pass
