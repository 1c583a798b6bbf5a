"""The HTML report's data (spanqa.report): built from small synthetic result directories whose
every figure is known, checked against recomputations that share no code with the report.

The builders here (``synthetic_result`` and the datasets) are shared by tests/test_report_cli.py
and tests/test_report_browser.py.
"""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import pytest

from spanqa.answers import squad2
from spanqa.answers.results import write_results
from spanqa.answers.scoring import f1_score, score
from spanqa.data.squad import read_squad
from spanqa.errors import ResultError, UsageError

ORDINALS = "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth".split()
CITIES = "Paris Lyon Marseille Toulouse Nice Nantes Strasbourg Montpellier Bordeaux Lille Rennes Reims".split()
BUILDERS = "Gustave Eiffel|Marie Curie|Louis Pasteur|Victor Hugo|Jules Verne|Claude Monet".split("|")
FUNDS = "a municipal tax|royal gold|church donations|a merchant loan".split("|")
REASONS = "the ferry sank|trade grew quickly|the king demanded it|floods cut the roads".split("|")
# (question template, which field answers it); the first wh-word decides the type.
QUESTIONS = [
    ("What city built the {o} bridge?", "city"),
    ("When was the {o} bridge built?", "year"),
    ("Who built the {o} bridge?", "builder"),
    ("Where was the {o} bridge built?", "city"),
    ("Why was the {o} bridge built?", "reason"),
    ("How was the {o} bridge paid for?", "fund"),
    ("In which year was the {o} bridge finished?", "year"),
    ("Name the builder of the {o} bridge.", "builder"),
]
FEATURES = {"max_seq_length": 96, "doc_stride": 32, "max_query_length": 16, "do_lower_case": False}


def _sentence(rng: random.Random, k: int) -> dict:
    return {
        "o": ORDINALS[k],
        "city": rng.choice(CITIES),
        "year": str(1700 + rng.randrange(300)),
        "builder": rng.choice(BUILDERS),
        "fund": rng.choice(FUNDS),
        "reason": rng.choice(REASONS),
    }


def squad_file(path: Path, paragraphs: int = 14, seed: int = 3, version_2: bool = False) -> Path:
    """A SQuAD file of bridge stories: contexts of 1 to 12 sentences (20 to 300 word pieces, so
    1 to several 96-token windows), questions of every type with answer offsets; with
    ``version_2`` also unanswerable questions (about a bridge the context does not have)."""
    rng = random.Random(seed)
    paras = []
    for p in range(paragraphs):
        facts = [_sentence(rng, k) for k in range(1 + (p * 11) // max(1, paragraphs - 1))]
        parts, offsets = [], []
        pos = 0
        for f in facts:
            s = f"The {f['o']} bridge was built in {f['city']} in {f['year']} by {f['builder']}, "
            offs = {"city": pos + s.index(f["city"]), "year": pos + s.rindex(f["year"]), "builder": pos + s.index(f["builder"])}
            s += f"paid for with {f['fund']} because {f['reason']}. "
            offs["fund"] = pos + s.index(f["fund"])
            offs["reason"] = pos + s.index(f["reason"], s.index("because"))
            parts.append(s)
            offsets.append(offs)
            pos += len(s)
        context = "".join(parts).strip()
        qas = []
        for q in range(3):
            k = rng.randrange(len(facts))
            template, field = QUESTIONS[(p * 3 + q) % len(QUESTIONS)]
            text = facts[k][field]
            qa = {"id": f"p{p}q{q}", "question": template.format(o=facts[k]["o"])}
            qa["answers"] = [{"text": text, "answer_start": offsets[k][field]}]
            if version_2:
                qa["is_impossible"] = False
            qas.append(qa)
        if version_2:
            missing = ORDINALS[len(facts)] if len(facts) < len(ORDINALS) else "hundredth"
            qas.append({"id": f"p{p}neg", "question": f"Who built the {missing} bridge?", "answers": [], "is_impossible": True})
        paras.append({"context": context, "qas": qas})
    data = {"version": "v2.0" if version_2 else "1.1", "data": [{"title": "Bridges", "paragraphs": paras}]}
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def guesses(dataset: Path, seed: int) -> tuple[dict[str, str], dict[str, list[dict]]]:
    """Answers of every kind for each question, each a span of the context: the gold one, the
    gold one and the next word (F1 below 1), another word of the context (F1 0), or none; and an
    n-best whose top is the answer."""
    rng = random.Random(seed)
    raw = json.loads(dataset.read_text())
    starts = {
        qa["id"]: qa["answers"][0]["answer_start"] for p in raw["data"][0]["paragraphs"] for qa in p["qas"] if qa["answers"]
    }
    predictions, nbest = {}, {}
    for ex in read_squad(dataset):
        gold = ex.answers[0] if ex.answers else ""
        kind = rng.choice(["gold", "gold", "extra", "other", "empty"]) if gold else rng.choice(["empty", "other"])
        other = rng.choice([w for w in ex.doc_tokens if w.istitle() and w.rstrip(",.") not in gold.split()] or ["Paris"])
        start = starts.get(ex.qas_id, 0)
        extra = ex.context[start : start + len(gold) + len(re.match(r"\S*(\s+\S+)?", ex.context[start + len(gold) :]).group())]
        text = {"gold": gold, "extra": extra, "other": other.rstrip(",."), "empty": ""}[kind]
        predictions[ex.qas_id] = text
        p = round(rng.uniform(0.05, 0.95), 3)
        nbest[ex.qas_id] = [{"text": text, "probability": p, "start_logit": 1.0, "end_logit": 1.0}]
    return predictions, nbest


def summary_for(dataset: Path, batches: int = 12, model: str = "/nonexistent/spanqa-package") -> dict:
    from spanqa.fileutil import sha256_file

    latency = [20.0 + 3 * (i % 5) for i in range(batches)]
    done, t = [], 0.0
    for ms in latency:
        t += ms / 1000.0
        done.append(round(t, 6))
    return {
        "spanqa_version": "0.1.0",
        "dataset": str(dataset.resolve()),
        "dataset_sha256": sha256_file(dataset),
        "model": model,
        "model_sha256": "0" * 64,
        "target": "cpu-fp32",
        "precision": "fp32",
        "guarded": False,
        "runtime": {"name": "onnxruntime-cpu", "version": "1.0"},
        "threads": 2,
        "cpu": {"model": "Test CPU", "cores": 2, "physical_cores": 2, "cgroup_cpu_limit": None, "flags": ["avx2", "fma"]},
        "questions": 0,
        "features": 0,
        "settings": {"features": dict(FEATURES), "batch_size": None},
        "timings_s": {"wall_s": t},
        "end_to_end_questions_per_s": 40.0,
        "model_rows_per_s": 200.0,
        "inference": {"batches": batches, "throughput_rows_per_s": 210.0, "latency_ms": None, "streams": 1},
        "batch_timings": {"done_s": done, "latency_ms": latency, "rows": [8] * batches},
    }


def synthetic_result(root: Path, dataset: Path, seed: int, overrides: dict[str, str] | None = None) -> Path:
    """A result directory as 'spanqa run' writes it, for ``dataset`` (1.1 or 2.0), its answers
    from ``guesses(seed)`` with ``overrides`` replacing some."""
    examples = read_squad(dataset)
    predictions, nbest = guesses(dataset, seed)
    for qid, text in (overrides or {}).items():
        predictions[qid] = text
        nbest[qid] = [{"text": text, "probability": 0.5, "start_logit": 0.0, "end_logit": 0.0}]
    extra = {"summary.json": summary_for(dataset)}
    if squad2.is_squad2(examples):
        rng = random.Random(seed + 1)
        odds = {ex.qas_id: round(rng.uniform(-6, 6), 3) for ex in examples}
        spans = {q: (t or "Paris") for q, t in predictions.items()}
        for q, t in spans.items():
            nbest[q] = [{"text": t, "probability": 0.6, "start_logit": 1.0, "end_logit": 1.0}, {"text": "", "probability": 0.4}]
        predictions = squad2.apply_threshold(spans, odds, 0.0)
        result = squad2.score_examples(examples, predictions, odds, spans)
        result |= {"null_score_diff_threshold": 0.0, "threshold_tuned": False}
        extra["null_odds.json"] = odds
    else:
        result = score(examples, predictions)
    result |= {
        "dataset": str(dataset),
        "model": "/nonexistent/spanqa-package",
        "target": "cpu-fp32",
        "feature_settings": FEATURES,
    }
    write_results(root, predictions, nbest, result, extra_files=extra)
    return root


@pytest.fixture(scope="module")
def data11(tmp_path_factory) -> Path:
    return squad_file(tmp_path_factory.mktemp("data") / "bridges.json")


@pytest.fixture(scope="module")
def pair(data11, tmp_path_factory):
    """Two results of the same questions; the second differs on a known set of questions."""
    root = tmp_path_factory.mktemp("results")
    a = synthetic_result(root / "fp32", data11, seed=1)
    preds = json.loads((a / "predictions.json").read_text())
    changed = {"p0q0": preds["p0q0"] + " bridge", "p5q1": "" if preds["p5q1"] else "Reims", "p9q2": "Lyon Lille"}
    changed["p13q0"] = "Rennes" if preds["p13q0"] != "Rennes" else "Nice"
    assert all(preds[q] != t for q, t in changed.items())
    b = synthetic_result(root / "int8", data11, seed=1, overrides=changed)
    return a, b, changed


def _reference_shapes(dataset: Path):
    """Context word pieces and windows per question from the pure-Python reference of run_squad."""
    from squad_reference import convert_examples_to_features, read_squad_examples, reference_tokenizer

    from spanqa.data.vocab import default_vocab_path

    tok = reference_tokenizer(str(default_vocab_path()), False)
    examples = read_squad_examples(str(dataset))
    features = convert_examples_to_features(
        [(q, words) for _, q, words in examples],
        tok,
        FEATURES["max_seq_length"],
        FEATURES["doc_stride"],
        FEATURES["max_query_length"],
    )
    windows = [0] * len(examples)
    for f in features:
        windows[f.example_index] += 1
    pieces = [sum(len(tok.tokenize_word(w)) for w in words) for _, _, words in examples]
    return {qid: (pieces[i], windows[i]) for i, (qid, _, _) in enumerate(examples)}


def _qtype(question: str) -> str:
    for word in re.findall(r"[a-z]+", question.lower()):
        for kind in ("what", "who", "when", "where", "why", "how", "which"):
            if word == kind or (kind == "who" and word in ("whom", "whose")):
                return kind
    return "other"


def test_buckets_equal_a_recomputation_from_predictions_json(pair, data11):
    from spanqa.report.build import build_report

    a, _, _ = pair
    report = build_report([a])
    block = report["results"][0]
    predictions = json.loads((a / "predictions.json").read_text())
    raw = json.loads(data11.read_text())
    gold = {qa["id"]: [x["text"] for x in qa["answers"]] for p in raw["data"][0]["paragraphs"] for qa in p["qas"]}
    questions = {qa["id"]: qa["question"] for p in raw["data"][0]["paragraphs"] for qa in p["qas"]}
    f1 = {q: max(f1_score(predictions[q], g) for g in gold[q]) for q in gold}
    shapes = _reference_shapes(data11)

    def context_bin(n):
        edges = [0, 128, 192, 256, 320, 384, 512]
        for lo, hi in zip(edges, edges[1:]):
            if n < hi:
                return f"{lo}-{hi - 1}"
        return "512+"

    keys = {
        "by_context_pieces": lambda q: context_bin(shapes[q][0]),
        "by_windows": lambda q: str(shapes[q][1]) if shapes[q][1] < 4 else "4+",
        "by_question_type": lambda q: _qtype(questions[q]),
    }
    for key, bucket_of in keys.items():
        groups: dict[str, list[float]] = {}
        for q in gold:
            groups.setdefault(bucket_of(q), []).append(f1[q])
        got = {b["bucket"]: (b["questions"], b["f1"]) for b in block[key]}
        want = {b: (len(v), 100.0 * sum(v) / len(v)) for b, v in groups.items()}
        assert got.keys() == want.keys(), key
        for b in want:
            assert got[b][0] == want[b][0] and got[b][1] == pytest.approx(want[b][1], abs=1e-9), (key, b)
    # The synthetic set spans several bins of each, so the grouping is really tested.
    assert len(block["by_context_pieces"]) >= 3 and len(block["by_windows"]) >= 3 and len(block["by_question_type"]) == 8
    per_q = {r["id"]: r for r in block["per_question"]}
    assert {q: (per_q[q]["context_pieces"], per_q[q]["windows"]) for q in gold} == shapes


def test_accuracy_interval_and_worst_questions(pair):
    from spanqa.report.build import build_report

    a, _, _ = pair
    block = build_report([a])["results"][0]
    result = json.loads((a / "result.json").read_text())
    f1s = [r["f1"] for r in block["per_question"]]
    n = len(f1s)
    mean = sum(f1s) / n
    half = 1.96 * math.sqrt(sum((x - mean) ** 2 for x in f1s) / (n - 1)) / math.sqrt(n)
    acc = block["accuracy"]
    assert acc["f1"] == pytest.approx(result["f1"], abs=1e-9) and acc["exact_match"] == pytest.approx(
        result["exact_match"], abs=1e-9
    )
    assert acc["f1_ci95"] == pytest.approx([100 * (mean - half), 100 * (mean + half)], abs=1e-9)
    assert acc["questions"] == result["total"] == 42

    worst = block["worst"]
    assert len(worst) == 30
    ranked = sorted(block["per_question"], key=lambda r: r["f1"])
    assert [w["f1"] for w in worst] == [r["f1"] for r in ranked[:30]]
    zero = [w for w in worst if w["f1"] == 0]
    assert [w["probability"] for w in zero] == sorted((w["probability"] for w in zero), reverse=True)  # confident first
    for w in worst:
        for s, e in w["gold_spans"]:
            assert w["excerpt"][s:e] in w["gold"]
        span = w["answer_spans"][block["name"]]
        if w["prediction"]:
            assert " ".join(w["excerpt"][span[0] : span[1]].split()) == w["prediction"]
        else:
            assert span is None


def test_disagreements_are_exactly_the_differing_questions(pair):
    from spanqa.engine.guard import mean_ci95
    from spanqa.report.build import build_report

    a, b, changed = pair
    report = build_report([a, b])
    cmp = report["comparison"]
    pa = json.loads((a / "predictions.json").read_text())
    pb = json.loads((b / "predictions.json").read_text())
    differ = {q for q in pa if pa[q] != pb[q]}
    assert differ == set(changed)
    assert {d["id"] for d in cmp["disagreements"]} == differ
    names = [r["name"] for r in report["results"]]
    assert names == ["fp32", "int8"]
    for d in cmp["disagreements"]:
        assert d["answers"]["fp32"]["text"] == pa[d["id"]] and d["answers"]["int8"]["text"] == pb[d["id"]]
    (p,) = cmp["pairs"]
    ra, rb = (json.loads((x / "result.json").read_text()) for x in (a, b))
    assert p["f1_difference"] == pytest.approx(rb["f1"] - ra["f1"], abs=1e-9)
    assert p["answers_differ"] == len(differ)
    qa = {r["id"]: r["f1"] for r in report["results"][0]["per_question"]}
    qb = {r["id"]: r["f1"] for r in report["results"][1]["per_question"]}
    _, low, high = mean_ci95([qb[q] - qa[q] for q in qa])
    assert p["f1_difference_ci95"] == pytest.approx([100 * low, 100 * high], abs=1e-9)
    assert p["f1_worse"] >= 1 and p["significant"] == (not low <= 0 <= high)

    same = build_report([a, a])["comparison"]
    assert same["disagreements"] == [] and same["pairs"][0]["f1_difference_ci95"] == [0.0, 0.0]
    assert same["pairs"][0]["significant"] is False


def test_speed_package_and_machine(pair):
    import numpy as np

    from spanqa.report.build import build_report

    a, _, _ = pair
    block = build_report([a])["results"][0]
    timings = json.loads((a / "summary.json").read_text())["batch_timings"]
    speed = block["speed"]
    lat = np.asarray(timings["latency_ms"])
    assert speed["latency_ms"]["p50"] == pytest.approx(float(np.median(lat)))
    assert speed["latency_ms"]["p99"] == pytest.approx(float(np.percentile(lat, 99)))
    over = speed["throughput_over_time"]
    assert sum(over["rows_per_s"]) * over["slice_s"] == pytest.approx(sum(timings["rows"]))
    assert speed["end_to_end_questions_per_s"] == 40.0 and speed["model_rows_per_s"] == 200.0
    assert block["package"]["target"] == "cpu-fp32" and block["package"]["runtime"]["name"] == "onnxruntime-cpu"
    assert block["machine"] == {"cpu": json.loads((a / "summary.json").read_text())["cpu"], "threads": 2}
    assert any("model package is not on this machine" in n for n in block["notes"])


def test_squad2_threshold_curve(tmp_path):
    from spanqa.report.build import build_report

    data = squad_file(tmp_path / "bridges2.json", version_2=True)
    res = synthetic_result(tmp_path / "v2", data, seed=4)
    block = build_report([res])["results"][0]
    result = json.loads((res / "result.json").read_text())
    s2 = block["squad2"]
    assert block["squad_version"] == 2
    assert (s2["HasAns_total"], s2["NoAns_total"]) == (result["HasAns_total"], result["NoAns_total"]) == (42, 14)
    curve = s2["threshold_curve"]
    best = max(curve["f1"])
    assert best == pytest.approx(result["best_f1"], abs=1e-9)
    assert curve["threshold"][curve["f1"].index(best)] == pytest.approx(result["best_f1_thresh"])
    assert s2["chosen_threshold"] == 0.0
    # At the chosen threshold the curve reads the run's own F1.
    at = max(i for i, t in enumerate(curve["threshold"]) if t <= 0.0)
    assert curve["f1"][at] == pytest.approx(result["f1"], abs=1e-9)
    assert block["accuracy"]["f1"] == pytest.approx(result["f1"], abs=1e-9)


COPIED = ("settings", "timings_s", "runtime", "cpu", "guard")  # copied as summary.json / the manifest has them


def test_report_json_keys_are_documented(pair, tmp_path):
    """Every key report.json holds is named in docs/report.md (and the page's figures are views of it)."""
    from spanqa.report.build import build_report

    doc = (Path(__file__).resolve().parents[1] / "docs" / "report.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`([a-zA-Z_][a-zA-Z0-9_]*)`", doc))
    v2 = synthetic_result(tmp_path / "v2", squad_file(tmp_path / "v2.json", paragraphs=4, version_2=True), seed=5)
    reports = [build_report(list(pair[:2])), build_report([v2])]
    keys: set[str] = set()

    def walk(obj, skip_names: bool = False):
        if isinstance(obj, dict):
            for k, v in obj.items():
                if not skip_names:
                    keys.add(k)
                if k not in COPIED:
                    walk(v, skip_names=k in ("answer_spans", "answers"))  # keyed by result names
        elif isinstance(obj, list):
            for v in obj:
                walk(v)

    walk(reports)
    assert sorted(keys - documented) == []
    assert {"threshold_curve", "disagreements", "throughput_over_time", "HasAns_f1"} <= keys  # the walk reached them


def test_bad_results_are_one_line_errors(pair, data11, tmp_path):
    from spanqa.report.build import build_report

    a, _, _ = pair
    with pytest.raises(ResultError, match=r"no predictions\.json; pass a result directory"):
        build_report([tmp_path])
    other = squad_file(tmp_path / "other.json", paragraphs=5, seed=9)
    with pytest.raises(ResultError, match="not the dataset .* answered"):
        build_report([a], dataset=other)
    c = synthetic_result(tmp_path / "small", other, seed=2)
    with pytest.raises(ResultError, match=f"{c} answers other questions than {a}"):
        build_report([a, c])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "predictions.json").write_text("{oops")
    with pytest.raises(ResultError, match=r"predictions\.json: not valid JSON \(Expecting property name"):
        build_report([broken])
    moved = tmp_path / "moved"
    synthetic_result(moved, data11, seed=1)
    summary = json.loads((moved / "summary.json").read_text())
    summary["dataset"] = str(tmp_path / "gone.json")
    (moved / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(UsageError, match="gone.json, is not there; pass it with --dataset"):
        build_report([moved])
    assert build_report([moved], dataset=data11)["results"][0]["questions"] == 42


def test_ray_evaluate_and_unscored_results(pair, data11, tmp_path):
    """A Ray run's directory (no n-best, no per-batch timings, inputs listed), an evaluate one
    (no summary.json) and a run without gold answers all make a report, saying what is missing."""
    import shutil

    from spanqa.report.build import build_report
    from spanqa.report.html import render

    a, _, _ = pair
    ray = tmp_path / "ray"
    shutil.copytree(a, ray)
    (ray / "nbest_predictions.json").unlink()
    summary = json.loads((ray / "summary.json").read_text())
    summary |= {"engine": "ray", "dataset": [str(data11)], "inference": {}, "model_rows_per_s": float("nan")}
    del summary["batch_timings"]
    (ray / "summary.json").write_text(json.dumps(summary))
    block = build_report([ray])["results"][0]
    assert block["accuracy"]["f1"] == pytest.approx(json.loads((a / "result.json").read_text())["f1"], abs=1e-9)
    assert block["speed"]["batches"] is None and block["speed"]["model_rows_per_s"] is None  # NaN is not JSON
    assert block["package"]["engine"] == "ray" and all(w["probability"] is None for w in block["worst"])

    evaluated = tmp_path / "evaluated"
    shutil.copytree(a, evaluated)
    (evaluated / "summary.json").unlink()
    report = build_report([evaluated])
    assert report["results"][0]["speed"]["latency_ms"] is None and report["results"][0]["machine"]["cpu"] is None
    assert "batches timed</td><td>not recorded" in render(report)

    unlabelled = json.loads(data11.read_text())
    for p in unlabelled["data"][0]["paragraphs"]:
        for qa in p["qas"]:
            qa["answers"] = []
    (tmp_path / "unlabelled.json").write_text(json.dumps(unlabelled))
    plain = tmp_path / "plain"
    shutil.copytree(a, plain)
    (plain / "result.json").unlink()
    (plain / "summary.json").write_text(json.dumps(summary_for(tmp_path / "unlabelled.json")))
    report = build_report([plain])
    block = report["results"][0]
    assert (block["scored"], block["accuracy"], block["worst"]) == (False, None, None)
    assert "the questions carry no gold answers: nothing is scored" in block["notes"]
    assert "No gold answers: nothing was scored." in render(report)
