"""The offline inference step (the recipe's msame): feature folders in, output files, a log and
summary.json out.

``infer_folders(model, inputs, output_dir, settings)``: feature folders (``input_ids/``,
``segment_ids/``, ``input_mask/``; one int64 file per batch) are checked against the model before
anything runs, then each batch's start/end logits are written (``offline.outputs``) so that
``resume`` can skip finished batches. ``infer_synthetic`` is msame's perf-only mode.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from spanqa import __version__
from spanqa.errors import InferenceError
from spanqa.fileutil import check_output, prepare_dir
from spanqa.offline.folders import MODEL_INPUTS, open_features
from spanqa.offline.outputs import (
    LOG_NAME,
    OUTPUT_FORMATS,
    SETTINGS_NAME,
    SUMMARY_NAME,
    clean_output_dir,
    output_complete,
    output_paths,
    write_output,
)
from spanqa.runtimes.loop import Batch, check_model_fit, run_batches
from spanqa.runtimes.stats import InferenceStats
from spanqa.settings import InferSettings
from spanqa.sysinfo import cpu_info, sigterm_as_interrupt

INFER_KIND = "infer run"  # the kind of directory infer writes (spanqa.fileutil's marker)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _check_settings(settings: InferSettings) -> None:
    if settings.outfmt not in OUTPUT_FORMATS:
        raise InferenceError(f"--outfmt {settings.outfmt}: use one of {', '.join(OUTPUT_FORMATS)}")
    if settings.warmup < 0 or settings.loop < 1:
        raise InferenceError(f"--warmup {settings.warmup} / --loop {settings.loop}: warm-up must be >= 0, loop >= 1")
    if settings.threads is not None and settings.threads < 1:
        raise InferenceError(f"--threads {settings.threads}: must be at least 1")


def _open_model(model, settings: InferSettings):
    from spanqa.models.package import ModelPackage, open_package
    from spanqa.runtimes import RuntimeOptions
    from spanqa.sysinfo import default_threads

    package = model if isinstance(model, ModelPackage) else open_package(model)
    threads = settings.threads or default_threads()
    return package, RuntimeOptions(threads=threads, device=settings.device), package.max_positions, package.sha256()


def _summary(package, runtime, options, model_sha256: str, stats: InferenceStats, extra: dict) -> dict:
    from spanqa.runtimes import runtime_info

    info = runtime_info(runtime)
    summary = {
        "spanqa_version": __version__,
        "model": str((package.root if package.is_package else package.model_path).resolve()),
        "model_file": package.model_path.name,
        "model_sha256": model_sha256,
        "target": package.target,
        "precision": package.precision,
        "runtime": info["name"],
        "runtime_info": info,
        "device": options.device,
        "threads": options.threads,
        "cpu": cpu_info(),
    }
    summary.update(extra)
    stat_json = stats.to_json()
    if stat_json["batch_size"] is None:
        stat_json["batch_size"] = extra.get("batch_size")
    summary.update(stat_json)
    summary["finished"] = _now()
    return summary


def _header_lines(summary: dict) -> list[str]:
    lines = [
        f"[INFO] spanqa {__version__} infer",
        f"[INFO] model: {summary['model']} (target {summary['target']}, runtime {summary['runtime']}, sha256 {summary['model_sha256']})",
        f"[INFO] threads: {summary['threads']}, device: {summary['device']}, cpu: {summary['cpu']['model']} ({summary['cpu']['cores']} cores)",
    ]
    if summary.get("input"):
        lines.append(
            f"[INFO] input: {','.join(summary['input'])} ({summary['input_format']}, {summary['batches_total']} batches)"
        )
    else:
        lines.append("[INFO] input: synthetic (perf-only mode)")
    lines.append(f"[INFO] batch size: {summary['batch_size']}, sequence length: {summary['seq_len']}")
    return lines


def _footer_lines(summary: dict, stats: InferenceStats) -> list[str]:
    lines = []
    if summary.get("output") and summary.get("input"):
        resumed = summary.get("batches_resumed", 0)
        lines.append(
            f"[INFO] output data success: {summary['batches']} batches written to {summary['output']}"
            + (f" ({resumed} already complete)" if resumed else "")
        )
    lines += stats.msame_lines()
    if stats.throughput_rows_per_s is not None:
        lines.append(f"[INFO] throughput: {stats.throughput_rows_per_s:.3f} rows/s (batch size {summary['batch_size']})")
    return lines


def _finish(output_dir: Path | None, summary: dict, stats: InferenceStats, echo: Callable[[str], None]) -> dict:
    from spanqa.fileutil import atomic_path, write_json_atomic

    head, foot = _header_lines(summary), _footer_lines(summary, stats)
    for line in head + foot:
        echo(line)
    if output_dir is not None:
        timed = [f"Inference time: {ms:.6f} ms" for ms in stats.latencies_ms]
        with atomic_path(output_dir / LOG_NAME) as tmp:
            tmp.write_text("\n".join(head + timed + foot) + "\n", encoding="utf-8")
        write_json_atomic(output_dir / SUMMARY_NAME, summary)
    return summary


def infer_folders(
    model,
    inputs: str | Path | Sequence[str | Path],
    output_dir: str | Path,
    settings: InferSettings | None = None,
    *,
    echo: Callable[[str], None] | None = None,
) -> dict:
    """Run every batch of the feature folders and write msame-named outputs, ``infer.log`` and
    ``summary.json`` into ``output_dir``; returns the summary.

    ``output_dir`` must be new or empty, or this command's own earlier output: replaced only
    with ``settings.overwrite`` (its old ``*_output_[01]`` files removed first), or continued
    with ``settings.resume``. With it, batches whose two outputs are complete are skipped, provided the
    directory was written for the same model file, shapes and output format.
    """
    with sigterm_as_interrupt():
        return _infer_folders(model, inputs, output_dir, settings or InferSettings(), echo or (lambda line: None))


def _infer_folders(model, inputs, output_dir, settings: InferSettings, echo: Callable[[str], None]) -> dict:
    from spanqa.fileutil import write_json_atomic
    from spanqa.runtimes import open_runtime

    _check_settings(settings)
    started = _now()
    package, options, max_positions, model_sha256 = _open_model(model, settings)
    features = open_features(
        inputs,
        model_batch=package.batch_size,
        model_seq=package.seq_len,
        max_positions=max_positions,
        batch_size=settings.batch_size,
        seq_len=settings.seq_len,
    )
    output_dir = check_output(
        output_dir,
        INFER_KIND,
        overwrite=settings.overwrite or settings.resume,
        inputs=(model, *features.folders.values()),
    )
    record = {
        "model_sha256": model_sha256,
        "batch_size": features.batch_size,
        "seq_len": features.seq_len,
        "batches": len(features),
        "outfmt": settings.outfmt,
    }
    settings_path = output_dir / SETTINGS_NAME
    if settings.resume and not settings_path.is_file() and output_dir.is_dir() and any(output_dir.iterdir()):
        raise InferenceError(
            f"{output_dir}: --resume needs the {SETTINGS_NAME} of the run it continues, and there is none; "
            "its outputs cannot be trusted: pass --overwrite instead of --resume to start afresh (or choose a new --output)"
        )
    if settings.resume and settings_path.is_file():
        try:
            previous = json.loads(settings_path.read_text(encoding="utf-8")).get("run", {})
        except (OSError, ValueError):
            previous = {}
        changed = [k for k in record if previous.get(k) != record[k]]
        if changed:
            k = changed[0]
            raise InferenceError(
                f"{output_dir}: holds outputs of another run ({k} {previous.get(k)!r}, now {record[k]!r}); "
                "pass --overwrite instead of --resume to start afresh, or choose another --output"
            )
    runtime = open_runtime(package, options)
    check_model_fit(runtime.batch_size, runtime.seq_len, None, features.batch_size, features.seq_len)

    prepare_dir(output_dir, INFER_KIND, overwrite=settings.overwrite, resume=settings.resume, inputs=(model,))
    clean_output_dir(output_dir, remove_outputs=not settings.resume)
    write_json_atomic(
        settings_path,
        {
            "spanqa_version": __version__,
            "settings": asdict(settings),
            "model": str(package.model_path.resolve()),
            "input": [str(features.folders[n].resolve()) for n in MODEL_INPUTS],
            "run": record,
        },
    )
    B, L, fmt = features.batch_size, features.seq_len, settings.outfmt
    todo = list(features.keys)
    if settings.resume:
        todo = [k for k in todo if not all(output_complete(p, fmt, B, L) for p in output_paths(output_dir, k, fmt))]
    resumed = len(features) - len(todo)

    def sink(batch: Batch, start: np.ndarray, end: np.ndarray) -> None:
        p0, p1 = output_paths(output_dir, batch.key, fmt)
        write_output(p0, start, fmt)
        write_output(p1, end, fmt)

    stats = InferenceStats(warmup=settings.warmup, loop=settings.loop)
    run_batches(
        runtime,
        features.batches(todo),
        warmup=settings.warmup,
        loop=settings.loop,
        on_output=sink,
        total=len(todo),
        desc="infer",
        stats=stats,
        log_lines=True,
    )
    summary = _summary(
        package,
        runtime,
        options,
        model_sha256,
        stats,
        {
            "mode": "features",
            "input": [str(features.folders[n].resolve()) for n in MODEL_INPUTS],
            "input_format": features.fmt,
            "output": str(output_dir.resolve()),
            "output_format": fmt,
            "batch_size": B,
            "seq_len": L,
            "batches_total": len(features),
            "batches_resumed": resumed,
            "num_features": features.num_features,
            "started": started,
        },
    )
    if resumed and not todo and (output_dir / SUMMARY_NAME).is_file():
        echo(f"[INFO] nothing to run: all {len(features)} batches in {output_dir} are complete")
        return json.loads((output_dir / SUMMARY_NAME).read_text(encoding="utf-8"))
    return _finish(output_dir, summary, stats, echo)


def synthetic_batch(batch_size: int, seq_len: int, vocab_size: int = 1000, seed: int = 0) -> Batch:
    """Realistic-looking inputs of the given shape: [CLS] q [SEP] context [SEP], no padding."""
    rng = np.random.default_rng(seed)
    low = 1000 if vocab_size > 2000 else 1
    ids = rng.integers(low, vocab_size, size=(batch_size, seq_len), dtype=np.int64)
    types = np.zeros((batch_size, seq_len), dtype=np.int64)
    types[:, min(seq_len - 1, max(1, seq_len // 8)) :] = 1
    mask = np.ones((batch_size, seq_len), dtype=np.int64)
    return Batch("synthetic", ids, types, mask)


def infer_synthetic(
    model,
    output_dir: str | Path | None = None,
    settings: InferSettings | None = None,
    *,
    echo: Callable[[str], None] | None = None,
) -> dict:
    """msame's perf-only mode: run one synthetic batch of the model's shape ``loop`` times.

    The shape is the model's where fixed, else ``settings.batch_size`` (default 1) and
    ``settings.seq_len`` (default the model's maximum positions, 512 if unknown). Writes
    ``infer.log`` and ``summary.json`` (no logits) when ``output_dir`` is given.
    """
    with sigterm_as_interrupt():
        return _infer_synthetic(model, output_dir, settings or InferSettings(), echo or (lambda line: None))


def _infer_synthetic(model, output_dir, settings: InferSettings, echo: Callable[[str], None]) -> dict:
    from spanqa.runtimes import open_runtime

    _check_settings(settings)
    started = _now()
    package, options, max_positions, model_sha256 = _open_model(model, settings)
    B = settings.batch_size or package.batch_size or 1
    L = settings.seq_len or package.seq_len or max_positions or 512
    check_model_fit(package.batch_size, package.seq_len, max_positions, B, L, where="--batch-size/--seq-len")
    runtime = open_runtime(package, options)
    check_model_fit(runtime.batch_size, runtime.seq_len, None, B, L, where="--batch-size/--seq-len")
    vocab = int(package.manifest.model.get("vocab_size") or 1000)
    batch = synthetic_batch(B, L, vocab)
    stats = InferenceStats(warmup=settings.warmup, loop=settings.loop)
    run_batches(runtime, [batch], warmup=settings.warmup, loop=settings.loop, total=1, desc="infer", stats=stats)
    output_dir = Path(output_dir) if output_dir is not None else None
    if output_dir is not None:
        prepare_dir(output_dir, INFER_KIND, overwrite=settings.overwrite, inputs=(model,))
        clean_output_dir(output_dir, remove_outputs=True)
    summary = _summary(
        package,
        runtime,
        options,
        model_sha256,
        stats,
        {
            "mode": "synthetic",
            "input": None,
            "input_format": None,
            "output": str(output_dir.resolve()) if output_dir is not None else None,
            "output_format": None,
            "batch_size": B,
            "seq_len": L,
            "batches_total": 1,
            "batches_resumed": 0,
            "num_features": None,
            "started": started,
        },
    )
    return _finish(output_dir, summary, stats, echo)


# --------------------------------------------------------------------------------------------
# Reports (the recipe's parse.py).
