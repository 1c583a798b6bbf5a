"""What the engine takes and gives: questions in, answers and predictions out (no model here,
so the stages the engine drives, such as ``overlap``, can name them without importing it)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spanqa.errors import UsageError


@dataclass(frozen=True)
class Question:
    """One question about one passage. ``id`` names it in results (default: its position)."""

    question: str
    context: str
    id: str = ""
    answers: tuple[str, ...] = ()  # gold answers, when known (scoring only)


@dataclass(frozen=True)
class Answer:
    """An answer span. ``context[start:end] == text``; ``score`` is its probability among the
    n-best (softmax over start+end logits, as run_squad computes it). A question with no span
    that fits gets ``text == ""`` and ``start == end == 0``; so does one the model says has no
    answer (SQuAD 2.0), whose logits are then the null score's. ``null_odds`` (2.0 only) is the
    question's null score minus its best span's: above the threshold means "no answer"."""

    id: str
    text: str
    score: float
    start: int
    end: int
    start_logit: float
    end_logit: float
    null_odds: float | None = None

    def to_json(self) -> dict:
        out = {"answer": self.text, "score": self.score, "start": self.start, "end": self.end}
        if self.null_odds is not None:
            out["null_odds"] = self.null_odds
        return out


@dataclass
class Prediction:
    """Answers to a list of examples, with everything that produced them."""

    predictions: dict[str, str]  # question id -> answer text (run_squad's text: predictions.json)
    nbest: dict[str, list[dict]]  # question id -> n-best candidates, best first
    features: Any  # spanqa.data.features.Features
    start_logits: np.ndarray  # float32 [features, width]; -inf where the model computed nothing
    end_logits: np.ndarray
    stats: Any  # spanqa.runtimes.stats.InferenceStats
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    null_odds: dict[str, float] | None = None  # SQuAD 2.0: question id -> null odds
    best_spans: dict[str, str] | None = None  # SQuAD 2.0: question id -> best non-null span

    @property
    def questions_per_s(self) -> float:
        """Questions over the wall time from examples to answers (stages overlap in a pipeline)."""
        wall = self.timings.get("wall_s")
        return len(self.features.examples) / wall if wall else float("nan")


@dataclass
class Evaluation(Prediction):
    # 1.1: exact_match, f1, total, unanswered; 2.0: the official 2.0 keys (answers.squad2)
    scores: dict[str, Any] = field(default_factory=dict)


def examples_from_questions(questions: Iterable[Question | tuple[str, str] | dict], start: int = 0) -> list:
    """Examples (with their context and word offsets) for question/context pairs; a question or
    context that is not a non-empty string is a UsageError naming it."""
    from spanqa.data.squad import examples_from_text

    contexts: dict = {}  # equal passages share one word list, tokenised once
    out = []
    for i, item in enumerate(questions, start):
        q = _as_question(item, i)
        _check_question(q, i)
        out.append(examples_from_text(q.question, q.context, q.id or str(i), q.answers, _cache=contexts))
    return out


def _as_question(item, index: int) -> Question:
    if isinstance(item, Question):
        return item
    if isinstance(item, dict):
        try:
            return Question(item["question"], item["context"], str(item.get("id", "") or ""), tuple(item.get("answers", ())))
        except KeyError as exc:
            raise UsageError(f"question {index}: missing {exc.args[0]!r}; give 'question' and 'context'") from None
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return Question(item[0], item[1])
    raise UsageError(f"question {index}: expected a Question, a (question, context) pair or a dict, got {type(item).__name__}")


def _check_question(q: Question, i: int) -> None:
    for name, value in (("question", q.question), ("context", q.context)):
        if not isinstance(value, str):
            raise UsageError(f"question {q.id or i}: '{name}' must be a string, got {type(value).__name__}")
        if not value.strip():
            raise UsageError(f"question {q.id or i}: '{name}' is empty")
