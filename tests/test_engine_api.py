"""The answering engine as every front end uses it: fit checks (no silent truncation), -inf
where nothing was computed, answers independent of batching, offsets into the context, the
typed manifest, and GPU runtimes that cannot pretend."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from spanqa.cli import main
from spanqa.engine import Engine, Question
from spanqa.errors import InferenceError, PackageError, UsageError
from spanqa.settings import EngineSettings, FeatureSettings
from test_reliability_cli import CONTEXT, QUESTIONS, squad


@pytest.fixture(scope="module")
def package_384(tiny_package, tmp_path_factory):
    from spanqa.settings import CompileSettings
    from spanqa.targets.compile import compile_model

    out = tmp_path_factory.mktemp("fixed") / "pkg384"
    compile_model(tiny_package / "exported.onnx", out, CompileSettings(seq_len=384))
    return out


def test_fixed_length_package_refuses_longer_features(package_384):
    from spanqa.models.package import open_package

    with pytest.raises(UsageError) as err:
        Engine(open_package(package_384), settings=EngineSettings(features=FeatureSettings(max_seq_length=512)))
    assert str(err.value) == (
        f"--max-seq-length 512: {package_384} was compiled for 384-token inputs; use --max-seq-length 384 (or less), "
        "or compile the model with --seq-len 512"
    )


def test_fixed_length_package_answers_at_its_length_by_default(package_384):
    from spanqa.models.package import open_package

    with Engine(open_package(package_384)) as engine:
        assert engine.settings.features.max_seq_length == 384
        answer = engine.answer(QUESTIONS[0][1], CONTEXT)
        assert CONTEXT[answer.start : answer.end] == answer.text


def test_run_with_longer_features_on_fixed_package_is_one_line(package_384, tmp_path, monkeypatch):
    monkeypatch.setenv("SPANQA_HOME", str(tmp_path / "home"))
    r = CliRunner().invoke(
        main,
        [
            "run",
            str(squad(tmp_path / "d.json")),
            "--model",
            str(package_384),
            "--max-seq-length",
            "512",
            "-o",
            str(tmp_path / "r"),
        ],
    )
    assert r.exit_code == 2
    assert r.output.strip().splitlines()[-1].startswith("Error: --max-seq-length 512: ")
    assert not (tmp_path / "r").exists()


def test_gather_never_drops_real_tokens():
    from spanqa.engine.batching import Batch, gather

    ids = np.ones((2, 16), np.int64)
    with pytest.raises(InferenceError, match="features of 16 tokens do not fit a 8-token batch"):
        gather(ids, ids, ids, Batch(np.arange(2), 8, 2))


def test_logits_are_minus_inf_where_nothing_was_computed(tiny_package):
    from spanqa.models.package import open_package

    with Engine(open_package(tiny_package)) as engine:
        features = engine.features(_examples())
        start, end, _ = engine.logits(features)
    lengths = features.lengths
    for row, n in enumerate(lengths):
        assert np.isfinite(start[row, :n]).all() and np.isfinite(end[row, :n]).all()
    padded = max(-(-int(n) // 8) * 8 for n in lengths)  # every batch here ends at its longest row, rounded to 8
    assert np.isneginf(start[:, padded:]).all() and np.isneginf(end[:, padded:]).all()


def _examples():
    from spanqa.engine.core import examples_from_questions

    return examples_from_questions([Question(q, CONTEXT, i) for i, q, _ in QUESTIONS])


def test_answer_does_not_depend_on_its_batch(standin_package, heldout_examples):
    """One question alone and the same question among others of mixed lengths: same answer."""
    from spanqa.models.package import open_package

    items = [Question(e.question_text, " ".join(e.doc_tokens), e.qas_id) for e in heldout_examples[:24]]
    with Engine(open_package(standin_package)) as engine:
        together = engine.answer_many(items)
        alone = [engine.answer_many([q])[0] for q in items[::5]]
    assert [a[0] for a in alone] == [together[i][0] for i in range(0, 24, 5)]
    for q, (a,) in zip(items, together):
        assert q.context[a.start : a.end] == a.text and a.id == q.id


def test_top_k_and_stream(standin_package):
    from spanqa.models.package import open_package

    with Engine(open_package(standin_package)) as engine:
        best = engine.answer(QUESTIONS[0][1], CONTEXT)
        top = engine.answer(QUESTIONS[0][1], CONTEXT, top_k=3)
        assert best.text == "France" and top[0] == best and len(top) == 3
        assert top[0].score >= top[1].score >= top[2].score
        chunks = list(engine.stream([(q, CONTEXT) for _, q, _ in QUESTIONS * 3], chunk=4))
    assert [len(c) for c in chunks] == [4, 4, 1]
    texts = [answers[0].text for chunk in chunks for _, answers in chunk]
    assert texts[:3] == texts[3:6] == texts[6:]


def test_empty_question_refused(tiny_package):
    from spanqa.models.package import open_package

    with Engine(open_package(tiny_package)) as engine, pytest.raises(UsageError, match="question 0: 'question' is empty"):
        engine.answer("  ", CONTEXT)


def test_keep_files_rescore_with_rank_padding_equals_infer(standin_package, heldout_json, tmp_path, monkeypatch):
    """run --keep-files output files (-inf padding) give the same answers under evaluate
    --rank-padding as the padded files of infer."""
    monkeypatch.setenv("SPANQA_HOME", str(tmp_path / "home"))
    data = json.loads(heldout_json.read_text())
    small = tmp_path / "small.json"
    small.write_text(
        json.dumps({"version": "1.1", "data": [dict(data["data"][0], paragraphs=data["data"][0]["paragraphs"][:6])]})
    )
    run = CliRunner().invoke(
        main, ["run", str(small), "--model", str(standin_package), "-o", str(tmp_path / "r"), "--keep-files", "--batch-size", "4"]
    )
    assert run.exit_code == 0, run.output
    kept = tmp_path / "r"
    assert (
        CliRunner()
        .invoke(
            main,
            [
                "evaluate",
                str(small),
                "--features",
                str(kept / "features"),
                "--outputs",
                str(kept / "outputs"),
                "-o",
                str(tmp_path / "e1"),
                "--rank-padding",
            ],
        )
        .exit_code
        == 0
    )
    assert (
        CliRunner()
        .invoke(main, ["preprocess", str(small), "--model", str(standin_package), "-o", str(tmp_path / "f"), "--batch-size", "4"])
        .exit_code
        == 0
    )
    assert (
        CliRunner()
        .invoke(main, ["infer", "--model", str(standin_package), "--input", str(tmp_path / "f"), "-o", str(tmp_path / "o")])
        .exit_code
        == 0
    )
    assert (
        CliRunner()
        .invoke(
            main,
            [
                "evaluate",
                str(small),
                "--features",
                str(tmp_path / "f"),
                "--outputs",
                str(tmp_path / "o"),
                "-o",
                str(tmp_path / "e2"),
                "--rank-padding",
            ],
        )
        .exit_code
        == 0
    )
    via_run = json.loads((tmp_path / "e1" / "predictions.json").read_text())
    via_infer = json.loads((tmp_path / "e2" / "predictions.json").read_text())
    assert via_run == via_infer == json.loads((kept / "predictions.json").read_text())
    outputs = np.fromfile(kept / "outputs" / "0_output_0.bin", dtype="<f4").reshape(4, 512)
    assert np.isneginf(outputs).any() and not (outputs == 0.0).any()


# ---------------------------------------------------------------------------------------------
# The typed manifest


def test_newer_package_format_refused(tiny_package, tmp_path):
    from spanqa.models.package import open_package

    pkg = tmp_path / "pkg"
    shutil.copytree(tiny_package, pkg)
    manifest = json.loads((pkg / "manifest.json").read_text())
    manifest["format_version"] = 99
    (pkg / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PackageError, match="package format version 99 is newer than this spanqa understands \\(1\\)"):
        open_package(pkg)


def test_manifest_round_trips_and_keeps_unknown_keys(tiny_package):
    from spanqa.models.manifest import Manifest

    data = json.loads((tiny_package / "manifest.json").read_text())
    data["from_the_future"] = {"x": 1}
    manifest = Manifest.from_json(data, "m")
    assert manifest.target == "cpu-fp32" and manifest.fusions["Attention"] == 2 and manifest.shapes.max_positions == 512
    assert manifest.to_json() == data


def test_openvino_package_hash_covers_its_weights(tmp_path):
    from spanqa.models.manifest import Manifest
    from spanqa.models.package import ModelPackage

    (tmp_path / "model.xml").write_text("<net/>")
    (tmp_path / "model.bin").write_bytes(b"\0" * 16)
    package = ModelPackage(tmp_path, tmp_path / "model.xml", Manifest("cpu-int8", "int8", "openvino", "model.xml"), None)
    before = package.sha256()
    (tmp_path / "model.bin").write_bytes(b"\1" * 16)
    assert package.sha256() != before


# ---------------------------------------------------------------------------------------------
# GPU runtimes that cannot lie (checked without a GPU: what runs is read back from the session)


def test_gpu_provider_that_did_not_start_is_an_error(tiny_package):
    from spanqa.models.package import open_package
    from spanqa.runtimes import RuntimeOptions
    from spanqa.runtimes.gpu import _started
    from spanqa.runtimes.ort import OrtRuntime

    runtime = OrtRuntime(open_package(tiny_package), RuntimeOptions(threads=1))
    assert runtime.provider == "CPUExecutionProvider"
    with pytest.raises(
        InferenceError, match="onnxruntime's CUDAExecutionProvider did not start \\(the session runs on CPUExecutionProvider\\)"
    ):
        _started(runtime, open_package(tiny_package), "CUDAExecutionProvider")


def test_tensorrt_cache_lives_in_spanqa_cache(tiny_package, tmp_path, monkeypatch):
    from spanqa.fileutil import sha256_file
    from spanqa.models.package import open_package
    from spanqa.runtimes.gpu import trt_cache_dir

    monkeypatch.setenv("SPANQA_HOME", str(tmp_path / "home"))
    package = open_package(tiny_package)
    assert trt_cache_dir(package) == tmp_path / "home" / "tensorrt" / sha256_file(package.model_path)[:16]
    assert not (tiny_package / "trt-cache").exists()


def test_gpu_target_without_gpu_is_one_line(tiny_package, tmp_path):
    r = CliRunner().invoke(
        main, ["compile", str(tiny_package / "exported.onnx"), "-o", str(tmp_path / "g"), "--target", "gpu-fp16", "--no-guard"]
    )
    assert r.exit_code == 1
    assert r.output.strip() == (
        "Error: --target gpu-fp16 needs onnxruntime's CUDAExecutionProvider to build and verify the model, and this "
        "machine has none; run it where an NVIDIA GPU is, after pip install 'spanqa[gpu]'"
    )


def test_targets_lists_what_suits_this_cpu():
    from spanqa.targets.suitability import auto_target, suitability

    rows = {r.target.name: r for r in suitability(flags=["avx2", "fma"])}
    assert rows["cpu-bf16"].status == "no bf16" and rows["cpu-int8"].status == "slow here"
    assert auto_target(rows) == "cpu-fp32"
    rows = {r.target.name: r for r in suitability(flags=["avx2", "avx512f", "avx512_vnni", "avx512_bf16"])}
    assert rows["cpu-int8"].status == "ok" and auto_target(rows) == "cpu-int8"
    assert rows["gpu-trt"].status == "no GPU"
