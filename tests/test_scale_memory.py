"""The Ray driver's memory does not grow with the input (issue #23): 20,000 and 100,000 generated
questions (short synthetic contexts, the tiny random model, short windows, no n-best), each run
by a driver process of its own attached to one local Ray. The driver's peak resident memory
(``driver_peak_rss_mb`` in summary.json: the process's own VmHWM) stays under the bound docs/ray.md
states and grows by less than 10% from the smaller input to the larger.

A few minutes at most on 2 cores, most of it the 120,000 questions answered.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from test_scale import local_ray  # noqa: F401

ray = pytest.importorskip("ray")

DOCS = Path(__file__).resolve().parents[1] / "docs" / "ray.md"
WORDS = [f"w{i}" for i in range(400)]


def stated_bound_mb() -> float:
    """The bound docs/ray.md states: 'the driver's peak resident memory stays under N MB'."""
    found = re.search(r"driver's peak resident memory\s+stays under\s+\*\*(\d+) MB\*\*", DOCS.read_text(encoding="utf-8"))
    assert found, f"{DOCS} states no bound on the driver's memory"
    return float(found.group(1))


def questions_jsonl(path: Path, n: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            context = " ".join(rng.choices(WORDS, k=12))
            question = " ".join(rng.choices(WORDS, k=4)) + "?"
            f.write(json.dumps({"id": f"q{i}", "question": question, "context": context, "answers": [context.split()[3]]}))
            f.write("\n")
    return path


def _run(address: str, inputs: Path, model: Path, out: Path) -> dict:
    command = [sys.executable, "-m", "spanqa", "run", str(inputs), "--model", str(model), "-o", str(out)]
    command += ["--engine", "ray", "--address", address, "-q", "--no-nbest", "--n-best", "2"]
    command += ["--max-seq-length", "40", "--max-query-length", "12", "--doc-stride", "16", "--batch-questions", "1000"]
    r = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))


def test_driver_memory_is_bounded_whatever_the_input_size(local_ray, tiny_package, tmp_path):  # noqa: F811
    bound = stated_bound_mb()
    small = _run(local_ray, questions_jsonl(tmp_path / "20k.jsonl", 20_000), tiny_package, tmp_path / "small")
    large = _run(local_ray, questions_jsonl(tmp_path / "100k.jsonl", 100_000), tiny_package, tmp_path / "large")
    assert (small["questions"], large["questions"]) == (20_000, 100_000)
    lines = (tmp_path / "large" / "predictions.jsonl").read_text(encoding="utf-8").count("\n")
    predictions = json.loads((tmp_path / "large" / "predictions.json").read_text(encoding="utf-8"))
    assert lines == len(predictions) == 100_000 and list(predictions)[:3] == ["q0", "q1", "q2"]
    rss_small, rss_large = small["driver_peak_rss_mb"], large["driver_peak_rss_mb"]
    print(f"driver peak RSS: 20,000 questions {rss_small:.1f} MB, 100,000 questions {rss_large:.1f} MB (bound {bound:g} MB)")
    print(f"at the end, by kind: {small['driver_memory_mb']}, {large['driver_memory_mb']}")
    assert rss_large < bound and rss_small < bound
    assert rss_large < 1.10 * rss_small, (rss_small, rss_large)
