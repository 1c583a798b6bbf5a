"""The accuracy guard: a reduced-precision model must keep 99.5% of the fp32 model's F1 on real
SQuAD questions, answered through the engine exactly as ``run`` answers them.

A decision on a few questions is noise (one flipped answer in 50 moves F1 by 2%), so the guard
needs ``min_questions`` and records a 95% confidence interval of the per-question F1 difference
beside its verdict.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from spanqa.errors import GuardError, UsageError
from spanqa.settings import AnswerSettings, EngineSettings, GuardSettings


@dataclass(frozen=True)
class Guard:
    """The guard as ``compile`` calls it: ``guard(candidate_package, fp32_source) -> figures``.
    Its questions are read and checked when it is made, so a guard set that cannot decide stops
    the build before the model is exported and compiled, not after."""

    settings: GuardSettings
    threads: int | None = None
    examples: list = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "examples", guard_questions(self.settings))

    def __call__(self, candidate, reference) -> dict:
        return check(candidate, reference, self.settings, self.threads, self.examples)


def mean_ci95(values) -> tuple[float, float, float]:
    """(mean, low, high): the mean of ``values`` and its 95% confidence interval (normal
    approximation). Over per-question differences of two models on the same questions it is the
    paired interval the guard records; ``spanqa report`` uses it for F1/EM and their differences."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    half = 1.96 * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def guard_questions(settings: GuardSettings):
    from spanqa.data.squad import read_squad

    if not settings.dataset:
        raise UsageError("the accuracy guard needs a dataset: pass --guard DATASET.json")
    examples = read_squad(settings.dataset)[: settings.questions]
    if len(examples) < settings.min_questions:
        raise UsageError(
            f"--guard {settings.dataset}: {len(examples)} questions are too few for a guard decision "
            f"(at least {settings.min_questions}: below that one answer moves F1 by more than the 0.5% margin); "
            "pass a larger set (--guard FILE.json, up to --guard-questions of it), or --no-guard to build the model unmeasured"
        )
    if not all(ex.answers for ex in examples):
        raise UsageError(f"--guard {settings.dataset}: every guard question needs gold answers")
    return examples


def check(candidate, reference, settings: GuardSettings, threads: int | None = None, examples=None) -> dict:
    """Score ``candidate`` (a package) against ``reference`` (the fp32 package or .onnx) on the
    first ``settings.questions`` questions; GuardError when its F1 is below ``ratio`` of fp32's."""
    from spanqa.answers.scoring import question_scores
    from spanqa.engine.core import Engine
    from spanqa.models.package import ModelPackage, open_package

    examples = examples if examples is not None else guard_questions(settings)
    scores = {}
    for name, model in (("reference", reference), ("candidate", candidate)):
        package = model if isinstance(model, ModelPackage) else open_package(Path(model))
        # Spans against spans: a 2.0 package would answer "" where its fp32 source (a bare .onnx,
        # built for no version) answers a span, and the guard measures the spans.
        plain = EngineSettings(answers=AnswerSettings(version_2_with_negative=False))
        with Engine(package, threads=threads, settings=plain) as engine:
            prediction = engine.predict(examples, desc=f"guard ({name})")
        ems, f1s, _ = question_scores(examples, prediction.predictions)
        scores[name] = (ems, f1s)
    n = len(examples)
    ref_f1 = 100.0 * sum(scores["reference"][1]) / n
    f1 = 100.0 * sum(scores["candidate"][1]) / n
    _, low, high = mean_ci95([c - r for c, r in zip(scores["candidate"][1], scores["reference"][1])])
    report = {
        **asdict(settings),
        "dataset": str(settings.dataset),
        "questions": n,
        "f1": f1,
        "exact_match": 100.0 * sum(scores["candidate"][0]) / n,
        "reference_f1": ref_f1,
        "reference_exact_match": 100.0 * sum(scores["reference"][0]) / n,
        "ratio": f1 / ref_f1 if ref_f1 else float("nan"),
        "required_ratio": settings.ratio,
        "f1_difference_ci95": [100.0 * low, 100.0 * high],
    }
    report["passed"] = bool(ref_f1 > 0 and f1 >= settings.ratio * ref_f1)
    if not report["passed"]:
        raise GuardError(
            f"accuracy guard: F1 {f1:.2f} is {100 * report['ratio']:.2f}% of the fp32 model's {ref_f1:.2f} "
            f"on the first {n} questions of {settings.dataset} (needs >= {100 * settings.ratio:.1f}%); model not written"
        )
    return report
