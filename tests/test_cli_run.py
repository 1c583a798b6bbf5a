"""``spanqa run`` on the command line: the table, the files it writes (and keeps), output safety,
and the no-argument job that fetches its checkpoint and dataset."""

from __future__ import annotations

import http.server
import json
import tarfile
import threading
from functools import partial

import numpy as np
import pytest
from click.testing import CliRunner

from spanqa.cli import main
from spanqa.fileutil import MARKER
from squad_files import subset


@pytest.fixture(scope="module")
def small_heldout(heldout_json, tmp_path_factory):
    return subset(heldout_json, tmp_path_factory.mktemp("data") / "heldout-60.json", 60)


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
    assert f"Wrote predictions.json, nbest_predictions.json, result.json and summary.json to {out}" in result.output
    assert sorted(p.name for p in out.iterdir()) == [
        MARKER,
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
    # The kept logits are what the engine computed, -inf where no batch computed anything: each
    # feature's file row is a finite prefix (its batch's padded length) covering its real tokens.
    features = json.loads((out / "features" / "manifest.json").read_text())
    assert features["num_features"] == summary["features"] and features["batch_size"] == 1
    lengths = np.concatenate(
        [np.fromfile(p, "<i8").reshape(1, 512).sum(axis=1) for p in _batches(out / "features" / "input_mask")]
    )
    for k in (0, 1):
        logits = np.concatenate(
            [np.fromfile(out / "outputs" / f"{i}_output_{k}.bin", "<f4").reshape(1, 512) for i in range(len(lengths))]
        )
        finite = np.isfinite(logits)
        widths = finite.sum(axis=1)
        assert np.array_equal(finite, np.arange(512)[None, :] < widths[:, None])
        assert (widths >= lengths).all() and (widths < 512).any() and np.isneginf(logits[~finite]).all()
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


def _batches(folder):
    return sorted(folder.iterdir(), key=lambda p: int(p.stem))


def test_run_cli_output_safety(standin_package, small_heldout, tmp_path, monkeypatch):
    small = subset(small_heldout, tmp_path / "five.json", 5)
    out = tmp_path / "res"
    args = ["run", str(small), "--model", str(standin_package), "-o", str(out), "-q"]
    assert CliRunner().invoke(main, args).exit_code == 0
    before = (out / "predictions.json").read_bytes()
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 4
    assert result.output == f"Error: -o {out}: a result is already there; pass --overwrite to replace it\n"
    result = CliRunner().invoke(main, [*args, "--overwrite", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert (out / "predictions.json").read_bytes() == before  # batching never changes the answers
    assert json.loads((out / "summary.json").read_text())["settings"]["batch_size"] == 2
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["run", str(small), "--model", str(standin_package), "-o", "."])
    assert result.exit_code == 4
    assert result.output == (
        f"Error: -o .: refusing to write into {tmp_path.resolve()} itself; name a new directory, e.g. -o result\n"
    )


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
    assert (tmp_path / "home" / "models" / "spanbert-squad1" / "pytorch_model.bin").is_file()
    (package,) = (tmp_path / "home" / "packages").glob("spanbert-squad1-cpu-fp32-*[0-9a-f]")
    assert res["model"] == str(package)


def test_run_offline_says_what_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("SPANQA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SPANQA_MIRROR", "http://127.0.0.1:9")
    result = CliRunner().invoke(main, ["run", "-o", str(tmp_path / "r")])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines == [
        "Error: cannot fetch squad-v1.1-dev (dev-v1.1.json) and squad1 (spanbert_squad1.tar.gz): offline? "
        "Download them elsewhere and install them with 'spanqa download squad-v1.1-dev --url /path/to/dev-v1.1.json'; "
        "'spanqa download squad1 --url /path/to/spanbert_squad1.tar.gz', or set --mirror / SPANQA_MIRROR, "
        "or pass DATASET and --model"
    ]
    assert not (tmp_path / "r").exists()


def test_run_offline_with_a_dataset_names_the_checkpoint(tmp_path, monkeypatch, small_heldout):
    monkeypatch.setenv("SPANQA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SPANQA_MIRROR", "http://127.0.0.1:9")
    result = CliRunner().invoke(main, ["run", str(small_heldout), "-o", str(tmp_path / "r")])
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: cannot reach http://127.0.0.1:9/spanbert_squad1.tar.gz")
    assert "install it with 'spanqa download squad1 --url /path/to/spanbert_squad1.tar.gz'" in line
