"""Per-question facts the report groups and lists: question type, context length in word pieces,
number of windows, the official per-question scores, and where answers lie in the context."""

from __future__ import annotations

import re
from dataclasses import dataclass

QUESTION_TYPES = ("what", "who", "when", "where", "why", "how", "which", "other")
_WH = {"what": "what", "who": "who", "whom": "who", "whose": "who", "when": "when", "where": "where"}
_WH.update({"why": "why", "how": "how", "which": "which"})
_WORD = re.compile(r"[a-z]+")


def question_type(question: str) -> str:
    """The first wh-word of the question ("In what year ..." is a what-question; whom and whose
    count as who), else "other"."""
    for word in _WORD.findall(question.lower()):
        if word in _WH:
            return _WH[word]
    return "other"


@dataclass(frozen=True)
class Shape:
    context_pieces: int  # word pieces of the whole context
    windows: int  # features (windows) run_squad makes for the question


def shapes(examples, tokenizer, settings) -> list[Shape]:
    """Context word pieces and windows per example, counted as ``build_features`` counts them
    (the same words, the same WordPiece, the same ``doc_spans``) without building features."""
    from dataclasses import replace

    from spanqa import progress
    from spanqa.data.features import doc_spans
    from spanqa.data.tokenization import make_tokenizer, split_words

    settings = replace(settings, do_lower_case=bool(tokenizer.do_lower_case))
    wp = make_tokenizer(tokenizer)
    q_words = [split_words(ex.question_text) for ex in examples]
    unique = list(dict.fromkeys(w for i, ex in enumerate(examples) for w in (*ex.doc_tokens, *q_words[i])))
    with progress.bar(total=len(unique), desc="report: tokenize", unit="word", unit_scale=True) as bar:
        table = wp.encode_vocabulary(unique, on_chunk=bar.update)
    count = table.count.tolist()

    def pieces(words) -> int:
        return sum(count[table.index[w]] for w in words)

    by_context: dict[int, int] = {}  # id(doc_tokens) -> pieces: questions of a paragraph share it
    out = []
    for ex, words in zip(examples, q_words):
        n = by_context.get(id(ex.doc_tokens))
        if n is None:
            n = by_context[id(ex.doc_tokens)] = pieces(ex.doc_tokens)
        qlen = min(pieces(words), settings.max_query_length)
        out.append(Shape(n, len(doc_spans(n, settings.max_seq_length - qlen - 3, settings.doc_stride))))
    return out


def scores(result, examples) -> tuple[list[float], list[float]] | None:
    """Per-question exact match and F1 (0..1) as the official script of the result's SQuAD
    version scores them; None when the questions carry no gold answers."""
    from spanqa.answers import squad2
    from spanqa.answers.scoring import has_gold, question_scores

    if result.squad2 or squad2.is_squad2(examples):
        gold = squad2.gold_answers(examples)
        pairs = [
            squad2.question_scores(gold[ex.qas_id], result.predictions[ex.qas_id])
            if ex.qas_id in result.predictions
            else (0.0, 0.0)
            for ex in examples
        ]
        return [float(e) for e, _ in pairs], [float(f) for _, f in pairs]
    if not has_gold(examples):
        return None
    ems, f1s, _ = question_scores(examples, result.predictions)
    return ems, f1s


def locate(context: str, text: str, prefer: list[tuple[int, int]] = ()) -> tuple[int, int] | None:
    """Where an answer's text lies in the context: run_squad's text joins words with one space,
    so any whitespace matches between words. Among several places, the first overlapping one of
    ``prefer`` (the gold answers), else the first."""
    words = text.split()
    if not words:
        return None
    found = [(m.start(), m.end()) for m in re.finditer(r"\s+".join(map(re.escape, words)), context)]
    for s, e in found:
        if any(s < pe and ps < e for ps, pe in prefer):
            return s, e
    return found[0] if found else None


def gold_spans(example, starts: list[int]) -> list[tuple[int, int]]:
    """The gold answers' character spans (offsets from the dataset, checked against the text)."""
    context = example.context or ""
    spans = []
    for text, start in zip(example.answers, starts):
        if context[start : start + len(text)] == text:
            spans.append((start, start + len(text)))
        else:  # an offset that does not point at its text: find the text instead
            where = locate(context, text)
            if where:
                spans.append(where)
    return sorted(set(spans))


def excerpt(context: str, spans: list[tuple[int, int]], margin: int = 220) -> tuple[int, int]:
    """The part of the context worth showing: the spans with ``margin`` characters around,
    widened to word boundaries; the opening of the context when there is no span."""
    if not spans:
        return 0, min(len(context), 2 * margin)
    lo = max(0, min(s for s, _ in spans) - margin)
    hi = min(len(context), max(e for _, e in spans) + margin)
    while lo > 0 and not context[lo - 1].isspace():
        lo -= 1
    while hi < len(context) and not context[hi].isspace():
        hi += 1
    return lo, hi
