"""spanqa's own ingress: the front of the service, in the ``spanqa serve`` process, between the
HTTP server (uvicorn, FastAPI: ``app``) and Serve's replicas (a ``backend``: Serve deployment
handles in ``backend``; tests may give another).

A request is refused here, with the service's JSON error, before it reaches Serve's queue: while
loading or draining or with no replica running, when the padded tokens already queued leave no room
for it (``admission``). Its word pieces are counted in a worker thread (``plan``), never on the
event loop. An admitted request goes to a replica with a deadline; at the deadline (504) or when
its client leaves, the handle call is cancelled, so Serve drops its questions from the batch queue
before they reach the model (a replica also skips any whose deadline passed)."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from spanqa.serve.admission import DRAINING, READY, Admission
from spanqa.serve.problem import RequestError
from spanqa.settings import ServeSettings

log = logging.getLogger("spanqa.serve")


class Failure(Exception):
    """The service could not answer a request it admitted: ``detail`` (exception text) goes to
    the log under the request's id, never to the client, who gets a 500 with that id."""

    def __init__(self, public: str, detail: str):
        super().__init__(public)
        self.public, self.detail = public, detail


class Ingress:
    def __init__(self, settings: ServeSettings, *, api_key_sha256: str | None = None, metrics=None):
        from spanqa.serve.metrics import IngressMetrics

        self.settings = settings
        self.api_key_sha256 = api_key_sha256
        self.metrics = metrics or IngressMetrics()
        self.admission = Admission(settings, self.metrics)
        self.planner = None
        self.backend = None
        self.live_problem: str | None = None  # set while the Ray cluster cannot be reached
        self.replica_registry = None  # in-process replicas (tests): their metrics registry
        # Two threads count word pieces: the tokenizer's Rust code runs beside the event loop,
        # and a burst of long requests queues here, not on the loop.
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="spanqa-plan")
        self._in_flight = 0
        self._tasks: set[asyncio.Task] = set()
        self._lost: set[str] = set()
        self._lost_until = 0.0
        self.stopping = False

    # ------------------------------------------------------------------------------------------
    # Lifecycle (the server calls these)

    def attach(self, backend, planner) -> None:
        self.backend, self.planner = backend, planner
        if self.admission.state != DRAINING:
            self.admission.state = READY

    def set_replicas(self, n: int, polled: bool = False) -> None:
        """``polled``: Serve's status, which counts a replica that died as running until its
        next health check: right after a death the ingress's own count stands a little."""
        if polled and n > self.admission.replicas and time.monotonic() < self._lost_until:
            return
        self.admission.replicas = n
        self.metrics.replicas.set(n)

    def replica_lost(self, actor: str) -> None:
        """A replica died under a request (the backend saw it): one fewer until Serve knows."""
        if actor in self._lost:
            return
        if len(self._lost) > 1000:
            self._lost.clear()
        self._lost.add(actor)
        self._lost_until = time.monotonic() + 3.0
        self.set_replicas(max(0, self.admission.replicas - 1))

    def begin_drain(self) -> None:
        self.admission.state = DRAINING

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def drained(self, timeout_s: float) -> bool:
        """Wait for the requests in flight to be answered; False if some are left at the end."""
        end = time.monotonic() + timeout_s
        while self._in_flight and time.monotonic() < end:
            await asyncio.sleep(0.05)
        return not self._in_flight

    def stop_remaining(self) -> None:
        """The drain timed out: what is left is answered 503 now."""
        self.stopping = True
        for task in list(self._tasks):
            task.cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------------------------------
    # One request

    def track(self, task: asyncio.Task) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def answer(self, body, note: dict[str, Any]) -> Any:
        """The JSON answer to a validated ``AnswerRequest``; ``note`` collects the access log's
        figures. Raises RequestError (refusals, 504) or Failure (500)."""
        admission = self.admission
        admission.check_open()
        if admission.full():
            raise admission.overloaded()
        self._in_flight += 1
        self.metrics.in_flight.inc()
        try:
            loop = asyncio.get_running_loop()
            items = await loop.run_in_executor(self._pool, self.planner.items, body)
            tokens = sum(item.tokens for item in items)
            note.update(questions=len(items), padded_tokens=tokens)
            # Past check_open the request is in flight: a drain that began meanwhile answers it.
            admission.admit(tokens)
            try:
                return await self._run(items, body, note)
            finally:
                admission.release(tokens)
        finally:
            self._in_flight -= 1
            self.metrics.in_flight.dec()

    async def _run(self, items: list, body, note: dict[str, Any]) -> Any:
        timeout = self.settings.request_timeout_s
        left = max(0.001, timeout - (time.monotonic() - note["t0"]))
        deadline = time.time() + left
        for item in items:
            item.request_id = note["request_id"]
            item.deadline = deadline
        sent = time.monotonic()
        try:
            outcomes = await asyncio.wait_for(self.backend.answer(items), left)
        except asyncio.TimeoutError:
            self.metrics.cancelled.labels("timeout").inc()
            raise _timed_out(timeout) from None
        waited = time.monotonic() - sent
        model_s = max(o.model_s for o in outcomes)
        note.update(model_ms=round(model_s * 1000, 1), queue_ms=round(max(0.0, waited - model_s) * 1000, 1))
        self.admission.observe(outcomes[-1].per_token_s)
        failed = [o.error for o in outcomes if o.error]
        if failed:
            raise Failure("the model failed on this request", failed[0])
        if any(o.expired for o in outcomes):  # the replica's deadline came just before ours
            raise _timed_out(timeout)
        top_k = body.parameters.top_k
        shaped = [o.answers if top_k > 1 else o.answers[0] for o in outcomes]
        return shaped if isinstance(body.inputs, list) else shaped[0]

    # ------------------------------------------------------------------------------------------
    # Health

    async def replica_details(self) -> dict | None:
        """One replica's pid and model (authorised /readyz); None when none answers in 2 s."""
        try:
            return await asyncio.wait_for(self.backend.describe(), 2.0)
        except Exception:  # noqa: BLE001 - details are best effort; readiness is decided already
            return None


def _timed_out(timeout: float) -> RequestError:
    return RequestError(
        504,
        f"no answer within {timeout:g} s (the server's request_timeout_s); retry later",
        limit="request_timeout_s",
    )
