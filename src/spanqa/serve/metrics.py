"""Prometheus metrics, served at ``GET /metrics`` by the ingress.

The ingress (the ``spanqa serve`` process) counts requests: by path and status, their latency,
those in flight, the padded tokens admitted, the work dropped because its caller timed out or
left. Each replica is its own process and counts its batches; the replicas write their samples to
files in one directory (prometheus_client's multiprocess mode, PROMETHEUS_MULTIPROC_DIR set by
spanqa.serve.server in their runtime_env) and the ingress sums them: the replicas on the ingress's
node. Without that directory (tests) a replica's samples live in memory. The two sets of names
are disjoint, so their pages are concatenated.
"""

from __future__ import annotations

import glob
import os
import re

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
_TOKEN_BUCKETS = (128, 256, 512, 1024, 2048, 4096, 8192, 16384)


def _registry():
    from prometheus_client import CollectorRegistry, disable_created_metrics

    disable_created_metrics()  # *_created series double the page and nobody graphs them
    return CollectorRegistry()


class IngressMetrics:
    def __init__(self, replica_dir: str | None = None):
        """``replica_dir``: where the replicas write their samples (never this process: its own
        samples stay in memory, so they are not counted twice)."""
        from prometheus_client import Counter, Gauge, Histogram

        self.replica_dir = replica_dir

        # A registry of our own: two servers in one process (tests) do not collide.
        self.registry = _registry()
        kw = {"registry": self.registry}
        self.requests = Counter(
            "spanqa_requests",
            "HTTP requests answered, by path and status (499: the client left first).",
            ["path", "status"],
            **kw,
        )
        self.latency = Histogram(
            "spanqa_request_seconds",
            "Time from a POST /v1/answer arriving to its answer.",
            buckets=_LATENCY_BUCKETS,
            **kw,
        )
        self.in_flight = Gauge("spanqa_requests_in_flight", "POST /v1/answer requests being answered.", **kw)
        self.queued_tokens = Gauge(
            "spanqa_queued_tokens",
            "Padded tokens admitted and not yet answered (the admission's measure).",
            **kw,
        )
        self.replicas = Gauge("spanqa_ready_replicas", "Replicas Serve reports running.", **kw)
        self.cancelled = Counter(
            "spanqa_cancelled_requests",
            "Admitted requests given up before their answer, by reason (timeout, disconnect); "
            "Serve drops their questions from the batch queue.",
            ["reason"],
            **kw,
        )

    def exposition(self, replica_registry=None) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        page = generate_latest(self.registry)
        directory = self.replica_dir
        if replica_registry is not None:
            page += generate_latest(replica_registry)
        elif directory and os.path.isdir(directory):
            from prometheus_client import multiprocess

            _forget_dead_processes(directory)
            registry = _registry()
            multiprocess.MultiProcessCollector(registry, path=directory)
            page += generate_latest(registry)
        return page, CONTENT_TYPE_LATEST


class ReplicaMetrics:
    def __init__(self):
        from prometheus_client import Counter, Gauge, Histogram

        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if self.multiprocess_dir:
            os.makedirs(self.multiprocess_dir, exist_ok=True)
        # In multiprocess mode the values go to files whatever the registry.
        self.registry = _registry()
        kw = {"registry": self.registry}
        self.questions = Counter("spanqa_questions", "Questions run through the model.", **kw)
        self.dropped = Counter(
            "spanqa_dropped_questions",
            "Questions taken off a batch before the model because their deadline had passed.",
            ["reason"],
            **kw,
        )
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
        self.queue = Gauge(
            "spanqa_queue_length",
            "Questions waiting in the replicas' batch queues.",
            multiprocess_mode="livesum",
            **kw,
        )


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
