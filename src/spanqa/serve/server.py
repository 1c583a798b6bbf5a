"""``spanqa serve`` from start to stop: resolve the model once, bind the port, start (or join) Ray,
serve HTTP from spanqa's own ingress (uvicorn + FastAPI in this process) while Serve deploys the
replicas behind it, follow Serve's status for readiness, and on SIGTERM / SIGINT drain: answer
what is in flight, refuse new requests with a JSON 503, then stop.

Serve runs no HTTP proxy (``proxy_location="Disabled"``): every answer a client gets comes from
the ingress, so none of Serve's plain-text ones (503 on a full queue, 408 at its timeout, 404
while an application is deleted) can reach a client."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from spanqa.errors import InferenceError, MissingBackendError, UsageError, missing_backend, one_line
from spanqa.serve.deployment import APP_NAME, DEPLOYMENT
from spanqa.settings import ServeSettings

log = logging.getLogger("spanqa.serve")
GCS_RECONNECT = "RAY_gcs_rpc_server_reconnect_timeout_s"


def replica_threads(settings: ServeSettings) -> int:
    if settings.threads_per_replica:
        return settings.threads_per_replica
    from spanqa.sysinfo import default_threads

    return max(1, default_threads() // settings.replicas)


def bind(host: str, port: int):
    """The listening socket, bound and listening now: a one-line error rather than a traceback
    once Ray has started, and the port is ours from here on (connections wait in the backlog
    until uvicorn accepts them)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UsageError(f"--host {host}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        # Listening now, not when uvicorn starts: a socket that is only bound (SO_REUSEADDR) can
        # be handed to another process's bind to port 0 (Ray picks its ports while it starts),
        # whose listen() then takes the port from under us.
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port or --host") from None
    sock.set_inheritable(False)
    return sock


def resolve_package(model: str, target: str | None):
    """The model package to serve. Built here, once, before any replica starts: replicas
    converting a checkpoint side by side would race for the same cache entry."""
    from spanqa.engine.resolve import resolve_model

    package, _ = resolve_model(model, target)
    return package


def _logging() -> None:
    """Ingress log lines (errors, with request ids) on stderr; access-log lines on stdout."""
    serve_log = logging.getLogger("spanqa.serve")
    if serve_log.handlers:  # a second server in one process (tests)
        return
    errors = logging.StreamHandler(sys.stderr)
    errors.setFormatter(logging.Formatter("spanqa serve: %(levelname)s %(message)s"))
    serve_log.addHandler(errors)
    serve_log.setLevel(logging.INFO)
    serve_log.propagate = False
    lines = logging.StreamHandler(sys.stdout)
    lines.setFormatter(logging.Formatter("%(message)s"))
    access = logging.getLogger("spanqa.serve.access")
    access.addHandler(lines)
    access.setLevel(logging.INFO)
    access.propagate = False
    # Serve's driver-side INFO lines ("Started Serve", "Deleting app") say nothing an operator needs.
    logging.getLogger("ray.serve").setLevel(logging.WARNING)


def serve_forever(model: str, settings: ServeSettings, *, say: Callable[[str], None] = print) -> int:
    """Serve until SIGTERM or SIGINT, then let in-flight requests finish and return 0."""
    settings.check()
    try:
        import ray
        from ray import serve  # noqa: F401
    except ImportError:
        raise missing_backend("ray[serve]", "serve") from None
    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise MissingBackendError(f"{exc.name} is not installed; install it with: pip install 'spanqa[serve]'") from None

    from spanqa.serve.app import API_KEY_ENV, key_digest

    sock = bind(settings.host, settings.port)
    try:
        package = resolve_package(model, settings.target)
    except BaseException:
        sock.close()
        raise
    threads = replica_threads(settings)
    local = settings.address is None
    stop = threading.Event()
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    for s in previous:  # a SIGTERM while Ray starts stops cleanly too
        signal.signal(s, lambda *_: stop.set())
    metrics_dir = tempfile.mkdtemp(prefix="spanqa-metrics-")
    env = {"PROMETHEUS_MULTIPROC_DIR": metrics_dir}
    if os.environ.get("SPANQA_HOME"):
        env["SPANQA_HOME"] = os.environ["SPANQA_HOME"]
    _logging()
    try:
        _start_ray(settings, threads)
        # Ray's core worker installs its own SIGTERM handler (it aborts the driver, exit 134):
        # ours goes back on top until the event loop takes the signals over.
        for s in previous:
            signal.signal(s, lambda *_: stop.set())
        if stop.is_set():
            return 0
        from spanqa.serve.ingress import Ingress
        from spanqa.serve.metrics import IngressMetrics

        ingress = Ingress(
            settings,
            api_key_sha256=key_digest(os.environ.get(API_KEY_ENV)),
            metrics=IngressMetrics(replica_dir=metrics_dir),
        )
        run = _Run(ingress, settings, str(Path(package.root).resolve()), package.tokenizer, threads, {"env_vars": env}, say)
        return asyncio.run(run.main(sock, stop))
    finally:
        sock.close()
        try:
            if local and ray.is_initialized():
                from ray import serve as _serve

                _serve.shutdown()
        finally:
            if ray.is_initialized():
                ray.shutdown()
            for s, handler in previous.items():
                signal.signal(s, handler)
            _remove_tree(metrics_dir)


def _start_ray(settings: ServeSettings, threads: int) -> None:
    import ray

    if settings.address is None:
        # Ray's processes share this process group, so Ctrl-C in a terminal (or a SIGTERM to the
        # group) stops the GCS while the server drains; Ray's client here then waited 60 s (its
        # default) for that GCS before giving up. The cluster is ours: 10 s. Read when Ray
        # starts (this process and the ones it spawns), then restored.
        from spanqa.sysinfo import env_default

        with env_default(GCS_RECONNECT, "10"):
            # "local" and not None: None would join any cluster `ray start` left on this machine.
            ray.init(
                address="local",
                num_cpus=max(os.cpu_count() or 1, threads * settings.replicas),
                include_dashboard=False,
                namespace=APP_NAME,
                object_store_memory=200 * 1024**2,  # answers are small: reserve little
                log_to_driver=False,
            )
        return
    try:
        # A cluster's nodes may lack spanqa (or hold another version): this one goes with the
        # job, and Serve gives the job's runtime_env to the replicas. The model package path
        # must exist on the nodes.
        import spanqa

        job_env = {"py_modules": [str(Path(spanqa.__file__).parent)]}
        ray.init(address=settings.address, namespace=APP_NAME, log_to_driver=False, runtime_env=job_env)
    except (ConnectionError, RuntimeError) as exc:
        raise UsageError(
            f"--address {settings.address}: cannot join the Ray cluster ({one_line(str(exc))[:200]}); "
            "is it running, and does RAY_AUTH_MODE / the auth token match its own?"
        ) from None


def _http_server(config):
    """uvicorn's server without its own signal handling (the drain below owns SIGTERM)."""
    import contextlib

    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            yield

    return Server(config)


class _Run:
    def __init__(self, ingress, settings: ServeSettings, package: str, tokenizer, threads: int, runtime_env: dict, say):
        self.ingress, self.settings, self.package = ingress, settings, package
        self.tokenizer, self.threads, self.runtime_env, self.say = tokenizer, threads, runtime_env, say
        self.deploy_error: str | None = None

    async def main(self, sock, stop: threading.Event) -> int:
        import uvicorn

        from spanqa.serve.app import build_app

        loop = asyncio.get_running_loop()
        signalled = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, signalled.set)
        if stop.is_set():
            signalled.set()
        signal_wait = asyncio.ensure_future(signalled.wait())
        s = self.settings
        config = uvicorn.Config(
            build_app(self.ingress),
            log_level="warning",
            access_log=False,  # the ingress writes its own, one JSON line per request
            lifespan="off",
            timeout_graceful_shutdown=5,
            server_header=False,
        )
        server = _http_server(config)
        serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        self.say(f"spanqa serve: listening on http://{s.host}:{s.port}; loading the model ({s.replicas} replica(s))")
        deploying = asyncio.ensure_future(self._deploy())
        polling = asyncio.ensure_future(self._poll())
        try:
            await asyncio.wait({signal_wait, deploying, serving}, return_when=asyncio.FIRST_COMPLETED)
            if serving.done():
                serving.result()  # uvicorn failed to start: its exception
                raise InferenceError("the HTTP server stopped unexpectedly")
            if deploying.done() and self.deploy_error:
                raise InferenceError(f"the replicas did not start: {self.deploy_error}")
            if not signalled.is_set():
                self.say(
                    f"spanqa serve: {Path(self.package).name} ready on http://{s.host}:{s.port} "
                    f"({s.replicas} replica(s) x {self.threads} thread(s); API docs at /docs)"
                )
                await signalled.wait()
            self.say(f"spanqa serve: stopping; finishing {self.ingress.in_flight} request(s) in flight")
            self.ingress.begin_drain()
            if not await self.ingress.drained(s.drain_timeout_s):
                self.say(f"spanqa serve: {self.ingress.in_flight} request(s) unanswered after {s.drain_timeout_s:g} s")
                self.ingress.stop_remaining()
                await self.ingress.drained(5.0)
            server.should_exit = True
            await serving
            deploying.cancel()
            await asyncio.to_thread(self._delete)
            self.say("spanqa serve: stopped")
            return 0
        finally:
            polling.cancel()
            signal_wait.cancel()
            server.should_exit = True
            if not serving.done():
                await asyncio.wait({serving}, timeout=10)
            self.ingress.close()

    async def _deploy(self) -> None:
        from spanqa.serve.backend import ServeBackend
        from spanqa.serve.plan import Planner

        try:
            handle = await asyncio.to_thread(self._run_app)
        except RuntimeError:
            self.deploy_error = await asyncio.to_thread(_deploy_error)
            return
        backend = ServeBackend(handle, float(self.settings.retry_after_s), self.ingress.replica_lost)
        try:
            shape = await backend.shape()
            planner = await asyncio.to_thread(Planner, self.tokenizer, shape, self.settings)
        except Exception as exc:  # noqa: BLE001 - reported as the replicas' failure to start
            self.deploy_error = one_line(f"{type(exc).__name__}: {exc}")[:300]
            return
        self.ingress.set_replicas(await asyncio.to_thread(_running_replicas))
        self.ingress.attach(backend, planner)

    def _run_app(self):
        from ray import serve

        from spanqa.serve.deployment import build

        quiet = {"enable_access_log": False, "log_level": "WARNING"}
        serve.start(proxy_location="Disabled", logging_config=quiet)
        app = build(self.package, self.settings, threads=self.threads, runtime_env=self.runtime_env)
        return serve.run(app, name=APP_NAME, route_prefix=None, blocking=False, logging_config=quiet)

    async def _poll(self) -> None:
        """Readiness follows Serve's own view of the replicas, twice a second."""
        failures = 0
        while True:
            await asyncio.sleep(0.5)
            try:
                running = await asyncio.to_thread(_running_replicas)
                failures = 0
                self.ingress.live_problem = None
            except Exception as exc:  # noqa: BLE001 - the cluster is gone or not answering
                failures += 1
                if failures >= 6:
                    self.ingress.live_problem = f"the Ray cluster does not answer ({one_line(str(exc))[:120]})"
                running = 0
            if self.ingress.planner is not None:
                self.ingress.set_replicas(running, polled=True)

    def _delete(self) -> None:
        from ray import serve

        try:
            serve.delete(APP_NAME, _blocking=True)
        except Exception as exc:  # noqa: BLE001 - stopping anyway; Ray's shutdown follows
            log.warning("deleting the Serve application failed: %s", one_line(str(exc))[:200])


def _running_replicas() -> int:
    from ray import serve

    app = serve.status().applications.get(APP_NAME)
    if app is None or DEPLOYMENT not in app.deployments:
        return 0
    return int(app.deployments[DEPLOYMENT].replica_states.get("RUNNING", 0))


def _deploy_error() -> str:
    """The last line of what Serve says about the failed deployment (a replica's exception)."""
    from ray import serve

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
