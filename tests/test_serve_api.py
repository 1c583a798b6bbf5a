"""``spanqa serve``: one real server (Ray Serve behind spanqa's ingress, the stand-in model) for the
module, real HTTP on 127.0.0.1. Every response is checked against the server's own OpenAPI
document. Overload and faults: tests/test_serve_faults.py; the ingress alone:
tests/test_serve_ingress.py."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray.serve")
pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
jsonschema = pytest.importorskip("jsonschema")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import serve_load  # noqa: E402

KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}
LIMITS = {
    "max_context_chars": 6000,
    "max_windows": 16,
    "max_ongoing": 8,
    "max_queued": 8,
    "max_queued_tokens": 16384,
}
SRC = Path(__file__).resolve().parents[1] / "src"
SPEC: dict = {}


@pytest.fixture(scope="module")
def questions(heldout_json) -> list[dict]:
    """24 held-out questions, contexts of every length from the shortest to the longest."""
    data = json.loads(Path(heldout_json).read_text())["data"]
    qs = [
        {"question": qa["question"], "context": p["context"]}
        for article in data
        for p in article["paragraphs"]
        for qa in p["qas"][:1]
    ]
    qs.sort(key=lambda q: len(q["context"]))
    qs = [q for q in qs if len(q["context"]) <= LIMITS["max_context_chars"]]
    step = max(1, len(qs) // 23)
    return (qs[::step] + [qs[-1]])[:24]


@pytest.fixture(scope="module")
def engine(standin_package):
    from spanqa.engine import Engine

    with Engine.load(standin_package, threads=1) as e:
        yield e


@pytest.fixture(scope="module")
def server(standin_package, tmp_path_factory):
    """`spanqa serve` in a subprocess on a free loopback port, SPANQA_API_KEY set; host left to
    its default. Yields (base url, process, stdout path (the access log), stderr path, the
    readiness polls from the start)."""
    logs = tmp_path_factory.mktemp("serve")
    env = dict(os.environ, SPANQA_API_KEY=KEY, PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    limits = [f"--{k.replace('_', '-')}={v}" for k, v in LIMITS.items()]
    extra = ["--replicas", "1", "--threads-per-replica", "1", "--max-wait-ms", "10", *limits]
    with open(logs / "out.log", "w") as out, open(logs / "err.log", "w") as err:
        url, proc = serve_load.launch(str(standin_package), extra, env, stdout=out, stderr=err)
    try:
        trace = serve_load.wait_ready(url, proc, "/readyz", timeout=240, every=0.2)
    except SystemExit as exc:
        pytest.fail(f"{exc}:\n{(logs / 'err.log').read_text()[-4000:]}")
    SPEC.update(httpx.get(url + "/openapi.json", headers=AUTH).json())
    yield url, proc, logs / "out.log", logs / "err.log", trace
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def _check(response: httpx.Response) -> None:
    """Every response of this module: JSON that validates against the OpenAPI document."""
    response.read()
    _validate(response)


async def _acheck(response: httpx.Response) -> None:
    await response.aread()
    _validate(response)


def _validate(response: httpx.Response) -> None:
    path, method, status = response.request.url.path, response.request.method.lower(), response.status_code
    assert response.headers.get("x-request-id"), (path, status)
    if path in ("/metrics", "/docs", "/openapi.json") and status == 200:
        return  # Prometheus text, the HTML page, the document itself
    assert response.headers["content-type"] == "application/json", (path, status, response.text[:200])
    ops = SPEC["paths"].get(path) or SPEC["paths"]["/v1/answer"]
    declared = (ops.get(method) or next(iter(ops.values())))["responses"]
    assert str(status) in declared, f"{method.upper()} {path} answered {status}: not in its OpenAPI"
    schema = declared[str(status)]["content"]["application/json"]["schema"]
    jsonschema.validate(response.json(), {**schema, "components": SPEC["components"]}, cls=jsonschema.Draft202012Validator)


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server[0], headers=AUTH, timeout=120, event_hooks={"response": [_check]}) as c:
        yield c


def _post_all(url: str, bodies: list[dict], headers=AUTH, timeout: float = 120) -> list:
    """POST every body at once; the responses (or the exception) in order."""

    async def run():
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout, event_hooks={"response": [_acheck]}) as c:
            return await asyncio.gather(*(c.post("/v1/answer", json=b) for b in bodies), return_exceptions=True)

    return asyncio.run(run())


def _same(got: dict, want: dict) -> None:
    assert (got["answer"], got["start"], got["end"]) == (want["answer"], want["start"], want["end"])
    assert got["score"] == pytest.approx(want["score"], rel=1e-3, abs=1e-5)


def _sample(page: str, name: str) -> float:
    for line in page.splitlines():
        if line.split(" ")[0] == name:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# ----------------------------------------------------------------------------------------------
# Readiness from the start


def test_readyz_is_503_json_while_loading_then_200(server):
    trace = server[4]
    loading = [body for _, status, body in trace if status == 503]
    assert loading, trace  # the ingress listens before the replica has loaded the model
    for body in loading:
        got = json.loads(body)
        assert got["status"] == 503 and got["error"] == "not ready: the model is loading" and got["request_id"]
    assert trace[-1][1] == 200 and json.loads(trace[-1][2]) == {"status": "ready", "replicas": 1}
    statuses = [status for _, status, _ in trace]
    assert statuses.index(200) > statuses.index(503)


# ----------------------------------------------------------------------------------------------
# Answers


def test_answers_equal_the_engines(client, engine, questions):
    for q in questions:
        r = client.post("/v1/answer", json={"inputs": q})
        assert r.status_code == 200, r.text
        got = r.json()
        _same(got, engine.answer(q["question"], q["context"]).to_json())
        assert q["context"][got["start"] : got["end"]] == got["answer"]


def test_concurrent_mixed_lengths_get_the_same_answers(server, client, questions):
    mixed = questions[::3]  # 8 contexts from the shortest to the longest
    alone = [client.post("/v1/answer", json={"inputs": q}).json() for q in mixed]
    before = _sample(client.get("/metrics").text, "spanqa_batch_questions_count")
    together = _post_all(server[0], [{"inputs": q} for q in mixed])
    for r, want in zip(together, alone):
        assert r.status_code == 200, r.text
        _same(r.json(), want)
    # They did share batches (else this test proves nothing).
    assert _sample(client.get("/metrics").text, "spanqa_batch_questions_count") - before < len(mixed)
    listed = client.post("/v1/answer", json={"inputs": mixed})
    assert listed.status_code == 200
    for got, want in zip(listed.json(), alone):
        _same(got, want)


def test_top_k_and_per_request_settings(client, engine, questions):
    from dataclasses import replace

    from spanqa.engine import Engine
    from spanqa.settings import FeatureSettings

    q = questions[-1]  # the longest context: several windows at 128 tokens
    r = client.post("/v1/answer", json={"inputs": q, "parameters": {"top_k": 3}})
    got = r.json()
    assert r.status_code == 200 and isinstance(got, list) and len(got) == 3
    for g, w in zip(got, engine.answer(q["question"], q["context"], top_k=3)):
        _same(g, w.to_json())
    params = {"max_seq_len": 128, "doc_stride": 64, "max_question_len": 32, "max_answer_len": 10}
    r = client.post("/v1/answer", json={"inputs": [q], "parameters": params})
    settings = replace(engine.settings, features=FeatureSettings(128, 64, 32, engine.settings.features.do_lower_case))
    settings = replace(settings, answers=replace(settings.answers, max_answer_length=10))
    small = Engine(engine.package, threads=1, settings=settings, runtime=engine.runtime)
    assert r.status_code == 200
    _same(r.json()[0], small.answer(q["question"], q["context"]).to_json())
    # handle_impossible_answer maps to the engine's null answer (SQuAD 2.0), with its null odds.
    r = client.post("/v1/answer", json={"inputs": q, "parameters": {"handle_impossible_answer": True}})
    want = engine.answer(q["question"], q["context"], handle_impossible_answer=True).to_json()
    assert r.status_code == 200 and r.json()["null_odds"] == pytest.approx(want["null_odds"], abs=1e-4)
    _same(r.json(), want)


# ----------------------------------------------------------------------------------------------
# Bad input and limits

QA = {"question": "Who?", "context": "Alice met Bob."}
BAD = [
    ({"inputs": {"question": "", "context": "x"}}, "inputs.question", "inputs.question: must not be empty"),
    ({"inputs": {"question": "Who?", "context": "   "}}, "inputs.context", "inputs.context: must not be empty"),
    ({"inputs": {"question": "Who?"}}, "inputs.context", "inputs.context: Field required"),
    ({"parameters": {}}, "inputs", "inputs: Field required"),
    ({"inputs": {"question": 7, "context": "x"}}, "inputs.question", "inputs.question: Input should be a valid string"),
    (
        {"inputs": [QA, {"question": "q", "context": ["x"]}]},
        "inputs.1.context",
        "inputs.1.context: Input should be a valid string",
    ),
    ({"inputs": []}, "inputs", "inputs: must hold at least one question"),
    ({"inputs": "Who?"}, "inputs", "inputs: Input should be a valid dictionary or object to extract fields from"),
    ({"inputs": QA, "parameters": {"top_k": "2"}}, "parameters.top_k", "parameters.top_k: Input should be a valid integer"),
    (
        {"inputs": QA, "parameters": {"top_k": 0}},
        "parameters.top_k",
        "parameters.top_k: Input should be greater than or equal to 1",
    ),
    ({"inputs": QA, "parameters": {"top_k": 50}}, "parameters.top_k", "top_k 50: at most 20 (the server's max_top_k)"),
    ({"inputs": QA, "parameters": {"topk": 2}}, "parameters.topk", "parameters.topk: Extra inputs are not permitted"),
    (
        {"inputs": QA, "parameters": {"max_seq_len": 1024}},
        "parameters.max_seq_len",
        "max_seq_len 1024: this model takes at most 512 tokens",
    ),
    (
        {"inputs": QA, "parameters": {"doc_stride": 0}},
        "parameters.doc_stride",
        "parameters.doc_stride: Input should be greater than or equal to 1",
    ),
    (
        {"inputs": QA, "parameters": {"handle_impossible_answer": "yes"}},
        "parameters.handle_impossible_answer",
        "parameters.handle_impossible_answer: Input should be a valid boolean",
    ),
]


@pytest.mark.parametrize("body,field,message", BAD, ids=[b[1] + "-" + str(i) for i, b in enumerate(BAD)])
def test_bad_input_is_422_naming_the_field(client, body, field, message):
    r = client.post("/v1/answer", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field
    assert r.json()["error"] == message


def test_malformed_json_wrong_body_and_not_utf8_are_422(client):
    r = client.post("/v1/answer", content=b'{"inputs": ', headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["field"] == "body"
    assert r.json()["error"].startswith("body: not valid JSON")
    r = client.post("/v1/answer", json=[1, 2])
    assert r.status_code == 422 and r.json()["field"] == "body"
    # issue 19: a body that is not UTF-8 was a 400 without a field.
    r = client.post(
        "/v1/answer", content=b'{"inputs": {"question": "\xff", "context": "x"}}', headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["field"] == "body"
    assert r.json()["error"] == "body: not UTF-8 (byte 0xff at offset 25); send JSON encoded as UTF-8"


def test_oversized_requests_are_413_naming_the_limit(client):
    r = client.post("/v1/answer", json={"inputs": {"question": "q", "context": "word " * 1300}})
    assert r.status_code == 413
    assert {k: v for k, v in r.json().items() if k != "request_id"} == {
        "status": 413,
        "error": "context of 6500 characters; the limit is 6000",
        "field": "inputs.context",
        "limit": "max_context_chars",
    }
    # 2,300 one-piece words: 15 windows at 512 tokens, 17 at 256 (a stride of 128).
    r = client.post(
        "/v1/answer", json={"inputs": [QA, {"question": "q", "context": "a " * 2300}], "parameters": {"max_seq_len": 256}}
    )
    assert r.status_code == 413
    assert r.json()["error"] == "context needs 17 windows of 256 tokens; the limit is 16"
    assert (r.json()["field"], r.json()["limit"]) == ("inputs.1.context", "max_windows")
    r = client.post("/v1/answer", json={"inputs": [{"question": "q", "context": "a " * 2300}] * 3})
    assert r.status_code == 413 and r.json()["limit"] == "max_queued_tokens"
    r = client.post("/v1/answer", content=b"{" + b" " * 5_000_000 + b"}", headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["limit"] == "max_body_bytes"
    assert client.post("/v1/answer", json={"inputs": {"question": "q", "context": "a " * 2300}}).status_code == 200


# ----------------------------------------------------------------------------------------------
# Request ids, the access log, work dropped when its client leaves


def test_request_id_round_trips_into_the_access_log(server, client):
    r = client.post("/v1/answer", json={"inputs": QA}, headers={"X-Request-Id": "trace-abc.1"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "trace-abc.1"
    bad = client.post("/v1/answer", json={"inputs": {}}, headers={"X-Request-Id": "trace-abc.2"})
    assert bad.json()["request_id"] == "trace-abc.2" == bad.headers["x-request-id"]
    made = client.get("/readyz").headers["x-request-id"]
    assert len(made) == 32
    time.sleep(0.3)
    lines = {line["request_id"]: line for line in map(json.loads, server[2].read_text().splitlines())}
    ok = lines["trace-abc.1"]
    assert (ok["method"], ok["path"], ok["status"], ok["questions"]) == ("POST", "/v1/answer", 200, 1)
    assert ok["padded_tokens"] % 8 == 0 and ok["padded_tokens"] >= 8
    assert ok["model_ms"] > 0 and ok["queue_ms"] >= 0 and ok["ms"] >= ok["model_ms"]
    assert lines["trace-abc.2"]["status"] == 422 and lines[made]["path"] == "/readyz"


def test_a_client_that_leaves_is_dropped_before_the_model(server, client, questions):
    """Serve's batch queue drops a question whose caller was cancelled: a request whose client
    left while it waited behind a long one never reaches the model."""
    url = server[0]
    page = client.get("/metrics").text
    run_before = _sample(page, "spanqa_questions_total")
    left_before = _sample(page, 'spanqa_cancelled_requests_total{reason="disconnect"}')
    q = questions[-1]
    doubled = {"question": q["question"], "context": q["context"] + " " + q["context"]}
    long = [{"inputs": [doubled] * 2}, {"inputs": [doubled] * 2}]  # ~28 windows of 512 tokens, queued first

    async def run():
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=120) as c:
            held = [asyncio.ensure_future(c.post("/v1/answer", json=b)) for b in long]
            await asyncio.sleep(0.2)
            try:
                await c.post("/v1/answer", json={"inputs": QA}, headers={"X-Request-Id": "leaves-1"}, timeout=0.15)
            except httpx.ReadTimeout:
                pass
            return await asyncio.gather(*held)

    assert [r.status_code for r in asyncio.run(run())] == [200] * 2
    page = client.get("/metrics").text
    assert _sample(page, 'spanqa_cancelled_requests_total{reason="disconnect"}') == left_before + 1
    assert _sample(page, "spanqa_questions_total") == run_before + 4  # the long ones only
    time.sleep(0.3)
    lines = [json.loads(line) for line in server[2].read_text().splitlines()]
    assert [line["status"] for line in lines if line["request_id"] == "leaves-1"] == [499]


# ----------------------------------------------------------------------------------------------
# Auth, bind, health, metrics, docs


def test_auth_and_open_health_endpoints(server):
    url = server[0]
    with httpx.Client(base_url=url, event_hooks={"response": [_check]}) as c:
        for path in ("/healthz", "/readyz"):
            assert c.get(path).status_code == 200
        for method, path in (("POST", "/v1/answer"), ("GET", "/metrics"), ("GET", "/docs"), ("GET", "/openapi.json")):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
                r = c.request(method, path, json={"inputs": QA}, headers=headers)
                assert r.status_code == 401, (path, headers)
                assert r.headers["www-authenticate"] == "Bearer"
                assert r.json()["error"] == "missing or wrong bearer token: send 'Authorization: Bearer <SPANQA_API_KEY>'"
        assert c.post("/v1/answer", json={"inputs": QA}, headers=AUTH).status_code == 200


def test_readyz_shows_pid_and_path_only_to_the_key_holder(server, client):
    anyone = httpx.get(server[0] + "/readyz").json()
    assert anyone == {"status": "ready", "replicas": 1}
    details = client.get("/readyz").json()["replica"]
    assert details["pid"] > 0 and details["pid"] != server[1].pid
    assert details["model"].endswith(Path(details["model"]).name) and details["threads"] == 1


def test_binds_loopback_by_default(server):
    from spanqa.settings import ServeSettings, default

    assert default(ServeSettings, "host") == "127.0.0.1"
    port = int(server[0].rsplit(":", 1)[1])
    listening = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:] + Path("/proc/net/tcp6").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, p = local.split(":")
        if state == "0A" and int(p, 16) == port:
            listening.add(addr)
    assert listening == {"0100007F"}  # 127.0.0.1 only: not 0.0.0.0, not ::


def test_docs_metrics_and_unknown_paths(client):
    assert client.get("/docs").status_code == 200
    assert "/v1/answer" in client.get("/openapi.json").json()["paths"]
    page = client.get("/metrics")
    assert page.headers["content-type"].startswith("text/plain")
    for name in (
        'spanqa_requests_total{path="/v1/answer",status="200"}',
        "spanqa_batch_questions_bucket",
        "spanqa_batch_tokens_bucket",
        "spanqa_request_seconds_bucket",
        "spanqa_queue_length",
        "spanqa_queued_tokens",
        "spanqa_ready_replicas 1.0",
    ):
        assert name in page.text, name
    r = client.get("/v2/answer")
    assert r.status_code == 404 and r.json()["error"] == "Not Found"
    r = client.put("/v1/answer")
    assert r.status_code == 405 and r.json()["error"] == "Method Not Allowed"
