"""What a replica does, without Ray: answer a batch of questions with ``Engine.answer_many``,
grouped by the per-request settings that change features or answers, dropping the questions
whose deadline has passed before they reach the model. The ingress side (requests to questions,
their cost, admission) is in ``plan`` and ``admission``."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any

from spanqa.settings import AnswerSettings, FeatureSettings, ServeSettings

log = logging.getLogger("spanqa.serve")


@dataclass(frozen=True)
class Key:
    """The settings a question's answer depends on: questions are batched through one engine
    only when their keys are equal, so an answer never depends on its batch-mates' settings."""

    features: FeatureSettings
    answers: AnswerSettings


@dataclass(frozen=True)
class Shape:
    """What the ingress needs to know of a replica's model to cost questions: the engine's own
    settings, the longest window it runs and the multiple windows are padded to."""

    base_key: Key
    max_seq_len: int
    multiple: int


@dataclass(eq=False)
class Item:
    """One question on its way from the ingress through Serve's batch queue."""

    question: str
    context: str
    key: Key
    top_k: int
    cost: int  # padded tokens of its windows, at most max_batch_tokens (Serve's batch size)
    windows: int
    tokens: int = 0  # padded tokens of its windows, uncapped (admission)
    request_id: str = ""
    deadline: float = float("inf")  # time.time() after which its answer is no use to anyone
    started: bool = field(default=False)


@dataclass
class Outcome:
    """What became of one question in a replica. ``error`` ("Type: text") is for the log, never
    for the client; ``per_token_s`` is the replica's measured seconds per padded token."""

    answers: list[dict] | None = None
    error: str | None = None
    expired: bool = False
    model_s: float = 0.0  # its batch, features to answers
    per_token_s: float | None = None


class Pacer:
    """How long Serve's next batch should wait to fill.

    Serve forms a batch once its wait ends, even while the previous batch still runs (it then
    queues for the replica's one batch slot). A batch runs for tens to hundreds of milliseconds,
    so a short fixed wait would cut the requests arriving meanwhile into many small batches
    queued behind it, and they would stay small. So the wait is the running batch's expected
    remaining time (seconds per padded token, a moving average, times its tokens), or the
    configured wait when nothing runs: the next batch closes about when the engine is free."""

    def __init__(self, base_wait_s: float, cap_s: float = 1.0):
        self.base = base_wait_s
        self.cap = cap_s
        self.per_token: float | None = None
        self._start = self._end = 0.0
        self._tokens = 0

    def started(self, tokens: int) -> None:
        self._start = time.monotonic()
        self._tokens = max(1, tokens)
        self._end = self._start + (self.per_token or 0.0) * self._tokens

    def finished(self) -> None:
        if not self._tokens:
            return
        rate = (time.monotonic() - self._start) / self._tokens
        self.per_token = rate if self.per_token is None else 0.8 * self.per_token + 0.2 * rate
        self._end = 0.0
        self._tokens = 0

    def wait_s(self) -> float:
        return min(self.cap, max(self.base, self._end - time.monotonic()))


def batch_cost(items: list[Item]) -> int:
    """Serve's ``batch_size_fn``: a batch's size is its padded tokens."""
    return sum(item.cost for item in items)


class Service:
    """A loaded engine answering batches in one replica."""

    def __init__(self, engine, settings: ServeSettings, metrics=None):
        from spanqa.serve.metrics import ReplicaMetrics

        self.engine = engine
        self.settings = settings
        self.metrics = metrics or ReplicaMetrics()
        self.pacer = Pacer(settings.max_wait_ms / 1000.0)
        base = engine.settings
        self.base_key = Key(base.features, base.answers)
        self._engines: dict[Key, Any] = {self.base_key: engine}
        fixed = engine.runtime.seq_len
        self.shape = Shape(
            self.base_key,
            FeatureSettings.for_model(fixed, engine.max_positions).max_seq_length,
            max(1, int(base.batching.multiple)),
        )

    @classmethod
    def load(cls, package: str, settings: ServeSettings, threads: int | None = None) -> Service:
        """The service of a built model package (the server resolved --model and --target)."""
        from spanqa.engine import Engine

        return cls(Engine.load(package, threads=threads), settings)

    def engine_for(self, key: Key):
        engine = self._engines.get(key)
        if engine is None:
            # Shares the base engine's runtime: a settings variant costs no memory.
            engine = self.engine.with_settings(replace(self.engine.settings, features=key.features, answers=key.answers))
            if len(self._engines) > 64:  # bounded: keys come from requests
                self._engines = {self.base_key: self.engine}
            self._engines[key] = engine
        return engine

    def begin(self, items: list[Item]) -> None:
        """A batch leaves the queue (called on the event loop, before the batch runs)."""
        for item in items:
            item.started = True
        m = self.metrics
        m.queue.dec(len(items))
        m.batch_questions.observe(len(items))
        m.batch_tokens.observe(tokens := batch_cost(items))
        self.pacer.started(tokens)

    def run_batch(self, items: list[Item]) -> list[Outcome]:
        """An ``Outcome`` per item, in order. Items whose deadline has passed are not run (their
        caller has answered 504 already). Items that share settings go through one
        ``answer_many``: it sorts and pads all their windows together; a failing group fails
        only its own items."""
        from spanqa.engine import Question

        now = time.time()
        out: list[Outcome] = [Outcome(expired=True) for _ in items]
        groups: dict[Key, list[int]] = {}
        for i, item in enumerate(items):
            if item.deadline > now:
                groups.setdefault(item.key, []).append(i)
        dropped = len(items) - sum(len(idx) for idx in groups.values())
        if dropped:
            self.metrics.dropped.labels("deadline").inc(dropped)
        t0 = time.perf_counter()
        for key, idx in groups.items():
            top_k = max(items[i].top_k for i in idx)
            questions = [Question(items[i].question, items[i].context, str(n)) for n, i in enumerate(idx)]
            try:
                answers = self.engine_for(key).answer_many(questions, top_k=top_k)
            except Exception as exc:  # noqa: BLE001 - handed to each request of the group
                text = f"{type(exc).__name__}: {exc}"
                log.exception("requests %s: the model failed", ",".join(sorted({items[i].request_id for i in idx})))
                for i in idx:
                    out[i] = Outcome(error=text)
                continue
            for i, found in zip(idx, answers):
                out[i] = Outcome(answers=[a.to_json() for a in found[: items[i].top_k]])
        self.pacer.finished()
        seconds = time.perf_counter() - t0
        run = len(items) - dropped
        if run:
            self.metrics.batch_seconds.observe(seconds)
            self.metrics.questions.inc(run)
        for outcome in out:
            if not outcome.expired:
                outcome.model_s = seconds
            outcome.per_token_s = self.pacer.per_token
        return out

    def describe(self) -> dict:
        """The replica's model and process (``/readyz`` shows it to authorised callers)."""
        return {"pid": os.getpid(), **self.engine.info()}
