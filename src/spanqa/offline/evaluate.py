"""The evaluate step (the recipe's postprocess): features + output files → predictions, n-best
and scores in a result directory."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import numpy as np

from spanqa.answers.extraction import predict_answers
from spanqa.answers.results import write_results
from spanqa.answers.scoring import score
from spanqa.answers.squad2 import NULL_ODDS_FILE, is_squad2, resolve_version_2, score_examples
from spanqa.data.folders import load_features, read_features_manifest
from spanqa.data.squad import read_squad
from spanqa.errors import DatasetError, FeaturesError
from spanqa.fileutil import check_output
from spanqa.offline.logits import read_logits
from spanqa.settings import AnswerSettings


def _manifest_value(manifest: Any, key: str) -> Any:
    if isinstance(manifest, Mapping):
        if key in manifest:
            return manifest[key]
        for nested in manifest.values():
            if isinstance(nested, Mapping) and key in nested:
                return nested[key]
        return None
    return getattr(manifest, key, None)


def evaluate(
    dataset_path: str | os.PathLike,
    features_dir: str | os.PathLike,
    outputs_dir: str | os.PathLike,
    result_dir: str | os.PathLike,
    settings: AnswerSettings = AnswerSettings(),
    extra_files: Mapping[str, Any] | None = None,
    *,
    overwrite: bool = False,
) -> dict:
    """Features + inference outputs → predictions, n-best and scores in ``result_dir``.

    Returns the result dict that went into result.json.
    """
    inputs = (dataset_path, features_dir, outputs_dir)
    check_output(result_dir, "result", overwrite=overwrite, inputs=inputs)  # before the work, not after
    examples = read_squad(dataset_path)  # fail fast on a bad dataset, before the heavy work
    features = load_features(features_dir)
    manifest = read_features_manifest(features_dir)
    _check_dataset(dataset_path, manifest, features_dir)
    batch_size = _manifest_value(manifest, "batch_size")
    if not isinstance(batch_size, int):
        raise FeaturesError(f"features manifest in {features_dir} has no batch_size; rebuild the features")
    num_features = _manifest_value(manifest, "num_features")
    if num_features is not None and int(num_features) != len(features):
        raise FeaturesError(
            f"features manifest in {features_dir} says {num_features} features but {len(features)} "
            "were read; rebuild the features"
        )
    lengths = np.fromiter((len(t) for t in features.tokens), dtype=np.int64, count=len(features))
    start, end = read_logits(outputs_dir, batch_size, lengths, features.settings.max_seq_length)
    settings = resolve_version_2(settings, examples=examples, features_manifest=manifest)
    answers = predict_answers(features, start, end, settings)
    predictions, nbest = answers.predictions, answers.nbest
    if answers.null_odds is not None or is_squad2(examples):
        scores = score_examples(examples, predictions, answers.null_odds, answers.best_spans)
    else:
        scores = score(examples, predictions)
    answered = scores["total"] - scores["unanswered"]
    if answered == 0:
        raise DatasetError(
            f"none of the {scores['total']} questions in {dataset_path} has a prediction; "
            "were the features made from this dataset?"
        )
    result = {
        **scores,
        "answer_settings": asdict(settings),
        "feature_settings": asdict(features.settings),
        "num_features": len(features),
        "batch_size": batch_size,
        "dataset": str(dataset_path),
        "features": str(features_dir),
        "outputs": str(outputs_dir),
    }
    if answers.null_odds is not None:
        result["null_score_diff_threshold"] = settings.null_score_diff_threshold
        extra_files = {**(extra_files or {}), NULL_ODDS_FILE: answers.null_odds}
    write_results(result_dir, predictions, nbest, result, extra_files=extra_files, overwrite=overwrite, inputs=inputs)
    return result


def _check_dataset(dataset_path, manifest: Mapping, features_dir) -> None:
    """The features must come from this dataset: the manifest records its sha256."""
    from spanqa.fileutil import sha256_file

    recorded = manifest.get("dataset_sha256") if isinstance(manifest, Mapping) else None
    if recorded and sha256_file(dataset_path) != recorded:
        name = manifest.get("dataset") or "another file"
        raise DatasetError(
            f"{dataset_path}: not the dataset the features in {features_dir} were built from ({name}); "
            "pass that dataset, or preprocess this one"
        )
