"""SQuAD JSON: reading its questions, exactly as SpanBERT's run_squad.py reads them.

Data only: nothing here knows about models or scores.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spanqa.data.tokenization import split_words, word_spans
from spanqa.errors import DatasetError

__all__ = ["Example", "examples_from_text", "is_squad2", "read_squad", "split_words"]


@dataclass
class Example:
    qas_id: str
    question_text: str
    doc_tokens: list[str]  # the context split into words on whitespace (run_squad semantics)
    answers: list[str] = field(default_factory=list)  # gold answer texts (may be empty)
    # SQuAD 2.0: True for a question without an answer; None when the file says nothing (1.1).
    is_impossible: bool | None = None
    context: str | None = None  # the passage itself, when known: answers get character offsets
    word_starts: list[int] | None = None  # offset of each of doc_tokens in context


def examples_from_text(question: str, context: str, qas_id: str, answers=(), _cache: dict | None = None) -> Example:
    """An example for a question about a passage (``_cache`` shares the words of equal passages)."""
    words = _cache.get(context) if _cache is not None else None
    if words is None:
        words = word_spans(context)
        if _cache is not None:
            _cache[context] = words
    return Example(qas_id, question, words[0], list(answers), context=context, word_starts=words[1])


def _article_label(index: int, article: Any) -> str:
    title = article.get("title") if isinstance(article, dict) else None
    if isinstance(title, str):
        shown = title if len(title) <= 60 else title[:57] + "..."
        return f"article {index} ({shown!r})"
    return f"article {index}"


def read_squad(path: str | Path) -> list[Example]:
    """Every question of a SQuAD v1.1 / v2.0 file, in file order.

    2.0 questions carry ``is_impossible`` (True: no answer, empty ``answers``); a 1.1 file's
    questions have ``is_impossible=None`` and are read exactly as before.

    Raises DatasetError (one line, naming the file and the article / question) when the file
    is unreadable, not JSON, not SQuAD-shaped, or repeats a question id.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the dataset ({exc.strerror or exc})") from None
    try:
        data = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); pass a SQuAD .json file") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); pass a SQuAD .json file"
        ) from None
    except RecursionError:
        raise DatasetError(f"{path}: JSON nested too deeply; pass a SQuAD .json file") from None

    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DatasetError(f"{path}: not a SQuAD file: expected a JSON object with a 'data' list of articles")

    # A 2.0 file says so by its version or by is_impossible on its questions; a question of
    # a "v2.0" file without the flag is impossible exactly when it has no answers.
    version_2 = str(data.get("version", "")).startswith("v2")
    examples: list[Example] = []
    seen: dict[str, str] = {}
    for a, article in enumerate(data["data"]):
        where = _article_label(a, article)
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise DatasetError(f"{path}: {where}: not a SQuAD article: expected an object with a 'paragraphs' list")
        for p, paragraph in enumerate(article["paragraphs"]):
            pwhere = f"{where}, paragraph {p}"
            if not isinstance(paragraph, dict):
                raise DatasetError(f"{path}: {pwhere}: not an object with 'context' and 'qas'")
            if "context" not in paragraph:
                raise DatasetError(f"{path}: {pwhere}: missing 'context'")
            context = paragraph["context"]
            if not isinstance(context, str):
                raise DatasetError(f"{path}: {pwhere}: 'context' is not a string")
            if not context.strip() and paragraph.get("qas"):
                # Its questions could only ever get the "empty" answer: say so instead.
                raise DatasetError(f"{path}: {pwhere}: the context is empty; every question needs a passage")
            qas = paragraph.get("qas")
            if not isinstance(qas, list):
                raise DatasetError(f"{path}: {pwhere}: missing 'qas' list")
            # Questions of one paragraph share its word list: build_features and the
            # metadata writer then tokenise and store each context once.
            doc_tokens, word_starts = word_spans(context)
            for q, qa in enumerate(qas):
                qwhere = f"{pwhere}, question {q}"
                if not isinstance(qa, dict):
                    raise DatasetError(f"{path}: {qwhere}: not an object with 'id' and 'question'")
                if "id" not in qa:
                    raise DatasetError(f"{path}: {qwhere}: missing 'id'")
                qas_id = qa["id"]
                if not isinstance(qas_id, str):
                    raise DatasetError(f"{path}: {qwhere}: 'id' is not a string ({qas_id!r})")
                qwhere = f"{where}, question {qas_id!r}"
                if qas_id in seen:
                    raise DatasetError(
                        f"{path}: {qwhere}: duplicate question id (first in {seen[qas_id]}); question ids must be unique"
                    )
                seen[qas_id] = where
                if "question" not in qa:
                    raise DatasetError(f"{path}: {qwhere}: missing 'question'")
                question = qa["question"]
                if not isinstance(question, str):
                    raise DatasetError(f"{path}: {qwhere}: 'question' is not a string")
                answers = _answer_list(qa, "answers", f"{path}: {qwhere}")
                impossible = _impossible(qa, answers, version_2, f"{path}: {qwhere}")
                examples.append(
                    Example(
                        qas_id=qas_id,
                        question_text=question,
                        doc_tokens=doc_tokens,
                        answers=answers,
                        is_impossible=impossible,
                        context=context,
                        word_starts=word_starts,
                    )
                )
    if not examples:
        raise DatasetError(f"{path}: no questions found; pass a SQuAD file with 'qas'")
    return examples


def is_squad2(examples) -> bool:
    """Whether parsed examples come from a SQuAD 2.0 file (their ``is_impossible`` is set)."""
    return any(ex.is_impossible is not None for ex in examples)


def _answer_list(qa: dict, key: str, where: str) -> list[str]:
    answers = qa.get(key)
    if answers is None:
        return []
    if not isinstance(answers, list) or not all(isinstance(x, dict) and isinstance(x.get("text"), str) for x in answers):
        raise DatasetError(f"{where}: {key!r} must be a list of objects with a 'text' string")
    return [x["text"] for x in answers]


def _impossible(qa: dict, answers: list[str], version_2: bool, where: str) -> bool | None:
    """SQuAD 2.0's is_impossible, checked against the answers (None for a 1.1 question)."""
    if "is_impossible" not in qa:
        return (not answers) if version_2 else None
    impossible = qa["is_impossible"]
    if not isinstance(impossible, bool):
        raise DatasetError(f"{where}: 'is_impossible' is not true/false")
    _answer_list(qa, "plausible_answers", where)  # the shape only: nothing reads them
    if impossible and answers:
        n = len(answers)
        raise DatasetError(
            f"{where}: marked is_impossible but has {n} answer{'s' if n > 1 else ''}; an unanswerable "
            "question takes 'answers': [] (its guesses go in 'plausible_answers')"
        )
    if not impossible and not answers:
        raise DatasetError(
            f"{where}: answerable (is_impossible false) but has no answers; give its answers or set is_impossible true"
        )
    return impossible


# ---------------------------------------------------------------------------------------------
# Building features
