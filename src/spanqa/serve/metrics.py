"""Prometheus metrics of the replicas, served at ``GET /metrics``.

Each replica is its own process and a scrape reaches one of them, so the replicas write their
samples to files in one directory (prometheus_client's multiprocess mode, PROMETHEUS_MULTIPROC_DIR
set by spanqa.serve.server) and ``/metrics`` sums them: any replica answers for all of those on
its node. Without that variable (a single process, tests) the samples live in memory.

Requests Serve refuses before they reach a replica (503 when its queue is full, 408 at its
timeout) are counted by Serve's own metrics (``ray_serve_num_http_error_requests``), not here.
"""

from __future__ import annotations

import glob
import os
import re

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
_TOKEN_BUCKETS = (128, 256, 512, 1024, 2048, 4096, 8192, 16384)


class Metrics:
    def __init__(self):
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            disable_created_metrics,
        )

        disable_created_metrics()  # *_created series double the page and nobody graphs them

        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if self.multiprocess_dir:
            os.makedirs(self.multiprocess_dir, exist_ok=True)
        # A registry of our own (in multiprocess mode the values go to files whatever the
        # registry): two services in one process (tests) do not collide.
        self.registry = CollectorRegistry()
        kw = {"registry": self.registry}
        self.requests = Counter(
            "spanqa_requests",
            "HTTP requests answered by a replica, by path and status.",
            ["path", "status"],
            **kw,
        )
        self.questions = Counter("spanqa_questions", "Questions answered.", **kw)
        self.batch_questions = Histogram(
            "spanqa_batch_questions",
            "Questions per batch.",
            buckets=_SIZE_BUCKETS,
            **kw,
        )
        self.batch_tokens = Histogram(
            "spanqa_batch_tokens",
            "Padded tokens per batch (Serve's batch size).",
            buckets=_TOKEN_BUCKETS,
            **kw,
        )
        self.batch_seconds = Histogram(
            "spanqa_batch_seconds",
            "Time to answer one batch.",
            buckets=_LATENCY_BUCKETS,
            **kw,
        )
        self.latency = Histogram(
            "spanqa_request_seconds",
            "Time from a request reaching a replica to its answer.",
            buckets=_LATENCY_BUCKETS,
            **kw,
        )
        self.queue = Gauge(
            "spanqa_queue_length",
            "Questions waiting in the batch queues.",
            multiprocess_mode="livesum",
            **kw,
        )
        self.in_flight = Gauge(
            "spanqa_requests_in_flight",
            "Requests being answered.",
            multiprocess_mode="livesum",
            **kw,
        )

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import (
            CONTENT_TYPE_LATEST,
            CollectorRegistry,
            generate_latest,
        )

        if not self.multiprocess_dir:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        from prometheus_client import multiprocess

        _forget_dead_processes(self.multiprocess_dir)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        return generate_latest(registry), CONTENT_TYPE_LATEST


def _forget_dead_processes(path: str) -> None:
    """Drop the live gauges of replicas that died (Serve restarted them): otherwise a killed
    replica's queue would be counted for ever. Its counters stay: what it did, it did."""
    from prometheus_client import multiprocess

    pids = set()
    for name in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        m = re.search(r"_(\d+)\.db$", name)
        if m:
            pids.add(int(m.group(1)))
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, path)
        except PermissionError:
            pass
