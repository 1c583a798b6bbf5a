"""The official SQuAD scores of a Ray run, streamed from its store in input order.

The same figures, to the last bit, as ``spanqa.answers.scoring.score`` (1.1) and
``spanqa.answers.squad2.score`` (2.0, with the best thresholds) compute over a local run's
dictionaries: per-question scores come from the same functions, and every total is summed in
the same order by the same operation (``sum`` over a generator is ``sum`` over a list; the
threshold search adds per-odds gains in input order and walks the odds in ascending order).
Only one question is in memory at a time: per-question scores go to a temporary table, and
the threshold search reads it back sorted by SQLite (which spills sorts to disk).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spanqa.scale.store import Store


def score_v1(store: Store) -> dict[str, Any]:
    """evaluate-v1.1.py's exact match and F1 over the questions with gold answers (the others
    are counted as ``unlabelled``, as a local run counts them)."""
    from spanqa.answers.scoring import _metric_max_over_ground_truths, exact_match_score, f1_score

    db = store.db
    db.execute("DROP TABLE IF EXISTS temp.v1")
    db.execute("CREATE TEMP TABLE v1(k INTEGER PRIMARY KEY, em REAL, f1 REAL)")
    db.execute("BEGIN")
    questions = 0
    for k, (_, pred, _, _, gold, *_) in enumerate(store.rows_in_order()):
        questions += 1
        if gold:
            em = _metric_max_over_ground_truths(exact_match_score, pred, gold)
            f1 = _metric_max_over_ground_truths(f1_score, pred, gold)
            db.execute("INSERT INTO v1 VALUES (?, ?, ?)", (k, em, f1))
    db.execute("COMMIT")
    total = db.execute("SELECT COUNT(*) FROM v1").fetchone()[0]
    exact_match = sum(r[0] for r in db.execute("SELECT em FROM v1 ORDER BY k"))
    f1 = sum(r[0] for r in db.execute("SELECT f1 FROM v1 ORDER BY k"))
    out = {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total, "total": total, "unanswered": 0}
    if questions > total:
        out["unlabelled"] = questions - total
    db.execute("DROP TABLE temp.v1")
    return out


def score_v2(store: Store, null_odds: bool, threshold: float | None = None) -> dict[str, Any]:
    """evaluate-v2.0.py's metrics (``spanqa.answers.squad2.score``); with ``null_odds`` the best
    thresholds too. ``threshold`` re-answers every question at it (``--tune-threshold``)."""
    from spanqa.answers import squad2

    db = store.db
    db.execute("DROP TABLE IF EXISTS temp.v2")
    db.execute(
        "CREATE TEMP TABLE v2(k INTEGER PRIMARY KEY, has INTEGER, em REAL, f1 REAL, odds REAL, "
        "null_em REAL, null_f1 REAL, gain_em REAL, gain_f1 REAL)"
    )
    db.execute("BEGIN")
    for k, (_, pred, odds, span, gold, impossible, *_) in enumerate(store.rows_in_order()):
        g = _gold(gold, impossible)
        if threshold is not None and odds is not None:
            pred = "" if odds > threshold else span
        em, f1 = squad2.question_scores(g, pred)
        row = [k, int(g.has_answer), em, f1, None, None, None, None, None]
        if null_odds:
            # What "" scores, and what the best span adds to it (best_threshold's gain).
            null_em = max(squad2._exact(t, "") for t in g.texts)
            null_f1 = max(squad2._f1(t, "") for t in g.texts)
            gain_em = max(squad2._exact(t, span) for t in g.texts) - null_em
            gain_f1 = max(squad2._f1(t, span) for t in g.texts) - null_f1
            row[4:] = [float(odds), null_em, null_f1, gain_em, gain_f1]
        db.execute("INSERT INTO v2 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
    db.execute("COMMIT")
    out: dict[str, Any] = _block(db, "", "")
    if db.execute("SELECT 1 FROM v2 WHERE has = 1 LIMIT 1").fetchone():
        out.update(_block(db, "HasAns_", "WHERE has = 1"))
    if db.execute("SELECT 1 FROM v2 WHERE has = 0 LIMIT 1").fetchone():
        out.update(_block(db, "NoAns_", "WHERE has = 0"))
    out["unanswered"] = 0
    if null_odds:
        for name in ("exact", "f1"):
            out[f"best_{name}"], out[f"best_{name}_thresh"] = _best_threshold(db, "em" if name == "exact" else "f1")
    db.execute("DROP TABLE temp.v2")
    return out


def _gold(answers: list[str], impossible: bool | None):
    """``squad2.gold_answers`` of one question."""
    from spanqa.answers import squad2

    has = bool(answers) and not impossible
    texts = tuple(a for a in answers if squad2._normalize(a)) or ("",)
    return squad2.Gold(has, texts)


def _block(db, prefix: str, where: str) -> dict:
    """``squad2._block``: the sums in input order."""
    n = db.execute(f"SELECT COUNT(*) FROM v2 {where}").fetchone()[0]
    exact = sum(r[0] for r in db.execute(f"SELECT em FROM v2 {where} ORDER BY k"))
    f1 = sum(r[0] for r in db.execute(f"SELECT f1 FROM v2 {where} ORDER BY k"))
    return {f"{prefix}exact": 100.0 * exact / n, f"{prefix}f1": 100.0 * f1 / n, f"{prefix}total": n}


def _best_threshold(db, metric: str) -> tuple[float, float]:
    """``squad2.best_threshold``: start from "all no answer", switch groups of equal odds to
    their spans in increasing odds, keep the best total (the lowest threshold among equals)."""
    from spanqa.answers import squad2

    n = db.execute("SELECT COUNT(*) FROM v2").fetchone()[0]
    total = 0.0
    for (value,) in db.execute(f"SELECT null_{metric} FROM v2 ORDER BY k"):
        total += value
    best, thresh = total, None
    group, gain = None, 0.0
    for odds, value in db.execute(f"SELECT odds, gain_{metric} FROM v2 ORDER BY odds, k"):
        if thresh is None:
            thresh = odds - squad2._BELOW_ALL  # answering nothing: below every odds
        if odds != group:
            if group is not None:
                total += gain
                if total > best:
                    best, thresh = total, group
            group, gain = odds, 0.0
        gain += value
    if group is not None:
        total += gain
        if total > best:
            best, thresh = total, group
    return 100.0 * best / n, (0.0 if thresh is None else thresh)
