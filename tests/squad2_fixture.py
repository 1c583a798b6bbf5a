"""A small SQuAD 2.0 file made from a SQuAD 1.1 one (deterministic, a few articles).

* answerable questions: a paragraph's own questions, unchanged (``is_impossible: false``);
* unanswerable ones: questions of another paragraph of the same article none of whose gold
  answers occurs in this paragraph (``is_impossible: true``, no answers), ids ``<id>-neg<k>``;
* edge cases, hand-made: one long context (several paragraphs joined, so several 512-token
  windows) with an answerable question whose answer sits in one window only and an
  unanswerable one; an impossible question with ``plausible_answers`` (a real span that does
  not answer it); one written in the short form (no ``answers`` key).

``make_all_impossible`` keeps only unanswerable questions.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

_PUNCT = str.maketrans("", "", string.punctuation)


def _norm(text: str) -> str:
    words = text.lower().translate(_PUNCT).split()
    return " ".join(w for w in words if w not in ("a", "an", "the"))


def _absent(answers: list[dict], context: str) -> bool:
    """True when no gold answer occurs in ``context``, raw or normalised."""
    low, norm = context.lower(), _norm(context)
    return all(a["text"].lower() not in low and _norm(a["text"]) not in norm for a in answers)


def _answerable(qa: dict, shift: int = 0) -> dict:
    answers = [{"text": a["text"], "answer_start": a["answer_start"] + shift} for a in qa["answers"]]
    return {
        "id": qa["id"],
        "question": qa["question"],
        "answers": answers,
        "is_impossible": False,
    }


def _impossible(qa: dict, suffix: str) -> dict:
    return {
        "id": f"{qa['id']}-{suffix}",
        "question": qa["question"],
        "answers": [],
        "is_impossible": True,
    }


def make_squad2(source: str | Path, articles: int = 3, paragraphs: int = 3, negatives: int = 2) -> dict:
    data = json.loads(Path(source).read_text(encoding="utf-8"))["data"][:articles]
    out = []
    for article in data:
        paras = article["paragraphs"]
        kept = []
        for i, para in enumerate(paras[:paragraphs]):
            qas = [_answerable(qa) for qa in para["qas"]]
            # Donors: the article's other paragraphs, nearest first (same topic, other facts).
            donors = [qa for j in range(1, len(paras)) for qa in paras[(i + j) % len(paras)]["qas"]]
            picked = [qa for qa in donors if _absent(qa["answers"], para["context"])][:negatives]
            qas += [_impossible(qa, f"neg{i}") for qa in picked]
            kept.append({"context": para["context"], "qas": qas})
        out.append({"title": article["title"], "paragraphs": kept})
    out.append(_edge_cases(data[0], data[1]))
    return {"version": "v2.0", "data": out}


def _edge_cases(article: dict, other: dict) -> dict:
    paras = article["paragraphs"][:6]
    # One long context (~1,100 word pieces, 4+ windows of 512 with stride 128): the question
    # whose answer comes first in it has that answer in the first window only, one from the
    # last paragraph in the last windows; a question from another article has none anywhere.
    joined = "\n".join(p["context"] for p in paras)
    shift = len(joined) - len(paras[-1]["context"])
    first = min(paras[0]["qas"], key=lambda qa: qa["answers"][0]["answer_start"])
    long_qas = [_answerable(first), _answerable(paras[-1]["qas"][0], shift)]
    long_qas = [{**qa, "id": f"{qa['id']}-long"} for qa in long_qas]
    stranger = next(qa for p in other["paragraphs"] for qa in p["qas"] if _absent(qa["answers"], joined))
    long_qas.append(_impossible(stranger, "long"))

    # A plausible answer: the paragraph's first answer, to a question it does not answer.
    para = paras[0]
    gold = para["qas"][0]["answers"][0]
    plausible = {
        "id": "edge-plausible",
        "question": f"Which other name than {gold['text']!r} did its author reject?",
        "answers": [],
        "plausible_answers": [{"text": gold["text"], "answer_start": gold["answer_start"]}],
        "is_impossible": True,
    }
    short = {
        "id": "edge-short-form",
        "question": "What is the colour of the number seven?",
        "is_impossible": True,
    }
    return {
        "title": "Edge_cases",
        "paragraphs": [
            {"context": joined, "qas": long_qas},
            {"context": para["context"], "qas": [plausible, short]},
        ],
    }


def make_all_impossible(source: str | Path, **kwargs) -> dict:
    made = make_squad2(source, **kwargs)
    for article in made["data"]:
        for para in article["paragraphs"]:
            para["qas"] = [qa for qa in para["qas"] if qa["is_impossible"]]
    return made


def write(obj: dict, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=1), encoding="utf-8")
    return path
