"""The offline inference engine (spanqa.infer): logits, statistics, input checks, resume, report.

The stand-in parity test runs the real model over every held-out feature (5,248) at the recipe's
512 tokens through ``infer`` at batch sizes 1 and 8 and compares the logits of every real token of
every feature with PyTorch's (1e-4); the shared fixtures are in conftest.py
(``SPANQA_HELDOUT_STRIDE=k`` takes every k-th question for a quick local run).

Padding positions are compared between the two batch sizes, not with PyTorch: their logits
are never read (answers come from real tokens) and depend on the mask constant (-10000 in the
exported graph, dtype-min in transformers' eager code), which moves them by ~1e-4.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from spanqa.errors import FeaturesError, InferenceError
from spanqa.offline.folders import open_features
from spanqa.offline.infer import infer_arrays, infer_folders, infer_synthetic, synthetic_batch
from spanqa.offline.outputs import read_outputs
from spanqa.offline.report import perf_from_log, report_lines
from spanqa.runtimes.loop import run_batches
from spanqa.runtimes.stats import InferenceStats
from spanqa.settings import InferSettings
from spanqa.sysinfo import sigterm_as_interrupt

SUMMARY_KEYS = {
    "batches",
    "rows",
    "batch_size",
    "warmup",
    "throughput_rows_per_s",
    "latency_ms",
    "threads",
    "runtime",
    "target",
    "model_sha256",
    "spanqa_version",
    "cpu",
}

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


def squad_json(path: Path) -> Path:
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


@pytest.fixture(scope="module")
def tiny_features(tiny_package, tmp_path_factory):
    from spanqa.data.features import build_features
    from spanqa.data.squad import read_squad
    from spanqa.models.package import open_package
    from spanqa.settings import FeatureSettings

    path = squad_json(tmp_path_factory.mktemp("squad") / "tiny.json")
    features = build_features(read_squad(path), open_package(tiny_package).tokenizer, FeatureSettings(64, 16, 16))
    assert len(features) % 4 and len(features) % 8, len(features)  # the last batch is padded
    return features


@pytest.fixture(scope="module")
def fixed_package(tiny_package, tmp_path_factory) -> Path:
    from spanqa.build.compile import compile_model
    from spanqa.settings import CompileSettings

    out = tmp_path_factory.mktemp("fixedpkg") / "pkg"
    compile_model(tiny_package / "exported.onnx", out, CompileSettings(batch_size=4, seq_len=64))
    return out


def write(features, out: Path, batch_size: int, fmt: str = "bin") -> Path:
    from spanqa.data.folders import write_features

    write_features(features, out, batch_size, fmt)
    return out


def reference(package: Path, features) -> tuple[np.ndarray, np.ndarray]:
    """ONNX Runtime on all features in one batch, outside the engine."""
    from spanqa.runtimes import open_runtime

    rt = open_runtime(package)
    return rt.run(features.input_ids, features.segment_ids, features.input_mask)


def collect(out: Path, n: int, batch_size: int, seq_len: int, fmt: str = "bin") -> tuple[np.ndarray, np.ndarray]:
    starts, ends = [], []
    for b in range(-(-n // batch_size)):
        s, e = read_outputs(out, str(b), batch_size, seq_len, fmt)
        starts.append(s)
        ends.append(e)
    return np.concatenate(starts)[:n], np.concatenate(ends)[:n]


# ---------------------------------------------------------------------------------------------
# The stand-in model on held-out features, against PyTorch.


@pytest.fixture(scope="module")
def standin_runs(heldout_infer_runs):
    return heldout_infer_runs


@pytest.fixture(scope="module")
def torch_reference(heldout_torch_logits):
    return heldout_torch_logits


@pytest.mark.parametrize("bs", [1, 8])
def test_standin_logits_equal_pytorch(bs, standin_runs, torch_reference, heldout_features):
    out, summary = standin_runs[bs]
    f = heldout_features
    n = len(f)
    start, end = collect(out, n, bs, 512)
    ref_start, ref_end = torch_reference
    assert start.shape == ref_start.shape == (n, 512)
    real = f.input_mask.astype(bool)
    assert np.array_equal(~np.isnan(ref_start), real)
    per_feature = np.maximum(
        np.where(real, np.abs(start - ref_start), 0).max(axis=1),
        np.where(real, np.abs(end - ref_end), 0).max(axis=1),
    )
    assert per_feature.shape == (n,)
    assert per_feature.max() < 1e-4, (per_feature.argmax(), per_feature.max())
    assert np.abs(ref_start[real]).max() > 1.0  # real logits, not zeros
    # Padding rows of the last batch are run too (msame semantics) but are not features.
    assert summary["rows"] == n
    assert summary["padded_rows"] == summary["batches"] * bs - n
    assert summary["batches"] == -(-n // bs)


def test_standin_batch_sizes_agree_everywhere(standin_runs, heldout_features):
    """bs1 and bs8 outputs agree at every position, padding included."""
    n = len(heldout_features)
    one = collect(standin_runs[1][0], n, 1, 512)
    eight = collect(standin_runs[8][0], n, 8, 512)
    for a, b in zip(one, eight):
        assert np.abs(a - b).max() < 1e-4


def test_standin_summary_and_report(standin_runs, standin_package):
    from spanqa.fileutil import sha256_file

    out, summary = standin_runs[8]
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == summary
    assert SUMMARY_KEYS <= set(summary)
    assert set(summary["latency_ms"]) >= {"min", "mean", "median", "p90", "p99"}
    lat = summary["latency_ms"]
    assert 0 < lat["min"] <= lat["median"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert summary["batch_size"] == 8 and summary["seq_len"] == 512
    assert summary["model_sha256"] == sha256_file(standin_package / "model.onnx")
    assert summary["target"] == "cpu-fp32" and summary["runtime"] == "onnxruntime-cpu"
    assert summary["cpu"]["cores"] == len(os.sched_getaffinity(0)) and summary["cpu"]["model"]
    assert summary["threads"] == len(os.sched_getaffinity(0))
    log = (out / "infer.log").read_text()
    assert log.count("Inference time: ") == summary["timed_runs"] == summary["batches"]
    avg = perf_from_log(log).average_ms
    assert summary["throughput_rows_per_s"] == pytest.approx(8 * 1000 / avg, rel=1e-6)
    (line,) = report_lines(out / "infer.log")
    assert f"{8 * 1000 / avg:.3f} fps" in line


# ---------------------------------------------------------------------------------------------
# Tiny model: batching, padding, formats.


@pytest.mark.parametrize("bs,fmt", [(1, "bin"), (4, "npy"), (8, "bin")])
def test_folders_match_one_big_batch(bs, fmt, tiny_package, tiny_features, tmp_path):
    feats = write(tiny_features, tmp_path / "f", bs, fmt)
    summary = infer_folders(tiny_package, feats, tmp_path / "out", InferSettings(outfmt=fmt))
    n = len(tiny_features)
    start, end = collect(tmp_path / "out", n, bs, 64, fmt)
    ref_start, ref_end = reference(tiny_package, tiny_features)
    np.testing.assert_allclose(start, ref_start, atol=1e-4, rtol=0)
    np.testing.assert_allclose(end, ref_end, atol=1e-4, rtol=0)
    assert np.abs(ref_start).max() > 1.0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    batches = -(-n // bs)
    assert names == sorted(
        [f"{b}_output_{k}.{fmt}" for b in range(batches) for k in (0, 1)] + ["infer.log", "infer_settings.json", "summary.json"]
    )
    assert summary["batches"] == batches and summary["rows"] == n and summary["output_format"] == fmt


def test_fixed_shape_model_and_msame_folders(fixed_package, tiny_package, tiny_features, tmp_path):
    """A fixed [4, 64] model reads headerless folders without manifest.json; comma list, msame style."""
    feats = write(tiny_features, tmp_path / "f", 4)
    (feats / "manifest.json").unlink()
    inputs = ",".join(str(feats / n) for n in ("input_ids", "segment_ids", "input_mask"))
    summary = infer_folders(fixed_package, inputs, tmp_path / "out")
    assert summary["batch_size"] == 4 and summary["seq_len"] == 64 and summary["num_features"] is None
    start, end = collect(tmp_path / "out", len(tiny_features), 4, 64)
    ref_start, _ = reference(tiny_package, tiny_features)
    np.testing.assert_allclose(start, ref_start, atol=1e-3, rtol=0)  # fused vs unfused graph
    # Unnamed folders map by position, as msame maps them.
    for name, alias in (("input_ids", "a"), ("segment_ids", "b"), ("input_mask", "c")):
        (feats / name).rename(feats / alias)
    infer_folders(fixed_package, [feats / "a", feats / "b", feats / "c"], tmp_path / "out2")
    s2, _ = collect(tmp_path / "out2", len(tiny_features), 4, 64)
    np.testing.assert_array_equal(s2, start)


def test_dynamic_model_headerless_bins_need_a_shape(tiny_package, tiny_features, tmp_path):
    feats = write(tiny_features, tmp_path / "f", 8)
    (feats / "manifest.json").unlink()
    with pytest.raises(InferenceError) as exc:
        infer_folders(tiny_package, feats, tmp_path / "out")
    assert str(exc.value) == (
        f"{feats / 'input_ids'}: headerless .bin files, no manifest.json and a dynamic model: "
        "pass --seq-len (and --batch-size if the batch size is not 1)"
    )
    summary = infer_folders(tiny_package, feats, tmp_path / "out", InferSettings(seq_len=64))
    assert summary["batch_size"] == 8  # derived from the file size
    summary = infer_folders(tiny_package, feats, tmp_path / "out", InferSettings(batch_size=8))
    assert summary["seq_len"] == 64


def test_infer_arrays_pads_for_fixed_batch(fixed_package, tiny_package, tiny_features):
    from spanqa.runtimes import open_runtime

    f = tiny_features
    result = infer_arrays(open_runtime(fixed_package), f.input_ids, f.segment_ids, f.input_mask)
    ref_start, ref_end = reference(tiny_package, f)
    assert result.start_logits.shape == (len(f), 64)
    np.testing.assert_allclose(result.start_logits, ref_start, atol=1e-3, rtol=0)
    np.testing.assert_allclose(result.end_logits, ref_end, atol=1e-3, rtol=0)
    assert result.stats.batches == -(-len(f) // 4) and result.stats.rows == len(f)
    assert result.stats.batch_size == 4
    # int32 arrays in memory are widened; a dynamic model takes any batch size.
    dyn = infer_arrays(open_runtime(tiny_package), f.input_ids.astype(np.int32), f.segment_ids, f.input_mask, batch_size=3)
    np.testing.assert_allclose(dyn.start_logits, ref_start, atol=1e-4, rtol=0)
    with pytest.raises(InferenceError, match="compiled for batch size 4"):
        infer_arrays(open_runtime(fixed_package), f.input_ids, f.segment_ids, f.input_mask, batch_size=8)
    with pytest.raises(InferenceError, match="dtype float64"):
        infer_arrays(open_runtime(tiny_package), f.input_ids.astype(float), f.segment_ids, f.input_mask)


# ---------------------------------------------------------------------------------------------
# Statistics.


class FakeRuntime:
    name = "fake"
    batch_size = None
    seq_len = None

    def __init__(self):
        self.calls = 0

    def run(self, ids, types, mask):
        self.calls += 1
        return ids.astype(np.float32), -ids.astype(np.float32)


def test_stats_arithmetic():
    s = InferenceStats()
    for ms in (10.0, 4.0, 6.0, 5.0, 5.0):
        s.record(ms, 8)
    assert s.average_ms == 6.0
    assert s.average_ms_without_first == 5.0
    assert s.throughput_rows_per_s == 8 * 1000 / 5.0
    assert s.latency_summary() == {"min": 4.0, "mean": 6.0, "median": 5.0, "p90": 8.4, "p99": 9.84, "max": 10.0}
    assert s.msame_lines() == [
        "Inference average time: 6.000000 ms",
        "Inference average time without first time: 5.000000 ms",
    ]
    one = InferenceStats()
    one.record(7.0, 2)
    assert one.average_ms_without_first == 7.0 and one.throughput_rows_per_s == 2 * 1000 / 7.0
    assert InferenceStats().msame_lines() == [] and InferenceStats().throughput_rows_per_s is None


def test_run_batches_warmup_loop_and_rows():
    rt = FakeRuntime()
    mask = np.ones((2, 3), np.int64)
    mask[1] = 0  # a padding row
    batches = [synthetic_batch(2, 3, seed=i)._replace(key=str(i), attention_mask=mask) for i in range(3)]
    seen = []
    stats = run_batches(rt, batches, warmup=2, loop=3, on_output=lambda b, s, e: seen.append((b.key, s.copy())))
    assert rt.calls == 2 + 3 * 3
    assert stats.timed_runs == 9 and stats.batches == 3 and stats.rows == 3 and stats.padded_rows == 3
    assert [k for k, _ in seen] == ["0", "1", "2"]
    np.testing.assert_array_equal(seen[1][1], batches[1].input_ids.astype(np.float32))


def test_runtime_failure_is_one_line():
    class Broken(FakeRuntime):
        def run(self, ids, types, mask):
            raise RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : index 40000 out of range\nstack...")

    with pytest.raises(InferenceError) as exc:
        run_batches(Broken(), [synthetic_batch(1, 4)])
    assert str(exc.value) == "batch synthetic: fake failed ([ONNXRuntimeError] : 2 : INVALID_ARGUMENT : index 40000 out of range)"


def test_synthetic_mode(tiny_package, fixed_package, tmp_path):
    summary = infer_synthetic(tiny_package, tmp_path / "perf", InferSettings(loop=5, warmup=1, seq_len=32, batch_size=2))
    assert summary["timed_runs"] == 5 and summary["batches"] == 1 and summary["warmup"] == 1
    assert (summary["batch_size"], summary["seq_len"], summary["mode"]) == (2, 32, "synthetic")
    assert sorted(p.name for p in (tmp_path / "perf").iterdir()) == ["infer.log", "summary.json"]
    assert (tmp_path / "perf" / "infer.log").read_text().count("Inference time: ") == 5
    fixed = infer_synthetic(fixed_package, None, InferSettings(loop=2))
    assert (fixed["batch_size"], fixed["seq_len"]) == (4, 64)
    with pytest.raises(InferenceError, match="compiled for 64"):
        infer_synthetic(fixed_package, None, InferSettings(seq_len=128))


# ---------------------------------------------------------------------------------------------
# Input checks: each mismatch is a one-line error naming the file and the fix.


def _first(folder: Path, fmt: str = "bin") -> Path:
    return folder / f"0.{fmt}"


def test_wrong_dtype_npy(tiny_package, tiny_features, tmp_path):
    feats = write(tiny_features, tmp_path / "f", 4, "npy")
    path = _first(feats / "segment_ids", "npy")
    np.save(path, np.load(path).astype(np.int32))
    with pytest.raises(FeaturesError) as exc:
        open_features(feats)
    assert (
        str(exc.value)
        == f"{path}: dtype int32, expected int64; write features with 'spanqa preprocess' or convert with .astype('int64')"
    )


def test_wrong_dtype_bin(fixed_package, tiny_features, tmp_path):
    feats = write(tiny_features, tmp_path / "f", 4)
    (feats / "manifest.json").unlink()
    path = _first(feats / "input_ids")
    np.fromfile(path, "<i8").astype("<i4").tofile(path)
    with pytest.raises(FeaturesError) as exc:
        infer_folders(fixed_package, feats, tmp_path / "out")
    assert str(exc.value) == (
        f"{path}: 1024 bytes, expected 2048 (int64 [4, 64]) (int32 data? the inputs must be int64); "
        "the file is truncated or not int64 token ids: re-run 'spanqa preprocess'"
    )
    assert not (tmp_path / "out").exists()  # nothing ran


def test_truncated_bin(tiny_package, tiny_features, tmp_path):
    feats = write(tiny_features, tmp_path / "f", 8)
    path = feats / "input_mask" / "1.bin"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(FeaturesError) as exc:
        infer_folders(tiny_package, feats, tmp_path / "out")
    assert str(exc.value) == (
        f"{path}: 1000 bytes, expected 4096 (int64 [8, 64]); the file is truncated or not int64 token ids: re-run 'spanqa preprocess'"
    )


def test_truncated_npy(tiny_package, tiny_features, tmp_path):
    feats = write(tiny_features, tmp_path / "f", 8, "npy")
    path = feats / "input_ids" / "0.npy"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(FeaturesError, match=r"0\.npy: truncated \(\d+ bytes for int64 \[8, 64\]\)"):
        open_features(feats)


def test_wrong_seq_len_for_fixed_model(fixed_package, tiny_features, tiny_package, tmp_path):
    from spanqa.data.features import build_features
    from spanqa.models.package import open_package
    from spanqa.settings import FeatureSettings

    short = build_features(tiny_features.examples, open_package(tiny_package).tokenizer, FeatureSettings(32, 8, 8))
    feats = write(short, tmp_path / "f", 4)
    with pytest.raises(InferenceError) as exc:
        infer_folders(fixed_package, feats, tmp_path / "out")
    assert str(exc.value) == (
        "features have sequence length 32 but the model is compiled for 64; "
        "preprocess with --max-seq-length 64 or compile the model with --seq-len 32"
    )


def test_wrong_batch_size(fixed_package, tiny_features, tmp_path):
    feats = write(tiny_features, tmp_path / "f", 8)
    with pytest.raises(InferenceError) as exc:
        infer_folders(fixed_package, feats, tmp_path / "out")
    assert str(exc.value) == (
        "features have batch size 8 but the model is compiled for batch size 4; "
        "preprocess with --batch-size 4 or compile the model with --batch-size 8"
    )


def test_missing_input_folder(tiny_package, tiny_features, tmp_path):
    import shutil

    feats = write(tiny_features, tmp_path / "f", 8)
    shutil.rmtree(feats / "segment_ids")
    with pytest.raises(InferenceError) as exc:
        infer_folders(tiny_package, feats, tmp_path / "out")
    assert str(exc.value) == (
        f"{feats}: no segment_ids/ folder (model input token_type_ids); point --input at the directory "
        "'spanqa preprocess' wrote, or list the folders: input_ids,segment_ids,input_mask"
    )
    with pytest.raises(
        InferenceError, match=r"no folder for model input token_type_ids \(expected one named segment_ids or token_type_ids\)"
    ):
        open_features(f"{feats / 'input_ids'},{feats / 'input_mask'}")
    with pytest.raises(InferenceError, match="nope: no such input folder"):
        open_features(f"{feats / 'input_ids'},{tmp_path / 'nope'},{feats / 'input_mask'}")


def test_unequal_file_counts(tiny_package, tiny_features, tmp_path):
    feats = write(tiny_features, tmp_path / "f", 8)
    last = sorted((feats / "input_mask").iterdir(), key=lambda p: int(p.stem))[-1]
    last.unlink()
    n = len(list((feats / "input_ids").iterdir()))
    with pytest.raises(FeaturesError) as exc:
        open_features(feats)
    assert str(exc.value) == (
        f"unequal file counts: {feats / 'input_ids'} has {n}, {feats / 'segment_ids'} has {n}, {feats / 'input_mask'} has {n - 1}; "
        "every input folder needs one file per batch (re-run 'spanqa preprocess')"
    )


def test_token_ids_past_the_vocab_fail_cleanly(tiny_package, tiny_features, tmp_path):
    feats = write(tiny_features, tmp_path / "f", 8)
    path = feats / "input_ids" / "1.bin"
    a = np.fromfile(path, "<i8")
    a[3] = 10**6
    a.tofile(path)
    with pytest.raises(InferenceError, match=r"^batch 1: onnxruntime-cpu failed \(.*\)$"):
        infer_folders(tiny_package, feats, tmp_path / "out")
    # Batch 0 finished before the failure and stays; nothing partial is left.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0_output_0.bin", "0_output_1.bin", "infer_settings.json"]


# ---------------------------------------------------------------------------------------------
# Resume.


def test_resume_redoes_only_missing_or_damaged_batches(tiny_package, tiny_features, tmp_path):
    feats = write(tiny_features, tmp_path / "f", 4)
    out = tmp_path / "out"
    infer_folders(tiny_package, feats, out)
    expected = {p.name: p.read_bytes() for p in out.glob("*_output_*.bin")}
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*_output_*.bin")}
    (out / "1_output_1.bin").unlink()  # half a pair
    (out / "2_output_0.bin").write_bytes(b"\0" * 10)  # damaged (cannot come from spanqa, but checked)
    (out / ".3_output_0.bin.abcd.tmp").write_bytes(b"partial")  # left by a SIGKILLed run
    summary = infer_folders(tiny_package, feats, out, InferSettings(resume=True))
    assert summary["batches"] == 2 and summary["batches_resumed"] == summary["batches_total"] - 2
    assert {p.name: p.read_bytes() for p in out.glob("*_output_*.bin")} == expected
    assert not list(out.glob(".*.tmp"))
    untouched = [n for n in expected if not n.startswith(("1_", "2_"))]
    assert all(mtimes[n] == (out / n).stat().st_mtime_ns for n in untouched)
    # Everything complete: nothing runs, the summary stays.
    again = infer_folders(tiny_package, feats, out, InferSettings(resume=True))
    assert again == json.loads((out / "summary.json").read_text()) and again["batches"] == 2


def test_resume_refuses_another_run(tiny_package, fixed_package, tiny_features, tmp_path):
    feats = write(tiny_features, tmp_path / "f", 4)
    out = tmp_path / "out"
    infer_folders(tiny_package, feats, out)
    with pytest.raises(
        InferenceError, match=r"holds outputs of another run \(model_sha256 '[0-9a-f]+', now '[0-9a-f]+'\); drop --resume"
    ):
        infer_folders(fixed_package, feats, out, InferSettings(resume=True))
    with pytest.raises(InferenceError, match=r"holds outputs of another run \(outfmt 'bin', now 'npy'\)"):
        infer_folders(tiny_package, feats, out, InferSettings(resume=True, outfmt="npy"))


def test_fresh_run_replaces_old_outputs(tiny_package, tiny_features, tmp_path):
    out = tmp_path / "out"
    infer_folders(tiny_package, write(tiny_features, tmp_path / "f1", 1), out)
    infer_folders(tiny_package, write(tiny_features, tmp_path / "f8", 8), out)
    n = -(-len(tiny_features) // 8)
    assert len(list(out.glob("*_output_*.bin"))) == 2 * n


def test_sigterm_becomes_keyboard_interrupt():
    import time

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts this
    assert signal.getsignal(signal.SIGTERM) is before


# ---------------------------------------------------------------------------------------------
# Reports (parse.py).

MSAME_LOG = """[INFO] acl init success
[INFO] open device 0 success
[INFO] load model ./spanBert_bs8.om success
[INFO] start to process file:./input_ids/0.bin
Inference time: 180.129ms
[INFO] output data success
Inference average time: 176.502000 ms
Inference average time without first time: 175.250000 ms
[INFO] unload model success, model Id is 1
"""


def test_report_msame_log(tmp_path):
    log = tmp_path / "msame_bs8.txt"
    log.write_text(MSAME_LOG)
    assert report_lines(log, batch_size=8) == [
        f"{log}: batch size 8, 175.250 ms per batch (without first time), {8000 / 175.25:.3f} fps"
    ]
    with pytest.raises(InferenceError, match="does not say the batch size; pass --batch-size N"):
        report_lines(log)
    only_avg = tmp_path / "avg.txt"
    only_avg.write_text("Inference average time: 20.000000 ms\n")
    assert perf_from_log(only_avg.read_text(), batch_size=1).fps == 50.0


def test_report_result_json_and_directory(tmp_path):
    (tmp_path / "result.json").write_text(json.dumps({"exact_match": 51.3, "f1": 65.66, "total": 5173}))
    assert report_lines(tmp_path / "result.json") == [f"{tmp_path / 'result.json'}: EM 51.300, F1 65.660 (5173 questions)"]
    (tmp_path / "summary.json").write_text(
        json.dumps({"batch_size": 4, "average_ms_without_first": 8.0, "timed_runs": 3, "throughput_rows_per_s": 500.0})
    )
    assert report_lines(tmp_path) == [
        f"{tmp_path / 'summary.json'}: batch size 4, 8.000 ms per batch (without first time), 500.000 fps",
        f"{tmp_path / 'result.json'}: EM 51.300, F1 65.660 (5173 questions)",
    ]
    with pytest.raises(InferenceError, match="no such file"):
        report_lines(tmp_path / "missing.txt")
    (tmp_path / "x.txt").write_text("hello\n")
    with pytest.raises(InferenceError, match="no 'Inference average time' line"):
        report_lines(tmp_path / "x.txt", 1)
