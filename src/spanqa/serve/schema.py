"""Request and response bodies of ``POST /v1/answer``: Hugging Face's question-answering task
schema (``inputs`` + ``parameters``), validated strictly so a wrong type is a 422 naming the
field instead of a silently coerced value."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    Tag,
    field_validator,
)

_STRICT = ConfigDict(extra="forbid")


class QAInput(BaseModel):
    model_config = _STRICT

    question: StrictStr = Field(description="The question.")
    context: StrictStr = Field(description="The passage that holds the answer.")

    @field_validator("question", "context")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


class Parameters(BaseModel):
    """Hugging Face's pipeline parameters. Left out, each takes the server's setting."""

    model_config = _STRICT

    top_k: StrictInt = Field(1, ge=1, description="How many answers to return, best first.")
    max_answer_len: StrictInt | None = Field(None, ge=1, description="Longest answer, in word pieces.")
    doc_stride: StrictInt | None = Field(
        None,
        ge=1,
        description=(
            "Word pieces between the starts of consecutive windows of a long context (run_squad's "
            "doc_stride: a step, where Hugging Face's is the overlap)."
        ),
    )
    max_seq_len: StrictInt | None = Field(None, ge=1, description="Window length in word pieces, question included.")
    max_question_len: StrictInt | None = Field(None, ge=0, description="Word pieces of the question kept.")
    handle_impossible_answer: StrictBool | None = Field(
        None,
        description=(
            'Allow the null answer (SQuAD 2.0): "" when the model\'s null score beats its best span by more '
            "than the threshold, with its null_odds. Default: on for a package built for SQuAD 2.0, off otherwise."
        ),
    )


def _shape(value) -> str:
    return "many" if isinstance(value, list) else "one"


# A discriminated union: pydantic then reports the errors of the shape that was sent only,
# not of both; the tags are dropped from error locations (UNION_TAGS).
Inputs = Annotated[
    Annotated[QAInput, Tag("one")] | Annotated[list[QAInput], Tag("many")],
    Discriminator(_shape),
]
UNION_TAGS = ("one", "many")


class AnswerRequest(BaseModel):
    model_config = _STRICT

    inputs: Inputs = Field(description="One question or a list of them.")
    parameters: Parameters = Field(default_factory=Parameters)

    @field_validator("inputs")
    @classmethod
    def _some(cls, value):
        if isinstance(value, list) and not value:
            raise ValueError("must hold at least one question")
        return value


_OUT = ConfigDict(extra="forbid")


class AnswerOut(BaseModel):
    model_config = _OUT

    answer: str = Field(description="The answer text: context[start:end].")
    score: float = Field(description="Its probability among the n-best candidates.")
    start: int = Field(description="Character offset of the answer in the context.")
    end: int = Field(description="Character offset just past the answer.")
    null_odds: float | None = Field(
        None,
        description="SQuAD 2.0 (handle_impossible_answer): the null score minus the best span's; "
        'above the threshold the answer is "".',
    )


# Hugging Face's shapes: one dict for one question and top_k 1, a list for top_k > 1 or a
# list of questions, a list of lists for both.
AnswerResponse = AnswerOut | list[AnswerOut] | list[list[AnswerOut]]


class FieldProblem(BaseModel):
    model_config = _OUT

    field: str
    message: str


class ErrorOut(BaseModel):
    """Every error the service answers, whatever its status."""

    model_config = _OUT

    status: int = Field(description="The HTTP status, repeated.")
    error: str = Field(description="What is wrong and what to do, in one line.")
    request_id: str = Field(description="The request's X-Request-Id; the server's log lines about it carry it too.")
    field: str | None = Field(None, description="The request field at fault, dotted (inputs.0.context).")
    limit: str | None = Field(None, description="The server limit that was exceeded (413, 503).")
    retry_after_s: float | None = Field(
        None, description="503: the expected wait before a retry can be admitted (Retry-After rounds it up)."
    )
    errors: list[FieldProblem] | None = Field(None, description="422: every field at fault.")


class HealthOut(BaseModel):
    model_config = _OUT

    status: Literal["alive"]


class ReadyOut(BaseModel):
    model_config = _OUT

    status: Literal["ready"]
    replicas: int = Field(description="Replicas Serve reports running.")
    replica: dict | None = Field(
        None,
        description="One replica's process id, model path, target, runtime and threads: only for a caller "
        "with the API key (SPANQA_API_KEY set).",
    )
