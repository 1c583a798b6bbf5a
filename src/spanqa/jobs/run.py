"""``spanqa run``: read a dataset, answer every question through the engine, score, write the
result directory (predictions.json, nbest_predictions.json, result.json, summary.json)."""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from spanqa import __version__
from spanqa.errors import UsageError
from spanqa.settings import RunSettings


@dataclass
class RunReport:
    evaluation: Any  # spanqa.engine.Prediction (Evaluation when the dataset has gold answers)
    summary: dict
    result: dict | None  # None when the questions carry no gold answers
    result_dir: Path


def run(
    dataset: str | Path,
    model,
    result_dir: str | Path,
    settings: RunSettings = RunSettings(),
    *,
    keep_files: bool = False,
    overwrite: bool = False,
    tune_threshold: bool = False,
) -> RunReport:
    """preprocess -> infer -> evaluate -> report in memory, through the engine; the result
    directory appears complete or not at all. ``model`` is a model package (or its path).

    The null answer (SQuAD 2.0) is on when ``settings.answers`` says so, or, left undecided,
    for a 2.0 dataset or a package built for 2.0; null_odds.json is then written too.
    ``tune_threshold`` answers at the threshold that maximises F1 (best_f1_thresh) instead of
    ``null_score_diff_threshold`` and records it in result.json."""
    from spanqa.answers.scoring import any_gold
    from spanqa.answers.squad2 import is_squad2, resolve_version_2
    from spanqa.data.squad import read_squad
    from spanqa.engine import Engine
    from spanqa.fileutil import check_output
    from spanqa.models.package import ModelPackage, open_package

    check_output(result_dir, "result", overwrite=overwrite, inputs=(dataset,))
    package = model if isinstance(model, ModelPackage) else open_package(model)
    t_read = time.perf_counter()
    examples = read_squad(dataset)  # carries every gold answer: scoring needs no second read
    read_s = time.perf_counter() - t_read
    answers = resolve_version_2(settings.engine.answers, examples=examples, package=package)
    settings = replace(settings, engine=replace(settings.engine, answers=answers))
    version_2 = answers.version_2_with_negative
    if tune_threshold and not version_2:
        raise UsageError("--tune-threshold needs the null answer: a SQuAD 2.0 dataset or --version-2-with-negative")
    # 1.1: the labelled questions are scored (result.json counts the others); 2.0: no answer is a gold answer
    scored = any_gold(examples) or is_squad2(examples)
    if tune_threshold and not scored:
        raise UsageError(f"--tune-threshold: {dataset} has no gold answers to tune on; pass a labelled file")
    t_load = time.perf_counter()
    with Engine(package, threads=settings.threads, settings=settings.engine, throughput=True) as engine:
        load_s = time.perf_counter() - t_load
        evaluation = engine.evaluate(examples) if scored else engine.predict(examples)
        evaluation.timings.update(read_s=read_s, load_s=load_s)
        if tune_threshold:
            engine.settings = replace(engine.settings, answers=_tune(evaluation, examples, engine.settings.answers))
        summary = job_summary(engine, dataset, evaluation)
    result = None
    if scored:
        result = dict(evaluation.scores)
        result.update(
            {
                "dataset": str(dataset),
                "model": str(package.root),
                "target": package.target,
                "num_features": len(evaluation.features),
                "answer_settings": asdict(engine.settings.answers),
                "feature_settings": asdict(evaluation.features.settings),
            }
        )
    if version_2 and result is not None:
        result["null_score_diff_threshold"] = engine.settings.answers.null_score_diff_threshold
        result["threshold_tuned"] = tune_threshold
    write_run(result_dir, evaluation, result, summary, settings, package.tokenizer, dataset, keep_files, overwrite)
    return RunReport(evaluation, summary, result, Path(result_dir))


def _tune(evaluation, examples, answers):
    """Re-answer at the best-F1 threshold and re-score; the answer settings that say so."""
    from spanqa.answers import squad2

    best = evaluation.scores["best_f1_thresh"]
    evaluation.predictions = squad2.apply_threshold(evaluation.best_spans, evaluation.null_odds, best)
    evaluation.scores = squad2.score_examples(examples, evaluation.predictions, evaluation.null_odds, evaluation.best_spans)
    return replace(answers, null_score_diff_threshold=best)


def job_summary(engine, dataset, evaluation) -> dict:
    """summary.json of a run: what ran, on what, and how fast."""
    from spanqa.fileutil import sha256_file
    from spanqa.sysinfo import cpu_info

    stats = evaluation.stats.to_json()
    inference_s = stats["inference_s"] or float("nan")
    features = evaluation.features
    return {
        "spanqa_version": __version__,
        "dataset": str(Path(dataset).resolve()),
        "dataset_sha256": sha256_file(dataset),
        "model": str(engine.package.root.resolve()),
        "model_sha256": engine.package.sha256(),
        "target": engine.package.target,
        "precision": engine.package.precision,
        "guarded": engine.package.manifest.guarded,
        "runtime": engine.info()["runtime"],
        "threads": engine.threads,
        "cpu": cpu_info(),
        "questions": len(features.examples),
        "features": len(features),
        "real_tokens": int(features.lengths.sum()),
        "settings": {
            "features": asdict(features.settings),
            "answers": asdict(engine.settings.answers),
            "batching": asdict(engine.settings.batching),
            "batch_size": engine.settings.batch_size,
            "fixed_shape": {"batch_size": engine.runtime.batch_size, "seq_len": engine.runtime.seq_len},
        },
        "timings_s": evaluation.timings,
        "end_to_end_questions_per_s": evaluation.questions_per_s,
        "model_rows_per_s": stats["rows"] / inference_s,
        "inference": stats,
        "batch_timings": evaluation.stats.per_batch(),
    }


def write_run(result_dir, evaluation, result, summary, settings, tokenizer, dataset, keep_files: bool, overwrite: bool) -> None:
    from spanqa.answers.results import write_results

    result_dir = Path(result_dir)
    result_dir.parent.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {"summary.json": summary}
    if evaluation.null_odds is not None:
        from spanqa.answers.squad2 import NULL_ODDS_FILE

        extra[NULL_ODDS_FILE] = evaluation.null_odds
    with tempfile.TemporaryDirectory(prefix=f".{result_dir.name}.keep.", dir=result_dir.parent) as keep:
        dirs = _keep_files(evaluation, Path(keep), settings, tokenizer, dataset) if keep_files else {}
        write_results(
            result_dir,
            evaluation.predictions,
            evaluation.nbest,
            result,
            extra_files=extra,
            extra_dirs=dirs,
            overwrite=overwrite,
            inputs=(dataset,),
        )


def _keep_files(evaluation, keep: Path, settings: RunSettings, tokenizer, dataset) -> dict[str, Path]:
    """The recipe's intermediate files: features in its folders and the logits in msame's
    naming, padded to max_seq_length with -inf (no logit was computed there), so ``spanqa
    evaluate`` re-scores them to the same answers, ``--rank-padding`` or not."""
    from spanqa.data.folders import write_features

    batch = settings.engine.batch_size or 1
    write_features(
        evaluation.features,
        keep / "features",
        batch,
        tokenizer=tokenizer,
        dataset=dataset,
        version_2_with_negative=bool(settings.engine.answers.version_2_with_negative),
    )
    n, width = evaluation.start_logits.shape
    out = keep / "outputs"
    out.mkdir()
    for i, lo in enumerate(range(0, n, batch)):
        for k, arr in enumerate((evaluation.start_logits, evaluation.end_logits)):
            part = arr[lo : lo + batch]
            if part.shape[0] < batch:
                part = np.concatenate([part, np.full((batch - part.shape[0], width), -np.inf, np.float32)])
            part.astype("<f4").tofile(out / f"{i}_output_{k}.bin")
    return {"features": keep / "features", "outputs": out}
