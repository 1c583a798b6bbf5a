"""``spanqa loadgen``: a scenario and mode from start to table.

performance: one LoadGen test. accuracy: one AccuracyOnly test, its logged answers scored with
spanqa's EM/F1 (predictions.json and accuracy.json beside LoadGen's logs). find-peak: the
highest Server rate that is still VALID, by bisection over ``server_target_qps`` (each step a
full LoadGen test in a folder of its own), from an Offline test's rate (or --target-qps) down.
Every test is preceded by a warm-up (untimed) that also measures the rates LoadGen sizes its
tests by. The output directory appears complete or not at all (``fileutil.atomic_dir``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from spanqa.errors import UsageError
from spanqa.loadgen.harness import TOO_SHORT, TestSpec, loadgen, read_accuracy_log, run_test
from spanqa.loadgen.report import machine_info, row_from_log
from spanqa.settings import LoadgenSettings


@dataclass
class LoadgenReport:
    rows: list[dict]
    out_dir: Path
    machine: dict
    package: dict | None
    peak: dict | None = None  # find-peak: {"qps": highest VALID rate or None, "bound": upper bound}
    accuracy: dict | None = None  # accuracy mode: the scores (None: DATA has no gold answers)

    def to_json(self) -> dict:
        return {
            "rows": self.rows,
            "machine": self.machine,
            "package": self.package,
            "peak": self.peak,
            "accuracy": self.accuracy,
            "out_dir": str(self.out_dir),
        }


class _Target:
    """What the tests drive: the engine in this process or a server at a URL."""

    def __init__(self, samples, settings: LoadgenSettings, engine=None, url: str | None = None):
        self.samples, self.settings, self.engine, self.url = samples, settings, engine, url
        self.http = None
        if url is not None:
            from spanqa.loadgen.suts import HttpSUT

            self.http = HttpSUT(url, samples, connections=settings.http_connections, timeout_s=settings.http_timeout_s)
        self.per_token_s = 0.0

    @property
    def name(self) -> str:
        return self.url or "engine (in process)"

    def sut(self, scenario: str):
        if self.http is not None:
            self.http.failures.clear()
            self.http._aborted = False
            return self.http
        from spanqa.loadgen.suts import EngineSUT

        s = self.settings
        sut = EngineSUT(
            self.engine,
            self.samples,
            scenario,
            token_budget=s.token_budget,
            max_wait_s=s.max_wait_ms / 1000.0,
            deadline_s=s.latency_ms / 1000.0,
        )
        if sut.batcher is not None:
            sut.batcher.per_token = self.per_token_s
        return sut

    def warm(self, singles: bool) -> tuple[float, float]:
        """(samples/s answering a spread of samples at once, seconds per sample one at a time)."""
        n = len(self.samples)
        k = max(1, self.settings.warmup_questions)
        # Evenly through DATA, repeating a small set: batches fill as in the run itself.
        indices = [i * n // k for i in range(k)]
        answer = self._answer
        answer(indices[: min(4, k)])  # first runs: allocation, thread pools, connections
        # Passes over the spread until a second has gone by: one short pass on a small set
        # says more about start-up than about the rate.
        passes, t0 = 0, time.perf_counter()
        while passes < 2 or (time.perf_counter() - t0 < 1.0 and passes < 50):
            answer(indices)
            passes += 1
        rate = passes * k / max(time.perf_counter() - t0, 1e-9)
        if self.engine is not None and not self.samples.windows:
            f = self.engine.features([self.samples.examples[i] for i in indices])
            multiple = max(1, int(self.engine.settings.batching.multiple))
            tokens = sum(-(-int(x) // multiple) * multiple for x in f.lengths.tolist())
            self.per_token_s = (k / rate) / max(1, tokens)
        single = 1.0 / rate
        if singles:
            t0 = time.perf_counter()
            for i in indices[:8]:
                answer([i])
            single = (time.perf_counter() - t0) / min(8, k)
        return rate, single

    def _answer(self, indices: list[int]) -> None:
        if self.http is not None:
            self.http.answer_now(indices)
        else:
            self.sut("offline").answers(indices, desc="warm-up")

    def close(self) -> None:
        if self.http is not None:
            self.http.close()


def run_loadgen(
    dataset: str | Path,
    out_dir: str | Path,
    settings: LoadgenSettings = LoadgenSettings(),
    *,
    package=None,
    url: str | None = None,
    threads: int | None = None,
    features: bool = False,
    overwrite: bool = False,
    say: Callable[[str], None] = lambda message: None,
) -> LoadgenReport:
    """LoadGen's ``settings.scenario`` in ``settings.mode`` on the engine of ``package`` (a
    ModelPackage) or on the server at ``url``, over the questions of ``dataset``; LoadGen's
    logs and loadgen.json in ``out_dir``."""
    from spanqa.fileutil import atomic_dir, check_output
    from spanqa.loadgen.samples import load_samples

    settings.check()
    if (package is None) == (url is None):
        raise UsageError("give --model MODEL (the engine in this process) or --url URL (a server), not both")
    if url is not None and features:
        raise UsageError("--features runs pre-tokenised windows through the engine in this process; drop --url or --features")
    if url is not None and "://" not in url:
        raise UsageError(f"--url {url}: give the server's base URL, e.g. http://127.0.0.1:8000")
    if settings.scenario == "server" and settings.mode == "performance" and settings.target_qps is None:
        raise UsageError("--scenario server needs --target-qps (the arrival rate), or use --mode find-peak")
    loadgen()  # the install hint before anything loads
    inputs = (dataset, getattr(package, "root", None))
    check_output(out_dir, "loadgen", overwrite=overwrite, inputs=inputs, option="--out")
    engine = None
    if package is not None:
        engine = _open_engine(package, settings, threads, features, dataset)
        samples = load_samples(dataset, engine.tokenizer, engine.settings.features if features else None)
    else:
        samples = load_samples(dataset)
    target = _Target(samples, settings, engine=engine, url=url)
    machine = machine_info(engine.threads if engine is not None else None)
    pkg = None
    if engine is not None:
        pkg = {"model": str(package.root), "target": package.target, "precision": package.precision}
    try:
        with atomic_dir(out_dir, "loadgen", overwrite=overwrite, inputs=inputs, option="--out") as tmp:
            report = LoadgenReport([], Path(out_dir), machine, pkg)
            _modes(target, settings, tmp, report, say, features)
            report_json = report.to_json()
            report_json["settings"] = asdict(settings)
            report_json["features"] = features
            (tmp / "loadgen.json").write_text(json.dumps(report_json, indent=2) + "\n", encoding="utf-8")
    except KeyboardInterrupt:
        # The output is gone (atomic_dir); the SUT's threads may still be in the runtime, so the
        # engine stays open for the process to leave (the CLI exits at once).
        raise
    except BaseException:
        target.close()
        if engine is not None:
            engine.close()
        raise
    target.close()
    if engine is not None:
        engine.close()
    return report


def _open_engine(package, settings: LoadgenSettings, threads, features: bool, dataset):
    from spanqa.answers.squad2 import resolve_version_2
    from spanqa.data.squad import read_squad
    from spanqa.engine import Engine
    from spanqa.settings import AnswerSettings, EngineSettings, FeatureSettings

    if features:
        fs = FeatureSettings(settings.feature_seq_length, settings.feature_doc_stride, settings.feature_query_length)
        if package.seq_len is not None and package.seq_len != fs.max_seq_length:
            raise UsageError(
                f"--features: windows are {fs.max_seq_length} tokens but {package.root} was compiled for {package.seq_len}; "
                "use a model with dynamic shapes or one compiled with --seq-len 384"
            )
    else:  # as `spanqa run` chooses, so an accuracy run answers as `spanqa run` does
        fs = FeatureSettings.for_model(package.seq_len, package.max_positions)
    answers = resolve_version_2(AnswerSettings(), examples=read_squad(dataset), package=package)
    engine_settings = EngineSettings(features=fs, answers=answers)
    # SingleStream: one query at a time on every thread (least latency); otherwise a batch per stream.
    return Engine(package, threads=threads, settings=engine_settings, throughput=settings.scenario != "singlestream")


def _modes(target: _Target, s: LoadgenSettings, tmp: Path, report: LoadgenReport, say, features: bool) -> None:
    if s.mode == "accuracy":
        spec = TestSpec(
            s.scenario, accuracy=True, target_qps=s.target_qps, latency_ms=s.latency_ms, duration_s=s.duration_s, min_queries=1
        )
        rate, single = target.warm(s.scenario == "singlestream")
        spec = _sized(spec, rate, single)
        report.rows.append(_test(target, spec, tmp, ".", say))
        report.accuracy = _score(target, tmp, say)
        return
    if s.mode == "performance":
        spec = TestSpec(s.scenario, target_qps=s.target_qps, latency_ms=s.latency_ms, latency_percentile=s.latency_percentile,
                        duration_s=s.duration_s, min_queries=s.min_queries)  # fmt: skip
        rate, single = target.warm(s.scenario == "singlestream")
        say(f"warm-up: {rate:.1f} samples/s at once, {1000 * single:.1f} ms one at a time")
        row = _test(target, _sized(spec, rate, single), tmp, ".", say)
        if _too_short(row) and s.target_qps is None:
            # The warm-up underrated Offline (its one big query batches better than the
            # warm-up's): once more, sized by the rate LoadGen has just measured.
            qps = 1.25 * row["samples_per_s"]
            say(f"offline: finished before --duration; again with an expected {qps:.4g} samples/s")
            row = _test(target, replace(spec, target_qps=qps), tmp, ".", say)
        report.rows.append(row)
        return
    _find_peak(target, s, tmp, report, say)


def _too_short(row: dict) -> bool:
    return row["scenario"] == "Offline" and row["result"] == "INVALID" and row["reasons"] == [TOO_SHORT]


def _sized(spec: TestSpec, rate: float, single: float) -> TestSpec:
    """LoadGen's sizing from the warm-up: Offline's expected rate (with room: a faster run than
    expected ends before --duration and is INVALID), SingleStream's expected latency."""
    if spec.scenario == "offline" and spec.target_qps is None:
        spec = replace(spec, target_qps=1.25 * rate)
    if spec.scenario == "singlestream":
        spec = replace(spec, expected_latency_ms=1000 * single)
    if spec.scenario == "server" and spec.target_qps is None:  # accuracy at a rate the SUT keeps up with
        spec = replace(spec, target_qps=max(0.1, 0.5 * rate))
    return spec


def _test(target: _Target, spec: TestSpec, tmp: Path, where: str, say) -> dict:
    from spanqa import progress

    sut = target.sut(spec.scenario)
    log_dir = tmp / where
    load = os.getloadavg()[0]
    expected = spec.min_queries
    if spec.scenario == "server":
        expected = max(expected, int(spec.target_qps * spec.duration_s))
    desc = f"{spec.scenario}{f' {spec.target_qps:.3g} q/s' if spec.scenario == 'server' else ''}"
    try:
        with progress.bar(total=expected if spec.scenario != "offline" else None, desc=desc, unit="query", lines=True) as bar:
            log = run_test(sut, len(target.samples), spec, log_dir, on_complete=bar.update)
    finally:
        if sut is not target.http:
            sut.close()
    row = row_from_log(log, spec, target.name, sut.failures, load)
    row["log_dir"] = where
    verdict = row["result"] + (f" ({'; '.join(row['reasons'])})" if row["reasons"] else "")
    say(f"{desc}: {verdict}")
    return row


def _score(target: _Target, tmp: Path, say) -> dict | None:
    """EM/F1 of the answers LoadGen logged (predictions.json, accuracy.json)."""
    from spanqa.answers import squad2
    from spanqa.answers.scoring import has_gold, score

    samples = target.samples
    logged = read_accuracy_log(tmp)
    if len(logged) != len(samples):
        raise UsageError(f"LoadGen logged {len(logged)} of {len(samples)} samples; the accuracy run is incomplete")
    examples = samples.examples
    if samples.windows:
        predictions = _window_predictions(target, logged)
    else:
        predictions = {examples[i].qas_id: data.decode("utf-8") for i, data in sorted(logged.items())}
    (tmp / "predictions.json").write_text(json.dumps(predictions, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    version_2 = target.engine is not None and target.engine.settings.answers.version_2_with_negative
    if not (has_gold(examples) or squad2.is_squad2(examples)):
        say("accuracy: DATA has no gold answers; predictions.json holds the answers, nothing scored")
        return None
    scores = (
        squad2.score_examples(examples, predictions) if version_2 or squad2.is_squad2(examples) else score(examples, predictions)
    )
    (tmp / "accuracy.json").write_text(json.dumps(scores, indent=2) + "\n", encoding="utf-8")
    return dict(scores)


def _window_predictions(target: _Target, logged: dict[int, bytes]) -> dict[str, str]:
    import numpy as np

    from spanqa.answers.extraction import predict_answers
    from spanqa.loadgen.samples import logits_from_bytes

    f = target.samples.features
    start = np.full(f.input_ids.shape, -np.inf, dtype=np.float32)
    end = np.full(f.input_ids.shape, -np.inf, dtype=np.float32)
    for row, data in logged.items():
        s, e = logits_from_bytes(data)
        start[row, : len(s)] = s
        end[row, : len(e)] = e
    return predict_answers(f, start, end, target.engine.settings.answers).predictions


def _find_peak(target: _Target, s: LoadgenSettings, tmp: Path, report: LoadgenReport, say) -> None:
    """Bisection over the Server rate: each step a full LoadGen Server test."""
    base = TestSpec("server", latency_ms=s.latency_ms, latency_percentile=s.latency_percentile,
                    duration_s=s.duration_s, min_queries=s.min_queries)  # fmt: skip
    rate, single = target.warm(False)
    hi = s.target_qps
    if hi is None:
        offline = TestSpec("offline", duration_s=s.duration_s, min_queries=s.min_queries)
        row = _test(target, _sized(offline, rate, single), tmp, "offline", say)
        if _too_short(row):
            row = _test(target, replace(offline, target_qps=1.25 * row["samples_per_s"]), tmp, "offline", say)
        report.rows.append(row)
        hi = row["samples_per_s"]
        if not hi:
            raise UsageError("find-peak: the Offline run answered nothing; see offline/mlperf_log_summary.txt")
    bound, lo, best, qps = hi, 0.0, None, hi
    for step in range(s.peak_steps + 1):
        row = _test(target, replace(base, target_qps=qps), tmp, f"server-{step:02d}-{qps:.4g}qps", say)
        row["step"] = step
        report.rows.append(row)
        if row["result"] == "VALID":
            best, lo = qps, qps
            if qps >= bound:
                break
        else:
            hi = qps
        if best is not None and (hi - lo) / hi <= s.peak_tolerance:
            break
        qps = (lo + hi) / 2
    report.peak = {"qps": best, "bound": bound, "latency_ms": s.latency_ms}
    say(
        f"find-peak: {'no VALID rate found' if best is None else f'{best:.4g} q/s is the highest VALID rate'} (upper bound {bound:.4g} q/s)"
    )
