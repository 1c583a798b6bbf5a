"""``spanqa run --engine ray`` end to end: RESULT checked, answers committed in a partial
directory beside it, then the complete result directory renamed into place.

    RESULT            appears complete or not at all (a temp dir renamed over it at the end)
    RESULT.partial/   the job while it runs: answers.sqlite (committed blocks), a marker

RESULT is never written before the end, so ``--overwrite`` replaces an old result only with a
complete new one: a failed or interrupted run leaves the old RESULT (or none) and its
committed answers in RESULT.partial, which ``--resume`` continues (same model and answer
settings; INPUT may have been fixed) and ``--overwrite`` discards. The final files are written
from the store in input order, so they equal an uninterrupted run's byte for byte.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from spanqa import __version__
from spanqa.errors import ClusterError, OutputError, SpanQAError, UsageError
from spanqa.settings import EngineSettings, RaySettings

PARTIAL_KIND = "ray partial result"  # the marker kind of RESULT.partial


@dataclass
class RayReport:
    summary: dict
    result: dict | None  # None when no question carries a gold answer
    result_dir: Path
    run: Any = None  # spanqa.scale.ray_job.RayRun


def partial_dir(result_dir: str | Path) -> Path:
    """Where a Ray run into ``result_dir`` keeps its committed answers until it finishes."""
    result_dir = Path(result_dir)
    return result_dir.with_name(result_dir.name + ".partial")


def run_job(
    inputs,
    package,
    result_dir: str | Path,
    engine: EngineSettings,
    settings: RaySettings,
    *,
    overwrite: bool = False,
    resume: bool = False,
    tune_threshold: bool = False,
    quiet: bool = False,
) -> RayReport:
    """``spanqa run --engine ray``: check INPUT and RESULT, run (or resume) on Ray, write RESULT."""
    from spanqa.answers.squad2 import package_squad_version
    from spanqa.fileutil import check_output
    from spanqa.scale.inputs import find_inputs
    from spanqa.scale.ray_job import import_ray, run_on_ray
    from spanqa.scale.store import Store

    t0 = time.perf_counter()
    import_ray()  # the install hint before anything else
    # A package built for 2.0 answers with the null answer; otherwise the data decides, row by row.
    if engine.answers.version_2_with_negative is None and package_squad_version(package) == 2:
        engine = replace(engine, answers=replace(engine.answers, version_2_with_negative=True))
    if tune_threshold and engine.answers.version_2_with_negative is False:
        raise UsageError("--tune-threshold needs the null answer: drop --no-version-2-with-negative")
    files = find_inputs([str(p) for p in inputs])
    local = tuple(files.local_paths)
    final = check_output(result_dir, "result", overwrite=overwrite, inputs=local)
    partial, created = _open_partial(final, overwrite=overwrite, resume=resume, inputs=local)
    store = Store(partial)
    try:
        sha = package.sha256()
        store.check_key(_job_key(sha, engine, settings), resume=resume)
        store.start_run()
        run = run_on_ray(files, package, store, engine, settings, quiet=quiet)
        report = _finish(store, run, inputs, package, engine, settings, final, tune_threshold, overwrite, t0)
    except BaseException as exc:
        committed = store.committed()
        interrupted = isinstance(exc, KeyboardInterrupt)
        store.end_run("interrupted" if interrupted else "failed")
        store.close()
        if created and committed == 0 and not interrupted:
            shutil.rmtree(partial, ignore_errors=True)  # nothing answered: leave no trace
        elif isinstance(exc, SpanQAError) and not isinstance(exc, UsageError):
            raise type(exc)(
                f"{exc}; the {committed} answers committed are kept in {partial}: after the fix, rerun the same "
                "command with --resume"
            ) from None
        raise
    store.close()
    shutil.rmtree(partial, ignore_errors=True)
    return report


def _open_partial(final: Path, *, overwrite: bool, resume: bool, inputs: tuple) -> tuple[Path, bool]:
    """RESULT.partial: the interrupted run's (``resume``), or a new one (``overwrite`` discards
    an interrupted run's). Never a directory spanqa did not write there."""
    from spanqa.fileutil import MARKER, artifact_kind, check_output

    partial = partial_dir(final)
    if partial.exists():
        if not partial.is_dir() or artifact_kind(partial) != PARTIAL_KIND:
            raise OutputError(
                f"{partial}: exists and spanqa did not write it; move it away (a Ray run keeps its committed answers there)"
            )
        if resume:
            return partial, False
        if not overwrite:
            raise OutputError(
                f"-o {final}: an interrupted Ray run's answers are in {partial}; pass --resume to finish that run, "
                "or --overwrite to start afresh"
            )
        from spanqa.scale.store import Store

        Store(partial).close()  # refused while another run writes there
        shutil.rmtree(partial)  # spanqa's own, and --overwrite says start afresh
    elif resume:
        raise UsageError(f"--resume: there is no interrupted Ray run at {partial}; run without --resume")
    check_output(partial, PARTIAL_KIND, inputs=inputs)
    try:
        partial.mkdir(parents=True)
        (partial / MARKER).write_text(json.dumps({"kind": PARTIAL_KIND}) + "\n", encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"-o {final}: cannot create {partial} ({exc.strerror or exc}); choose a writable place") from None
    return partial, True


def _job_key(model_sha256: str, engine: EngineSettings, settings: RaySettings) -> dict:
    """What the answers depend on: a resumed run must answer with the same."""
    return {
        "spanqa_version": __version__,
        "model_sha256": model_sha256,
        "features": asdict(engine.features) if engine.features else None,
        "answers": asdict(engine.answers),
        "nbest": settings.nbest,
    }


def _finish(store, run, inputs, package, engine, settings, final, tune_threshold, overwrite, t0) -> RayReport:
    """Check that every input question has one answer, score, write RESULT atomically."""
    from spanqa.fileutil import atomic_dir
    from spanqa.scale import scoring
    from spanqa.scale.outputs import dump_json, write_files
    from spanqa.scale.summary import ray_summary

    t_finish = time.perf_counter()
    missing, first = store.missing()
    if missing:
        raise ClusterError(f"the Ray job left {missing} questions without an answer (first {first!r}); rerun with --resume")
    stats = store.input_stats()
    squad2 = stats["squad2_questions"] > 0
    version_2 = engine.answers.version_2_with_negative
    if version_2 is None:
        version_2 = stats["null_answer"] > 0
    scored = stats["with_answers"] > 0 or squad2  # 2.0: no answer is a gold answer
    kept = f"the answers are kept in {partial_dir(final)}: rerun with --resume without --tune-threshold"
    if tune_threshold and not version_2:
        raise UsageError(f"--tune-threshold needs the null answer: a SQuAD 2.0 dataset or --version-2-with-negative; {kept}")
    if tune_threshold and not scored:
        raise UsageError(f"--tune-threshold: INPUT has no gold answers to tune on; {kept}")
    answers = replace(engine.answers, version_2_with_negative=version_2)
    result = None
    t_score = time.perf_counter()
    if scored:
        v2_metrics = version_2 or squad2
        result = scoring.score_v2(store, version_2) if v2_metrics else scoring.score_v1(store)
        if tune_threshold:
            answers = replace(answers, null_score_diff_threshold=result["best_f1_thresh"])
            result = scoring.score_v2(store, True, threshold=answers.null_score_diff_threshold)
        features = store.feature_settings()
        result.update(
            {
                "dataset": ", ".join(str(Path(p)) if "://" not in str(p) else str(p) for p in inputs),
                "model": str(package.root),
                "target": package.target,
                "num_features": stats["features"],
                "answer_settings": asdict(answers),
                "feature_settings": features or (asdict(engine.features) if engine.features else None),
            }
        )
        if version_2:
            result["null_score_diff_threshold"] = answers.null_score_diff_threshold
            result["threshold_tuned"] = tune_threshold
    score_s = time.perf_counter() - t_score
    engine = replace(engine, answers=answers)
    store.end_run("done")  # as the summary records it; a failure below marks it failed
    with atomic_dir(final, "result", overwrite=overwrite, inputs=tuple(p for p in map(str, inputs) if "://" not in p)) as tmp:
        threshold = answers.null_score_diff_threshold if tune_threshold else None
        write_files(store, tmp, nbest=settings.nbest, null_odds=version_2, threshold=threshold)
        if result is not None:
            dump_json(result, tmp / "result.json")
        wall = {"score_s": score_s, "finish_s": time.perf_counter() - t_finish, "wall_s": time.perf_counter() - t0}
        summary = ray_summary(store, run, inputs, package, engine, settings, wall)
        dump_json(summary, tmp / "summary.json")
    return RayReport(summary, result, final, run)
