"""What runs in the Ray Data pipeline: the resume filter (a task) and the answering actor.

Rows pass through whole: an answered row comes back with its answer, a row already committed
by an earlier run (``--resume``) comes back unanswered, so the driver still sees every input
row once, in input order (the order of the final files, and the duplicate check).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from spanqa.settings import EngineSettings

_INDEX_CACHE: dict[str, Any] = {}  # per worker process: the committed-id index, fetched once


def mark_committed(batch, index: list) -> Any:
    """``skip`` = the row's id was committed by an earlier run (``index`` holds the ref of
    ``store.committed_index``'s arrays in a list, so Ray hands it over unresolved)."""
    import pyarrow as pa

    from spanqa.scale.store import in_index

    ref = index[0]
    key = ref.hex()
    if key not in _INDEX_CACHE:
        import ray

        _INDEX_CACHE.clear()
        _INDEX_CACHE[key] = ray.get(ref)
    mask = in_index(batch.column("id").to_pylist(), _INDEX_CACHE[key])
    return batch.append_column("skip", pa.array(mask, type=pa.bool_()))


class Answerer:
    """One Ray Data actor: one Engine, answering a batch of question rows per call.

    ``version_2`` None answers each row as its data says (a SQuAD 2.0 row, ``impossible`` not
    null, with the null answer), True or False all rows alike. Only answers leave the actor:
    the prediction, the n-best (as JSON, when asked for), the null odds and best span (2.0),
    the feature count, and per call its timings."""

    def __init__(self, model: str | None, shipped: list | None, threads: int, settings: EngineSettings, nbest: bool):
        started = time.time()
        import ray

        from spanqa import progress
        from spanqa.engine import Engine

        progress.set_quiet(True)  # bars from many actors would interleave in the driver's log
        if shipped:
            from spanqa.scale.ship import materialise

            # The ref sits in a list so Ray hands it over unresolved: it is fetched here, once.
            model = str(materialise(ray.get(shipped[0])))
        self.engine = Engine.load(model, threads=threads, settings=settings, throughput=True)
        self.version_2 = settings.answers.version_2_with_negative
        self.engines = {}  # version_2 -> an engine sharing this one's runtime
        self.nbest = nbest
        ctx = ray.get_runtime_context()
        from spanqa.runtimes import runtime_info

        runtime = self.engine.runtime
        self.info = {
            "worker": ctx.get_actor_id()[:12],  # an actor keeps its id across restarts
            "node": ctx.get_node_id()[:12],
            "pid": os.getpid(),
            "started": started,
            "ready": time.time(),
            # The features' settings are those the features were built with (the tokenizer's
            # casing included): set by the first call that answers.
            "info": {
                "runtime": runtime_info(runtime),
                "features": None,
                "fixed_shape": {"batch_size": runtime.batch_size, "seq_len": runtime.seq_len},
            },
        }

    def _engine(self, version_2: bool):
        from dataclasses import replace

        if version_2 not in self.engines:
            s = self.engine.settings
            self.engines[version_2] = self.engine.with_settings(
                replace(s, answers=replace(s.answers, version_2_with_negative=version_2))
            )
        return self.engines[version_2]

    def __call__(self, batch):
        import pyarrow as pa

        start = time.time()
        n = batch.num_rows
        cols = {k: batch.column(k).to_pylist() for k in ("id", "question", "context", "impossible")}
        skip = batch.column("skip").to_pylist() if "skip" in batch.column_names else [False] * n
        out: dict[str, list] = {k: [None] * n for k in ("prediction", "nbest", "null_odds", "best_span", "version_2")}
        out["features"] = [0] * n
        out["answered"] = [not s for s in skip]
        groups: dict[bool, list[int]] = {}
        for i in range(n):
            if not skip[i]:
                v2 = self.version_2 if self.version_2 is not None else cols["impossible"][i] is not None
                groups.setdefault(bool(v2), []).append(i)
        call = dict(self.info, start=start, questions=0, features=0, real_tokens=0, model_batches=0, model_rows=0)
        call.update(padded_rows=0, preprocess_s=0.0, inference_s=0.0, answers_s=0.0, latencies_ms=[])
        for v2, rows in groups.items():
            self._answer(v2, rows, cols, out, call)
        call["end"] = time.time()
        seconds = (call["end"] - start) / max(call["questions"], 1)
        table = batch.drop_columns([c for c in ("question", "context", "skip") if c in batch.column_names])
        for name, values in out.items():
            table = table.append_column(name, pa.array(values, type=_arrow_type(name)))
        table = table.append_column("seconds", pa.array([seconds] * n, type=pa.float64()))
        table = table.append_column("worker", pa.array([self.info["worker"]] * n, type=pa.string()))
        table = table.append_column("node", pa.array([self.info["node"]] * n, type=pa.string()))
        table = table.append_column("pid", pa.array([self.info["pid"]] * n, type=pa.int64()))
        # The call's figures ride on its first row (a block may hold several calls).
        calls = [json.dumps(call) if i == 0 else None for i in range(n)]
        return table.append_column("call", pa.array(calls, type=pa.string()))

    def _answer(self, version_2: bool, rows: list[int], cols: dict, out: dict, call: dict) -> None:
        import numpy as np

        from spanqa.engine import Question
        from spanqa.engine.core import examples_from_questions

        ids = [cols["id"][i] for i in rows]
        qs = [Question(cols["question"][i], cols["context"][i], cols["id"][i]) for i in rows]
        p = self._engine(version_2).predict(examples_from_questions(qs), desc="answer")
        features = np.bincount(p.features.example_index, minlength=len(ids))
        for k, (i, qid) in enumerate(zip(rows, ids)):
            out["prediction"][i] = p.predictions[qid]
            out["version_2"][i] = version_2
            out["features"][i] = int(features[k])
            if self.nbest:
                out["nbest"][i] = json.dumps(p.nbest[qid], ensure_ascii=False)
            if p.null_odds is not None:
                out["null_odds"][i] = float(p.null_odds[qid])
                out["best_span"][i] = p.best_spans[qid]
        if self.info["info"]["features"] is None:
            from dataclasses import asdict

            self.info["info"]["features"] = asdict(p.features.settings)
        stats = p.stats
        call["questions"] += len(ids)
        call["features"] += len(p.features)
        call["real_tokens"] += int(p.features.lengths.sum())
        call["model_batches"] += stats.batches
        call["model_rows"] += stats.rows
        call["padded_rows"] += stats.padded_rows
        for key in ("preprocess_s", "inference_s", "answers_s"):
            call[key] += p.timings.get(key, 0.0)
        call["latencies_ms"] += [round(ms, 4) for ms in stats.latencies_ms]


def _arrow_type(name: str):
    import pyarrow as pa

    kinds = {"prediction": pa.string(), "nbest": pa.string(), "best_span": pa.string(), "null_odds": pa.float64()}
    kinds.update(version_2=pa.bool_(), answered=pa.bool_(), features=pa.int64())
    return kinds[name]
