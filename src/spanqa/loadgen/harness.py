"""The LoadGen side: its test settings, one test from start to logs, and what the logs say.

How samples are completed (the one pattern, every scenario, every SUT): a SUT never calls
``QuerySamplesComplete`` itself. It hands ``(response id, bytes)`` pairs to ``complete``, and one
completer thread, started before ``StartTest`` and joined after it returns, makes every call.
Why: LoadGen keeps a per-thread log buffer for each thread that completes samples, and its
logging thread reads those buffers until the test ends; a thread that completed samples and
then exited while the test ran left a dangling buffer, and LoadGen 6.0.17 crashed
(``TlsLogger::SwapBuffers`` in LoadGen's IO thread: a segfault after a few thousand Offline
samples completed from a short-lived thread, also with a SUT that only slept). Completing
inside the issue callback did not crash only because that thread outlives the test.
tests/test_loadgen_pattern.py keeps the crash and the pattern side by side.

The issue callback copies each sample's id and index into Python ints before it returns, so
nothing holds LoadGen's query objects beyond the call.
"""

from __future__ import annotations

import array
import json
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from spanqa.errors import missing_backend

SCENARIOS = {"offline": "Offline", "server": "Server", "singlestream": "SingleStream"}
TOO_SHORT = "shorter than --duration (Offline: raise --target-qps, the expected rate)"
LOG_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt", "mlperf_log_accuracy.json")


def loadgen():
    try:
        import mlperf_loadgen
    except ImportError:
        raise missing_backend("mlcommons-loadgen", "loadgen") from None
    return mlperf_loadgen


class SUT(Protocol):
    """What the harness needs of a system under test."""

    def bind(self, complete: Callable[[list[tuple[int, bytes]]], None]) -> None:
        """Where to hand finished samples: ``complete([(response id, data), ...])``."""

    def issue(self, samples: list[tuple[int, int]]) -> None:
        """Start answering ``[(response id, sample index), ...]``; return at once."""

    def flush(self) -> None: ...

    def abort(self) -> None:
        """Answer everything pending and everything issued from now on with no data, at once."""


@dataclass(frozen=True)
class TestSpec:
    """One LoadGen test: what spanqa asks LoadGen for (``settings`` builds LoadGen's own)."""

    scenario: str  # offline | server | singlestream
    accuracy: bool = False
    target_qps: float | None = None  # Server: arrival rate; Offline: expected rate
    latency_ms: float = 130.0  # Server bound
    latency_percentile: float = 0.99
    expected_latency_ms: float | None = None  # SingleStream: sizes LoadGen's sample set
    duration_s: float = 30.0
    min_queries: int = 512

    def settings(self):
        lg = loadgen()
        ts = lg.TestSettings()
        ts.scenario = getattr(lg.TestScenario, SCENARIOS[self.scenario])
        ts.mode = lg.TestMode.AccuracyOnly if self.accuracy else lg.TestMode.PerformanceOnly
        ts.min_duration_ms = max(1, int(self.duration_s * 1000))
        ts.min_query_count = self.min_queries
        if self.scenario == "server":
            ts.server_target_qps = float(self.target_qps)
            ts.server_target_latency_ns = max(1, int(self.latency_ms * 1e6))
            ts.server_target_latency_percentile = self.latency_percentile
        elif self.scenario == "offline":
            ts.offline_expected_qps = float(self.target_qps or 1.0)
        else:
            ts.single_stream_expected_latency_ns = max(1, int((self.expected_latency_ms or 10.0) * 1e6))
        return ts


@dataclass
class TestLog:
    """What one test's logs say (from mlperf_log_detail.txt's MLLOG lines and the summary)."""

    values: dict[str, Any]
    summary: str
    reasons: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool | None:
        v = self.values.get("result_validity")
        return None if v is None else v == "VALID"

    def latency_ms(self, percentile: str) -> float | None:
        v = self.values.get(f"result_{percentile}_percentile_latency_ns")
        return None if v is None else v / 1e6

    @property
    def samples_per_s(self) -> float | None:
        for key in ("result_samples_per_second", "result_completed_samples_per_sec", "result_qps_without_loadgen_overhead"):
            if key in self.values:
                return float(self.values[key])
        return None


def parse_logs(log_dir: Path) -> TestLog:
    """The result keys of LoadGen's detail log, and why a run is INVALID in words."""
    values: dict[str, Any] = {}
    detail = log_dir / "mlperf_log_detail.txt"
    for line in detail.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.startswith(":::MLLOG "):
            continue
        try:
            entry = json.loads(line[len(":::MLLOG ") :])
        except ValueError:
            continue
        values[entry.get("key")] = entry.get("value")
    summary = (log_dir / "mlperf_log_summary.txt").read_text(encoding="utf-8", errors="replace")
    reasons = []
    for key, words in (
        ("result_perf_constraints_met", "latency over the bound"),
        ("result_min_duration_met", TOO_SHORT),
        ("result_min_queries_met", "fewer queries than --min-queries"),
    ):
        if values.get(key) is False:
            reasons.append(words)
    if "Early stopping satisfied: NO" in summary:
        reasons.append("too few queries for early stopping (raise --duration or --min-queries)")
    if values.get("result_validity") == "INVALID" and not reasons:
        reasons.append(str(values.get("result_invalid_reason") or "see mlperf_log_summary.txt").strip())
    return TestLog(values, summary, reasons)


def complete_now(pairs: list[tuple[int, bytes]]) -> None:
    """``QuerySamplesComplete`` for ``pairs``; LoadGen copies the data during the call."""
    lg = loadgen()
    buffers = []
    responses = []
    for rid, data in pairs:
        if data:
            buf = array.array("B", data)
            buffers.append(buf)  # alive until LoadGen has copied it
            ptr, n = buf.buffer_info()
            responses.append(lg.QuerySampleResponse(rid, ptr, n))
        else:
            responses.append(lg.QuerySampleResponse(rid, 0, 0))
    lg.QuerySamplesComplete(responses)


def run_test(
    sut: SUT, sample_count: int, spec: TestSpec, log_dir: Path, on_complete: Callable[[int], None] | None = None
) -> TestLog:
    """One LoadGen test of ``sut`` over ``sample_count`` samples; logs into ``log_dir``.

    LoadGen runs on a helper thread so that Ctrl-C and SIGTERM reach this (main) thread: the
    SUT then answers everything with no data and the interrupt goes on up. LoadGen cannot be
    stopped mid-test (Server and SingleStream keep its schedule) and its threads crash a normal
    interpreter exit, so the CLI leaves with ``os._exit`` after an interrupt."""
    lg = loadgen()
    log_dir.mkdir(parents=True, exist_ok=True)
    done: queue.SimpleQueue = queue.SimpleQueue()
    errors: list[BaseException] = []

    def completer() -> None:
        while (pairs := done.get()) is not None:
            try:
                complete_now(pairs)
                if on_complete is not None:
                    on_complete(len(pairs))
            except BaseException as exc:  # noqa: BLE001 - reported after the test
                errors.append(exc)

    def issue(query_samples) -> None:
        samples = [(int(s.id), int(s.index)) for s in query_samples]
        try:
            sut.issue(samples)
        except BaseException as exc:  # noqa: BLE001 - an exception must not cross into LoadGen's thread
            errors.append(exc)
            done.put([(rid, b"") for rid, _ in samples])

    def flush() -> None:
        try:
            sut.flush()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def noop(_indices) -> None:  # every sample is in memory already (samples.py)
        pass

    sut.bind(done.put)
    thread = threading.Thread(target=completer, name="spanqa-loadgen-complete", daemon=True)
    thread.start()
    sut_handle = lg.ConstructSUT(issue, flush)
    qsl_handle = lg.ConstructQSL(sample_count, sample_count, noop, noop)
    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = str(log_dir)
    log_settings.log_output.copy_summary_to_stdout = False
    log_settings.enable_trace = False
    test_settings = spec.settings()
    # Whether StartTest has returned: an Event, since Thread.is_alive() can read False for a
    # thread still running once a KeyboardInterrupt has broken into Thread.join.
    finished = threading.Event()

    def start() -> None:
        try:
            lg.StartTestWithLogSettings(sut_handle, qsl_handle, test_settings, log_settings)
        finally:
            finished.set()

    runner = threading.Thread(target=start, name="spanqa-loadgen", daemon=True)
    try:
        runner.start()
        try:
            while not finished.wait(0.2):
                pass
        except BaseException:
            sut.abort()  # Offline ends at once; Server and SingleStream keep LoadGen's schedule
            finished.wait(2)
            raise
    finally:
        # After an interrupt LoadGen may still run its schedule: the completer then stays (its
        # exit while the test runs is the crash this module avoids) and answers what is issued.
        if finished.is_set():
            done.put(None)
            thread.join()
            lg.DestroyQSL(qsl_handle)
            lg.DestroySUT(sut_handle)
    if errors:
        raise errors[0]
    return parse_logs(log_dir)


def read_accuracy_log(log_dir: Path) -> dict[int, bytes]:
    """Sample index -> the response data LoadGen logged in an accuracy run."""
    entries = json.loads((log_dir / "mlperf_log_accuracy.json").read_text(encoding="utf-8") or "[]")
    return {int(e["qsl_idx"]): bytes.fromhex(e["data"]) for e in entries}
