"""The one-step job: preprocess -> infer -> answers -> score, in memory (the recipe's
eval_acc_perf.sh), plus the model resolution and accuracy guard that ``run`` and ``compile``
share.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spanqa import __version__
from spanqa.answers import AnswerSettings
from spanqa.batching import BatchingSettings, LogitsCollector, gather, plan_batches
from spanqa.errors import GuardError, SpanQAError
from spanqa.squad import Example, Features, FeatureSettings

GUARD_RATIO = 0.995  # a reduced-precision model must keep 99.5% of the fp32 model's F1
DEFAULT_GUARD_QUESTIONS = 1000


@dataclass(frozen=True)
class RunSettings:
    target: str = "cpu-fp32"
    batch_size: int | None = None  # rows per batch (a cap for length-aware batching)
    threads: int | None = None  # None: every core this process may use
    warmup: int = 1  # untimed runs of the first batch
    features: FeatureSettings = FeatureSettings()
    answers: AnswerSettings = AnswerSettings()
    batching: BatchingSettings = BatchingSettings()


@dataclass
class Evaluation:
    predictions: dict[str, str]
    nbest: dict[str, list[dict]]
    scores: dict[str, Any]  # exact_match, f1, total, unanswered
    features: Features
    start_logits: np.ndarray
    end_logits: np.ndarray
    stats: Any  # spanqa.infer.InferenceStats
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage

    @property
    def questions_per_s(self) -> float:
        busy = sum(self.timings.get(k, 0.0) for k in ("preprocess_s", "inference_s", "answers_s"))
        return len(self.features.examples) / busy if busy else float("nan")


def plan_for(runtime, features: Features, settings: RunSettings):
    """The batches ``infer_features`` runs: length-aware on dynamic models, fixed on fixed-shape ones."""
    return plan_batches(
        features.lengths,
        settings.batching,
        max_seq_length=features.settings.max_seq_length,
        fixed_batch=runtime.batch_size,
        fixed_seq=runtime.seq_len,
        batch_size=settings.batch_size,
    )


def infer_features(runtime, features: Features, settings: RunSettings, desc: str = "infer"):
    """Start/end logits [N, max_seq_length] for every feature, with length-aware batching on
    dynamic models and fixed batches on fixed-shape ones. Returns (start, end, stats)."""
    from spanqa.infer import Batch, run_batches

    batches = plan_for(runtime, features, settings)
    collector = LogitsCollector(len(features), max(features.settings.max_seq_length, runtime.seq_len or 0))
    by_key = {}

    def items():
        for i, plan in enumerate(batches):
            by_key[str(i)] = plan
            ids, types, mask = gather(features.input_ids, features.segment_ids, features.input_mask, plan)
            yield Batch(str(i), ids, types, mask)

    def sink(batch, start, end):
        collector.add(by_key.pop(batch.key), start, end)

    stats = run_batches(runtime, items(), warmup=settings.warmup, on_output=sink, total=len(batches), desc=desc)
    return collector.start, collector.end, stats


def evaluate_runtime(
    runtime,
    examples: list[Example],
    tokenizer,
    settings: RunSettings = RunSettings(),
) -> Evaluation:
    """Answer and score ``examples`` with a loaded runtime, everything in memory."""
    from spanqa.answers import predict, score
    from spanqa.squad import build_features

    t0 = time.perf_counter()
    features = build_features(examples, tokenizer, settings.features)
    t1 = time.perf_counter()
    start, end, stats = infer_features(runtime, features, settings)
    t2 = time.perf_counter()
    predictions, nbest = predict(features, start, end, settings.answers)
    t3 = time.perf_counter()
    scores = score(_as_dataset(examples), predictions)
    timings = {"preprocess_s": t1 - t0, "inference_s": t2 - t1, "answers_s": t3 - t2, "score_s": time.perf_counter() - t3}
    return Evaluation(predictions, nbest, scores, features, start, end, stats, timings)


def _as_dataset(examples: list[Example]) -> list[dict]:
    """A minimal SQuAD article list holding these examples' gold answers: what the official
    scoring reads, without reading the dataset file again."""
    qas = [{"id": e.qas_id, "answers": [{"text": t} for t in e.answers]} for e in examples]
    return [{"title": "subset", "paragraphs": [{"context": "", "qas": qas}]}]


# --------------------------------------------------------------------------------------------
# Accuracy guard


def guard_check(
    candidate,
    reference,
    dataset: str | Path,
    questions: int = DEFAULT_GUARD_QUESTIONS,
    threads: int | None = None,
    ratio: float = GUARD_RATIO,
) -> dict:
    """Score a candidate model package against the fp32 reference on the first ``questions``
    questions of ``dataset``; GuardError when its F1 is below ``ratio`` of the reference's."""
    from spanqa.package import open_package
    from spanqa.runtime import RuntimeOptions, open_runtime
    from spanqa.squad import read_squad

    examples = read_squad(dataset)[:questions]
    settings = RunSettings(threads=threads, warmup=0)
    results = {}
    for name, model in (("reference", reference), ("candidate", candidate)):
        package = open_package(model) if not hasattr(model, "manifest") else model
        runtime = open_runtime(package, RuntimeOptions(threads=threads))
        results[name] = evaluate_runtime(runtime, examples, package.tokenizer, settings).scores
    ref_f1, f1 = results["reference"]["f1"], results["candidate"]["f1"]
    report = {
        "dataset": str(dataset),
        "questions": len(examples),
        "f1": f1,
        "exact_match": results["candidate"]["exact_match"],
        "reference_f1": ref_f1,
        "reference_exact_match": results["reference"]["exact_match"],
        "ratio": f1 / ref_f1 if ref_f1 else float("nan"),
        "required_ratio": ratio,
    }
    report["passed"] = bool(ref_f1 > 0 and f1 >= ratio * ref_f1)
    if not report["passed"]:
        raise GuardError(
            f"accuracy guard: F1 {f1:.2f} is {100 * report['ratio']:.2f}% of the fp32 model's {ref_f1:.2f} "
            f"on the first {len(examples)} questions of {dataset} (needs >= {100 * ratio:.1f}%); model not written"
        )
    return report


# --------------------------------------------------------------------------------------------
# Model resolution and the one-step run


def _cache_key(source_sha256: str, target: str, *extra: object) -> str:
    h = hashlib.sha256()
    h.update(source_sha256.encode())
    h.update("|".join(map(str, (target, __version__, *extra))).encode())
    return h.hexdigest()[:16]


def resolve_model(
    model: str | Path,
    target: str = "cpu-fp32",
    *,
    cache: Path | None = None,
    guard: str | Path | None = None,
    guard_questions: int = DEFAULT_GUARD_QUESTIONS,
    calibration: str | Path | None = None,
):
    """A model package for ``model`` and ``target``.

    A model package is used as it is (its own target). A checkpoint directory, or a ``.onnx``
    with a target other than cpu-fp32, is built for ``target`` once into a cache keyed by the
    source's hash, the target and (for reduced precision) the calibration and guard settings.
    A ``.onnx`` with the default target runs as it is. Returns (ModelPackage, built: bool).
    """
    from spanqa.package import MANIFEST_NAME, open_package

    path = Path(model)
    is_package = path.is_dir() and (path / MANIFEST_NAME).is_file()
    if is_package or (path.suffix == ".onnx" and path.is_file() and target == "cpu-fp32"):
        package = open_package(path)
        if is_package and target not in (package.target, "cpu-fp32"):
            raise SpanQAError(
                f"{path}: a {package.target} model package; for --target {target} pass the checkpoint "
                f"or its exported .onnx ({path / 'exported.onnx'} when 'spanqa convert' made it)"
            )
        return package, False
    is_onnx = path.suffix == ".onnx" and path.is_file()
    if not is_onnx and not (path.is_dir() and (path / "config.json").is_file()):
        raise SpanQAError(f"{path}: neither a model package, a .onnx file nor a checkpoint directory (config.json + weights)")
    from spanqa.compile import CompileSettings, compile_model, convert_checkpoint, get_target
    from spanqa.download import cache_home
    from spanqa.fileutil import sha256_file

    if is_onnx:
        source_sha = sha256_file(path)
    else:
        from spanqa.checkpoint import inspect_checkpoint

        source_sha = inspect_checkpoint(path).weights_sha256 + sha256_file(path / "config.json")
    uses_data = get_target(target).tolerance is None  # reduced precision: calibration and guard shape it
    key = _cache_key(source_sha, target, *((calibration, guard, guard_questions) if uses_data else ()))
    out = (cache or (cache_home() / "packages")) / f"{path.stem if is_onnx else path.name}-{target}-{key}"
    if (out / MANIFEST_NAME).is_file():
        return open_package(out), False
    settings = CompileSettings(
        target=target,
        calibration=str(calibration or guard) if (calibration or guard) else None,
        guard=str(guard) if guard else None,
        guard_questions=guard_questions,
    )
    if is_onnx:
        compile_model(path, out, settings)
    else:
        convert_checkpoint(path, out, settings)
    return open_package(out), True


@dataclass
class RunReport:
    evaluation: Evaluation
    summary: dict
    result: dict
    result_dir: Path


def run(
    dataset: str | Path,
    model,
    result_dir: str | Path,
    settings: RunSettings = RunSettings(),
    *,
    keep_files: bool = False,
) -> RunReport:
    """preprocess -> infer -> evaluate -> report, writing predictions.json,
    nbest_predictions.json, result.json and summary.json (the inference summary) atomically."""
    from spanqa.answers import write_results
    from spanqa.fileutil import sha256_file
    from spanqa.infer import cpu_info
    from spanqa.package import open_package
    from spanqa.runtime import RuntimeOptions, default_threads, open_runtime, runtime_info
    from spanqa.squad import read_squad

    package = model if hasattr(model, "manifest") else open_package(model)
    threads = settings.threads or default_threads()
    t_load = time.perf_counter()
    runtime = open_runtime(package, RuntimeOptions(threads=threads))
    load_s = time.perf_counter() - t_load
    t_read = time.perf_counter()
    examples = read_squad(dataset)  # carries every gold answer: scoring needs no second read
    read_s = time.perf_counter() - t_read
    evaluation = evaluate_runtime(runtime, examples, package.tokenizer, settings)
    evaluation.timings["read_s"] = read_s
    evaluation.timings["load_s"] = load_s
    stats = evaluation.stats.to_json()
    inference_s = stats["inference_s"] or float("nan")
    summary = {
        "spanqa_version": __version__,
        "dataset": str(Path(dataset).resolve()),
        "dataset_sha256": sha256_file(dataset),
        "model": str(package.root.resolve()),
        "model_sha256": sha256_file(package.model_path),
        "target": package.target,
        "precision": package.manifest.get("precision", "fp32"),
        "runtime": runtime_info(runtime),
        "threads": threads,
        "cpu": cpu_info(),
        "questions": len(examples),
        "features": len(evaluation.features),
        "real_tokens": int(evaluation.features.lengths.sum()),
        "settings": {
            "features": asdict(settings.features) | {"do_lower_case": evaluation.features.settings.do_lower_case},
            "answers": asdict(settings.answers),
            "batching": asdict(settings.batching),
            "batch_size": settings.batch_size,
            "fixed_shape": {"batch_size": runtime.batch_size, "seq_len": runtime.seq_len},
        },
        "timings_s": evaluation.timings,
        "end_to_end_questions_per_s": evaluation.questions_per_s,
        "model_rows_per_s": stats["rows"] / inference_s,
        "inference": stats,
    }
    result = dict(evaluation.scores)
    result.update(
        {
            "dataset": str(dataset),
            "model": str(package.root),
            "target": package.target,
            "num_features": len(evaluation.features),
            "answer_settings": asdict(settings.answers),
            "feature_settings": asdict(evaluation.features.settings),
        }
    )
    extra: dict[str, Any] = {"summary.json": summary}
    result_dir = Path(result_dir)
    result_dir.parent.mkdir(parents=True, exist_ok=True)
    import tempfile

    with tempfile.TemporaryDirectory(prefix=f".{result_dir.name}.keep.", dir=result_dir.parent) as keep:
        dirs = _keep_files(evaluation, Path(keep), settings, package.tokenizer, dataset) if keep_files else {}
        write_results(result_dir, evaluation.predictions, evaluation.nbest, result, extra_files=extra, extra_dirs=dirs)
    return RunReport(evaluation, summary, result, result_dir)


def _keep_files(evaluation: Evaluation, keep: Path, settings: RunSettings, tokenizer, dataset) -> dict[str, Path]:
    """The recipe's intermediate files: features in its folders and the logits in msame's
    naming (padded to max_seq_length), so ``spanqa evaluate`` can re-score them."""
    from spanqa.squad import write_features

    batch = settings.batch_size or 1
    write_features(evaluation.features, keep / "features", batch, tokenizer=tokenizer, dataset=dataset)
    n, width = evaluation.start_logits.shape
    out = keep / "outputs"
    out.mkdir()
    for i, lo in enumerate(range(0, n, batch)):
        for k, arr in enumerate((evaluation.start_logits, evaluation.end_logits)):
            part = arr[lo : lo + batch]
            if part.shape[0] < batch:
                part = np.concatenate([part, np.zeros((batch - part.shape[0], width), np.float32)])
            part.astype("<f4").tofile(out / f"{i}_output_{k}.bin")
    return {"features": keep / "features", "outputs": out}
