"""``spanqa serve``: one real server (Ray Serve, the stand-in model) for the module, real HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray.serve")
pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}
LIMITS = {
    "max_context_chars": 6000,
    "max_windows": 16,
    "max_ongoing": 8,
    "max_queued": 8,
}
SRC = Path(__file__).resolve().parents[1] / "src"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    its default. Yields (base url, process, log path)."""
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = dict(
        os.environ,
        SPANQA_API_KEY=KEY,
        PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    )
    limits = [f"--{k.replace('_', '-')}={v}" for k, v in LIMITS.items()]
    cmd = [
        sys.executable,
        "-m",
        "spanqa",
        "serve",
        "--model",
        str(standin_package),
        "--port",
        str(port),
    ]
    cmd += [
        "--replicas",
        "1",
        "--threads-per-replica",
        "1",
        "--max-wait-ms",
        "10",
        *limits,
    ]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            pytest.fail(f"spanqa serve exited {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"spanqa serve not ready in 180 s:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)
    yield url, proc, log
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server[0], headers=AUTH, timeout=60) as c:
        yield c


def _post_all(url: str, bodies: list[dict], headers=AUTH, timeout: float = 60) -> list:
    """POST every body at once; the responses (or the exception) in order."""

    async def run():
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout) as c:
            return await asyncio.gather(*(c.post("/v1/answer", json=b) for b in bodies), return_exceptions=True)

    return asyncio.run(run())


def _same(got: dict, want: dict) -> None:
    assert (got["answer"], got["start"], got["end"]) == (
        want["answer"],
        want["start"],
        want["end"],
    )
    assert got["score"] == pytest.approx(want["score"], rel=1e-3, abs=1e-5)


# ----------------------------------------------------------------------------------------------
# Answers


def test_answers_equal_the_engines(client, engine, questions):
    for q in questions:
        r = client.post("/v1/answer", json={"inputs": q})
        assert r.status_code == 200, r.text
        got = r.json()
        want = engine.answer(q["question"], q["context"]).to_json()
        _same(got, want)
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
    params = {
        "max_seq_len": 128,
        "doc_stride": 64,
        "max_question_len": 32,
        "max_answer_len": 10,
    }
    r = client.post("/v1/answer", json={"inputs": [q], "parameters": params})
    settings = replace(
        engine.settings,
        features=FeatureSettings(128, 64, 32, engine.settings.features.do_lower_case),
    )
    settings = replace(settings, answers=replace(settings.answers, max_answer_length=10))
    small = Engine(engine.package, threads=1, settings=settings, runtime=engine.runtime)
    assert r.status_code == 200
    _same(r.json()[0], small.answer(q["question"], q["context"]).to_json())
    # handle_impossible_answer maps to the engine's null answer (SQuAD 2.0), with its null odds.
    r = client.post("/v1/answer", json={"inputs": q, "parameters": {"handle_impossible_answer": True}})
    want = engine.answer(q["question"], q["context"], handle_impossible_answer=True).to_json()
    assert r.status_code == 200 and "null_odds" in r.json()
    _same(r.json(), want)


# ----------------------------------------------------------------------------------------------
# Bad input and limits

QA = {"question": "Who?", "context": "Alice met Bob."}
BAD = [
    (
        {"inputs": {"question": "", "context": "x"}},
        "inputs.question",
        "inputs.question: must not be empty",
    ),
    (
        {"inputs": {"question": "Who?", "context": "   "}},
        "inputs.context",
        "inputs.context: must not be empty",
    ),
    (
        {"inputs": {"question": "Who?"}},
        "inputs.context",
        "inputs.context: Field required",
    ),
    ({"parameters": {}}, "inputs", "inputs: Field required"),
    (
        {"inputs": {"question": 7, "context": "x"}},
        "inputs.question",
        "inputs.question: Input should be a valid string",
    ),
    (
        {"inputs": [QA, {"question": "q", "context": ["x"]}]},
        "inputs.1.context",
        "inputs.1.context: Input should be a valid string",
    ),
    ({"inputs": []}, "inputs", "inputs: must hold at least one question"),
    (
        {"inputs": "Who?"},
        "inputs",
        "inputs: Input should be a valid dictionary or object to extract fields from",
    ),
    (
        {"inputs": QA, "parameters": {"top_k": "2"}},
        "parameters.top_k",
        "parameters.top_k: Input should be a valid integer",
    ),
    (
        {"inputs": QA, "parameters": {"top_k": 0}},
        "parameters.top_k",
        "parameters.top_k: Input should be greater than or equal to 1",
    ),
    (
        {"inputs": QA, "parameters": {"top_k": 50}},
        "parameters.top_k",
        "top_k 50: at most 20 (the server's max_top_k)",
    ),
    (
        {"inputs": QA, "parameters": {"topk": 2}},
        "parameters.topk",
        "parameters.topk: Extra inputs are not permitted",
    ),
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
    assert r.headers["content-type"] == "application/json"
    assert r.json()["field"] == field
    assert r.json()["error"] == message


def test_malformed_json_and_wrong_body_are_422(client):
    r = client.post(
        "/v1/answer",
        content=b'{"inputs": ',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422 and r.json()["field"] == "body"
    assert r.json()["error"].startswith("body: not valid JSON")
    r = client.post("/v1/answer", json=[1, 2])
    assert r.status_code == 422 and r.json()["field"] == "body"


def test_oversized_contexts_are_413_naming_the_limit(client):
    r = client.post("/v1/answer", json={"inputs": {"question": "q", "context": "word " * 1300}})
    assert r.status_code == 413
    assert r.json() == {
        "status": 413,
        "error": "context of 6500 characters; the limit is 6000",
        "field": "inputs.context",
        "limit": "max_context_chars",
    }
    # 2,300 one-piece words: 15 windows at 512 tokens, 17 at 256 (a stride of 128).
    r = client.post(
        "/v1/answer",
        json={
            "inputs": [QA, {"question": "q", "context": "a " * 2300}],
            "parameters": {"max_seq_len": 256},
        },
    )
    assert r.status_code == 413
    assert r.json() == {
        "status": 413,
        "error": "context needs 17 windows of 256 tokens; the limit is 16",
        "field": "inputs.1.context",
        "limit": "max_windows",
    }
    assert client.post("/v1/answer", json={"inputs": {"question": "q", "context": "a " * 2300}}).status_code == 200


# ----------------------------------------------------------------------------------------------
# Auth, bind, health, metrics, docs


def test_auth_and_open_health_endpoints(server):
    url = server[0]
    for path in ("/healthz", "/readyz"):
        assert httpx.get(url + path).status_code == 200
    for method, path in (
        ("POST", "/v1/answer"),
        ("GET", "/metrics"),
        ("GET", "/docs"),
        ("GET", "/openapi.json"),
    ):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
            r = httpx.request(method, url + path, json={"inputs": QA}, headers=headers)
            assert r.status_code == 401, (path, headers)
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.json()["error"] == "missing or wrong bearer token: send 'Authorization: Bearer <SPANQA_API_KEY>'"
    assert httpx.post(url + "/v1/answer", json={"inputs": QA}, headers=AUTH).status_code == 200


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


def test_readyz_docs_and_metrics(client):
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["threads"] == 1 and ready["pid"] > 0
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
    ):
        assert name in page.text, name


def test_request_timeout_is_504(engine):
    """In-process (no Ray): a request the batcher does not answer in time gets a JSON 504."""
    from spanqa.serve.app import build_app
    from spanqa.serve.service import Service
    from spanqa.settings import ServeSettings

    async def never(item):
        await asyncio.sleep(30)

    service = Service(engine, ServeSettings(request_timeout_s=0.2))
    app = build_app(service, never)

    async def run():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            return await c.post("/v1/answer", json={"inputs": QA})

    r = asyncio.run(run())
    assert r.status_code == 504
    assert r.json()["error"] == "no answer within 0.2 s (the server's request_timeout_s); retry later"
    assert _sample(service.metrics.exposition()[0].decode(), "spanqa_queue_length") == 0


# ----------------------------------------------------------------------------------------------
# Overload and failures


def test_overload_is_503_with_retry_after_then_recovers(server, client, questions):
    # 64 at once: the replica holds max_ongoing, Serve queues max_queued, the rest are shed.
    bodies = [{"inputs": questions[len(questions) // 2]} for _ in range(64)]
    responses = _post_all(server[0], bodies)
    statuses = [getattr(r, "status_code", repr(r)) for r in responses]
    assert set(statuses) <= {200, 503}, statuses
    shed = [r for r in responses if r.status_code == 503]
    assert shed and statuses.count(200) >= LIMITS["max_ongoing"]
    assert all(r.headers["retry-after"] == "1" for r in shed)
    assert client.post("/v1/answer", json={"inputs": QA}).status_code == 200


def test_killed_replica_is_replaced(server, client, questions):
    url = server[0]
    pid = client.get("/readyz").json()["pid"]

    async def run():
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=90) as c:
            calls = [asyncio.ensure_future(c.post("/v1/answer", json={"inputs": [questions[-1]] * 4})) for _ in range(4)]
            await asyncio.sleep(0.3)
            os.kill(pid, signal.SIGKILL)
            return await asyncio.gather(*calls, return_exceptions=True)

    held = asyncio.run(run())
    # What the dead replica held fails fast with a 5xx (or was answered before it died); none hang.
    assert all(getattr(r, "status_code", 0) == 200 or 500 <= getattr(r, "status_code", 0) < 600 for r in held), held
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url + "/readyz", timeout=5)
            if r.status_code == 200 and r.json()["pid"] != pid:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    else:
        pytest.fail("no new replica within 90 s")
    r = client.post("/v1/answer", json={"inputs": QA})
    assert r.status_code == 200 and r.json()["answer"]


def test_sigterm_drains_then_exits_0(server, questions):
    """Last: it stops the module's server."""
    url, proc, log = server

    async def run():
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=60) as c:
            calls = [asyncio.ensure_future(c.post("/v1/answer", json={"inputs": [q] * 2})) for q in questions[-6:]]
            await asyncio.sleep(0.2)
            proc.send_signal(signal.SIGTERM)
            return await asyncio.gather(*calls, return_exceptions=True)

    done = asyncio.run(run())
    assert [getattr(r, "status_code", r) for r in done] == [200] * 6
    assert proc.wait(60) == 0, log.read_text()[-3000:]


def _sample(page: str, name: str) -> float:
    for line in page.splitlines():
        if line.split(" ")[0] == name:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")
