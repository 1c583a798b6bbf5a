"""The Ray cluster a job runs on, Ray Data's settings for it, and Ray's errors as one line.

``cluster`` attaches to ``--address`` (or the Ray this process already runs) or starts a local
Ray and stops it at the end, timing the start (a fixed cost in ``summary.json``). Ray's own
chatter (its C++ ERROR lines about constructor arguments, worker logs forwarded to the
driver, Ray Data's plan lines) is kept off the user's terminal: a failure reaches them as the
one line ``translate`` makes of it.
"""

from __future__ import annotations

import os
import re
import time
from contextlib import contextmanager

from spanqa.errors import ClusterError, SpanQAError, missing_backend
from spanqa.settings import RaySettings


def import_ray():
    """Ray and Ray Data, or the one-line install hint of the ``ray`` extra."""
    try:
        import ray
        import ray.data  # ray without the [data] extra lacks it
    except ImportError:
        raise missing_backend("ray", "ray") from None
    return ray


@contextmanager
def cluster(ray, settings: RaySettings):
    """Attach to ``settings.address`` (or to the Ray this process already runs), or start a
    local Ray with the machine's cores and stop it at the end. Yields the cluster's facts, with
    ``start_s``: how long starting or attaching took."""
    import logging

    started = False
    t0 = time.perf_counter()
    if not ray.is_initialized():
        from spanqa.sysinfo import env_default, usable_cores

        # Worker output forwarded to the driver would repeat every failing task's traceback;
        # the failure reaches the user as one line instead (``translate``).
        quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
        try:
            # The driver's own C++ log: Ray prints an ERROR line for every actor pool whose
            # constructor arguments sit in the object store, which a Ray Data pool's always do.
            with env_default("RAY_BACKEND_LOG_LEVEL", "fatal"), _stderr_silenced(), _python_signal_handlers():
                if settings.address:
                    ray.init(address=settings.address, **quiet)
                else:
                    # No dashboard. Ray 2.60 has no loopback-only mode (it maps 127.0.0.1 to the
                    # node's address); its token authentication, on by default, guards the ports.
                    # "local" and not None: None joins any Ray already running on this machine
                    # (Ray's /tmp/ray/ray_current_cluster) and then refuses num_cpus.
                    ray.init(address="local", num_cpus=settings.local_cpus or usable_cores(), include_dashboard=False, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = settings.address or "a local Ray"
            raise ClusterError(f"cannot start or reach {where}: {_first_line(exc)}") from None
        started = True
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        yield {
            "address": settings.address or ("local" if started else "attached"),
            "nodes": len(nodes),
            "cpus": float(ray.cluster_resources().get("CPU", 0)),
            "start_s": time.perf_counter() - t0,
            "hosts": {n["NodeID"][:12]: n.get("NodeManagerAddress") for n in nodes},
        }
    finally:
        if started:
            ray.shutdown()


@contextmanager
def _python_signal_handlers():
    """SIGTERM and SIGINT handled as before ``ray.init``: Ray's C++ core installs its own, which
    kills the driver with a stack dump, where spanqa unwinds (``Interrupted.``, exit 130, the
    committed answers kept for ``--resume``)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)


@contextmanager
def _stderr_silenced():
    """File descriptor 2 on /dev/null while Ray starts: its C++ core writes there directly (the
    line saying it read RAY_BACKEND_LOG_LEVEL, the token-authentication notice). A failure to
    start still reaches the user: ``ray.init`` raises, and ``cluster`` reports it in one line."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@contextmanager
def data_context(ray, quiet: bool, settings: RaySettings):
    """Ray Data settings for this job, restored afterwards (the context is process-wide)."""
    import logging
    import warnings

    ctx = ray.data.DataContext.get_current()
    options = ctx.execution_options
    saved = (ctx.enable_progress_bars, ctx.max_errored_blocks, ctx.wait_for_min_actors_s, ctx.use_datasource_v2)
    saved_order = options.preserve_order
    log = logging.getLogger("ray.data")
    level = log.level
    ctx.enable_progress_bars = not quiet
    # A block that fails is never skipped: a short predictions file would look complete.
    ctx.max_errored_blocks = 0
    # Dispatch once the whole pool has its model loaded: the first actor up would otherwise take
    # a short job alone, and a pool the cluster cannot place fails instead of waiting forever.
    ctx.wait_for_min_actors_s = settings.actor_start_timeout_s
    # Ray 2.60's second Parquet reader lists files in a task that asks for a whole CPU, which a
    # pool holding every CPU never frees (the job hangs); the first reader honours num_cpus=0.
    ctx.use_datasource_v2 = False
    # Blocks reach the driver in input order, files one after another (set before the datasets
    # are made: each takes its own copy of the context, and a union made without it interleaves
    # its inputs): the order of predictions.json, and the order a repeated id is found in.
    options.preserve_order = True
    # The plan and "execution finished" lines, and a failed task's traceback, which the user
    # sees as one line (``translate``).
    log.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            # Ray Data's advice when an operator has fewer inputs than its task cap (one file) or
            # its actor pool (an input shorter than the pool's blocks): nothing for a user to do.
            warnings.filterwarnings("ignore", message="The (maximum|minimum) number of concurrent", category=UserWarning)
            yield
    finally:
        ctx.enable_progress_bars, ctx.max_errored_blocks, ctx.wait_for_min_actors_s, ctx.use_datasource_v2 = saved
        options.preserve_order = saved_order
        log.setLevel(level)


@contextmanager
def ray_errors():
    """Ray's exceptions as one-line SpanQAErrors; a spanqa error raised in a task or actor comes
    back as itself."""
    try:
        yield
    except SpanQAError as exc:
        if _is_ray_error(exc):  # Ray's wrapper that also is the cause's class
            raise _translate(exc) from None
        raise
    except Exception as exc:
        if type(exc).__module__.startswith("ray") or _is_ray_error(exc):
            raise _translate(exc) from None
        raise


def _is_ray_error(exc: BaseException) -> bool:
    from ray.exceptions import RayError

    return isinstance(exc, RayError)


_EXCEPTION_LINE = re.compile(r"^[\w.]*(?:Error|Exception): .+$", re.MULTILINE)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_REMOTE_ERROR = re.compile(r"^\s*spanqa\.errors\.(\w+): (.+)$", re.MULTILINE)


def _translate(exc: BaseException) -> SpanQAError:
    """The spanqa error behind a Ray exception, else a ClusterError naming Ray's.

    A task or actor's exception reaches the driver as text inside Ray's (the original object
    does not travel), so the last ``spanqa.errors.X: message`` line of the chain is the cause.
    """
    from spanqa import errors

    chain, stack, seen = [], [exc], set()
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        chain.append(e)
        if isinstance(e, SpanQAError) and not _is_ray_error(e):
            return type(e)(_first_line(e))
        stack.extend([getattr(e, "cause", None), e.__cause__, e.__context__])
    for e in chain:
        found = _REMOTE_ERROR.findall(str(e))
        if found:
            name, message = found[-1]
            cls = getattr(errors, name, None)
            cls = cls if isinstance(cls, type) and issubclass(cls, SpanQAError) else SpanQAError
            return cls(message.strip())
    # Otherwise the innermost exception line of the remote traceback says more than Ray's header.
    for e in chain:
        lines = _EXCEPTION_LINE.findall(_ANSI.sub("", str(e)))
        if lines:
            return ClusterError(f"the Ray job failed: {lines[-1].strip()}")
    return ClusterError(f"the Ray job failed: {type(exc).__name__}: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
