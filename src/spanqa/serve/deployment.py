"""The Ray Serve deployment: one ``Engine`` per replica (made in the replica, never pickled),
questions batched by Serve's ``@serve.batch`` with a size function counting padded tokens. It
has no HTTP of its own: spanqa's ingress (``ingress``, ``app``) calls it through a deployment
handle, and Serve runs no HTTP proxy (``server``)."""

from __future__ import annotations

import asyncio
import logging

from spanqa.settings import ServeSettings

APP_NAME = "spanqa"
DEPLOYMENT = "SpanQA"


class _NoBatchSizeWarning(logging.Filter):
    """Serve warns when max_ongoing_requests is below max_batch_size, counting both in requests;
    here max_batch_size counts tokens, so the comparison means nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "larger than `max_ongoing_requests`" not in record.getMessage()


def build(package: str, settings: ServeSettings, *, threads: int, runtime_env: dict):
    """The bound Serve application for ``package`` (a model package directory)."""
    from ray import serve

    from spanqa.serve.service import batch_cost

    @serve.deployment(
        name=DEPLOYMENT,
        num_replicas=settings.replicas,
        max_ongoing_requests=settings.max_ongoing,
        max_queued_requests=settings.max_queued,
        # SIGTERM: the ingress drains first; a replica being stopped still finishes what it
        # holds, checking every 0.2 s, for at most drain_timeout_s.
        graceful_shutdown_wait_loop_s=0.2,
        graceful_shutdown_timeout_s=settings.drain_timeout_s,
        # A dead replica is noticed within a second (readiness follows Serve's status).
        health_check_period_s=1.0,
        health_check_timeout_s=30.0,
        ray_actor_options={"num_cpus": threads, "runtime_env": runtime_env},
    )
    class SpanQA:
        def __init__(self, package: str, settings: ServeSettings, threads: int):
            from spanqa import progress
            from spanqa.serve.service import Service

            progress.set_quiet(True)
            logging.getLogger("ray.serve").addFilter(_NoBatchSizeWarning())
            self.service = Service.load(package, settings, threads=threads)

        def shape(self):
            return self.service.shape

        def describe(self) -> dict:
            return self.service.describe()

        async def answer(self, items: list) -> list:
            """The outcomes of one request's questions. Cancelled by the ingress (deadline,
            client gone), the questions still queued are cancelled too: Serve leaves them out
            of the batch it forms next."""
            metrics = self.service.metrics
            metrics.queue.inc(len(items))
            try:
                return list(await asyncio.gather(*(self._submit(item) for item in items)))
            finally:
                metrics.queue.dec(sum(1 for item in items if not item.started))

        async def _submit(self, item):
            # The wait is read when a batch's first question arrives: set it just before.
            self._batch.set_batch_wait_timeout_s(self.service.pacer.wait_s())
            return await self._batch(item)

        @serve.batch(
            max_batch_size=settings.max_batch_tokens,
            batch_wait_timeout_s=settings.max_wait_ms / 1000.0,
            max_concurrent_batches=1,  # a batch already uses every thread of the replica
            batch_size_fn=batch_cost,
        )
        async def _batch(self, items: list) -> list:
            self.service.begin(items)
            # The engine works in a thread so the event loop keeps taking requests and forming
            # the next batch meanwhile.
            return await asyncio.to_thread(self.service.run_batch, items)

        def check_health(self) -> None:
            if self.service.engine.runtime is None:
                raise RuntimeError("the engine has no runtime")

    return SpanQA.bind(package, settings, threads)
