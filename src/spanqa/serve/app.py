"""The HTTP API: a FastAPI app over an ``Ingress``. One ASGI middleware does what every request
needs before and after the routes: its id (``X-Request-Id``, taken or made, echoed), the bearer
token, the body limit (413 before the body is parsed) and UTF-8 check (422), a 500 with the id
and no exception text for anything unexpected (the text goes to the log under that id), the
metrics and one JSON access-log line. Every status has the one error body (``ErrorOut``).

No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations, and
``Request`` / ``AnswerRequest`` are imported inside ``build_app``."""

import asyncio
import hashlib
import hmac
import json
import logging
import time
from datetime import datetime, timezone
from typing import Any

from spanqa.serve.admission import DRAINING
from spanqa.serve.ingress import Failure, Ingress
from spanqa.serve.problem import REQUEST_ID_HEADER, RequestError, problem, request_id

OPEN_PATHS = frozenset({"/healthz", "/readyz"})  # open to probes even when a key is set
API_KEY_ENV = "SPANQA_API_KEY"
_KNOWN = frozenset({"/v1/answer", "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"})

log = logging.getLogger("spanqa.serve")
access = logging.getLogger("spanqa.serve.access")


def key_digest(key: str | None) -> str | None:
    """The SHA-256 of the API key: what the server keeps to check bearer tokens."""
    return hashlib.sha256(key.encode()).hexdigest() if key else None


def build_app(ingress: Ingress):
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException

    from spanqa import __version__
    from spanqa.serve.schema import UNION_TAGS, AnswerRequest, AnswerResponse, ErrorOut, HealthOut, ReadyOut

    app = FastAPI(
        title="spanqa",
        version=__version__,
        description="Extractive question answering (SpanBERT/BERT fine-tuned on SQuAD), batched by token count. "
        "Every error, whatever its status, is an ErrorOut.",
    )

    def rid(request) -> str:
        return request.scope["state"]["request_id"]

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        problems = []
        for e in exc.errors():
            loc = [str(x) for x in e["loc"] if x not in UNION_TAGS]
            if loc and loc[0] == "body":
                loc = loc[1:]
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "json_invalid":
                loc, msg = ["body"], f"not valid JSON: {e.get('ctx', {}).get('error', msg)}"
            problems.append({"field": ".".join(loc) or "body", "message": msg})
        first = problems[0]
        body = problem(422, f"{first['field']}: {first['message']}", rid(request), field=first["field"], errors=problems)
        return JSONResponse(body, status_code=422)

    @app.exception_handler(RequestError)
    async def _refused(request: Request, exc: RequestError):
        return JSONResponse(exc.to_json(rid(request)), status_code=exc.status, headers=exc.headers())

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        body = problem(exc.status_code, str(exc.detail), rid(request))
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    def error(status: int) -> dict:
        return {"model": ErrorOut, "description": _DESCRIBE[status]}

    @app.post(
        "/v1/answer",
        responses={200: {"model": AnswerResponse}, **{s: error(s) for s in (401, 413, 422, 500, 503, 504)}},
        response_class=JSONResponse,
    )
    async def answer(request: Request, body: AnswerRequest):
        """Answer one question (``inputs`` an object) or several (a list), as Hugging Face's
        question-answering task does: an object for one question and top_k 1, a list for
        top_k > 1 or a list of questions."""
        note = request.scope["state"]
        work = asyncio.ensure_future(ingress.answer(body, note))
        ingress.track(work)
        gone = asyncio.ensure_future(_disconnect(request))
        try:
            await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not work.done():  # the client left: nobody waits for this answer
            work.cancel()
            ingress.metrics.cancelled.labels("disconnect").inc()
            note["client_left"] = True
            return Response(status_code=499)
        if work.cancelled():
            raise RequestError(503, "the server stopped before answering (its drain timed out); retry on another instance")
        return JSONResponse(work.result())

    @app.get("/healthz", responses={200: {"model": HealthOut}, 503: error(503)})
    async def healthz(request: Request):
        """Liveness: 200 while this process can serve (loading and draining included); 503 when
        it has lost its Ray cluster."""
        if ingress.live_problem:
            raise RequestError(503, ingress.live_problem)
        return {"status": "alive"}

    @app.get("/readyz", responses={200: {"model": ReadyOut}, 503: error(503)})
    async def readyz(request: Request):
        """Readiness ("send me traffic"): 503 while the model loads, while the server drains
        after SIGTERM and when no replica is running. A caller with the API key also gets one
        replica's pid, model path and runtime."""
        ingress.admission.check_open()
        out: dict[str, Any] = {"status": "ready", "replicas": ingress.admission.replicas}
        if request.scope["state"].get("authorised"):
            out["replica"] = await ingress.replica_details()
        return out

    @app.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}, 401: error(401)})
    async def metrics_page():
        """Prometheus text format."""
        body, content_type = ingress.metrics.exposition(ingress.replica_registry)
        return Response(body, media_type=content_type)

    _declare_errors(app, error)
    app.add_middleware(_Front, ingress=ingress)
    return app


_DESCRIBE = {
    401: "SPANQA_API_KEY is set and the bearer token is missing or wrong.",
    404: "No such path.",
    405: "The path does not take this method.",
    413: "The body is over --max-body-bytes, or a request over a limit (the limit is named).",
    422: "Not UTF-8, not JSON, or a field that does not validate (the field is named).",
    500: "The service failed on this request; the log has the details under its request id.",
    503: "Not ready (loading, draining, no replica) or at capacity; Retry-After says when to retry.",
    504: "No answer within --request-timeout.",
}


def _declare_errors(app, error) -> None:
    """Every path may also answer 401, 404, 405 and 500 with the error body."""
    original = app.openapi

    def openapi():
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        for path, ops in schema["paths"].items():
            for op in ops.values():
                responses = op.setdefault("responses", {})
                for status in (401, 404, 405, 500):
                    if str(status) not in responses and not (status == 401 and path in OPEN_PATHS):
                        responses[str(status)] = {
                            "description": _DESCRIBE[status],
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}},
                        }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi


async def _disconnect(request) -> None:
    """Returns when the client closes its connection (the body has been read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


class _Front:
    """The ASGI middleware around every request (plain ASGI, not BaseHTTPMiddleware: that costs a
    task and a memory stream per request)."""

    def __init__(self, app, ingress: Ingress):
        self.app, self.ingress = app, ingress

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        ingress = self.ingress
        t0 = time.monotonic()
        headers = dict(scope["headers"])
        rid = request_id(headers.get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1"))
        note: dict[str, Any] = {"request_id": rid, "t0": t0}
        scope.setdefault("state", {}).update(note)
        note = scope["state"]
        path = scope["path"]
        sent = {"status": 0}

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
                headers = [*message.get("headers", []), (b"x-request-id", rid.encode())]
                if ingress.admission.state == DRAINING and not any(k == b"connection" for k, _ in headers):
                    # Draining: the client's next request must open a new connection (and be
                    # refused, or find the port closed), not race the server closing this one.
                    headers.append((b"connection", b"close"))
                message["headers"] = headers
            await send(message)

        async def reply(status: int, body: dict, extra: dict | None = None) -> None:
            raw = json.dumps(body).encode()
            head = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
            head += [(k.lower().encode(), str(v).encode()) for k, v in (extra or {}).items()]
            await send_with_id({"type": "http.response.start", "status": status, "headers": head})
            await send_with_id({"type": "http.response.body", "body": raw})

        try:
            authorised = self._authorised(headers)
            note["authorised"] = authorised and ingress.api_key_sha256 is not None
            if not authorised and path not in OPEN_PATHS:
                msg = f"missing or wrong bearer token: send 'Authorization: Bearer <{API_KEY_ENV}>'"
                return await reply(401, problem(401, msg, rid), {"WWW-Authenticate": "Bearer"})
            if scope["method"] == "POST":
                body = await self._body(headers, receive, rid, path)
                if isinstance(body, RequestError):
                    # Close: the unread rest of an oversized body must not be read as a request.
                    return await reply(body.status, body.to_json(rid), {"Connection": "close"})
                receive = _replay(body, receive)
            await self.app(scope, receive, send_with_id)
        except Exception as exc:  # noqa: BLE001 - the one place that turns anything into a 500
            if isinstance(exc, Failure):
                log.error("request %s: %s: %s", rid, exc.public, exc.detail)
                message = f"{exc.public}; the server log has the details under request id {rid}"
            else:
                log.exception("request %s: internal error", rid)
                message = f"internal error; the server log has the details under request id {rid}"
            if not sent["status"]:
                await reply(500, problem(500, message, rid))
        finally:
            self._record(scope, path, sent["status"], note, t0)

    def _authorised(self, headers: dict) -> bool:
        digest = self.ingress.api_key_sha256
        if not digest:
            return True
        header = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        given = hashlib.sha256(token.strip().encode()).hexdigest()
        return scheme.lower() == "bearer" and hmac.compare_digest(given, digest)

    async def _body(self, headers: dict, receive, rid: str, path: str) -> bytes | RequestError:
        """The whole body, or the 413/422 it earns: over the limit (by Content-Length, or once
        that many bytes have come), or not UTF-8 (JSON is UTF-8: RFC 8259)."""
        limit = self.ingress.settings.max_body_bytes
        too_big = RequestError(413, f"request body over {limit} bytes (the server's max_body_bytes)", "body", "max_body_bytes")
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return too_big
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return too_big
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if path == "/v1/answer":
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as exc:
                return RequestError(
                    422,
                    f"body: not UTF-8 (byte 0x{body[exc.start]:02x} at offset {exc.start}); send JSON encoded as UTF-8",
                    "body",
                )
        return body

    def _record(self, scope, path: str, status: int, note: dict, t0: float) -> None:
        ingress = self.ingress
        if note.get("client_left"):
            status = 499
        seconds = time.monotonic() - t0
        label = path if path in _KNOWN else "other"
        ingress.metrics.requests.labels(label, str(status)).inc()
        if path == "/v1/answer":
            ingress.metrics.latency.observe(seconds)
        if not ingress.settings.access_log:
            return
        line = {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "request_id": note["request_id"],
            "method": scope["method"],
            "path": path,
            "status": status,
            "ms": round(seconds * 1000, 1),
        }
        for name in ("questions", "padded_tokens", "queue_ms", "model_ms"):
            if name in note:
                line[name] = note[name]
        client = scope.get("client")
        if client:
            line["client"] = f"{client[0]}:{client[1]}"
        access.info(json.dumps(line))


def _replay(body: bytes, receive):
    """A receive channel giving the body already read, then the connection's own (disconnect)."""
    done = False

    async def replay():
        nonlocal done
        if not done:
            done = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
