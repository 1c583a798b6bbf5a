"""The Ray Serve deployment: one ``Engine`` per replica (made in the replica, never pickled),
questions batched by Serve's ``@serve.batch`` with a size function counting padded tokens."""

from __future__ import annotations

import asyncio
import logging

from spanqa.settings import ServeSettings

APP_NAME = "spanqa"


class _NoBatchSizeWarning(logging.Filter):
    """Serve warns when max_ongoing_requests is below max_batch_size, counting both in requests;
    here max_batch_size counts tokens, so the comparison means nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "larger than `max_ongoing_requests`" not in record.getMessage()


def build(
    package: str,
    settings: ServeSettings,
    *,
    threads: int,
    api_key_sha256: str | None,
    runtime_env: dict,
):
    """The bound Serve application for ``package`` (a model package directory)."""
    from ray import serve

    from spanqa.serve.service import batch_cost

    @serve.deployment(
        name="SpanQA",
        num_replicas=settings.replicas,
        max_ongoing_requests=settings.max_ongoing,
        max_queued_requests=settings.max_queued,
        backpressure_config={
            "status_code": 503,
            "retry_after_s": settings.retry_after_s,
        },
        # SIGTERM: a replica being stopped takes no new requests and finishes the ones it
        # holds, checking every 0.2 s, for at most drain_timeout_s.
        graceful_shutdown_wait_loop_s=0.2,
        graceful_shutdown_timeout_s=settings.drain_timeout_s,
        health_check_period_s=2.0,
        health_check_timeout_s=30.0,
        ray_actor_options={"num_cpus": threads, "runtime_env": runtime_env},
    )
    @serve.ingress()
    class SpanQA:
        def __init__(
            self,
            package: str,
            settings: ServeSettings,
            threads: int,
            api_key_sha256: str | None,
        ):
            from spanqa import progress
            from spanqa.serve.service import Service

            progress.set_quiet(True)
            logging.getLogger("ray.serve").addFilter(_NoBatchSizeWarning())
            self.service = Service.load(package, settings, threads=threads)
            self._api_key_sha256 = api_key_sha256

        def __serve_build_asgi_app__(self):
            from spanqa.serve.app import build_app

            return build_app(self.service, self.submit, api_key_sha256=self._api_key_sha256)

        async def submit(self, item):
            # The wait is read when a batch's first question arrives: set it just before.
            self.answer.set_batch_wait_timeout_s(self.service.pacer.wait_s())
            return await self.answer(item)

        @serve.batch(
            max_batch_size=settings.max_batch_tokens,
            batch_wait_timeout_s=settings.max_wait_ms / 1000.0,
            max_concurrent_batches=1,  # a batch already uses every thread of the replica
            batch_size_fn=batch_cost,
        )
        async def answer(self, items: list) -> list:
            self.service.begin(items)
            # The engine works in a thread so the event loop keeps taking requests and forming
            # the next batch meanwhile.
            return await asyncio.to_thread(self.service.run_batch, items)

        def check_health(self) -> None:
            if self.service.engine.runtime is None:
                raise RuntimeError("the engine has no runtime")

    return SpanQA.bind(package, settings, threads, api_key_sha256)
