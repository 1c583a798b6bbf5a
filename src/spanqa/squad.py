"""SQuAD examples and features, exactly as SpanBERT's run_squad.py makes them.

Data only: reading SQuAD JSON, tokenising, windowing and writing/reading feature folders.
Nothing here knows about models or scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class FeatureSettings:
    max_seq_length: int = 512
    doc_stride: int = 128
    max_query_length: int = 64
    do_lower_case: bool = False


@dataclass
class Example:
    qas_id: str
    question_text: str
    doc_tokens: list[str]  # the context split into words on whitespace (run_squad semantics)
    answers: list[str] = field(default_factory=list)  # gold answer texts (may be empty)
    is_impossible: bool = False


@dataclass
class Features:
    """All features of a dataset. Row i of the arrays is feature i (unique id 1000000000 + i)."""

    settings: FeatureSettings
    input_ids: np.ndarray  # int64 [N, max_seq_length], zero padded
    input_mask: np.ndarray  # int64 [N, max_seq_length]
    segment_ids: np.ndarray  # int64 [N, max_seq_length]
    example_index: np.ndarray  # int64 [N]: index into ``examples``
    span_index: np.ndarray  # int64 [N]: doc_span_index within its example
    tokens: list[list[str]]  # the word pieces of each feature, [CLS] ... [SEP] (unpadded)
    token_to_orig_map: list[dict[int, int]]  # feature token position -> index in doc_tokens
    token_is_max_context: list[dict[int, bool]]  # feature token position -> max-context flag
    examples: list[Example]

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def lengths(self) -> np.ndarray:
        """Real (unpadded) length of each feature."""
        return self.input_mask.sum(axis=1)
