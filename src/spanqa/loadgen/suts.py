"""The systems under test: the in-process ``Engine``, and any HTTP server that speaks Hugging
Face's question-answering schema at ``URL/v1/answer``.

Both answer a question sample with its answer text (UTF-8) and a window sample (``--features``,
engine only) with its logits, as LoadGen's response data: an accuracy run scores what LoadGen
logged. Neither completes a sample itself: they hand ``(response id, data)`` to ``complete``
(the harness's completer thread, see harness.py). A failure answers its samples with no data and
is counted; the run then reports it instead of a figure.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

from spanqa.loadgen.batcher import OnlineBatcher, Query
from spanqa.loadgen.samples import Samples, logits_bytes

Complete = Callable[[list[tuple[int, bytes]]], None]


class _Quiet:
    def update(self, k: int = 1) -> None:
        pass


class _Base:
    name = "sut"

    def __init__(self) -> None:
        self.complete: Complete = lambda pairs: None
        self.failures: Counter = Counter()
        self.errors: list[str] = []
        self._aborted = False
        self._lock = threading.Lock()

    def bind(self, complete: Complete) -> None:
        self.complete = complete

    def flush(self) -> None:
        pass

    def abort(self) -> None:
        self._aborted = True

    def fail(self, rids: list[int], why: str) -> None:
        with self._lock:
            self.failures[why] += len(rids)
            if len(self.errors) < 5:
                self.errors.append(why)
        self.complete([(rid, b"") for rid in rids])


class EngineSUT(_Base):
    """The engine in this process. Offline: every sample of LoadGen's one query through the
    engine's length-aware batching (a batch per stream in flight). Server and SingleStream:
    the online batcher (batcher.py); SingleStream answers each query as it comes (no wait)."""

    name = "engine"

    def __init__(
        self, engine, samples: Samples, scenario: str, *, token_budget: int, max_wait_s: float, deadline_s: float | None
    ):
        super().__init__()
        self.engine, self.samples, self.scenario = engine, samples, scenario
        self._offline: list[threading.Thread] = []
        self.batcher: OnlineBatcher | None = None
        if scenario != "offline":
            online = scenario == "server"
            self.batcher = OnlineBatcher(
                self._prepare,
                self._run,
                slots=max(1, int(getattr(engine.runtime, "parallel", 1) or 1)) if online else 1,
                token_budget=token_budget,
                max_wait_s=max_wait_s if online else 0.0,
                deadline_s=deadline_s if online else None,
                per_token_s=0.0,
            )

    # LoadGen's side ---------------------------------------------------------------------------

    def issue(self, samples: list[tuple[int, int]]) -> None:
        if self._aborted:
            self.complete([(rid, b"") for rid, _ in samples])
        elif self.batcher is None:
            # Offline: LoadGen's one query, answered on a thread of its own (the issue call returns).
            t = threading.Thread(target=self._offline_query, args=(samples,), name="spanqa-loadgen-offline", daemon=True)
            self._offline.append(t)
            t.start()
        else:
            now = time.monotonic()
            for rid, index in samples:
                self.batcher.put(Query(rid, index, now))

    def close(self) -> None:
        if self._aborted:  # interrupted: the process is leaving; the threads are daemons
            return
        if self.batcher is not None:
            self.batcher.close()
        for t in self._offline:
            t.join()

    # Answering --------------------------------------------------------------------------------

    def answers(self, indices: list[int], desc: str = "answer") -> list[bytes]:
        """Response data for the samples at ``indices`` through the engine's batching."""
        from spanqa.answers.extraction import predict_answers

        e = self.engine
        if self.samples.windows:
            rows = self.samples.rows(indices)
            start, end, _ = e.logits(rows, desc=desc, warmup=0, bar=_Quiet())
            lengths = rows.lengths.tolist()
            return [logits_bytes(start[i], end[i], n) for i, n in enumerate(lengths)]
        examples = [self.samples.examples[i] for i in indices]
        if len(examples) > e.settings.stream_questions:
            p = e.predict(examples, desc=desc)  # the engine's overlapped pipeline
            predictions = p.predictions
        else:
            f = e.features(examples)
            start, end, _ = e.logits(f, desc=desc, warmup=0, bar=_Quiet())
            predictions = predict_answers(f, start, end, e.settings.answers).predictions
        return [predictions[ex.qas_id].encode("utf-8") for ex in examples]

    def _offline_query(self, samples: list[tuple[int, int]]) -> None:
        try:
            data = self.answers([index for _, index in samples], desc="offline")
        except Exception as exc:  # noqa: BLE001 - reported after the run
            self.fail([rid for rid, _ in samples], f"{type(exc).__name__}: {exc}")
            return
        self.complete([(rid, d if not self._aborted else b"") for (rid, _), d in zip(samples, data)])

    def _prepare(self, q: Query) -> None:
        """A query's features (tokenising is inside the timed path) and its padded tokens."""
        multiple = max(1, int(self.engine.settings.batching.multiple))
        if self.samples.windows:
            length = int(self.samples.features.input_mask[q.index].sum())
            q.payload = q.index
        else:
            q.payload = f = self.engine.features([self.samples.examples[q.index]])
            length = f.lengths.tolist()
            q.cost = sum(-(-n // multiple) * multiple for n in length) or multiple
            return
        q.cost = -(-length // multiple) * multiple

    def _run(self, batch: list[Query]) -> None:
        rids = [q.rid for q in batch]
        if self._aborted:
            self.complete([(rid, b"") for rid in rids])
            return
        try:
            data = self._answer_batch(batch)
        except Exception as exc:  # noqa: BLE001 - reported after the run
            self.fail(rids, f"{type(exc).__name__}: {exc}")
            return
        self.complete(list(zip(rids, data)))

    def _answer_batch(self, batch: list[Query]) -> list[bytes]:
        from spanqa.answers.extraction import predict_answers
        from spanqa.data.features import Features

        e = self.engine
        if self.samples.windows:
            return self.answers([q.payload for q in batch], desc="server")
        f = Features.concat([q.payload for q in batch])
        start, end, _ = e.logits(f, desc="server", warmup=0, bar=_Quiet())
        predictions = predict_answers(f, start, end, e.settings.answers).predictions
        return [predictions[ex.qas_id].encode("utf-8") for ex in f.examples]


class HttpSUT(_Base):
    """A server speaking Hugging Face's QA schema: one question a POST to ``URL/v1/answer``,
    every request sent when LoadGen issues it (an asyncio client on its own thread; at most
    ``connections`` in flight, more wait in the client's pool). ``SPANQA_API_KEY`` is sent as a
    bearer token when set."""

    def __init__(self, url: str, samples: Samples, *, connections: int, timeout_s: float):
        import asyncio
        import os

        super().__init__()
        self.url, self.samples = url.rstrip("/"), samples
        self.name = self.url
        self.connections, self.timeout_s = connections, timeout_s
        key = os.environ.get("SPANQA_API_KEY")
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve_loop, name="spanqa-loadgen-http", daemon=True)
        self._thread.start()
        self._ready.wait()

    def _serve_loop(self) -> None:
        import asyncio

        import httpx

        asyncio.set_event_loop(self.loop)
        limits = httpx.Limits(max_connections=self.connections, max_keepalive_connections=self.connections)
        self.client = httpx.AsyncClient(base_url=self.url, headers=self.headers, limits=limits, timeout=self.timeout_s)
        self._ready.set()
        self.loop.run_forever()

    def close(self) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self.client.aclose(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()

    def issue(self, samples: list[tuple[int, int]]) -> None:
        if self._aborted:
            self.complete([(rid, b"") for rid, _ in samples])
            return
        self.loop.call_soon_threadsafe(self._start, samples)

    def _start(self, samples) -> None:
        for rid, index in samples:
            self.loop.create_task(self._one(rid, index))

    async def _one(self, rid: int, index: int) -> None:
        if self._aborted:
            self.complete([(rid, b"")])
            return
        try:
            text = await self.ask(index)
        except Exception as exc:  # noqa: BLE001 - counted; the run reports it
            self.fail([rid], _why(exc))
            return
        self.complete([(rid, text.encode("utf-8"))])

    async def ask(self, index: int) -> str:
        r = await self.client.post("/v1/answer", json={"inputs": self.samples.question(index)})
        if r.status_code != 200:
            raise _Status(r.status_code, r.text[:200])
        body = r.json()
        if isinstance(body, list):  # a server that always answers a list (top_k > 1 style)
            body = body[0]
        return str(body["answer"])

    def answer_now(self, indices: list[int], concurrency: int = 8) -> list[str]:
        """Answers to ``indices`` outside any test (warm-up), ``concurrency`` requests at a time:
        a burst would only measure the server's admission control."""
        import asyncio

        from spanqa.errors import UsageError

        async def all_of():
            gate = asyncio.Semaphore(concurrency)

            async def one(i):
                async with gate:
                    return await self.ask(i)

            return await asyncio.gather(*(one(i) for i in indices))

        try:
            return asyncio.run_coroutine_threadsafe(all_of(), self.loop).result()
        except _Status as exc:
            hint = "; set SPANQA_API_KEY to the server's key" if exc.status in (401, 403) else ""
            raise UsageError(f"--url {self.url}: the server answered {exc}{hint}") from None
        except Exception as exc:  # noqa: BLE001 - httpx's connection errors and a body that is not the schema
            raise UsageError(
                f"--url {self.url}: no answer from POST /v1/answer ({_why(exc)}: {str(exc)[:120]}); "
                "start the server, or check the URL and that it speaks Hugging Face's question-answering schema"
            ) from None


class _Status(Exception):
    def __init__(self, status: int, body: str):
        super().__init__(f"HTTP {status}: {body}")
        self.status = status


def _why(exc: Exception) -> str:
    if isinstance(exc, _Status):
        return f"HTTP {exc.status}"
    return type(exc).__name__
