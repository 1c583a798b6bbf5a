"""The committed answers of a Ray run: one SQLite database in the run's partial directory.

Every block the driver takes off the stream is committed in one transaction: its input rows
(id, source, gold answers, in input order) and the answers of the rows answered this run,
complete or not at all. SQLite's journal keeps that true through a killed driver, so an
interrupted run leaves exactly the blocks it committed. The database is the spill that bounds
the driver's memory: ids, gold answers and answers live on disk, scoring and the final files
read them back in input order (``rows_in_order``), and the duplicate check is the database's
unique index.

Tables: ``answers`` (every answer ever committed, across runs, by id), ``inputs`` (this run's
input rows in order; emptied when a run starts), ``sources`` (input files), ``calls`` (one row
per actor call: timings for the summary and the per-worker timeline), ``actors`` (start and
model-load times), ``runs`` and ``meta`` (the job's key: model and answer settings).
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spanqa.errors import ClusterError, DatasetError, OutputError, UsageError

if TYPE_CHECKING:
    from collections.abc import Iterator

DB_FILE = "answers.sqlite"
CACHE_KIB = 2048  # SQLite's page cache (its default): the database's share of the driver's memory

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs(run INTEGER PRIMARY KEY, started REAL, finished REAL, answered INTEGER DEFAULT 0,
    outcome TEXT);
CREATE TABLE IF NOT EXISTS sources(sid INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS answers(id TEXT PRIMARY KEY, prediction TEXT NOT NULL, nbest TEXT, null_odds REAL,
    best_span TEXT, version_2 INTEGER NOT NULL, features INTEGER NOT NULL, seconds REAL, worker TEXT, node TEXT,
    pid INTEGER, run INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS inputs(seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, sid INTEGER NOT NULL, gold TEXT,
    impossible INTEGER);
CREATE TABLE IF NOT EXISTS calls(run INTEGER, worker TEXT, node TEXT, pid INTEGER, start REAL, end REAL,
    questions INTEGER, features INTEGER, real_tokens INTEGER, model_batches INTEGER, model_rows INTEGER,
    padded_rows INTEGER, preprocess_s REAL, inference_s REAL, answers_s REAL, latencies TEXT);
CREATE TABLE IF NOT EXISTS actors(run INTEGER, worker TEXT, pid INTEGER, node TEXT, started REAL, ready REAL,
    info TEXT, PRIMARY KEY(run, worker, pid));
"""


class Store:
    """The database of one partial directory, opened by the driver."""

    def __init__(self, directory: str | Path):
        import fcntl

        self.path = Path(directory) / DB_FILE
        # One driver at a time: two runs committing into one store would mix their rows. The
        # kernel drops the lock when the driver dies, however it dies.
        self._lock = open(Path(directory) / ".lock", "w")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise OutputError(f"{directory}: another spanqa run is writing there; wait for it, or stop it") from None
        self.db = sqlite3.connect(self.path, isolation_level=None)  # transactions are explicit
        # WAL + NORMAL: a commit is atomic and survives a killed process without an fsync each.
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        self.db.execute("PRAGMA temp_store=FILE")  # sorts and GROUP BYs spill to disk, not RAM
        self.db.executescript(_SCHEMA)
        self._sources: dict[str, int] = {}
        self.run = 0
        self.seq = 0

    def close(self) -> None:
        self.db.close()
        self._lock.close()

    # -----------------------------------------------------------------------------------------
    # The job: what the answers were made with, and the runs that made them

    def check_key(self, key: dict, *, resume: bool) -> None:
        """Record ``key`` (a new job) or, resuming, refuse answers made with another."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'job'").fetchone()
        if row is None:
            self.db.execute("INSERT INTO meta VALUES ('job', ?)", (json.dumps(key, sort_keys=True),))
            return
        old = json.loads(row[0])
        if resume and old != key:
            name = next(k for k in sorted(set(old) | set(key)) if old.get(k) != key.get(k))
            raise UsageError(
                f"--resume: the committed answers were made with another {name} ({old.get(name)!r}, now "
                f"{key.get(name)!r}); rerun with the interrupted run's options, or with --overwrite to start afresh"
            )

    def start_run(self) -> int:
        """A new run: this run's input rows start afresh (INPUT may have been fixed since)."""
        self.db.execute("BEGIN")
        self.db.execute("DELETE FROM inputs")
        self.db.execute("UPDATE runs SET outcome = 'interrupted' WHERE outcome IS NULL")
        cur = self.db.execute("INSERT INTO runs(started) VALUES (?)", (time.time(),))
        self.db.execute("COMMIT")
        self.run, self.seq = cur.lastrowid, 0
        return self.run

    def end_run(self, outcome: str) -> None:
        self.db.execute("UPDATE runs SET finished = ?, outcome = ? WHERE run = ?", (time.time(), outcome, self.run))

    def runs(self) -> list[dict]:
        cols = ("run", "started", "finished", "answered", "outcome")
        return [dict(zip(cols, r)) for r in self.db.execute(f"SELECT {', '.join(cols)} FROM runs ORDER BY run")]

    def committed(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    # -----------------------------------------------------------------------------------------
    # Committing a block

    def commit(self, rows: list[dict], calls: list[dict]) -> int:
        """Commit one block: its input rows (in order), the answers among them and its actor
        calls, in one transaction. A repeated id rolls it back and raises DatasetError naming
        both sources; the blocks committed before it stay. Returns the answers committed."""
        seen: dict[str, str] = {}
        inputs, answers = [], []
        for row in rows:
            qid, source = row["id"], row["source"]
            if qid in seen:
                raise DatasetError(_duplicate(qid, seen[qid], source))
            seen[qid] = source
            gold = json.dumps(row["answers"], ensure_ascii=False) if row["answers"] else None
            impossible = None if row["impossible"] is None else int(row["impossible"])
            inputs.append((self.seq + len(inputs), qid, self._source_id(source), gold, impossible))
            if row["answered"]:
                answers.append(
                    (
                        qid,
                        row["prediction"],
                        row["nbest"],
                        row["null_odds"],
                        row["best_span"],
                        int(row["version_2"]),
                        row["features"],
                        row["seconds"],
                        row["worker"],
                        row["node"],
                        row["pid"],
                        self.run,
                    )
                )
        self.db.execute("BEGIN")
        try:
            self.db.executemany("INSERT INTO inputs VALUES (?, ?, ?, ?, ?)", inputs)
        except sqlite3.IntegrityError:
            self.db.execute("ROLLBACK")
            raise DatasetError(self._duplicate_in_store(seen)) from None
        try:
            self.db.executemany("INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", answers)
        except sqlite3.IntegrityError:
            self.db.execute("ROLLBACK")
            raise ClusterError("the Ray job answered a question already committed; rerun with --resume") from None
        for call in calls:
            self._add_call(call)
        self.db.execute("UPDATE runs SET answered = answered + ? WHERE run = ?", (len(answers), self.run))
        self.db.execute("COMMIT")
        self.seq += len(inputs)
        return len(answers)

    def _source_id(self, path: str) -> int:
        sid = self._sources.get(path)
        if sid is None:
            self.db.execute("INSERT OR IGNORE INTO sources(path) VALUES (?)", (path,))
            sid = self.db.execute("SELECT sid FROM sources WHERE path = ?", (path,)).fetchone()[0]
            self._sources[path] = sid
        return sid

    def _duplicate_in_store(self, block: dict[str, str]) -> str:
        marks = ", ".join("?" * len(block))
        sql = f"SELECT i.id, s.path FROM inputs i JOIN sources s ON s.sid = i.sid WHERE i.id IN ({marks}) ORDER BY i.seq LIMIT 1"
        qid, first = self.db.execute(sql, list(block)).fetchone()
        return _duplicate(qid, first, block[qid])

    def _add_call(self, c: dict) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO actors VALUES (?, ?, ?, ?, ?, ?, ?)",
            (self.run, c["worker"], c["pid"], c["node"], c["started"], c["ready"], json.dumps(c["info"])),
        )
        keys = ("worker", "node", "pid", "start", "end", "questions", "features", "real_tokens", "model_batches")
        keys += ("model_rows", "padded_rows", "preprocess_s", "inference_s", "answers_s")
        self.db.execute(
            f"INSERT INTO calls VALUES (?, {', '.join('?' * (len(keys) + 1))})",
            (self.run, *(c[k] for k in keys), json.dumps(c["latencies_ms"])),
        )

    # -----------------------------------------------------------------------------------------
    # Reading back

    def missing(self) -> tuple[int, str | None]:
        """(input rows without an answer, the first of them)."""
        sql = "FROM inputs i LEFT JOIN answers a ON a.id = i.id WHERE a.id IS NULL"
        n = self.db.execute(f"SELECT COUNT(*) {sql}").fetchone()[0]
        first = self.db.execute(f"SELECT i.id {sql} ORDER BY i.seq LIMIT 1").fetchone()
        return n, first[0] if first else None

    def input_stats(self) -> dict[str, Any]:
        """Counts over this run's input: questions, labelled (1.1 answers), 2.0 questions,
        answers made with the null answer, features."""
        sql = (
            "SELECT COUNT(*), SUM(i.gold IS NOT NULL), SUM(i.impossible IS NOT NULL), SUM(a.version_2), "
            "SUM(a.features) FROM inputs i JOIN answers a ON a.id = i.id"
        )
        n, gold, v2_rows, v2_answers, features = self.db.execute(sql).fetchone()
        return {
            "questions": n,
            "with_answers": gold or 0,
            "squad2_questions": v2_rows or 0,
            "null_answer": v2_answers or 0,
            "features": features or 0,
        }

    def rows_in_order(self, nbest: bool = False) -> Iterator[tuple]:
        """(id, prediction, null_odds, best_span, gold list, impossible, nbest json or None,
        features, seconds, worker, node, pid, run) of every input question, in input order."""
        cols = "i.id, a.prediction, a.null_odds, a.best_span, i.gold, i.impossible, "
        cols += "a.nbest, " if nbest else "NULL, "
        cols += "a.features, a.seconds, a.worker, a.node, a.pid, a.run"
        cur = self.db.execute(f"SELECT {cols} FROM inputs i JOIN answers a ON a.id = i.id ORDER BY i.seq")
        for row in cur:
            gold = json.loads(row[4]) if row[4] is not None else []
            impossible = None if row[5] is None else bool(row[5])
            yield (row[0], row[1], row[2], row[3], gold, impossible, *row[6:])

    def feature_settings(self) -> dict | None:
        """The settings the actors built features with (the tokenizer's casing included)."""
        for (info,) in self.db.execute("SELECT info FROM actors"):
            features = json.loads(info).get("features")
            if features:
                return features
        return None

    def sources(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT path FROM sources ORDER BY sid")]

    def query(self, sql: str, args: tuple = ()) -> Iterator[tuple]:
        return self.db.execute(sql, args)


def _duplicate(qid: str, first: str, second: str) -> str:
    return f"duplicate question id {qid!r} in {first} and {second}; question ids must be unique across INPUT"


def committed_index(db_path: str):
    """The ids committed in ``db_path`` as sorted 128-bit hashes (two uint64 arrays), or None.

    Runs as a Ray task on the driver's node (it reads the database file), so the index is
    built outside the driver's memory and read by the filter tasks from the object store."""
    import numpy as np

    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        parts = []
        cur = db.execute("SELECT id FROM answers")
        while chunk := cur.fetchmany(100_000):
            parts.append(id_hashes([r[0] for r in chunk]))
    finally:
        db.close()
    if not parts:
        return None
    h = np.concatenate(parts)
    order = np.lexsort((h[:, 1], h[:, 0]))
    return np.ascontiguousarray(h[order, 0]), np.ascontiguousarray(h[order, 1])


def id_hashes(ids: list[str]):
    """[n, 2] uint64: a 128-bit BLAKE2b digest of each id (a collision among 10^9 ids has a
    chance of about 10^-21)."""
    import hashlib

    import numpy as np

    raw = b"".join(hashlib.blake2b(i.encode("utf-8"), digest_size=16).digest() for i in ids)
    return np.frombuffer(raw, dtype="<u8").reshape(-1, 2) if ids else np.zeros((0, 2), dtype="<u8")


def in_index(ids: list[str], index) -> Any:
    """A boolean mask: which of ``ids`` the index (``committed_index``'s arrays) holds."""
    import numpy as np

    mask = np.zeros(len(ids), dtype=bool)
    if index is None or not ids:
        return mask
    h1, h2 = index
    q = id_hashes(ids)
    lo = np.searchsorted(h1, q[:, 0], "left")
    hi = np.searchsorted(h1, q[:, 0], "right")
    for i in np.nonzero(hi > lo)[0]:
        mask[i] = bool((h2[lo[i] : hi[i]] == q[i, 1]).any())
    return mask
