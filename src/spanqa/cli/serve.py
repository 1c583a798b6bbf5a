"""CLI command: serve (an HTTP API on Ray Serve)."""

from __future__ import annotations

import click

from spanqa.cli._common import input_path, setting
from spanqa.settings import ServeSettings

COMMANDS: list[click.Command] = []
S = ServeSettings


@click.command("serve")
@click.option(
    "--model",
    required=True,
    type=input_path("model", path_type=str),
    help="A model package, a .onnx, or a checkpoint directory (built once for --target).",
)
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
    help="Requests waiting in Serve's queue (in this process) beyond which new ones get 503.",
)
@setting(
    S,
    "max_queued_tokens",
    "--max-queued-tokens",
    type=click.IntRange(min=1),
    help="Padded tokens admitted and not yet answered, per running replica; beyond it 503 with "
    "Retry-After from the measured seconds per token. One request over it is 413.",
)
@setting(
    S,
    "max_body_bytes",
    "--max-body-bytes",
    type=click.IntRange(min=1),
    help="Largest request body; a larger one is 413 before it is parsed.",
)
@setting(
    S,
    "retry_after_s",
    "--retry-after",
    "retry_after_s",
    type=click.IntRange(min=1),
    help="Retry-After (seconds) while loading or draining, and for a full queue before any batch is timed.",
)
@setting(
    S,
    "request_timeout_s",
    "--request-timeout",
    "request_timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds from a request's arrival to its answer; then 504, and its questions are dropped before the model.",
)
@setting(
    S,
    "drain_timeout_s",
    "--drain-timeout",
    "drain_timeout_s",
    type=click.FloatRange(min=0),
    help="SIGTERM: seconds the requests in flight get to finish (new ones get 503 meanwhile).",
)
@setting(S, "max_context_chars", "--max-context-chars", type=click.IntRange(min=1), help="Longest context (413 beyond).")
@setting(S, "max_windows", "--max-windows", type=click.IntRange(min=1), help="Most windows one context may need (413 beyond).")
@setting(S, "max_inputs", "--max-inputs", type=click.IntRange(min=1), help="Most questions in one request (413 beyond).")
@setting(S, "max_top_k", "--max-top-k", type=click.IntRange(min=1), help="Largest top_k a request may ask for (422 beyond).")
@setting(
    S,
    "access_log",
    "--access-log/--no-access-log",
    help="One JSON line per request on stdout (id, status, questions, padded tokens, queue and model ms).",
)
@setting(
    S,
    "address",
    "--address",
    help="A running Ray cluster to deploy onto (e.g. auto or ray://HOST:10001) [default: start a local one].",
)
def serve_cmd(model: str, **options) -> None:
    """Answer questions over HTTP: POST /v1/answer (Hugging Face's question-answering schema),
    GET /healthz (alive), /readyz (ready for traffic), /metrics; API docs at /docs. Every error is
    JSON. Set SPANQA_API_KEY to require 'Authorization: Bearer <key>' on everything but the
    health endpoints. SIGTERM or Ctrl-C finishes the requests in flight (new ones get 503), then
    exits 0."""
    from spanqa.serve.server import serve_forever

    raise SystemExit(serve_forever(model, ServeSettings(**options), say=lambda m: click.echo(m, err=True)))


COMMANDS.append(serve_cmd)
