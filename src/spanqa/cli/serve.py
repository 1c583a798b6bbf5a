"""CLI command: serve (an HTTP API on Ray Serve)."""

from __future__ import annotations

import click

from spanqa.settings import ServeSettings, default

COMMANDS: list[click.Command] = []


def _d(name: str):
    return default(ServeSettings, name)


@click.command("serve")
@click.option(
    "--model",
    required=True,
    help="A model package, a .onnx, or a checkpoint directory (built once for --target).",
)
@click.option(
    "--target",
    default=_d("target"),
    show_default=True,
    help="The target to build a checkpoint for.",
)
@click.option(
    "--host",
    default=_d("host"),
    show_default=True,
    help="Address to bind; anything but loopback exposes the API.",
)
@click.option("--port", type=click.IntRange(1, 65535), default=_d("port"), show_default=True)
@click.option(
    "--replicas",
    type=click.IntRange(min=1),
    default=_d("replicas"),
    show_default=True,
    help="Engine replicas (processes).",
)
@click.option(
    "--threads-per-replica",
    type=click.IntRange(min=1),
    default=_d("threads_per_replica"),
    help="Inference threads of each replica [default: the usable cores / --replicas].",
)
@click.option(
    "--max-batch-tokens",
    type=click.IntRange(min=1),
    default=_d("max_batch_tokens"),
    show_default=True,
    help="Serve's batch size, in padded tokens: questions are batched until their windows reach it.",
)
@click.option(
    "--max-wait-ms",
    type=click.FloatRange(min=0),
    default=_d("max_wait_ms"),
    show_default=True,
    help="How long a batch waits to fill after its first question arrives.",
)
@click.option(
    "--max-ongoing",
    type=click.IntRange(min=1),
    default=_d("max_ongoing"),
    show_default=True,
    help="Requests one replica holds at once; more wait in Serve's queue.",
)
@click.option(
    "--max-queued",
    type=click.IntRange(min=1),
    default=_d("max_queued"),
    show_default=True,
    help="Requests waiting in Serve's queue beyond which new ones get 503 with Retry-After.",
)
@click.option(
    "--request-timeout",
    "request_timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    default=_d("request_timeout_s"),
    show_default=True,
    help="Seconds a replica spends on a request before answering 504.",
)
@click.option(
    "--max-context-chars",
    type=click.IntRange(min=1),
    default=_d("max_context_chars"),
    show_default=True,
    help="Longest context (413 beyond).",
)
@click.option(
    "--max-windows",
    type=click.IntRange(min=1),
    default=_d("max_windows"),
    show_default=True,
    help="Most windows one context may need (413 beyond).",
)
@click.option(
    "--address",
    default=_d("address"),
    help="A running Ray cluster to deploy onto (e.g. ray://host:10001 or auto) [default: start a local one].",
)
def serve_cmd(model: str, **options) -> None:
    """Answer questions over HTTP: POST /v1/answer (Hugging Face's question-answering schema),
    /healthz, /readyz, /metrics, API docs at /docs. Set SPANQA_API_KEY to require
    'Authorization: Bearer <key>' on everything but the health endpoints. SIGTERM or Ctrl-C
    finishes the requests in flight, then exits 0."""
    from spanqa.serve.server import serve_forever

    raise SystemExit(serve_forever(model, ServeSettings(**options), say=lambda m: click.echo(m, err=True)))


COMMANDS.append(serve_cmd)
