"""The answering engine: one loaded model that every front end (run, ask, bench, serve, the Ray
job, the guard) asks its questions through.

``Engine`` owns the model package, its runtime, the tokenizer and the feature, batching and
answer settings. Questions go in as strings (``answer``), as many pairs (``answer_many``), as a
stream of chunks with bounded memory (``stream``), or as parsed SQuAD examples (``predict``,
``evaluate``); everything below it (features, logits, answer extraction) is the same code for all.
"""

from __future__ import annotations

from spanqa.engine.loading import Engine
from spanqa.engine.types import Answer, Evaluation, Prediction, Question

__all__ = ["Answer", "Engine", "Evaluation", "Prediction", "Question"]
