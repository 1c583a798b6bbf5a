import http.server
import json
import tarfile
import threading
from functools import partial

import numpy as np
import pytest
from click.testing import CliRunner

from spanqa.answers.extraction import predict
from spanqa.cli import main
from spanqa.data.features import build_features
from spanqa.data.squad import read_squad
from spanqa.engine import infer_features
from spanqa.engine.resolve import resolve_model
from spanqa.errors import SpanQAError
from spanqa.jobs.run import run
from spanqa.runtimes import open_runtime
from spanqa.settings import BatchingSettings, RunSettings


def subset(src, dest, questions):
    """The first ``questions`` questions of a SQuAD file, as a SQuAD file."""
    data = json.loads(src.read_text(encoding="utf-8"))
    left = questions
    articles = []
    for article in data["data"]:
        paragraphs = []
        for para in article["paragraphs"]:
            if left <= 0:
                break
            qas = para["qas"][:left]
            left -= len(qas)
            paragraphs.append({"context": para["context"], "qas": qas})
        if paragraphs:
            articles.append({"title": article["title"], "paragraphs": paragraphs})
    dest.write_text(json.dumps({"version": "1.1", "data": articles}), encoding="utf-8")
    return dest


@pytest.fixture(scope="module")
def small_heldout(heldout_json, tmp_path_factory):
    return subset(heldout_json, tmp_path_factory.mktemp("data") / "heldout-60.json", 60)


def test_length_aware_logits_match_padded(standin_package, small_heldout):
    package_runtime = open_runtime(standin_package)
    from spanqa.models.package import open_package

    features = build_features(read_squad(small_heldout), open_package(standin_package).tokenizer)
    s1, e1, stats1 = infer_features(package_runtime, features, RunSettings(warmup=0))
    s2, e2, stats2 = infer_features(
        package_runtime, features, RunSettings(warmup=0, batching=BatchingSettings(length_aware=False))
    )
    real = features.input_mask.astype(bool)
    assert np.abs(s1 - s2)[real].max() < 1e-4 and np.abs(e1 - e2)[real].max() < 1e-4
    # Length-aware batching ran far fewer positions than the padded path.
    assert stats1.rows == stats2.rows == len(features)
    assert predict(features, s1, e1)[0] == predict(features, s2, e2)[0]


def test_run_cli_writes_everything(standin_package, small_heldout, tmp_path):
    out = tmp_path / "res"
    result = CliRunner().invoke(
        main, ["run", str(small_heldout), "--model", str(standin_package), "-o", str(out), "--keep-files"]
    )
    assert result.exit_code == 0, result.output
    for label in (
        "questions",
        "features",
        "exact match",
        "F1",
        "end-to-end questions/s",
        "model rows/s",
        "batch latency p50 / p99 (ms)",
    ):
        assert any(line.startswith(label) for line in result.output.splitlines()), label
    assert sorted(p.name for p in out.iterdir()) == [
        "features",
        "nbest_predictions.json",
        "outputs",
        "predictions.json",
        "result.json",
        "summary.json",
    ]
    res = json.loads((out / "result.json").read_text())
    assert res["total"] == 60 and 0 < res["f1"] <= 100
    summary = json.loads((out / "summary.json").read_text())
    assert summary["questions"] == 60 and summary["target"] == "cpu-fp32"
    assert summary["inference"]["rows"] == summary["features"]
    # The kept recipe files re-score to the same answers through 'spanqa evaluate'.
    again = CliRunner().invoke(
        main,
        [
            "evaluate",
            str(small_heldout),
            "--features",
            str(out / "features"),
            "--outputs",
            str(out / "outputs"),
            "-o",
            str(tmp_path / "re"),
        ],
    )
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "re" / "predictions.json").read_text()) == json.loads((out / "predictions.json").read_text())


def test_interrupted_run_leaves_no_result(standin_package, small_heldout, tmp_path, monkeypatch):
    import spanqa.answers

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(spanqa.answers, "predict", boom)
    with pytest.raises(KeyboardInterrupt):
        run(small_heldout, standin_package, tmp_path / "res")
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_is_converted_once_into_cache(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("SPANQA_HOME", str(tmp_path / "home"))
    package, converted = resolve_model(tiny_checkpoint)
    assert converted and package.root.parent == tmp_path / "home" / "packages"
    again, converted_again = resolve_model(tiny_checkpoint)
    assert not converted_again and again.root == package.root


def test_not_a_model(tmp_path):
    with pytest.raises(SpanQAError, match="neither a model package, a .onnx file nor a checkpoint directory"):
        resolve_model(tmp_path)


@pytest.fixture
def mirror(tmp_path, tiny_checkpoint, dev_json):
    """A local mirror serving a SpanBERT-style squad1 archive (the tiny model) and the dev set."""
    root = tmp_path / "mirror"
    root.mkdir()
    with tarfile.open(root / "spanbert_squad1.tar.gz", "w:gz") as tar:
        for name in ("config.json", "pytorch_model.bin"):
            tar.add(tiny_checkpoint / name, arcname=f"squad1/{name}")
    (root / "dev-v1.1.json").write_bytes(dev_json.read_bytes())
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_run_with_no_arguments_is_the_main_job(mirror, tmp_path, monkeypatch):
    """'spanqa run' alone: fetch the squad1 checkpoint and the v1.1 dev set, convert, evaluate all 10,570 questions."""
    monkeypatch.setenv("SPANQA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SPANQA_MIRROR", mirror)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["run"])
    assert result.exit_code == 0, result.output
    res = json.loads((tmp_path / "spanqa-result" / "result.json").read_text())
    assert res["total"] == 10570
    assert res["target"] == "cpu-fp32"
    assert (tmp_path / "home" / "data" / "dev-v1.1.json").is_file()


def test_run_offline_says_what_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("SPANQA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SPANQA_MIRROR", "http://127.0.0.1:9")
    result = CliRunner().invoke(main, ["run", "-o", str(tmp_path / "r")])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: cannot reach http://127.0.0.1:9/dev-v1.1.json")
    assert "install it with 'spanqa download squad-v1.1-dev --url /path/to/dev-v1.1.json'" in lines[0]


# ---------------------------------------------------------------------------------------------
# The stand-in on the held-out questions (shared fixtures in conftest.py: every question unless
# SPANQA_HELDOUT_STRIDE says otherwise): 'spanqa run' against PyTorch through the same
# preprocessing and answer code, and length-aware batching against the recipe's padded files.

MODEL_README_F1 = 65.66  # ../shared/models/standin-minilm-squad/README.md, run_squad-style pipeline


def every_kth_question(src, dest, k):
    data = json.loads(src.read_text(encoding="utf-8"))
    count = 0
    for article in data["data"]:
        for para in article["paragraphs"]:
            kept = []
            for qa in para["qas"]:
                if count % k == 0:
                    kept.append(qa)
                count += 1
            para["qas"] = kept
    dest.write_text(json.dumps(data), encoding="utf-8")
    return dest


def _infer_outputs(out_dir, n, batch_size):
    from spanqa.offline.outputs import read_outputs

    parts = [read_outputs(out_dir, str(b), batch_size, 512) for b in range(-(-n // batch_size))]
    return np.concatenate([p[0] for p in parts])[:n], np.concatenate([p[1] for p in parts])[:n]


def test_run_f1_matches_pytorch_and_padding_changes_nothing(
    standin_package, heldout_json, heldout_stride, heldout_features, heldout_torch_logits, heldout_infer_runs, tmp_path
):
    from spanqa.answers.scoring import score

    dataset = heldout_json if heldout_stride == 1 else every_kth_question(heldout_json, tmp_path / "sample.json", heldout_stride)
    report = run(dataset, standin_package, tmp_path / "res")
    features = report.evaluation.features
    assert np.array_equal(features.input_ids, heldout_features.input_ids)

    # PyTorch's logits (NaN at padding, which answers never rank) through the same answer code.
    torch_start, torch_end = (np.nan_to_num(a, nan=0.0) for a in heldout_torch_logits)
    torch_predictions = predict(features, torch_start, torch_end)[0]
    torch_scores = score(dataset, torch_predictions)
    assert report.result["total"] == torch_scores["total"] == len(report.evaluation.predictions)
    assert abs(report.result["f1"] - torch_scores["f1"]) <= 0.05
    if heldout_stride == 1:
        assert report.result["total"] == 5173 and len(features) == 5248
        assert abs(report.result["f1"] - MODEL_README_F1) <= 2.0

    # The recipe's way, every feature padded to 512 and run by 'spanqa infer' at batch size 8,
    # gives exactly the answers of length-aware batching.
    padded_start, padded_end = _infer_outputs(heldout_infer_runs[8][0], len(features), 8)
    assert predict(features, padded_start, padded_end)[0] == report.evaluation.predictions
    assert report.summary["inference"]["padded_rows"] == 0
    assert report.summary["real_tokens"] < 0.5 * 512 * len(features)


def test_onnx_with_a_target_is_compiled_into_cache(tiny_package, tmp_path, monkeypatch):
    monkeypatch.setenv("SPANQA_HOME", str(tmp_path / "home"))
    exported = tiny_package / "exported.onnx"
    as_is, built = resolve_model(exported)
    assert not built and as_is.model_path == exported
    package, built = resolve_model(exported, "cpu-int8-ort")
    assert built and package.target == "cpu-int8-ort" and package.root.parent == tmp_path / "home" / "packages"
    assert resolve_model(exported, "cpu-int8-ort") == (package, False)
    with pytest.raises(
        SpanQAError, match=r"a cpu-fp32 model package; for --target cpu-bf16 pass the checkpoint or its exported .onnx"
    ):
        resolve_model(tiny_package, "cpu-bf16")
