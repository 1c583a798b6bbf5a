"""benchmarks/recipe_vs_spanqa.py end to end on the tiny random model and five questions: both
sides measured, the recipe's infer/evaluate extrapolated from a two-question sample; spanqa's side
runs the session's tiny cpu-fp32 package (--spanqa-package: its target comes from the package)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from squad_files import tiny_squad_json

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "recipe_vs_spanqa.py"


def test_recipe_vs_spanqa_tiny(tiny_checkpoint, tiny_package, tmp_path, monkeypatch):
    monkeypatch.setenv("SPANQA_HOME", str(tmp_path / "home"))
    dataset = tiny_squad_json(tmp_path / "tiny.json")
    out = tmp_path / "report.json"
    args = ["--model", str(tiny_checkpoint), "--dataset", str(dataset), "--spanqa-package", str(tiny_package)]
    args += ["--batch-size", "2", "--recipe-sample", "2", "--threads", "1", "--work", str(tmp_path / "work"), "--json", str(out)]
    r = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    recipe, spanqa = report["recipe"], report["spanqa"]
    for side in (recipe, spanqa):
        assert side["questions"] == 5
        assert side["questions_per_s"] > 0 and side["wall_s"] > 0
        assert side["peak_rss_mib"] > 10
        assert 0 <= side["f1"] <= 100
    # The recipe's infer and evaluate come from the sample; preprocess ran on every question.
    assert recipe["extrapolated"] and recipe["sample"]["questions"] == 2 and recipe["probe"]["questions"] == 1
    assert [k for k, v in recipe["steps"].items() if v["extrapolated"]] == ["infer", "evaluate"]
    assert recipe["steps"]["infer"]["measured"]["wall_s"] > 0
    assert recipe["batches"] == 3 and recipe["features"] == 5  # every question one 512 window, batches of 2
    assert report["speedup"] == spanqa["questions_per_s"] / recipe["questions_per_s"]
    # Both fp32: the padded recipe and spanqa's length-aware batches give the same answers.
    assert report["agreement"] == {"questions": 2, "same": 2, "same_share": 1.0}
    assert spanqa["f1_on_recipe_questions"] == recipe["f1"]
    assert report["machine"]["cpu"] and "load_avg_end" in report["machine"] and report["git"]["commit"]
    assert "extrapolated from 2 of 5 questions" in r.stdout and "| spanqa run (cpu-fp32) |" in r.stdout
