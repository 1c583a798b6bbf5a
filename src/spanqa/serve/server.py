"""``spanqa serve`` from start to stop: resolve the model once, start (or join) Ray, deploy,
wait for SIGTERM / SIGINT, drain, stop."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from spanqa.errors import InferenceError, MissingBackendError, UsageError, missing_backend, one_line
from spanqa.serve.deployment import APP_NAME
from spanqa.settings import ServeSettings


def replica_threads(settings: ServeSettings) -> int:
    if settings.threads_per_replica:
        return settings.threads_per_replica
    from spanqa.sysinfo import default_threads

    return max(1, default_threads() // settings.replicas)


def check_port(host: str, port: int) -> None:
    """A one-line error now rather than a traceback from Serve's proxy once Ray has started."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UsageError(f"--host {host}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port or --host") from None


def resolve_package(model: str, target: str | None) -> str:
    """The model package to serve. Built here, once, before any replica starts: replicas
    converting a checkpoint side by side would race for the same cache entry."""
    from spanqa.engine.resolve import resolve_model

    package, _ = resolve_model(model, target)
    return str(Path(package.root).resolve())


def serve_forever(model: str, settings: ServeSettings, *, say: Callable[[str], None] = print) -> int:
    """Serve until SIGTERM or SIGINT, then let in-flight requests finish and return 0."""
    settings.check()
    try:
        import ray
        from ray import serve
    except ImportError:
        raise missing_backend("ray[serve]", "serve") from None
    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        raise MissingBackendError(f"{exc.name} is not installed; install it with: pip install 'spanqa[serve]'") from None

    from spanqa.serve.app import API_KEY_ENV, key_digest
    from spanqa.serve.deployment import build

    if settings.address is None:
        check_port(settings.host, settings.port)
    package = resolve_package(model, settings.target)
    threads = replica_threads(settings)
    local = settings.address is None
    stop = threading.Event()
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def trap() -> None:
        for s in previous:
            signal.signal(s, lambda *_: stop.set())

    trap()  # a SIGTERM while Ray starts stops cleanly too
    metrics_dir = tempfile.mkdtemp(prefix="spanqa-metrics-")
    env = {"PROMETHEUS_MULTIPROC_DIR": metrics_dir}
    if os.environ.get("SPANQA_HOME"):
        env["SPANQA_HOME"] = os.environ["SPANQA_HOME"]
    runtime_env: dict = {"env_vars": env}
    try:
        if local:
            # "local" and not None: None would join any cluster `ray start` left on this machine.
            ray.init(
                address="local",
                num_cpus=max(os.cpu_count() or 1, threads * settings.replicas),
                include_dashboard=False,
                namespace=APP_NAME,
                object_store_memory=200 * 1024**2,  # answers are small: reserve little
                log_to_driver=False,
            )
        else:
            try:
                # A cluster's nodes may lack spanqa (or hold another version): this one goes
                # with the job, and Serve gives the job's runtime_env to the replicas. The model
                # package path must exist on the nodes.
                import spanqa

                job_env = {"py_modules": [str(Path(spanqa.__file__).parent)]}
                ray.init(address=settings.address, namespace=APP_NAME, log_to_driver=False, runtime_env=job_env)
            except (ConnectionError, RuntimeError) as exc:
                raise UsageError(
                    f"--address {settings.address}: cannot join the Ray cluster ({one_line(str(exc))[:200]}); "
                    "is it running, and does RAY_AUTH_MODE / the auth token match its own?"
                ) from None
        # Ray's core worker installs its own SIGTERM handler (it aborts the driver, exit 134):
        # ours goes back on top, or SIGTERM would not drain.
        trap()
        # No access log lines: /metrics counts the requests, and on 2 cores the two log writes
        # per request (proxy and replica) are a measurable share of the time.
        quiet = {"enable_access_log": False, "log_level": "WARNING"}
        serve.start(
            logging_config=quiet,
            http_options={
                "host": settings.host,
                "port": settings.port,
                # The replica answers 504 after request_timeout_s; this bounds the wait in Serve's
                # own queue before a replica takes the request, so no request waits for ever.
                "request_timeout_s": settings.request_timeout_s * 2,
            },
        )
        app = build(
            package,
            settings,
            threads=threads,
            api_key_sha256=key_digest(os.environ.get(API_KEY_ENV)),
            runtime_env=runtime_env,
        )
        try:
            serve.run(app, name=APP_NAME, route_prefix="/", blocking=False, logging_config=quiet)
        except RuntimeError:
            raise InferenceError(f"the replicas did not start: {_deploy_error(serve)}") from None
        say(
            f"spanqa serve: {Path(package).name} on http://{settings.host}:{settings.port} "
            f"({settings.replicas} replica(s) x {threads} thread(s); API docs at /docs)"
        )
        while not stop.wait(0.5):
            pass
        say("spanqa serve: stopping; finishing the requests in flight")
        # Deleting the application stops its replicas gracefully: each finishes what it holds
        # (graceful_shutdown_timeout_s) while the proxy still carries the answers back.
        serve.delete(APP_NAME, _blocking=True)
        if local:
            serve.shutdown()
        say("spanqa serve: stopped")
        return 0
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for s, handler in previous.items():
            signal.signal(s, handler)
        _remove_tree(metrics_dir)


def _deploy_error(serve) -> str:
    """The last line of what Serve says about the failed deployment (a replica's exception)."""
    try:
        app = serve.status().applications[APP_NAME]
        messages = [d.message for d in app.deployments.values() if d.message] or [app.message]
    except Exception:  # noqa: BLE001 - status is best effort; the Ray logs have it all
        return "see the replica logs under /tmp/ray/session_latest/logs"
    lines = [line.strip() for line in messages[0].splitlines() if line.strip()]
    return one_line(lines[-1] if lines else messages[0])[:300]


def _remove_tree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
