"""``spanqa run --engine ray``: the whole job on a Ray cluster with Ray Data.

    read INPUT (read tasks) -> materialise -> check ids on the driver
      -> map_batches(_Answerer, fixed actor pool) -> driver writes answers as they arrive

Each actor holds one ``Engine`` made inside the actor (a model is never pickled), with its
runtime's intra-op threads set to the actor's ``num_cpus``. Only answers leave an actor: id,
run_squad text, the batch's time per question, worker and node.

Reading is materialised before the pool starts. The driver needs every id before any question
is answered (a repeated id is an error, and the end check compares id sets), and a finished read
cannot be starved: Ray Data creates the actors first, so a pool holding every CPU stalls read
tasks that run beside it (ray-project/ray#44687). The sizing rule is therefore simply
``workers x threads_per_worker <= cluster CPUs``; read tasks also ask for only ``read_cpus``.

Faults are Ray's: actors restart (``max_restarts``) and a dead actor's batches are retried
(``max_task_retries``). A retried batch may come back twice, so the driver keeps the first
answer per id; at the end every input id must have exactly one answer, or the job fails.
"""

from __future__ import annotations

import json
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from spanqa.errors import ClusterError, SpanQAError, UsageError, missing_backend
from spanqa.scale.inputs import InputFiles, Questions, check_ids, find_inputs, read_dataset
from spanqa.settings import EngineSettings, RaySettings

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

PARTIAL = "predictions.jsonl"  # answers as they arrive: one JSON object per line


def import_ray():
    """Ray and Ray Data, or the one-line install hint of the ``ray`` extra."""
    try:
        import ray
        import ray.data  # ray without the [data] extra lacks it
    except ImportError:
        raise missing_backend("ray", "ray") from None
    return ray


# ---------------------------------------------------------------------------------------------
# The actor


class _Answerer:
    """One Ray Data actor: one Engine, answering a batch of question rows per call."""

    def __init__(self, model: str | None, shipped: list | None, threads: int, settings: EngineSettings):
        import ray

        from spanqa import progress
        from spanqa.engine import Engine

        progress.set_quiet(True)  # bars from many actors would interleave in the driver's log
        if shipped:
            from spanqa.scale.ship import materialise

            # The ref sits in a list so Ray hands it over unresolved: it is fetched here, once.
            model = str(materialise(ray.get(shipped[0])))
        self.engine = Engine.load(model, threads=threads, settings=settings, throughput=True)
        ctx = ray.get_runtime_context()
        self.worker = ctx.get_actor_id()[:12]  # an actor keeps its id across restarts
        self.node = ctx.get_node_id()[:12]
        self.pid = os.getpid()

    def __call__(self, batch):
        import numpy as np
        import pyarrow as pa

        from spanqa.engine import Question
        from spanqa.engine.core import examples_from_questions

        t0 = time.perf_counter()
        ids = batch.column("id").to_pylist()
        rows = zip(batch.column("question").to_pylist(), batch.column("context").to_pylist(), ids)
        examples = examples_from_questions([Question(q, c, i) for q, c, i in rows])
        p = self.engine.predict(examples, desc="answer")
        features = np.bincount(p.features.example_index, minlength=len(ids))
        per_question = (time.perf_counter() - t0) / max(len(ids), 1)
        n = len(ids)
        return pa.table(
            {
                "id": ids,
                "prediction": [p.predictions[i] for i in ids],
                "features": features.astype(np.int64),
                "seconds": [per_question] * n,
                "worker": [self.worker] * n,
                "node": [self.node] * n,
                "pid": [self.pid] * n,
            }
        )


# ---------------------------------------------------------------------------------------------
# The job


@dataclass
class RayRun:
    """What a Ray run produced, in input order."""

    questions: Questions
    predictions: dict[str, str]
    features: int
    workers: dict[str, dict]  # worker id -> node, host, pids, questions, seconds, questions_per_s
    duplicates: int  # answers dropped because a retried batch had already been answered
    cluster: dict  # address, nodes, cpus, workers, threads_per_worker, ...
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def questions_per_s(self) -> float:
        wall = self.timings.get("read_s", 0.0) + self.timings.get("answer_s", 0.0)
        return len(self.predictions) / wall if wall else float("nan")


def run_on_ray(
    inputs: Sequence[str] | InputFiles,
    model: str | Path,
    result_dir: str | Path,
    engine: EngineSettings | None = None,
    settings: RaySettings | None = None,
    *,
    quiet: bool = False,
) -> RayRun:
    """Answer every question of ``inputs`` with the package ``model`` on a Ray cluster, writing
    ``predictions.jsonl`` in ``result_dir`` as answers arrive. Raises a SpanQAError subclass (one
    line) when the input is bad, the cluster is unreachable or the job fails or comes back short."""
    ray = import_ray()
    settings = settings or RaySettings()
    if settings.threads_per_worker < 1 or settings.batch_questions < 1:
        raise UsageError("--threads-per-worker and --batch-questions must be at least 1")
    files = inputs if isinstance(inputs, InputFiles) else find_inputs(inputs)  # before Ray starts
    # Warm-up runs are per call: in an actor that would re-run the first batch of every batch.
    engine = replace(engine or EngineSettings(), warmup=0)
    result_dir = Path(result_dir)
    with _cluster(ray, settings) as cluster, _ray_errors(), _data_context(ray, quiet, settings):
        workers = _pool_size(settings, cluster["cpus"])
        cluster.update(workers=workers, threads_per_worker=settings.threads_per_worker)
        t0 = time.perf_counter()
        # Blocks of batch_questions rows: a block is what Ray Data hands one actor call, so this is
        # also the unit of load balancing and of retry (one file read is one block otherwise).
        dataset = read_dataset(files, settings.read_cpus)
        dataset = dataset.repartition(target_num_rows_per_block=settings.batch_questions).materialize()
        questions = check_ids(dataset)
        t1 = time.perf_counter()
        shipped = [ray.put(_pack(model))] if settings.ship_model else None
        answered = _answer(ray, dataset, model, shipped, workers, engine, settings)
        # Answers are written as they arrive; their order is restored at the end.
        answered.context.execution_options.preserve_order = False
        run = _collect(answered.iter_batches(batch_size=None, batch_format="pyarrow"), questions, result_dir)
        run.cluster = cluster
        run.timings = {"read_s": t1 - t0, "answer_s": time.perf_counter() - t1}
        hosts = {n["NodeID"][:12]: n.get("NodeManagerAddress") for n in ray.nodes()}
        for w in run.workers.values():
            w["host"] = hosts.get(w["node"], w["node"])
    return run


def _answer(ray, dataset, model, shipped, workers: int, engine: EngineSettings, settings: RaySettings):
    """The dataset of answers: a fixed pool of ``workers`` actors of ``threads_per_worker`` CPUs."""
    import warnings

    with warnings.catch_warnings():
        # Ray 2.60 deprecates restart limits as remote args without a named replacement; without
        # them Ray Data restarts a crashing actor forever and the job would never end.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        return dataset.map_batches(
            _Answerer,
            fn_constructor_kwargs={
                # Absolute: an actor's working directory is not the driver's.
                "model": None if shipped else str(model_dir(model).resolve()),
                "shipped": shipped,
                "threads": settings.threads_per_worker,
                "settings": engine,
            },
            batch_size=settings.batch_questions,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=settings.threads_per_worker,
            max_restarts=settings.max_restarts,
            max_task_retries=settings.max_task_retries,
        )


def model_dir(model) -> Path:
    """A model package's directory, given the package or its path (a Path has ``.root`` too)."""
    return Path(model) if isinstance(model, (str, os.PathLike)) else Path(model.root)


def _pack(model):
    from spanqa.scale.ship import pack

    return pack(model_dir(model))


def _pool_size(settings: RaySettings, cpus: float) -> int:
    """Actors in the pool: workers x threads <= the cluster's CPUs (reading is done by then)."""
    threads = settings.threads_per_worker
    if threads > cpus:
        raise UsageError(f"--threads-per-worker {threads} is more than the cluster's {cpus:g} CPUs")
    workers = settings.workers or max(1, int(cpus // threads))
    if workers * threads > cpus:
        raise UsageError(
            f"--workers {workers} x --threads-per-worker {threads} needs {workers * threads} CPUs but the "
            f"cluster has {cpus:g}; use at most {max(1, int(cpus // threads))} workers"
        )
    return workers


def _collect(batches: Iterator, questions: Questions, result_dir: Path) -> RayRun:
    """Keep the first answer of each id, write every new answer to predictions.jsonl, then check
    that every input question has one."""
    result_dir.mkdir(parents=True, exist_ok=True)
    got: dict[str, str] = {}
    features = duplicates = 0
    workers: dict[str, dict] = {}
    with open(result_dir / PARTIAL, "w", encoding="utf-8") as out:
        for batch in batches:
            for row in batch.to_pylist():
                qid = row["id"]
                if qid in got:
                    duplicates += 1
                    continue
                if qid not in questions.answers:
                    raise ClusterError(f"the Ray job returned an answer for {qid!r}, which is not in INPUT")
                got[qid] = row["prediction"]
                features += row["features"]
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                w = workers.setdefault(row["worker"], {"node": row["node"], "pids": [], "questions": 0, "seconds": 0.0})
                w["questions"] += 1
                w["seconds"] += row["seconds"]
                if row["pid"] not in w["pids"]:
                    w["pids"].append(row["pid"])  # more than one: the actor was restarted
            out.flush()
    missing = [i for i in questions.ids if i not in got]
    if missing:
        raise ClusterError(
            f"the Ray job answered {len(got)} of {len(questions.ids)} questions ({len(missing)} missing, first "
            f"{missing[0]!r}); the answers it gave are in {result_dir / PARTIAL}"
        )
    for w in workers.values():
        w["questions_per_s"] = w["questions"] / w["seconds"] if w["seconds"] else float("nan")
    predictions = {i: got[i] for i in questions.ids}
    return RayRun(questions, predictions, features, dict(sorted(workers.items())), duplicates, {})


# ---------------------------------------------------------------------------------------------
# The cluster and its errors


@contextmanager
def _cluster(ray, settings: RaySettings):
    """Attach to ``settings.address`` (or to the Ray this process already runs), or start a
    local Ray with the machine's cores and stop it at the end."""
    import logging

    started = False
    if not ray.is_initialized():
        try:
            if settings.address:
                ray.init(address=settings.address, logging_level=logging.WARNING)
            else:
                from spanqa.sysinfo import default_threads

                # No dashboard. Ray 2.60 has no loopback-only mode (it maps 127.0.0.1 to the
                # node's address); its token authentication, on by default, guards the ports.
                ray.init(
                    num_cpus=settings.local_cpus or default_threads(),
                    include_dashboard=False,
                    logging_level=logging.WARNING,
                )
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
        }
    finally:
        if started:
            ray.shutdown()


@contextmanager
def _data_context(ray, quiet: bool, settings: RaySettings):
    """Ray Data settings for this job, restored afterwards (the context is process-wide)."""
    import logging

    ctx = ray.data.DataContext.get_current()
    saved = (ctx.enable_progress_bars, ctx.max_errored_blocks, ctx.wait_for_min_actors_s)
    log = logging.getLogger("ray.data")
    level = log.level
    ctx.enable_progress_bars = not quiet
    # A block that fails is never skipped: a short predictions file would look complete.
    ctx.max_errored_blocks = 0
    # Dispatch once the whole pool has its model loaded: the first actor up would otherwise take
    # a short job alone, and a pool the cluster cannot place fails instead of waiting forever.
    ctx.wait_for_min_actors_s = settings.actor_start_timeout_s
    log.setLevel(logging.WARNING)  # the plan and "execution finished" lines, per dataset
    try:
        yield
    finally:
        ctx.enable_progress_bars, ctx.max_errored_blocks, ctx.wait_for_min_actors_s = saved
        log.setLevel(level)


@contextmanager
def _ray_errors():
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


__all__ = ["PARTIAL", "RayRun", "import_ray", "run_on_ray"]
