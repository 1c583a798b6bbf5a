"""The sample library: what LoadGen's sample indices stand for.

A sample is one SQuAD question as strings (question, context): tokenising and answer extraction
are inside the timed path, as a user gets an answer. With ``--features`` a sample is one
pre-tokenised window (384 tokens, stride 128, question 64, as MLPerf BERT's sample library
makes them) and the SUT answers with its start and end logits, so samples/s compare with MLPerf
BERT's. Everything is read into memory before a test starts (LoadGen's load/unload calls have
nothing left to do)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from spanqa.errors import DatasetError


@dataclass
class Samples:
    """The questions of DATA, and their windows when a sample is a window (``features``)."""

    examples: list  # spanqa.data.squad.Example, with gold answers when DATA has them
    features: Any = None  # spanqa.data.features.Features when --features

    @property
    def windows(self) -> bool:
        return self.features is not None

    def __len__(self) -> int:
        return len(self.features) if self.windows else len(self.examples)

    def question(self, index: int) -> dict:
        ex = self.examples[index]
        return {"question": ex.question_text, "context": ex.context}

    def rows(self, rows) -> Any:
        """The windows at ``rows`` (the arrays the model needs, nothing per-example)."""
        f = self.features
        rows = np.asarray(rows, dtype=np.int64)
        return replace(
            f,
            input_ids=f.input_ids[rows],
            input_mask=f.input_mask[rows],
            segment_ids=f.segment_ids[rows],
            example_index=f.example_index[rows],
            span_index=f.span_index[rows],
            tokens=[],
            token_to_orig_map=[],
            token_is_max_context=[],
        )


def load_samples(dataset: str | Path, tokenizer=None, feature_settings=None) -> Samples:
    """DATA's questions; their windows too when ``feature_settings`` is given (with the
    model's ``tokenizer``)."""
    from spanqa.data.squad import read_squad

    examples = read_squad(dataset)
    if not examples:
        raise DatasetError(f"{dataset}: holds no questions; give a SQuAD file with at least one")
    missing = [ex.qas_id for ex in examples if ex.context is None]
    if missing:
        raise DatasetError(f"{dataset}: question {missing[0]} has no context text; give a SQuAD JSON file")
    if feature_settings is None:
        return Samples(examples)
    from spanqa.data.features import build_features

    return Samples(examples, build_features(examples, tokenizer, feature_settings))


def logits_bytes(start: np.ndarray, end: np.ndarray, length: int) -> bytes:
    """A window's answer as response data: its start then end logits over its real tokens."""
    return np.concatenate([start[:length], end[:length]]).astype(np.float32).tobytes()


def logits_from_bytes(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    values = np.frombuffer(data, dtype=np.float32)
    half = len(values) // 2
    return values[:half], values[half:]
