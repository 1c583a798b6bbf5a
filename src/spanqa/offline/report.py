"""Reports (the recipe's parse.py): fps from an msame log or an infer summary.json, rows/s and
questions/s from a run's summary.json, EM/F1 from result.json. One line each (``spanqa report``
without --html; the HTML report is spanqa.report)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from spanqa.errors import InferenceError, ResultError, UsageError
from spanqa.offline.outputs import LOG_NAME, SUMMARY_NAME

_AVG_RE = re.compile(r"Inference average time\s*:\s*([0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)\s*ms")
_AVG_WO_RE = re.compile(r"Inference average time without first time\s*:\s*([0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)\s*ms")
_BS_RE = re.compile(r"\[INFO\] batch size\s*:\s*(\d+)")


@dataclass(frozen=True)
class PerfReport:
    source: str
    batch_size: int
    average_ms: float  # the average fps is computed from
    without_first: bool  # whether that average excludes the first run

    @property
    def fps(self) -> float:
        return self.batch_size * 1000.0 / self.average_ms

    def line(self) -> str:
        which = "without first time" if self.without_first else "all runs"
        return f"{self.source}: batch size {self.batch_size}, {self.average_ms:.3f} ms per batch ({which}), {self.fps:.3f} fps"


def perf_from_log(text: str, source: str = "log", batch_size: int | None = None) -> PerfReport:
    """fps from an msame or ``spanqa infer`` log: the last "without first time" average, else the
    last plain average. The batch size comes from ``batch_size`` or the log's "batch size" line."""
    without = _AVG_WO_RE.findall(text)
    plain = _AVG_RE.findall(text)
    if not without and not plain:
        raise ResultError(f"{source}: no 'Inference average time' line; is this an msame or 'spanqa infer' log?")
    logged = _BS_RE.findall(text)
    logged_bs = int(logged[-1]) if logged else None
    if batch_size is not None and logged_bs is not None and batch_size != logged_bs:
        raise UsageError(f"--batch-size {batch_size}: {source} was run with batch size {logged_bs}; drop --batch-size")
    bs = batch_size or logged_bs
    if bs is None:
        raise InferenceError(f"{source}: the log does not say the batch size; pass --batch-size N")
    avg = float(without[-1]) if without else float(plain[-1])
    if avg <= 0:
        raise ResultError(f"{source}: average time {avg} ms; cannot compute fps")
    return PerfReport(source, bs, avg, bool(without))


def perf_from_summary(summary: dict, source: str = "summary.json", batch_size: int | None = None) -> PerfReport:
    bs = summary.get("batch_size")
    avg = summary.get("average_ms_without_first")
    if bs is None or avg is None:
        raise ResultError(f"{source}: no timed runs recorded (batch_size/average_ms_without_first missing)")
    if batch_size is not None and batch_size != bs:
        raise UsageError(f"--batch-size {batch_size}: {source} was run with batch size {bs}; drop --batch-size")
    return PerfReport(source, int(bs), float(avg), summary.get("timed_runs", 2) >= 2)


def accuracy_line(result: dict, source: str = "result.json") -> str:
    try:
        em = float(result["exact_match"] if "exact_match" in result else result["exact"])  # 1.1 or 2.0
        f1 = float(result["f1"])
    except (KeyError, TypeError, ValueError):
        raise ResultError(f"{source}: no exact_match/f1; is this a result.json from 'spanqa run' or 'spanqa evaluate'?") from None
    total = result.get("total")
    return f"{source}: EM {em:.3f}, F1 {f1:.3f}" + (f" ({total} questions)" if total is not None else "")


def run_perf_line(summary: dict, source: str = "summary.json") -> str:
    """A ``spanqa run`` summary.json: its batches may differ in size (length-aware batching), so
    the model's rows/s stands where infer's fps would, beside the end-to-end questions/s."""
    inference = summary.get("inference")
    if not isinstance(inference, dict):
        raise ResultError(f"{source}: no 'inference' figures; is this the summary.json of 'spanqa run'?")
    parts = []
    if inference.get("batches"):
        bs = inference.get("batch_size")
        parts.append(f"{inference['batches']} batches ({'batch size ' + str(bs) if bs else 'sizes vary'})")
    avg = inference.get("average_ms_without_first")
    if avg is not None:
        which = "without first time" if inference.get("timed_runs", 0) >= 2 else "all runs"
        parts.append(f"{float(avg):.3f} ms per batch ({which})")
    rows = inference.get("throughput_rows_per_s")
    if rows is not None:
        parts.append(f"{float(rows):.3f} rows/s")
    qps = summary.get("end_to_end_questions_per_s")
    if isinstance(qps, (int, float)) and qps == qps:
        parts.append(f"{float(qps):.3f} questions/s end to end")
    if not parts:
        raise ResultError(f"{source}: no timings recorded; is this the summary.json of 'spanqa run'?")
    return f"{source}: " + ", ".join(parts)


def report_lines(path: str | Path, batch_size: int | None = None) -> list[str]:
    """What ``spanqa report`` prints for PATH: an infer log (or any msame log), an infer or run
    summary.json, a result.json, or a directory holding them (an infer output directory, or the
    result directory of ``spanqa run`` or ``spanqa evaluate``)."""
    path = Path(path)
    if path.is_dir():
        found = [path / n for n in (SUMMARY_NAME, LOG_NAME, "result.json") if (path / n).is_file()]
        if not found:
            raise ResultError(
                f"{path}: no {SUMMARY_NAME}, {LOG_NAME} or result.json here; pass a result directory or the file itself"
            )
        # summary.json and infer.log describe the same run: report the summary when both exist.
        if path / SUMMARY_NAME in found and path / LOG_NAME in found:
            found.remove(path / LOG_NAME)
        return [line for f in found for line in report_lines(f, batch_size)]
    if not path.is_file():
        raise UsageError(
            f"{path}: no such file or directory; pass an infer log, a summary.json, a result.json or a result directory"
        )
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ResultError(f"{path}: unreadable ({exc.strerror or exc})") from None
    if path.suffix == ".json":
        try:
            obj = json.loads(text)
        except ValueError as exc:
            where = f" ({exc.msg} at line {exc.lineno} column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
            raise ResultError(f"{path}: not valid JSON{where}; pass a summary.json or result.json that spanqa wrote") from None
        if not isinstance(obj, dict):
            raise ResultError(f"{path}: not a summary.json or result.json (a JSON object)")
        if "exact_match" in obj or "f1" in obj:
            return [accuracy_line(obj, str(path))]
        if "average_ms_without_first" in obj:
            return [perf_from_summary(obj, str(path), batch_size).line()]
        if "inference" in obj:
            if batch_size is not None:
                raise UsageError(
                    f"--batch-size {batch_size}: {path} is a 'spanqa run' summary and says its batches; drop --batch-size"
                )
            return [run_perf_line(obj, str(path))]
        raise ResultError(f"{path}: neither a summary.json (infer or run) nor a result.json (run or evaluate)")
    return [perf_from_log(text, str(path), batch_size).line()]
