"""The one error body of the HTTP API, for every status (RFC 9457's problem+json in spirit:
``status``, a one-line ``error``, and the members that apply: ``field``, ``limit``,
``retry_after_s``, always ``request_id``), and request ids."""

from __future__ import annotations

import math
import re
import uuid
from typing import Any

from spanqa.errors import SpanQAError

REQUEST_ID_HEADER = "x-request-id"
# A caller's id is echoed only when it is short and plain: it goes into headers and log lines.
_GOOD_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


class RequestError(SpanQAError):
    """A request the service refuses or cannot answer: ``status`` is its HTTP status, ``field``
    the request field at fault (dotted), ``limit`` the server setting it exceeds,
    ``retry_after_s`` when to try again (503)."""

    def __init__(
        self,
        status: int,
        message: str,
        field: str | None = None,
        limit: str | None = None,
        retry_after_s: float | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.field, self.limit = status, field, limit
        self.retry_after_s = retry_after_s
        self.extra_headers = dict(headers or {})

    def to_json(self, request_id: str | None = None) -> dict:
        return problem(
            self.status,
            str(self),
            request_id,
            field=self.field,
            limit=self.limit,
            retry_after_s=None if self.retry_after_s is None else round(self.retry_after_s, 3),
        )

    def headers(self) -> dict[str, str]:
        out = dict(self.extra_headers)
        if self.retry_after_s is not None:
            # HTTP's Retry-After counts whole seconds; the body keeps the estimate itself.
            out["Retry-After"] = str(max(1, math.ceil(self.retry_after_s)))
        return out


def problem(status: int, error: str, request_id: str | None, **members: Any) -> dict:
    out: dict[str, Any] = {"status": status, "error": error}
    out.update((k, v) for k, v in members.items() if v is not None)
    if request_id is not None:
        out["request_id"] = request_id
    return out


def request_id(given: str | None) -> str:
    """The caller's ``X-Request-Id`` when it is a plain token, else a new one."""
    if given and _GOOD_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex
