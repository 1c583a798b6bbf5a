"""Admission in the ingress, before a request reaches Serve's queue: whether the service is
ready at all (loading, draining, no healthy replica), and whether the work already queued leaves
room for this request's, counted in padded tokens (Triton's and Text Embeddings Inference's
way: a queue bounded by the work it holds, not by its length in requests).

A refusal is a 503 whose ``Retry-After`` is the queue's expected drain time: the padded tokens
queued per ready replica times the seconds per padded token the replicas measured on their
recent batches (before any batch is timed, ``retry_after_s``)."""

from __future__ import annotations

from spanqa.serve.problem import RequestError
from spanqa.settings import ServeSettings

LOADING, READY, DRAINING = "loading", "ready", "draining"


class Admission:
    def __init__(self, settings: ServeSettings, metrics=None):
        self.settings = settings
        self.metrics = metrics
        self.state = LOADING
        self.replicas = 0  # replicas Serve reports running (the server polls its status)
        self.queued_tokens = 0  # admitted and not yet answered, all replicas
        self.per_token_s: float | None = None

    # ------------------------------------------------------------------------------------------
    # Readiness

    def not_ready(self) -> str | None:
        """Why the service should get no traffic now, or None when it should."""
        if self.state == LOADING:
            return "not ready: the model is loading"
        if self.state == DRAINING:
            return "not ready: the server is shutting down; send the request to another instance"
        if self.replicas < 1:
            return "not ready: no replica is running (a new one is starting)"
        return None

    def check_open(self) -> None:
        reason = self.not_ready()
        if reason is not None:
            headers = {"Connection": "close"} if self.state == DRAINING else None
            raise RequestError(503, reason, retry_after_s=float(self.settings.retry_after_s), headers=headers)

    # ------------------------------------------------------------------------------------------
    # Work

    def bound(self) -> int:
        return self.settings.max_queued_tokens * max(1, self.replicas)

    def full(self) -> bool:
        """No request fits: refuse it before counting its word pieces."""
        return self.queued_tokens >= self.bound()

    def retry_after_s(self) -> float:
        if self.per_token_s is None:
            return float(self.settings.retry_after_s)
        return self.queued_tokens / max(1, self.replicas) * self.per_token_s

    def overloaded(self, why: str | None = None, limit: str = "max_queued_tokens") -> RequestError:
        wait = self.retry_after_s()
        why = why or (
            f"at capacity: {self.queued_tokens} padded tokens queued for {max(1, self.replicas)} replica(s), "
            f"the limit is {self.bound()} (max_queued_tokens per replica)"
        )
        return RequestError(503, f"{why}; retry in {wait:.1f} s", limit=limit, retry_after_s=wait)

    def admit(self, tokens: int) -> None:
        """Count the request in, or refuse it: over the bound, or (once batches have been
        timed) when the queue ahead of it would not drain within request_timeout_s: it could
        only end in a 504, after holding its place in the queue."""
        total = self.queued_tokens + tokens
        if total > self.bound():
            raise self.overloaded()
        if self.per_token_s is not None and self.queued_tokens:
            wait = total / max(1, self.replicas) * self.per_token_s
            if wait > self.settings.request_timeout_s:
                raise self.overloaded(
                    f"at capacity: the {self.queued_tokens} padded tokens queued would take about {wait:.1f} s "
                    f"with this request, over the request_timeout_s of {self.settings.request_timeout_s:g} s",
                    "request_timeout_s",
                )
        self._add(tokens)

    def release(self, tokens: int) -> None:
        self._add(-tokens)

    def observe(self, per_token_s: float | None) -> None:
        """A replica's measured seconds per padded token (its own moving average)."""
        if per_token_s:
            self.per_token_s = per_token_s if self.per_token_s is None else 0.7 * self.per_token_s + 0.3 * per_token_s

    def _add(self, tokens: int) -> None:
        self.queued_tokens += tokens
        if self.metrics is not None:
            self.metrics.queued_tokens.set(self.queued_tokens)
