"""The data behind every figure and list of the report (what report.json holds; docs/report.md
names its keys). Scores are in percent, as result.json's."""

from __future__ import annotations

import math
from typing import Any

from spanqa.report.questions import QUESTION_TYPES, excerpt, gold_spans, locate, question_type, scores, shapes

WORST = 30  # questions listed as the worst of a result
# Context length bins in word pieces (lower edges); the last is open.
CONTEXT_EDGES = (0, 128, 192, 256, 320, 384, 512)
WINDOW_BINS = (1, 2, 3, 4)  # the last is "4 or more"
TIME_BINS = 40  # throughput over the run: rows finished per slice of the run


def ci_block(ems: list[float], f1s: list[float]) -> dict:
    """EM and F1 in percent with the 95% interval of their mean (the guard's interval)."""
    from spanqa.engine.guard import mean_ci95

    out = {"questions": len(f1s)}
    for name, values in (("exact_match", ems), ("f1", f1s)):
        mean, low, high = mean_ci95(values)
        out[name], out[f"{name}_ci95"] = 100.0 * mean, [100.0 * low, 100.0 * high]
    return out


def context_bucket(pieces: int) -> str:
    edges = CONTEXT_EDGES
    for lo, hi in zip(edges, edges[1:]):
        if pieces < hi:
            return f"{lo}-{hi - 1}"
    return f"{edges[-1]}+"


def window_bucket(windows: int) -> str:
    return str(windows) if windows < WINDOW_BINS[-1] else f"{WINDOW_BINS[-1]}+"


BUCKETS = {
    "context_pieces": [context_bucket(e) for e in CONTEXT_EDGES],
    "windows": [window_bucket(w) for w in WINDOW_BINS],
    "question_type": list(QUESTION_TYPES),
}


def by_bucket(rows: list[dict], key: str) -> list[dict]:
    """EM/F1 of the questions in each bucket of ``key`` (empty buckets left out)."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["buckets"][key], []).append(row)
    out = []
    for bucket in BUCKETS[key]:
        members = groups.get(bucket)
        if members:
            block = ci_block([r["exact_match"] for r in members], [r["f1"] for r in members])
            out.append({"bucket": bucket, **block})
    return out


def question_rows(result) -> list[dict]:
    """One row per question of the dataset, in file order."""
    from spanqa.data.vocab import TokenizerSettings, default_vocab_path
    from spanqa.settings import FeatureSettings

    examples = result.dataset.examples
    recorded = ((result.summary or {}).get("settings") or {}).get("features") or (result.result or {}).get("feature_settings")
    fs = FeatureSettings(**{k: v for k, v in (recorded or {}).items() if k in FeatureSettings.__dataclass_fields__})
    if result.package is not None:
        tokenizer = result.package.tokenizer
    else:
        tokenizer = TokenizerSettings(default_vocab_path(), fs.do_lower_case)
        result.notes.append("word pieces and windows counted with spanqa's bundled bert-base-cased vocab")
    shape = shapes(examples, tokenizer, fs)
    scored = scores(result, examples)
    nbest = result.nbest or {}
    rows = []
    for i, ex in enumerate(examples):
        top = (nbest.get(ex.qas_id) or [{}])[0]
        row = {
            "id": ex.qas_id,
            "question": ex.question_text,
            "type": question_type(ex.question_text),
            "context_pieces": shape[i].context_pieces,
            "windows": shape[i].windows,
            "prediction": result.predictions.get(ex.qas_id),
            "probability": top.get("probability"),
            "has_answer": None if ex.is_impossible is None else not ex.is_impossible,
        }
        if scored is not None:
            row["exact_match"], row["f1"] = scored[0][i], scored[1][i]
        row["buckets"] = {
            "context_pieces": context_bucket(row["context_pieces"]),
            "windows": window_bucket(row["windows"]),
            "question_type": row["type"],
        }
        rows.append(row)
    return rows


def answer_view(result_examples: dict, starts: dict, qid: str, answers: dict[str, str | None]) -> dict:
    """A context excerpt with the gold answers and each named answer located in it (character
    offsets relative to the excerpt)."""
    ex = result_examples[qid]
    context = ex.context or " ".join(ex.doc_tokens)
    gold = gold_spans(ex, starts.get(qid, []))
    where = {name: (locate(context, text, gold) if text else None) for name, text in answers.items()}
    lo, hi = excerpt(context, gold + [w for w in where.values() if w])
    shift = lambda span: [span[0] - lo, span[1] - lo] if span and lo <= span[0] and span[1] <= hi else None  # noqa: E731
    return {
        "excerpt": context[lo:hi],
        "excerpt_start": lo,
        "excerpt_cut": [lo > 0, hi < len(context)],
        "gold": list(ex.answers),
        "gold_spans": [s for s in map(shift, gold) if s],
        "answer_spans": {name: shift(span) for name, span in where.items()},
    }


def worst(result, rows: list[dict], count: int = WORST) -> list[dict]:
    """The ``count`` lowest-F1 questions; among equal F1 the most confident answer first (a
    confidently wrong answer says more than a hesitant one), then file order."""
    by_id = {ex.qas_id: ex for ex in result.dataset.examples}
    order = sorted(range(len(rows)), key=lambda i: (rows[i]["f1"], rows[i]["exact_match"], -(rows[i]["probability"] or 0.0), i))
    out = []
    for i in order[:count]:
        row = rows[i]
        view = answer_view(by_id, result.dataset.answer_starts, row["id"], {result.name: row["prediction"]})
        out.append({k: row[k] for k in ("id", "question", "type", "prediction", "exact_match", "f1", "probability")} | view)
    return out


def _percentiles(values: list[float]) -> dict | None:
    import numpy as np

    if not values:
        return None
    a = np.asarray(values, dtype=np.float64)
    return {
        "min": float(a.min()),
        "mean": float(a.mean()),
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
        "max": float(a.max()),
    }


def speed(summary: dict | None) -> dict:
    """Throughput and batch latency over the run, from summary.json (per batch when the run
    recorded its batches: ``batch_timings``)."""
    summary = summary or {}
    inference = summary.get("inference") or {}
    out: dict[str, Any] = {
        "end_to_end_questions_per_s": summary.get("end_to_end_questions_per_s"),
        "model_rows_per_s": summary.get("model_rows_per_s"),
        "throughput_rows_per_s": inference.get("throughput_rows_per_s"),
        "timings_s": summary.get("timings_s"),
        "streams": inference.get("streams", 1),
        "batches": None,
        "latency_ms": inference.get("latency_ms"),
        "throughput_over_time": None,
    }
    timings = summary.get("batch_timings") or {}
    done, lat, rows = (timings.get(k) or [] for k in ("done_s", "latency_ms", "rows"))
    if done and len(done) == len(lat) == len(rows):
        out["batches"] = {"done_s": done, "latency_ms": lat, "rows": rows}
        out["latency_ms"] = _percentiles(lat)
        end = max(done)
        slices = max(1, min(TIME_BINS, len(done) // 5))  # a few batches per slice, or it is all gaps
        width = end / slices
        if width > 0:
            finished = [0] * slices
            for t, r in zip(done, rows):
                finished[min(int(t / width), slices - 1)] += r
            series = [r / width for r in finished]
            out["throughput_over_time"] = {
                "slice_s": width,
                "t_s": [(k + 0.5) * width for k in range(slices)],
                "rows_per_s": series,
                "percentiles": _percentiles(series),
            }
    return out


def package(result) -> dict:
    """What answered: target, precision, runtime and the accuracy guard's figures."""
    summary = result.summary or {}
    out = {
        "model": summary.get("model") or (result.result or {}).get("model"),
        "model_sha256": summary.get("model_sha256"),
        "target": summary.get("target") or (result.result or {}).get("target"),
        "precision": summary.get("precision"),
        "runtime": summary.get("runtime"),
        "guarded": summary.get("guarded"),
        "guard": None,
        "quantization": None,
        "inference_precision": None,
        "engine": summary.get("engine", "local"),
        "spanqa_version": summary.get("spanqa_version"),
    }
    if result.package is not None:
        manifest = result.package.manifest
        out.update(guard=manifest.guard, quantization=manifest.quantization, inference_precision=manifest.inference_precision)
        out["precision"] = out["precision"] or manifest.precision
    return out


def machine(summary: dict | None) -> dict:
    summary = summary or {}
    return {"cpu": summary.get("cpu"), "threads": summary.get("threads")}


def threshold_curve(gold: dict, spans: dict, null_odds: dict) -> dict:
    """F1 (percent) at every threshold on the null odds: the sweep ``squad2.best_threshold``
    makes, every step kept. A question answers its best span when its odds are at most the
    threshold, else "" (the first point: nothing answered)."""
    from spanqa.answers.squad2 import question_scores

    gain: dict[float, float] = {}
    total = 0.0
    for q, g in gold.items():
        if q not in spans or q not in null_odds:
            continue
        if_null = question_scores(g, "")[1]
        total += if_null
        odds = float(null_odds[q])
        gain[odds] = gain.get(odds, 0.0) + question_scores(g, spans[q])[1] - if_null
    odds = sorted(gain)
    thresholds = [odds[0] - 1.0 if odds else 0.0]  # below every odds: nothing answered
    f1 = [100.0 * total / len(gold)]
    for value in odds:
        total += gain[value]
        thresholds.append(value)
        f1.append(100.0 * total / len(gold))
    return {"threshold": thresholds, "f1": f1}


def squad2_block(result) -> dict | None:
    """HasAns/NoAns figures and F1 against the null-score threshold (SQuAD 2.0 results)."""
    from spanqa.answers import squad2

    if not result.squad2 or result.result is None:
        return None
    r = result.result
    out = {k: r[k] for k in r if k.startswith(("HasAns_", "NoAns_", "best_"))}
    out["chosen_threshold"] = r.get("null_score_diff_threshold")
    out["threshold_tuned"] = r.get("threshold_tuned")
    out["threshold_curve"] = None
    if result.null_odds is not None and result.nbest is not None:
        spans = {q: next((c["text"] for c in cands if c.get("text")), "") for q, cands in result.nbest.items()}
        gold = squad2.gold_answers(result.dataset.examples)
        out["threshold_curve"] = threshold_curve(gold, spans, result.null_odds)
        if "best_f1_thresh" not in out:
            out["best_f1"], out["best_f1_thresh"] = squad2.best_threshold(gold, spans, result.null_odds)
    else:
        result.notes.append("no null_odds.json or nbest_predictions.json: F1 against the threshold is not drawn")
    return out


def finite(obj: Any) -> Any:
    """``obj`` with NaN and infinities as None (JSON has neither)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj
