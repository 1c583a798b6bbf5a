"""Small SQuAD files and tokenizer settings made on the fly, shared by several test modules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import strategies as st

from spanqa.data.vocab import TokenizerSettings, default_vocab_path

SHARED_VOCAB = Path(__file__).resolve().parents[2] / "shared" / "data" / "vocab"


def vocab_path(lower: bool) -> Path:
    """The shipped cased vocab, or the shared uncased one (skips when ../shared is absent)."""
    if not lower:
        return default_vocab_path()
    path = SHARED_VOCAB / "bert-base-uncased-vocab.txt"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


def tokenizer(lower: bool) -> TokenizerSettings:
    return TokenizerSettings(vocab_path(lower), lower)


def squad_json(path: Path, paragraphs: list[tuple[str, list[str]]], title: str = "T") -> Path:
    """A SQuAD file with one article: (context, [questions]) per paragraph, gold answer "x"."""
    data = {
        "version": "1.1",
        "data": [
            {
                "title": title,
                "paragraphs": [
                    {
                        "context": ctx,
                        "qas": [
                            {"id": f"q{p}_{i}", "question": q, "answers": [{"text": "x", "answer_start": 0}]}
                            for i, q in enumerate(qs)
                        ],
                    }
                    for p, (ctx, qs) in enumerate(paragraphs)
                ],
            }
        ],
    }
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


CONTEXTS = [
    "The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, a region "
    "in France. They were descended from Norse raiders and pirates from Denmark, Iceland and Norway who, "
    "under their leader Rollo, agreed to swear fealty to King Charles III of West Francia. Through "
    "generations of assimilation and mixing with the native Frankish and Roman-Gaulish populations, their "
    "descendants would gradually merge with the Carolingian-based cultures of West Francia. The distinct "
    "cultural and ethnic identity of the Normans emerged initially in the first half of the 10th century, "
    "and it continued to evolve over the succeeding centuries.",
    "Computational complexity theory is a branch of the theory of computation in theoretical computer "
    "science that focuses on classifying computational problems according to their inherent difficulty, "
    "and relating those classes to each other. A computational problem is understood to be a task that is "
    "in principle amenable to being solved by a computer, which is equivalent to stating that the problem "
    "may be solved by mechanical application of mathematical steps, such as an algorithm.",
]
QUESTIONS = [
    ("In what country is Normandy located?", "France"),
    ("Who was the leader of the Norse raiders?", "Rollo"),
    ("When did the identity of the Normans first emerge?", "10th century"),
    ("What does complexity theory classify?", "computational problems"),
    ("What is a task solved by a computer called?", "computational problem"),
]


def tiny_squad_json(path: Path) -> Path:
    """Five questions about two passages, with gold answers (the tiny-model tests' dataset)."""
    paragraphs = []
    for c, context in enumerate(CONTEXTS):
        qas = []
        for q, (question, answer) in enumerate(QUESTIONS):
            if answer in context:
                qas.append(
                    {
                        "id": f"q{c}-{q}",
                        "question": question,
                        "answers": [{"text": answer, "answer_start": context.index(answer)}],
                    }
                )
        paragraphs.append({"context": context, "qas": qas})
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}))
    return path


def subset(src: Path, dest: Path, questions: int) -> Path:
    """The first ``questions`` questions of a SQuAD file, as a SQuAD file."""
    data = json.loads(src.read_text(encoding="utf-8"))
    left = questions
    articles = []
    for article in data["data"]:
        paragraphs = []
        for para in article["paragraphs"]:
            if left <= 0:
                break
            qas = para["qas"][:left]
            left -= len(qas)
            paragraphs.append({"context": para["context"], "qas": qas})
        if paragraphs:
            articles.append({"title": article["title"], "paragraphs": paragraphs})
    dest.write_text(json.dumps({"version": "1.1", "data": articles}), encoding="utf-8")
    return dest


def every_kth_question(src: Path, dest: Path, k: int) -> Path:
    """Every k-th question of a SQuAD file (the first, the (k+1)-th, ...), as a SQuAD file."""
    data = json.loads(src.read_text(encoding="utf-8"))
    count = 0
    for article in data["data"]:
        for para in article["paragraphs"]:
            kept = []
            for qa in para["qas"]:
                if count % k == 0:
                    kept.append(qa)
                count += 1
            para["qas"] = kept
    dest.write_text(json.dumps(data), encoding="utf-8")
    return dest


def without_answers(src: Path, dest: Path) -> Path:
    """The same questions with no gold answers (nothing to score)."""
    data = json.loads(src.read_text(encoding="utf-8"))
    for article in data["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                qa["answers"] = []
    dest.write_text(json.dumps(data), encoding="utf-8")
    return dest


ODD_CHARS = list(
    " \t\r\n\u202f\u00a0\u2009\u3000\u2028\u0085\x00\x07\x0b\u200b\ufeff\ufffd\u0301\u0308\u030a"
    "ΣσςΑάΐİıßẞǅﬁ.,;:!?'\"()[]{}-—–…#$%&*+/<=>@\\^_`|~¡¿§¶·"
    "中文漢字\U0002b820\U0002b91f\U00020000豈\u3400😀𝔘\U000e0080\u0378\ud800\udfff"
    "\u2e5d\U00010ead\u166d\U000111c9\u061d"
)
# Text that trips tokenizers: every kind of space, control, format, CJK, non-BMP, surrogate,
# new and old punctuation, casing traps, and any character at all.
odd_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(ODD_CHARS),
        st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789   "),
        st.characters(codec=None, exclude_categories=()),
    ),
    max_size=120,
)
