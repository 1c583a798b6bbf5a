"""CLI command: serve (an HTTP API on Ray Serve)."""

from __future__ import annotations

import click

from spanqa.cli._common import setting
from spanqa.settings import ServeSettings

COMMANDS: list[click.Command] = []
S = ServeSettings


@click.command("serve")
@click.option("--model", required=True, help="A model package, a .onnx, or a checkpoint directory (built once for --target).")
@setting(S, "target", "--target", help="The target to build a checkpoint for (a package serves as it is).")
@setting(S, "host", "--host", help="Address to bind; anything but loopback exposes the API.")
@setting(S, "port", "--port", type=click.IntRange(1, 65535))
@setting(S, "replicas", "--replicas", type=click.IntRange(min=1), help="Engine replicas (processes).")
@setting(
    S,
    "threads_per_replica",
    "--threads-per-replica",
    type=click.IntRange(min=1),
    help="Inference threads of each replica [default: the usable cores / --replicas].",
)
@setting(
    S,
    "max_batch_tokens",
    "--max-batch-tokens",
    type=click.IntRange(min=1),
    help="Serve's batch size, in padded tokens: questions are batched until their windows reach it.",
)
@setting(
    S,
    "max_wait_ms",
    "--max-wait-ms",
    type=click.FloatRange(min=0),
    help="How long a batch waits to fill after its first question.",
)
@setting(
    S,
    "max_ongoing",
    "--max-ongoing",
    type=click.IntRange(min=1),
    help="Requests one replica holds at once; more wait in Serve's queue.",
)
@setting(
    S,
    "max_queued",
    "--max-queued",
    type=click.IntRange(min=1),
    help="Requests waiting in Serve's queue beyond which new ones get 503 with Retry-After.",
)
@setting(
    S,
    "request_timeout_s",
    "--request-timeout",
    "request_timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a replica spends on a request before answering 504.",
)
@setting(S, "max_context_chars", "--max-context-chars", type=click.IntRange(min=1), help="Longest context (413 beyond).")
@setting(S, "max_windows", "--max-windows", type=click.IntRange(min=1), help="Most windows one context may need (413 beyond).")
@setting(
    S,
    "address",
    "--address",
    help="A running Ray cluster to deploy onto (e.g. auto or ray://HOST:10001) [default: start a local one].",
)
def serve_cmd(model: str, **options) -> None:
    """Answer questions over HTTP: POST /v1/answer (Hugging Face's question-answering schema),
    GET /healthz, /readyz, /metrics; API docs at /docs. Set SPANQA_API_KEY to require
    'Authorization: Bearer <key>' on everything but the health endpoints. SIGTERM or Ctrl-C
    finishes the requests in flight, then exits 0."""
    from spanqa.serve.server import serve_forever

    raise SystemExit(serve_forever(model, ServeSettings(**options), say=lambda m: click.echo(m, err=True)))


COMMANDS.append(serve_cmd)
