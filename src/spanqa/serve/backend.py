"""The ingress's way to the replicas: a Serve deployment handle. Serve's errors become the
service's own: a full handle queue (BackPressureError) a 503, a replica that died under a
request a 500 with the request id (the text goes to the log), a cancelled call (deadline, client
gone) a cancelled Serve request, which Serve removes from the replica's batch queue."""

from __future__ import annotations

import asyncio

from spanqa.serve.ingress import Failure
from spanqa.serve.problem import RequestError


class ServeBackend:
    def __init__(self, handle, retry_after_s: float, on_lost=None):
        """``on_lost(actor_id)``: told when a replica dies under a request."""
        self.handle = handle
        self.retry_after_s = retry_after_s
        self.on_lost = on_lost

    async def answer(self, items: list) -> list:
        from ray import exceptions as rx
        from ray.serve.exceptions import BackPressureError

        response = self.handle.answer.remote(items)
        try:
            return await response
        except asyncio.CancelledError:
            response.cancel()
            raise
        except BackPressureError:
            raise RequestError(
                503,
                "at capacity: the replicas hold max_ongoing requests each and max_queued more wait; retry shortly",
                limit="max_queued",
                retry_after_s=self.retry_after_s,
            ) from None
        except (rx.ActorDiedError, rx.ActorUnavailableError, rx.RayActorError) as exc:
            if self.on_lost is not None and isinstance(exc, rx.ActorDiedError):
                self.on_lost(str(getattr(exc, "actor_id", None) or exc))
            raise Failure(
                "the replica answering this request stopped before it answered; retry (Serve starts another)",
                f"{type(exc).__name__}: {exc}",
            ) from None
        except rx.RayTaskError as exc:
            raise Failure("the replica failed on this request", f"{type(exc).__name__}: {exc}") from None

    async def describe(self) -> dict:
        return await self.handle.describe.remote()

    async def shape(self):
        return await self.handle.shape.remote()
