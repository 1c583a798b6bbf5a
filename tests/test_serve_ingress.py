"""spanqa's ingress (the HTTP front of ``spanqa serve``) served by uvicorn on 127.0.0.1 and called
with a real HTTP client, in this process: the replica behind it is the real ``Service`` (the
stand-in model) called directly instead of through Ray Serve, so faults (a failing model, a slow
batch, a client that leaves) can be made on purpose. Every response is checked against the
service's own OpenAPI document. tests/test_serve_api.py runs the whole server on Ray Serve."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
import threading
import time

import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
jsonschema = pytest.importorskip("jsonschema")

from spanqa.settings import ServeSettings  # noqa: E402

QA = {"question": "Where did Alice meet Bob?", "context": "Alice met Bob in Paris in 1999."}


class LocalBackend:
    """The replica's Service without Ray: ``delay_s`` holds each call before its batch runs."""

    def __init__(self, service):
        self.service = service
        self.delay_s = 0.0
        self.calls = self.cancelled = 0

    async def answer(self, items):
        self.calls += 1
        try:
            await asyncio.sleep(self.delay_s)
            self.service.metrics.queue.inc(len(items))
            self.service.begin(items)
            return await asyncio.to_thread(self.service.run_batch, items)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    async def describe(self):
        return self.service.describe()


class Live:
    """An ingress app under uvicorn on a free loopback port, in a thread."""

    def __init__(self, engine, api_key: str | None = None, **settings):
        from spanqa.serve.app import build_app, key_digest
        from spanqa.serve.ingress import Ingress
        from spanqa.serve.plan import Planner
        from spanqa.serve.service import Service

        self.settings = ServeSettings(**settings)
        self.service = Service(engine, self.settings)
        self.backend = LocalBackend(self.service)
        self.ingress = Ingress(self.settings, api_key_sha256=key_digest(api_key))
        self.ingress.replica_registry = self.service.metrics.registry
        self.planner = Planner(engine.tokenizer, self.service.shape, self.settings)
        self.app = build_app(self.ingress)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)

    def ready(self, replicas: int = 1) -> Live:
        self.ingress.attach(self.backend, self.planner)
        self.ingress.set_replicas(replicas)
        return self

    def client(self, **kw) -> httpx.Client:
        kw.setdefault("timeout", 60)
        return httpx.Client(base_url=self.url, event_hooks={"response": [_check_schema]}, **kw)

    def close(self):
        self.server.should_exit = True
        self.thread.join(30)
        self.ingress.close()


@pytest.fixture(scope="module")
def engine(standin_package):
    from spanqa.engine import Engine

    with Engine.load(standin_package, threads=1) as e:
        yield e


@pytest.fixture(scope="module")
def openapi(engine):
    live = Live(engine)
    try:
        spec = httpx.get(live.url + "/openapi.json").json()
    finally:
        live.close()
    _SPEC.update(spec)
    return spec


_SPEC: dict = {}


def _check_schema(response: httpx.Response) -> None:
    """Every response of this module: a JSON body that validates against what the service's
    OpenAPI document declares for its path, method and status (499: the client had left)."""
    response.read()
    path, method, status = response.request.url.path, response.request.method.lower(), response.status_code
    assert response.headers.get("x-request-id"), (path, status)
    if path == "/metrics" and status == 200:
        return
    assert response.headers["content-type"] == "application/json", (path, status, response.text[:200])
    validate(_SPEC, path, method, status, response.json())


def validate(spec: dict, path: str, method: str, status: int, body) -> None:
    ops = spec["paths"].get(path) or spec["paths"]["/v1/answer"]  # 404: declared alike on every path
    op = ops.get(method) or next(iter(ops.values()))  # 405: declared on the path's own operations
    declared = op["responses"]
    assert str(status) in declared, f"{method.upper()} {path} answered {status}, which its OpenAPI does not declare"
    schema = declared[str(status)]["content"]["application/json"]["schema"]
    jsonschema.validate(body, {**schema, "components": spec["components"]}, cls=jsonschema.Draft202012Validator)


@pytest.fixture
def live(engine, openapi):
    servers = []

    def make(**settings):
        s = Live(engine, **settings)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def _sample(page: str, name: str) -> float:
    for line in page.splitlines():
        if line.split(" ")[0] == name:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


# ----------------------------------------------------------------------------------------------
# Answers, request ids, the error body


def test_answers_and_request_ids(live, engine):
    server = live().ready()
    with server.client() as c:
        r = c.post("/v1/answer", json={"inputs": QA}, headers={"X-Request-Id": "order-42.a"})
        assert r.status_code == 200
        assert r.json() == engine.answer(QA["question"], QA["context"]).to_json()
        assert r.headers["x-request-id"] == "order-42.a"
        made = c.post("/v1/answer", json={"inputs": QA}).headers["x-request-id"]
        assert len(made) == 32 and int(made, 16) >= 0
        # An id that could break a header or a log line is replaced, not echoed.
        r = c.post("/v1/answer", json={"inputs": "x"}, headers={"X-Request-Id": "a b\tc" * 40})
        assert r.status_code == 422 and len(r.headers["x-request-id"]) == 32
        assert r.json()["request_id"] == r.headers["x-request-id"]


def test_model_failure_is_500_with_the_id_and_no_exception_text(live, caplog):
    server = live().ready()

    class Broken:
        def answer_many(self, questions, top_k=1):
            raise RuntimeError("secret-detail /srv/models/private.onnx")

    server.service.engine_for = lambda key: Broken()
    with caplog.at_level(logging.ERROR, logger="spanqa.serve"), server.client() as c:
        r = c.post("/v1/answer", json={"inputs": QA}, headers={"X-Request-Id": "fail-1"})
    assert r.status_code == 500
    assert r.json() == {
        "status": 500,
        "error": "the model failed on this request; the server log has the details under request id fail-1",
        "request_id": "fail-1",
    }
    assert "secret" not in r.text and "RuntimeError" not in r.text
    logged = [rec.getMessage() for rec in caplog.records if "fail-1" in rec.getMessage()]
    assert any("RuntimeError: secret-detail /srv/models/private.onnx" in line for line in logged), logged


def test_a_bug_in_the_ingress_is_500_with_the_id_and_no_text(live, caplog):
    server = live().ready()

    def broken(request):
        raise ZeroDivisionError("secret-bug-text")

    server.planner.items = broken
    with caplog.at_level(logging.ERROR, logger="spanqa.serve"), server.client() as c:
        r = c.post("/v1/answer", json={"inputs": QA}, headers={"X-Request-Id": "bug-1"})
    assert r.status_code == 500
    assert r.json()["error"] == "internal error; the server log has the details under request id bug-1"
    assert "secret" not in r.text
    record = next(rec for rec in caplog.records if "bug-1" in rec.getMessage())
    assert record.exc_info and "secret-bug-text" in str(record.exc_info[1])


# ----------------------------------------------------------------------------------------------
# Deadlines and clients that leave: the work is cancelled before it reaches the model


def test_timeout_is_504_and_the_work_is_dropped(live):
    server = live(request_timeout_s=0.5).ready()
    server.backend.delay_s = 5.0
    with server.client() as c:
        t = time.monotonic()
        r = c.post("/v1/answer", json={"inputs": QA})
        took = time.monotonic() - t
        assert r.status_code == 504 and took < 3
        assert r.json()["error"] == "no answer within 0.5 s (the server's request_timeout_s); retry later"
        assert r.json()["limit"] == "request_timeout_s"
        page = c.get("/metrics").text
    assert server.backend.cancelled == 1
    assert _sample(page, 'spanqa_cancelled_requests_total{reason="timeout"}') == 1
    assert _sample(page, "spanqa_questions_total") == 0  # nothing reached the model
    assert _sample(page, "spanqa_queued_tokens") == 0


def test_a_client_that_leaves_cancels_its_work(live, capsys):
    server = live().ready()
    server.backend.delay_s = 3.0
    with server.client(timeout=0.3) as c, pytest.raises(httpx.ReadTimeout):
        c.post("/v1/answer", json={"inputs": QA}, headers={"X-Request-Id": "gone-1"})
    deadline = time.monotonic() + 2.5
    while server.backend.cancelled == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.backend.cancelled == 1  # well before its 3 s hold ended
    with server.client() as c:
        page = c.get("/metrics").text
    assert _sample(page, 'spanqa_cancelled_requests_total{reason="disconnect"}') == 1
    assert _sample(page, "spanqa_questions_total") == 0


def test_replica_deadline_drops_expired_questions(engine):
    """A question whose deadline passed while it queued is not run (the ingress answered 504)."""
    from spanqa.serve.plan import Planner
    from spanqa.serve.schema import AnswerRequest
    from spanqa.serve.service import Service

    service = Service(engine, ServeSettings())
    items = Planner(engine.tokenizer, service.shape, ServeSettings()).items(AnswerRequest(inputs=[QA, QA]))
    items[0].deadline = time.time() - 1
    service.begin(items)
    out = service.run_batch(items)
    assert out[0].expired and out[0].answers is None
    assert out[1].answers == [engine.answer(QA["question"], QA["context"]).to_json()]
    page = service.metrics.registry
    from prometheus_client import generate_latest

    text = generate_latest(page).decode()
    assert _sample(text, 'spanqa_dropped_questions_total{reason="deadline"}') == 1
    assert _sample(text, "spanqa_questions_total") == 1


# ----------------------------------------------------------------------------------------------
# Admission by work


def test_admission_by_padded_tokens_with_a_measured_retry_after(live):
    from spanqa.serve.schema import AnswerRequest

    probe = live()
    one = sum(i.tokens for i in probe.planner.items(AnswerRequest(inputs=QA)))
    server = live(max_queued_tokens=2 * one).ready()
    server.backend.delay_s = 1.5
    server.ingress.admission.per_token_s = 0.004  # as if the replicas had measured it

    async def burst():
        async with httpx.AsyncClient(base_url=server.url, timeout=30, event_hooks={"response": [_acheck]}) as c:
            first = [asyncio.ensure_future(c.post("/v1/answer", json={"inputs": QA})) for _ in range(2)]
            await asyncio.sleep(0.4)
            third = await c.post("/v1/answer", json={"inputs": QA})
            return await asyncio.gather(*first), third

    admitted, refused = asyncio.run(burst())
    assert [r.status_code for r in admitted] == [200, 200]
    assert refused.status_code == 503
    wait = 2 * one * 0.004
    assert refused.json()["retry_after_s"] == round(wait, 3)
    assert refused.headers["retry-after"] == str(max(1, math.ceil(wait)))
    assert refused.json()["limit"] == "max_queued_tokens"
    assert refused.json()["error"].startswith(
        f"at capacity: {2 * one} padded tokens queued for 1 replica(s), the limit is {2 * one}"
    )
    # A request bigger than the whole queue can never be admitted: 413, not 503.
    with server.client() as c:
        r = c.post("/v1/answer", json={"inputs": [QA, QA, QA]})
    assert r.status_code == 413 and r.json()["limit"] == "max_queued_tokens" and r.json()["field"] == "inputs"


def test_a_queue_that_would_outlast_the_timeout_refuses_now(live):
    server = live(request_timeout_s=5).ready()
    server.backend.delay_s = 1.0
    server.ingress.admission.per_token_s = 0.2  # ~30 padded tokens a question: 6 s each

    async def two():
        async with httpx.AsyncClient(base_url=server.url, timeout=30, event_hooks={"response": [_acheck]}) as c:
            first = asyncio.ensure_future(c.post("/v1/answer", json={"inputs": QA}))
            await asyncio.sleep(0.3)
            second = await c.post("/v1/answer", json={"inputs": QA})
            return await first, second

    first, second = asyncio.run(two())
    assert first.status_code == 200
    assert second.status_code == 503 and second.json()["limit"] == "request_timeout_s"
    assert "over the request_timeout_s of 5 s" in second.json()["error"]


async def _acheck(response):
    await response.aread()
    _check_schema(response)


# ----------------------------------------------------------------------------------------------
# Readiness and liveness


def test_readiness_tells_the_truth(live):
    server = live(retry_after_s=2)
    with server.client() as c:
        for path in ("/readyz", "/v1/answer"):
            r = c.request("GET" if path == "/readyz" else "POST", path, json={"inputs": QA})
            assert r.status_code == 503 and r.json()["error"] == "not ready: the model is loading"
            assert r.headers["retry-after"] == "2"
        assert c.get("/healthz").json() == {"status": "alive"}
        server.ready(replicas=0)
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["error"] == "not ready: no replica is running (a new one is starting)"
        assert c.post("/v1/answer", json={"inputs": QA}).status_code == 503
        server.ingress.set_replicas(1)
        assert c.get("/readyz").json() == {"status": "ready", "replicas": 1}  # no pid, no path
        server.ingress.live_problem = "the Ray cluster does not answer (test)"
        assert c.get("/healthz").status_code == 503
        server.ingress.live_problem = None
        server.ingress.begin_drain()
        r = c.get("/readyz")
        assert r.status_code == 503 and r.headers["connection"] == "close"
        assert r.json()["error"] == "not ready: the server is shutting down; send the request to another instance"
        assert c.post("/v1/answer", json={"inputs": QA}).status_code == 503
        assert c.get("/healthz").status_code == 200  # alive while draining


def test_replica_details_only_for_the_key_holder(live):
    server = live(api_key="k-123").ready()
    with server.client() as c:
        assert c.get("/readyz").json() == {"status": "ready", "replicas": 1}
        details = c.get("/readyz", headers={"Authorization": "Bearer k-123"}).json()["replica"]
        assert details["pid"] > 0 and details["model"] and details["threads"] == 1
        assert c.post("/v1/answer", json={"inputs": QA}).status_code == 401
        r = c.get("/metrics", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


def test_drain_answers_what_is_in_flight_and_refuses_the_rest(live):
    server = live().ready()
    server.backend.delay_s = 1.0

    async def run():
        async with httpx.AsyncClient(base_url=server.url, timeout=30, event_hooks={"response": [_acheck]}) as c:
            held = asyncio.ensure_future(c.post("/v1/answer", json={"inputs": QA}))
            await asyncio.sleep(0.3)
            server.ingress.begin_drain()
            late = await c.post("/v1/answer", json={"inputs": QA})
            return await held, late

    held, late = asyncio.run(run())
    assert held.status_code == 200 and late.status_code == 503


def test_a_drain_that_times_out_answers_503(live):
    server = live().ready()
    server.backend.delay_s = 30.0

    async def run():
        async with httpx.AsyncClient(base_url=server.url, timeout=30, event_hooks={"response": [_acheck]}) as c:
            held = asyncio.ensure_future(c.post("/v1/answer", json={"inputs": QA}))
            await asyncio.sleep(0.3)
            server.ingress.begin_drain()
            server.ingress.stop_remaining()
            return await held

    r = asyncio.run(run())
    assert r.status_code == 503
    assert r.json()["error"] == "the server stopped before answering (its drain timed out); retry on another instance"


# ----------------------------------------------------------------------------------------------
# Limits before work


def test_body_limit_is_413_before_parsing_and_bodies_must_be_utf8(live):
    server = live(max_body_bytes=400).ready()
    big = json.dumps({"inputs": {"question": "q", "context": "a" * 500}}).encode()
    want = {
        "status": 413,
        "error": "request body over 400 bytes (the server's max_body_bytes)",
        "field": "body",
        "limit": "max_body_bytes",
    }
    with server.client() as c:
        r = c.post("/v1/answer", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and {k: v for k, v in r.json().items() if k != "request_id"} == want
        # Without a Content-Length (chunked), once 400 bytes have come.
        r = c.post("/v1/answer", content=iter([big[:300], big[300:]]), headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["limit"] == "max_body_bytes"
        # Not UTF-8: Latin-1 bytes, and UTF-16 JSON (RFC 8259: JSON is UTF-8).
        latin = '{"inputs": {"question": "Où?", "context": "à Paris"}}'.encode("latin-1")
        r = c.post("/v1/answer", content=latin, headers={"content-type": "application/json"})
        assert r.status_code == 422
        assert r.json()["field"] == "body"
        assert r.json()["error"] == "body: not UTF-8 (byte 0xf9 at offset 26); send JSON encoded as UTF-8"
        r = c.post(
            "/v1/answer", content=json.dumps({"inputs": QA}).encode("utf-16"), headers={"content-type": "application/json"}
        )
        assert r.status_code == 422 and r.json()["field"] == "body"
        assert c.post("/v1/answer", json={"inputs": {"question": "Où?", "context": "à Paris"}}).status_code == 200
    assert server.backend.calls == 1  # none of the refused bodies reached the replica


def test_word_pieces_are_counted_off_the_event_loop(live):
    server = live().ready()
    threads = []
    original = server.planner.items

    def items(request):
        threads.append(threading.current_thread().name)
        return original(request)

    server.planner.items = items
    with server.client() as c:
        assert c.post("/v1/answer", json={"inputs": QA}).status_code == 200
    assert threads and threads[0].startswith("spanqa-plan")


def test_malformed_http_is_the_one_answer_not_ours(live):
    """uvicorn answers bytes that are not HTTP/1.1 before any application code runs: a plain-text
    400 (docs/serve.md says so). Everything that parses as HTTP gets the JSON error body."""
    server = live().ready()
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        reply = s.recv(4096).decode("latin-1")
    assert reply.startswith("HTTP/1.1 400 Bad Request")
    assert "content-type: text/plain" in reply.lower() and reply.endswith("Invalid HTTP request received.")


def test_every_status_has_a_json_body_that_validates(live):
    """One server made to answer every status the service has; the hook validates each body
    against the OpenAPI document (as it does every response of this module)."""
    server = live(api_key="k", request_timeout_s=0.3, max_context_chars=100)
    seen = {}
    with server.client(headers={"Authorization": "Bearer k"}) as c:
        seen[503] = c.post("/v1/answer", json={"inputs": QA})  # loading
        server.ready()
        seen[200] = c.post("/v1/answer", json={"inputs": QA, "parameters": {"handle_impossible_answer": True}})
        assert "null_odds" in seen[200].json()
        seen[401] = c.post("/v1/answer", json={"inputs": QA}, headers={"Authorization": "Bearer no"})
        seen[404] = c.get("/nowhere")
        seen[405] = c.delete("/v1/answer")
        seen[413] = c.post("/v1/answer", json={"inputs": {"question": "q", "context": "x" * 101}})
        seen[422] = c.post("/v1/answer", json={"inputs": {"question": ""}})
        server.backend.delay_s = 2.0
        seen[504] = c.post("/v1/answer", json={"inputs": QA})
        server.backend.delay_s = 0.0
        server.service.engine_for = None  # the model fails (TypeError)
        seen[500] = c.post("/v1/answer", json={"inputs": QA})
    assert {status: r.status_code for status, r in seen.items()} == {status: status for status in seen}
    assert all(r.json()["request_id"] == r.headers["x-request-id"] for s, r in seen.items() if s != 200)


def test_openapi_declares_every_response(openapi):
    answer = openapi["paths"]["/v1/answer"]["post"]["responses"]
    assert set(answer) == {"200", "401", "404", "405", "413", "422", "500", "503", "504"}
    one = answer["200"]["content"]["application/json"]["schema"]
    assert "null_odds" in openapi["components"]["schemas"]["AnswerOut"]["properties"], one
    for path in ("/readyz", "/healthz"):
        assert {"200", "503", "500"} <= set(openapi["paths"][path]["get"]["responses"])
    error = openapi["components"]["schemas"]["ErrorOut"]
    assert set(error["required"]) == {"status", "error", "request_id"}


def test_serve_backend_turns_serve_refusals_into_ours():
    """Serve's own refusal (its handle queue full) becomes the service's JSON 503."""
    pytest.importorskip("ray.serve")
    from ray.serve.exceptions import BackPressureError

    from spanqa.serve.backend import ServeBackend

    class Response:
        def __await__(self):
            raise BackPressureError(num_queued_requests=9, max_queued_requests=8)
            yield

        def cancel(self):
            pass

    class Handle:
        class answer:
            @staticmethod
            def remote(items):
                return Response()

    from spanqa.serve.problem import RequestError

    with pytest.raises(RequestError) as err:
        asyncio.run(ServeBackend(Handle(), 2.0).answer([]))
    assert err.value.status == 503 and err.value.limit == "max_queued" and err.value.headers()["Retry-After"] == "2"


def test_every_setting_has_a_flag_and_a_line_in_the_docs():
    from dataclasses import fields
    from pathlib import Path

    from spanqa.cli.serve import serve_cmd

    docs = (Path(__file__).resolve().parents[1] / "docs" / "serve.md").read_text()
    options = {p.name: p for p in serve_cmd.params}
    for f in fields(ServeSettings):
        assert f.name in options, f"ServeSettings.{f.name} has no spanqa serve flag"
        flag = options[f.name].opts[0]
        assert f"| `{flag}" in docs, f"{flag} has no line in docs/serve.md's settings table"
