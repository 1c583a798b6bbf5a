"""``spanqa run --engine ray``: the whole job on a Ray cluster with Ray Data, streamed.

    read tasks -> parse -> [mark committed ids] -> blocks of --batch-questions rows
      -> map_batches(Answerer, fixed actor pool) -> iter_batches on the driver -> commit (SQLite)

Nothing is materialised: Ray Data's streaming executor reads, answers and hands blocks to the
driver as they are done, with back-pressure bounding what is in flight. Output order is the
input order (``preserve_order``): the driver numbers rows as they come, commits each block in
one transaction (``store.Store``) and finds a repeated id there, naming both files; the blocks
committed before it stay for ``--resume``.

Each actor holds one ``Engine`` made inside the actor (a model is never pickled), with its
runtime's intra-op threads set to the actor's ``num_cpus``; it starts answering once the whole
pool has loaded its model. Faults are Ray's: actors restart (``max_restarts``) and a dead
actor's batches are retried (``max_task_retries``); a block that still fails fails the job.
``--resume``: a Ray task on the driver's node builds an index of the committed ids (sorted
128-bit hashes in the object store) and the read tasks mark those rows, which then pass the
actors unanswered.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from spanqa.errors import UsageError
from spanqa.scale.cluster import cluster, data_context, import_ray, ray_errors
from spanqa.scale.inputs import InputFiles, find_inputs, read_dataset
from spanqa.settings import EngineSettings, RaySettings

if TYPE_CHECKING:
    from collections.abc import Sequence

    from spanqa.scale.store import Store


@dataclass
class RayRun:
    """What one Ray run did (its answers are in the store)."""

    run: int  # which run of the job (1, then one more per --resume)
    answered: int  # questions answered by this run
    skipped: int  # questions committed by earlier runs (--resume)
    cluster: dict  # address, nodes, cpus, workers, threads_per_worker, start_s, hosts
    timings: dict[str, float] = field(default_factory=dict)  # time.time() marks: t0, execute

    @property
    def questions(self) -> int:
        return self.answered + self.skipped


def run_on_ray(
    inputs: Sequence[str] | InputFiles,
    model: str | Path,
    store: Store,
    engine: EngineSettings | None = None,
    settings: RaySettings | None = None,
    *,
    quiet: bool = False,
) -> RayRun:
    """Answer every question of ``inputs`` not yet committed in ``store`` with the package
    ``model`` on a Ray cluster, committing answers block by block. Raises a SpanQAError subclass
    (one line) when the input is bad, the cluster is unreachable or the job fails."""
    from spanqa import progress

    ray = import_ray()
    settings = settings or RaySettings()
    if settings.threads_per_worker < 1 or settings.batch_questions < 1:
        raise UsageError("--threads-per-worker and --batch-questions must be at least 1")
    files = inputs if isinstance(inputs, InputFiles) else find_inputs(inputs)  # before Ray starts
    # Warm-up runs are per call: in an actor that would re-run the first batch of every batch.
    engine = replace(engine or EngineSettings(), warmup=0)
    t0 = time.time()
    with cluster(ray, settings) as facts, ray_errors(), data_context(ray, quiet, settings):
        workers = _pool_size(settings, facts["cpus"])
        facts.update(workers=workers, threads_per_worker=settings.threads_per_worker)
        index = _committed_index(ray, store) if store.committed() else None
        # Reading and parsing run beside the actors: a few at once keep up with them.
        readers = max(2, -(-workers // 4))
        dataset = read_dataset(files, settings.batch_questions, index=index, concurrency=readers)
        shipped = [ray.put(_pack(model))] if settings.ship_model else None
        answered = _answer(ray, dataset, model, shipped, workers, engine, settings)
        run = RayRun(store.run, 0, 0, facts, {"t0": t0, "execute": time.time()})
        kinds: dict[bool, dict] | None = {} if engine.answers.version_2_with_negative is None else None
        with progress.bar(desc="questions", unit="q", lines=True) as bar:
            for block in answered.iter_batches(batch_size=None, batch_format="pyarrow"):
                rows = block.to_pylist()
                if kinds is not None:
                    _one_squad_version(rows, kinds)
                calls = [json.loads(c) for c in block.column("call").to_pylist() if c]
                n = store.commit(rows, calls)
                run.answered += n
                run.skipped += len(rows) - n
                bar.update(len(rows))
        run.timings["done"] = time.time()
    return run


def _one_squad_version(rows: list[dict], first: dict[bool, dict]) -> None:
    """With the null answer left to the data, INPUT must be all SQuAD 1.1 or all 2.0 (a local
    run decides for the whole dataset; mixed, neither answer would be that run's)."""
    for row in rows:
        first.setdefault(row["impossible"] is not None, row)
    if len(first) == 2:
        v2, v1 = first[True], first[False]
        raise UsageError(
            f"INPUT mixes SQuAD 2.0 questions ({v2['id']!r} in {v2['source']}) and 1.1 questions ({v1['id']!r} in "
            f"{v1['source']}); rerun with --overwrite and --version-2-with-negative or --no-version-2-with-negative to "
            "answer them alike"
        )


def _committed_index(ray, store: Store):
    """The ref of the committed-id index, built by a task on this node (it reads the store)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from spanqa.scale.store import committed_index

    here = ray.get_runtime_context().get_node_id()
    task = ray.remote(committed_index).options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False))
    ref = task.remote(str(store.path))
    ray.wait([ref], fetch_local=False)  # built (and its errors raised) before the job starts
    return ref


def _answer(ray, dataset, model, shipped, workers: int, engine: EngineSettings, settings: RaySettings):
    """The dataset of answers: a fixed pool of ``workers`` actors of ``threads_per_worker`` CPUs."""
    import warnings

    from spanqa.scale.answerer import Answerer

    with warnings.catch_warnings():
        # Ray 2.60 deprecates restart limits as remote args without a named replacement; without
        # them Ray Data restarts a crashing actor forever and the job would never end.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        return dataset.map_batches(
            Answerer,
            fn_constructor_kwargs={
                # Absolute: an actor's working directory is not the driver's.
                "model": None if shipped else str(model_dir(model).resolve()),
                "shipped": shipped,
                "threads": settings.threads_per_worker,
                "settings": engine,
                "nbest": settings.nbest,
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
    """Actors in the pool: workers x threads <= the cluster's CPUs (reading asks for none)."""
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


__all__ = ["RayRun", "import_ray", "run_on_ray"]
