"""The result directory of a Ray run: what a local run writes, plus per-worker figures.

``predictions.jsonl`` streams into RESULT while the job runs (RESULT carries the result marker
from the start, so a rerun after a failure needs ``--overwrite``, as after any run). At the
end ``predictions.json``, ``summary.json``, ``result.json`` (when every question has gold
answers) and the finished ``predictions.jsonl`` replace RESULT in one rename, as a local run's
result directory appears. There is no ``nbest_predictions.json``: only answers leave the actors.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from spanqa import __version__
from spanqa.scale.ray_job import PARTIAL, RayRun
from spanqa.settings import EngineSettings, RaySettings


@dataclass
class RayReport:
    run: RayRun
    summary: dict
    result: dict | None  # None when some question has no gold answer
    result_dir: Path


def run_job(
    inputs,
    package,
    result_dir: str | Path,
    engine: EngineSettings,
    settings: RaySettings,
    *,
    overwrite: bool = False,
    quiet: bool = False,
) -> RayReport:
    """``spanqa run --engine ray``: check INPUT and RESULT, run on Ray, write the result."""
    import shutil

    from spanqa.scale.inputs import find_inputs
    from spanqa.scale.ray_job import import_ray, run_on_ray

    import_ray()  # the install hint before anything else
    engine = _squad1_answers(engine, package)
    files = find_inputs([str(p) for p in inputs])
    existed = Path(result_dir).exists()
    final = start_result(result_dir, files.local_paths, overwrite=overwrite)
    try:
        run = run_on_ray(files, package, final, engine, settings, quiet=quiet)
    except BaseException:
        # Nothing answered: leave no trace. Otherwise predictions.jsonl keeps what was answered.
        partial = final / PARTIAL
        if not existed and (not partial.is_file() or partial.stat().st_size == 0):
            shutil.rmtree(final, ignore_errors=True)
        raise
    return write_report(run, [str(p) for p in inputs], package, final, engine, settings)


def _squad1_answers(engine: EngineSettings, package) -> EngineSettings:
    """The Ray job answers SQuAD 1.1-style: the null answer (2.0) needs each question's null
    odds on the driver, which do not leave the actors."""
    from dataclasses import replace

    from spanqa.answers.squad2 import resolve_version_2
    from spanqa.errors import UsageError

    answers = resolve_version_2(engine.answers, package=package)
    if answers.version_2_with_negative:
        raise UsageError("SQuAD 2.0 (the null answer) is for --engine local; with --engine ray pass --no-version-2-with-negative")
    return replace(engine, answers=answers)


def start_result(result_dir: str | Path, inputs, *, overwrite: bool) -> Path:
    """Check RESULT before any work (never a directory spanqa did not write, nor one holding a
    local input) and mark it as a result, so the answers can stream into it."""
    from spanqa.fileutil import MARKER, check_output

    final = check_output(result_dir, "result", overwrite=overwrite, inputs=tuple(inputs))
    final.mkdir(parents=True, exist_ok=True)
    (final / MARKER).write_text(json.dumps({"kind": "result"}) + "\n", encoding="utf-8")
    (final / PARTIAL).unlink(missing_ok=True)
    return final


def write_report(
    run: RayRun, inputs, package, result_dir: str | Path, engine: EngineSettings, settings: RaySettings
) -> RayReport:
    """predictions.json, summary.json and (with gold answers) result.json, as a local run."""
    from spanqa.answers.results import write_results
    from spanqa.answers.scoring import score
    from spanqa.data.squad import Example

    result_dir = Path(result_dir)
    summary = ray_summary(run, inputs, package, engine, settings)
    result = None
    if run.questions.has_gold:
        examples = [Example(qid, "", [], run.questions.answers[qid]) for qid in run.questions.ids]
        result = dict(score(examples, run.predictions))
        result.update(
            {
                "dataset": ", ".join(map(str, inputs)),
                "model": str(package.root),
                "target": package.target,
                "num_features": run.features,
                "answer_settings": asdict(engine.answers),
                "feature_settings": asdict(engine.features) if engine.features else None,
            }
        )
    partial = (result_dir / PARTIAL).read_bytes()
    local = tuple(p for p in inputs if "://" not in str(p))
    extra = {"summary.json": summary, PARTIAL: partial}
    # overwrite: RESULT is this run's own (start_result marked it); check_output passed already.
    write_results(result_dir, run.predictions, None, result, extra_files=extra, overwrite=True, inputs=local)
    return RayReport(run, summary, result, result_dir)


def ray_summary(run: RayRun, inputs, package, engine: EngineSettings, settings: RaySettings) -> dict[str, Any]:
    """summary.json of a Ray run: a local run's keys where they mean the same, plus the cluster
    and each worker's questions/s."""
    from spanqa.sysinfo import cpu_info

    return {
        "spanqa_version": __version__,
        "engine": "ray",
        "dataset": [str(p) for p in inputs],
        "model": str(Path(package.root).resolve()),
        "model_sha256": package.sha256(),
        "target": package.target,
        "precision": package.precision,
        "guarded": package.manifest.guarded,
        "runtime": {"name": package.runtime},
        "threads": settings.threads_per_worker,  # per worker
        "cpu": cpu_info(),  # the driver's
        "questions": len(run.predictions),
        "features": run.features,
        "settings": {
            "features": asdict(engine.features) if engine.features else None,
            "answers": asdict(engine.answers),
            "batching": asdict(engine.batching),
            "batch_size": engine.batch_size,
            "ray": {k: v for k, v in asdict(settings).items() if k != "address"},
        },
        "timings_s": run.timings,
        "end_to_end_questions_per_s": run.questions_per_s,
        "model_rows_per_s": float("nan"),  # per-batch model figures stay in the actors
        "inference": {},
        "ray": run.cluster | {"duplicates_dropped": run.duplicates},
        "workers": run.workers,
    }
