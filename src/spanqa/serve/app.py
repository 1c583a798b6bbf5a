"""The HTTP API of a replica: a FastAPI app over a ``Service`` and a ``submit`` coroutine that
answers one question (Serve's batcher in a replica, a direct call in tests)."""

import asyncio
import hashlib
import hmac
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from spanqa.serve.service import Item, RequestError, Service

OPEN_PATHS = frozenset({"/healthz", "/readyz"})  # open to probes even when a key is set
API_KEY_ENV = "SPANQA_API_KEY"


def key_digest(key: str | None) -> str | None:
    """What a replica is given to check the bearer token: its SHA-256, so the key itself never
    travels into Ray's (dashboard-visible) deployment arguments."""
    return hashlib.sha256(key.encode()).hexdigest() if key else None


def build_app(
    service: Service,
    submit: Callable[[Item], Awaitable[Any]],
    *,
    api_key_sha256: str | None = None,
):
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException
    from starlette.requests import Request

    from spanqa import __version__
    from spanqa.serve.schema import UNION_TAGS, AnswerRequest, AnswerResponse, ErrorOut

    settings = service.settings
    metrics = service.metrics
    app = FastAPI(
        title="spanqa",
        version=__version__,
        description="Extractive question answering (SpanBERT/BERT fine-tuned on SQuAD), batched by token count.",
    )

    def error(status: int, message: str, field: str | None = None, headers: dict | None = None) -> JSONResponse:
        return JSONResponse(
            RequestError(status, message, field).to_json(),
            status_code=status,
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        problems = []
        for e in exc.errors():
            loc = [str(x) for x in e["loc"] if x not in UNION_TAGS]
            if loc and loc[0] == "body":
                loc = loc[1:]
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "json_invalid":
                loc, msg = (
                    ["body"],
                    f"not valid JSON: {e.get('ctx', {}).get('error', msg)}",
                )
            problems.append({"field": ".".join(loc) or "body", "message": msg})
        first = problems[0]
        body = {
            "status": 422,
            "error": f"{first['field']}: {first['message']}",
            "field": first["field"],
            "errors": problems,
        }
        return JSONResponse(body, status_code=422)

    @app.exception_handler(RequestError)
    async def _refused(request: Request, exc: RequestError):
        return JSONResponse(exc.to_json(), status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _failed(request: Request, exc: Exception):
        # One line for the client; the traceback is in the replica's log.
        return error(500, f"the model failed: {type(exc).__name__}: {exc}")

    unauthorized = error(
        401,
        f"missing or wrong bearer token: send 'Authorization: Bearer <{API_KEY_ENV}>'",
        headers={"WWW-Authenticate": "Bearer"},
    )

    async def guard(scope, receive, send, inner):
        # Plain ASGI, not @app.middleware: Starlette's BaseHTTPMiddleware costs a task and a
        # memory stream per request, which shows at hundreds of requests a second on 2 cores.
        if scope["type"] != "http":
            return await inner(scope, receive, send)
        t0 = time.perf_counter()
        path = scope["path"]
        label = path if path in _KNOWN else "other"
        if api_key_sha256 and path not in OPEN_PATHS:
            header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            scheme, _, token = header.partition(" ")
            given = hashlib.sha256(token.strip().encode()).hexdigest()
            if scheme.lower() != "bearer" or not hmac.compare_digest(given, api_key_sha256):
                metrics.requests.labels(label, "401").inc()
                return await unauthorized(scope, receive, send)
        status = [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await inner(scope, receive, send_status)
        finally:
            if path == "/v1/answer":
                metrics.latency.observe(time.perf_counter() - t0)
            metrics.requests.labels(label, str(status[0])).inc()

    app.add_middleware(_Asgi, handler=guard)

    errors = {code: {"model": ErrorOut} for code in (401, 413, 422, 500, 503, 504)}

    @app.post(
        "/v1/answer",
        responses={200: {"model": AnswerResponse}, **errors},
        response_class=JSONResponse,
    )
    async def answer(request: AnswerRequest):
        """Answer one question (``inputs`` an object) or several (a list), as Hugging Face's
        question-answering task does: an object for one question and top_k 1, a list for
        top_k > 1 or a list of questions."""
        items = service.items(request)
        metrics.in_flight.inc()
        metrics.queue.inc(len(items))
        try:
            found = await asyncio.wait_for(
                asyncio.gather(*(submit(item) for item in items)),
                settings.request_timeout_s,
            )
        except asyncio.TimeoutError:
            raise RequestError(
                504,
                f"no answer within {settings.request_timeout_s:g} s (the server's request_timeout_s); retry later",
            ) from None
        finally:
            metrics.in_flight.dec()
            metrics.queue.dec(sum(1 for item in items if not item.started))
        for result in found:
            if isinstance(result, Exception):
                raise RequestError(500, f"the model failed: {type(result).__name__}: {result}")
        top_k = request.parameters.top_k
        shaped = [[a.to_json() for a in answers] if top_k > 1 else _first(answers) for answers in found]
        return JSONResponse(shaped if isinstance(request.inputs, list) else shaped[0])

    @app.get("/healthz")
    async def healthz():
        """Alive: the replica answers HTTP."""
        return {"status": "alive"}

    @app.get("/readyz")
    async def readyz():
        """Ready: the model is loaded (a replica exists only once it is)."""
        return {"status": "ready", "pid": os.getpid(), **service.info()}

    @app.get("/metrics")
    async def metrics_page():
        """Prometheus text format."""
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    return app


class _Asgi:
    """An ASGI middleware from a function ``handler(scope, receive, send, inner)``."""

    def __init__(self, app, handler):
        self.app, self.handler = app, handler

    async def __call__(self, scope, receive, send):
        await self.handler(scope, receive, send, self.app)


_KNOWN = frozenset({"/v1/answer", "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"})


def _first(answers: list) -> dict:
    return answers[0].to_json()
