"""Interactive answering: questions about a context, answered by a model package."""

from __future__ import annotations

from dataclasses import dataclass

from spanqa.pipeline import RunSettings, infer_features
from spanqa.squad import Example, build_features, split_context


@dataclass
class Answer:
    question: str
    text: str
    probability: float
    nbest: list[dict]


class Answerer:
    """Keeps a loaded model; answers any number of questions about any context."""

    def __init__(self, package, threads: int | None = None, settings: RunSettings = RunSettings(warmup=0)):
        from spanqa.runtime import RuntimeOptions, open_runtime

        self.package = package
        self.runtime = open_runtime(package, RuntimeOptions(threads=threads))
        self.settings = settings

    def answer(self, context: str, questions: list[str]) -> list[Answer]:
        from spanqa.answers import predict

        words = split_context(context)
        examples = [Example(qas_id=str(i), question_text=q, doc_tokens=words) for i, q in enumerate(questions)]
        features = build_features(examples, self.package.tokenizer, self.settings.features)
        start, end, _ = infer_features(self.runtime, features, self.settings, desc="answer")
        predictions, nbest = predict(features, start, end, self.settings.answers)
        return [
            Answer(q, predictions[str(i)], float(nbest[str(i)][0]["probability"]), nbest[str(i)])
            for i, q in enumerate(questions)
        ]
