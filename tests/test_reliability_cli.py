"""Bad input and unsafe outputs, tried as a new user would: one line, a documented exit code,
nothing of the user's lost. Each case is a row of docs/reliability.md."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from spanqa.cli import main

CONTEXT = (
    "The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, "
    "a region in France. They were descended from Norse raiders and pirates from Denmark, Iceland and Norway."
)
QUESTIONS = [
    ("q1", "In what country is Normandy located?", "France"),
    ("q2", "When were the Normans in Normandy?", "10th and 11th centuries"),
    ("q3", "From which countries did the Norse originate?", "Denmark, Iceland and Norway"),
]


def squad(path: Path, context: str = CONTEXT, answers: bool = True) -> Path:
    qas = [
        {"id": i, "question": q, "answers": [{"text": a, "answer_start": context.find(a)}] if answers else []}
        for i, q, a in QUESTIONS
    ]
    path.write_text(
        json.dumps({"version": "1.1", "data": [{"title": "Normans", "paragraphs": [{"context": context, "qas": qas}]}]})
    )
    return path


def cli(*args: str, **kwargs):
    return CliRunner().invoke(main, [str(a) for a in args], **kwargs)


def error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture
def users_dir(tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "thesis.tex").write_text("years of work")
    (d / "photo.jpg").write_bytes(b"\xff\xd8")
    return d


def assert_untouched(d: Path) -> None:
    assert sorted(p.name for p in d.iterdir()) == ["photo.jpg", "thesis.tex"]
    assert (d / "thesis.tex").read_text() == "years of work"


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("SPANQA_HOME", str(tmp_path / "home"))


# ---------------------------------------------------------------------------------------------
# Outputs


def test_run_keeps_a_users_directory(tiny_package, users_dir, tmp_path):
    r = cli("run", squad(tmp_path / "d.json"), "--model", tiny_package, "-o", users_dir)
    assert r.exit_code == 4
    assert error_line(r).endswith(
        "mine: the directory holds files spanqa did not write; name a new or empty directory for the result"
    )
    assert_untouched(users_dir)


def test_run_twice_needs_overwrite(tiny_package, tmp_path):
    data = squad(tmp_path / "d.json")
    assert cli("run", data, "--model", tiny_package, "-o", tmp_path / "res").exit_code == 0
    r = cli("run", data, "--model", tiny_package, "-o", tmp_path / "res")
    assert r.exit_code == 4 and error_line(r).endswith("a result is already there; pass --overwrite to replace it")
    assert cli("run", data, "--model", tiny_package, "-o", tmp_path / "res", "--overwrite").exit_code == 0


def test_run_into_cwd_refused(tiny_package, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = squad(tmp_path / "d.json")
    r = cli("run", data, "--model", tiny_package, "-o", ".")
    assert r.exit_code == 4 and "refusing to write into" in error_line(r)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.json"]


def test_evaluate_output_naming_its_dataset_refused(tmp_path):
    data = squad(tmp_path / "h3.json")
    before = data.read_bytes()
    r = cli("evaluate", data, "--features", tmp_path / "f", "--outputs", tmp_path / "o", "-o", data)
    assert (
        r.exit_code == 4
        and error_line(r) == f"Error: -o {data}: that is (or holds) the input {data}; write the result somewhere else"
    )
    assert data.read_bytes() == before


def test_evaluate_keeps_a_users_directory(users_dir, tmp_path):
    r = cli("evaluate", squad(tmp_path / "d.json"), "--features", tmp_path / "f", "--outputs", tmp_path / "o", "-o", users_dir)
    assert r.exit_code == 4 and "files spanqa did not write" in error_line(r)
    assert_untouched(users_dir)


def test_compile_keeps_a_users_directory(tiny_package, users_dir):
    r = cli("compile", tiny_package / "exported.onnx", "-o", users_dir)
    assert r.exit_code == 4 and "files spanqa did not write" in error_line(r)
    assert_untouched(users_dir)


def test_download_keeps_a_users_directory(users_dir, tmp_path):
    archive = tmp_path / "spanbert_squad1.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("config.json", "pytorch_model.bin"):
            info = tarfile.TarInfo(f"spanbert_squad1/{name}")
            info.size = 2
            tar.addfile(info, io.BytesIO(b"{}"))
    r = cli("download", "squad1", "--dir", users_dir, "--url", archive)
    assert r.exit_code == 4 and error_line(r).endswith(
        "mine: the directory holds files spanqa did not write; name a new or empty directory for the checkpoint"
    )
    assert_untouched(users_dir)


def test_unwritable_output_is_one_line(tmp_path):
    r = cli("preprocess", squad(tmp_path / "d.json"), "-o", "/proc/spanqa-out")
    assert r.exit_code == 4 and "cannot create it" in error_line(r)
    blocker = tmp_path / "small.json"
    blocker.write_text("{}")
    r = cli("preprocess", squad(tmp_path / "d.json"), "-o", blocker / "sub")
    assert r.exit_code == 4 and "cannot create it" in error_line(r)


# ---------------------------------------------------------------------------------------------
# The accuracy guard on by default


def test_compile_int8_without_guard_refused(tiny_package, tmp_path):
    r = cli("compile", tiny_package / "exported.onnx", "-o", tmp_path / "int8", "--target", "cpu-int8")
    assert r.exit_code == 2
    assert error_line(r) == (
        "Error: --target cpu-int8 is reduced precision: pass --guard DATASET.json (its F1 must stay within "
        "0.5% of fp32's) or --no-guard to build it unmeasured"
    )
    assert not (tmp_path / "int8").exists()


def test_run_int8_guards_by_default(tiny_checkpoint, tmp_path):
    data = squad(tmp_path / "d.json")
    r = cli("run", data, "--model", tiny_checkpoint, "--target", "cpu-int8-ort", "-o", tmp_path / "r")
    assert r.exit_code == 2
    assert "3 questions are too few for a guard decision (at least 200" in error_line(r)
    assert error_line(r).endswith("or --no-guard to build the model unmeasured")  # #19: the hint names --no-guard
    assert not list((tmp_path / "home").rglob("*.lock")), "a refused guard set left lock files"  # #19: known before any work
    r = cli("run", data, "--model", tiny_checkpoint, "--target", "cpu-int8-ort", "--no-guard", "-o", tmp_path / "r")
    assert r.exit_code == 0, r.output
    assert "built without the accuracy guard: its answers are unmeasured against fp32" in r.output
    package = next((tmp_path / "home" / "packages").glob("ckpt-cpu-int8-ort-*"))
    assert not list((tmp_path / "home" / "packages").glob("*.lock")), "lock files live in packages/.locks"
    assert json.loads((package / "manifest.json").read_text())["guard"] == {
        "unguarded": True,
        "passed": False,
        "reason": "--no-guard",
    }


# ---------------------------------------------------------------------------------------------
# The conversion cache, keyed by content


def test_changed_vocab_rebuilds_the_cached_package(tiny_checkpoint, tmp_path):
    from spanqa.engine.resolve import resolve_model

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, ckpt)
    first, built = resolve_model(ckpt)
    assert built and not first.tokenizer.do_lower_case
    assert resolve_model(ckpt) == (first, False)
    from spanqa.data.vocab import default_vocab_path

    (ckpt / "vocab.txt").write_text(default_vocab_path().read_text().lower())
    second, built = resolve_model(ckpt)
    assert built and second.root != first.root and second.tokenizer.do_lower_case


# ---------------------------------------------------------------------------------------------
# Bad input


def test_max_seq_length_over_positions_fails_before_work(tiny_package, tmp_path):
    r = cli("run", squad(tmp_path / "d.json"), "--model", tiny_package, "--max-seq-length", "1024", "-o", tmp_path / "r")
    assert r.exit_code == 2
    assert error_line(r) == "Error: --max-seq-length 1024: the model has only 512 positions; use at most 512"
    assert not (tmp_path / "r").exists()


def test_compile_seq_len_too_short(tiny_package, tmp_path):
    r = cli("compile", tiny_package / "exported.onnx", "-o", tmp_path / "p", "--seq-len", "10")
    assert r.exit_code == 2
    assert "--seq-len 10: must lie between 68" in error_line(r)


def test_ask_empty_question(tiny_package):
    r = cli("ask", "--model", tiny_package, "--context", CONTEXT, "")
    assert r.exit_code == 2 and "a question is empty" in error_line(r)


def test_empty_context_is_an_error_not_a_silent_empty_answer(tiny_package, tmp_path):
    r = cli("run", squad(tmp_path / "d.json", context="  \n "), "--model", tiny_package, "-o", tmp_path / "r")
    assert r.exit_code == 3
    assert error_line(r).endswith("paragraph 0: the context is empty; every question needs a passage")


def test_dataset_without_answers_is_predicted_not_scored(tiny_package, tmp_path):
    r = cli("run", squad(tmp_path / "d.json", answers=False), "--model", tiny_package, "-o", tmp_path / "r")
    assert r.exit_code == 0, r.output
    assert "no gold answers: nothing scored" in r.output
    assert sorted(json.loads((tmp_path / "r" / "predictions.json").read_text())) == ["q1", "q2", "q3"]
    assert not (tmp_path / "r" / "result.json").exists()


def test_features_folder_is_not_a_model(tmp_path):
    data = squad(tmp_path / "d.json")
    assert cli("preprocess", data, "-o", tmp_path / "f").exit_code == 0
    r = cli("preprocess", data, "--model", tmp_path / "f", "-o", tmp_path / "g")
    assert r.exit_code == 3 and "holds no vocab.txt (a features folder?)" in error_line(r)
    r = cli("run", data, "--model", tmp_path / "f", "-o", tmp_path / "r")
    assert r.exit_code == 3 and "a features folder (from 'spanqa preprocess'), not a model package" in error_line(r)
    (tmp_path / "empty").mkdir()
    r = cli("preprocess", data, "--model", tmp_path / "empty", "-o", tmp_path / "g")
    assert r.exit_code == 3 and "neither a checkpoint (config.json) nor a model package" in error_line(r)


def test_evaluate_against_another_dataset(tiny_package, tmp_path):
    data = squad(tmp_path / "d.json")
    other = squad(tmp_path / "other.json", context=CONTEXT + " More text.")
    assert cli("preprocess", data, "-o", tmp_path / "f").exit_code == 0
    assert cli("infer", "--model", tiny_package, "--input", tmp_path / "f", "-o", tmp_path / "o").exit_code == 0
    r = cli("evaluate", other, "--features", tmp_path / "f", "--outputs", tmp_path / "o", "-o", tmp_path / "r")
    assert r.exit_code == 3 and "not the dataset the features in" in error_line(r)


def test_resume_without_settings_refused(tiny_package, tmp_path):
    data = squad(tmp_path / "d.json")
    assert cli("preprocess", data, "-o", tmp_path / "f").exit_code == 0
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "0_output_0.bin").write_bytes(b"\0" * 8)
    r = cli("infer", "--model", tiny_package, "--input", tmp_path / "f", "-o", tmp_path / "o", "--resume")
    assert r.exit_code == 4 and "the directory holds files spanqa did not write" in error_line(r)
    # infer's own directory, killed before it recorded its settings: its outputs cannot be trusted
    (tmp_path / "o" / ".spanqa-artifact").write_text('{"kind": "infer run"}')
    r = cli("infer", "--model", tiny_package, "--input", tmp_path / "f", "-o", tmp_path / "o", "--resume")
    assert r.exit_code == 1 and "--resume needs the infer_settings.json of the run it continues" in error_line(r)


def test_compile_a_non_qa_onnx_names_the_users_file(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph), str(tmp_path / "notqa.onnx"))
    r = cli("compile", tmp_path / "notqa.onnx", "-o", tmp_path / "p")
    assert r.exit_code == 1
    assert (
        error_line(r)
        == f"Error: {tmp_path / 'notqa.onnx'}: not an extractive-QA BERT model (no input input_ids, token_type_ids, attention_mask); export one with 'spanqa export'"
    )


# ---------------------------------------------------------------------------------------------
# Internal errors and --debug


def test_internal_error_is_one_line_with_exit_70_and_debug_shows_it(tiny_package, tmp_path, monkeypatch):
    import spanqa.jobs.run

    def broken(*args, **kwargs):
        raise KeyError("boom")

    monkeypatch.setattr(spanqa.jobs.run, "run", broken)
    data = squad(tmp_path / "d.json")
    r = cli("run", data, "--model", tiny_package, "-o", tmp_path / "r")
    assert r.exit_code == 70
    assert error_line(r) == (
        "Error: internal error (KeyError: 'boom'); this is a bug in spanqa, rerun with --debug "
        "(or SPANQA_DEBUG=1) for the traceback and report it"
    )
    r = cli("--debug", "run", data, "--model", tiny_package, "-o", tmp_path / "r")
    assert isinstance(r.exception, KeyError)


def test_os_error_is_one_line(tiny_package, tmp_path, monkeypatch):
    import spanqa.jobs.run

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "r"))

    monkeypatch.setattr(spanqa.jobs.run, "run", full)
    r = cli("run", squad(tmp_path / "d.json"), "--model", tiny_package, "-o", tmp_path / "r")
    assert r.exit_code == 4
    assert (
        error_line(r) == f"Error: {tmp_path / 'r'}: No space left on device; check the path, its permissions and the free space"
    )


def test_line_progress_when_not_a_terminal(capsys):
    from spanqa.progress import LineProgress

    bar = LineProgress(total=4, desc="infer", unit="batch", interval=0.0)
    bar.update(1)
    bar.update(1)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("infer: 1/4 batch (25%) after ") and err[1].startswith("infer: 2/4 batch (50%)")


def test_offline_first_run_names_everything_it_needs_at_once(monkeypatch):
    from spanqa import download
    from spanqa.errors import DownloadError

    def offline(name, **kwargs):
        raise DownloadError(f"cannot reach the source of {name}")

    monkeypatch.setattr(download, "ensure_asset", offline)
    r = cli("run")
    assert r.exit_code == 1
    assert error_line(r) == (
        "Error: cannot fetch squad-v1.1-dev (dev-v1.1.json) and squad1 (spanbert_squad1.tar.gz): offline? Download them "
        "elsewhere and install them with 'spanqa download squad-v1.1-dev --url /path/to/dev-v1.1.json'; "
        "'spanqa download squad1 --url /path/to/spanbert_squad1.tar.gz', or set --mirror / SPANQA_MIRROR, "
        "or pass DATASET and --model"
    )


# ---------------------------------------------------------------------------------------------
# #19: results that were silently wrong, and exit codes that disagreed with this file's table


def test_a_partly_labelled_file_scores_its_labelled_questions(tiny_package, tmp_path):
    data = json.loads(squad(tmp_path / "d.json").read_text())
    del data["data"][0]["paragraphs"][0]["qas"][1]["answers"]  # q2 carries no gold answer
    (tmp_path / "d.json").write_text(json.dumps(data))
    r = cli("run", tmp_path / "d.json", "--model", tiny_package, "-o", tmp_path / "r")
    assert r.exit_code == 0, r.output
    assert "(1 questions without gold answers were not scored)" in r.output
    result = json.loads((tmp_path / "r" / "result.json").read_text())
    predictions = json.loads((tmp_path / "r" / "predictions.json").read_text())
    assert sorted(predictions) == ["q1", "q2", "q3"]
    assert (result["total"], result["unlabelled"]) == (2, 1)
    from spanqa.answers.scoring import f1_score

    gold = {qid: a for qid, _, a in QUESTIONS}
    expected = 100 * sum(f1_score(predictions[q], gold[q]) for q in ("q1", "q3")) / 2
    assert result["f1"] == pytest.approx(expected)


def test_an_unknown_target_is_named_with_the_list(tiny_package, tmp_path):
    r = cli("run", squad(tmp_path / "d.json"), "--model", tiny_package, "--target", "cpu-int9", "-o", tmp_path / "r")
    assert r.exit_code == 2
    assert error_line(r) == (
        "Error: --target cpu-int9: unknown target; choose one of: cpu-bf16, cpu-fp32, cpu-int8, cpu-int8-ort, "
        "gpu-fp16, gpu-trt, or auto"
    )
    assert not (tmp_path / "r").exists()


def test_a_gpu_target_without_a_gpu_says_so_before_the_guard(tiny_checkpoint, tmp_path):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has the CUDA provider")
    r = cli("run", squad(tmp_path / "d.json"), "--model", tiny_checkpoint, "--target", "gpu-fp16", "-o", tmp_path / "r")
    assert r.exit_code == 1
    assert error_line(r) == (
        "Error: --target gpu-fp16 needs onnxruntime's CUDAExecutionProvider to build and verify the model, and this "
        "machine has none; run it where an NVIDIA GPU is, after pip install 'spanqa[gpu]'"
    )


def test_a_guard_set_too_small_stops_convert_before_the_export(tiny_checkpoint, tmp_path, monkeypatch):
    import spanqa.models.export as export

    def no_export(*args, **kwargs):
        raise AssertionError("exported before the guard set was checked")

    monkeypatch.setattr(export, "export_checkpoint", no_export)
    r = cli("convert", tiny_checkpoint, "-o", tmp_path / "p", "--target", "cpu-int8", "--guard", squad(tmp_path / "d.json"))
    assert r.exit_code == 2
    assert "3 questions are too few for a guard decision" in error_line(r)
    assert not (tmp_path / "p").exists() and not list(tmp_path.rglob("*.lock"))


def test_missing_inputs_are_usage_errors(tiny_package, tmp_path):
    """Paths that do not exist: exit 2 (usage), as click's own missing-path errors."""
    data = squad(tmp_path / "d.json")
    r = cli("infer", "--model", tiny_package, "--input", tmp_path / "nope", "-o", tmp_path / "o")
    assert r.exit_code == 2
    assert (
        error_line(r)
        == f"Error: --input {tmp_path / 'nope'}: no such folder; pass the features directory from 'spanqa preprocess'"
    )
    r = cli(
        "preprocess", data, "-o", tmp_path / "f", "--model", tiny_package, "--max-seq-length", "96", "--max-query-length", "16"
    )
    assert r.exit_code == 0, r.output
    r = cli("evaluate", data, "--features", tmp_path / "f", "--outputs", tmp_path / "gone", "-o", tmp_path / "res")
    assert r.exit_code == 2
    assert error_line(r) == f"Error: --outputs {tmp_path / 'gone'}: no such directory; run 'spanqa infer' first and pass its -o"
    r = cli("bench", "--model", tiny_package, "--seq-len", "1024", "--batch-sizes", "1")
    assert r.exit_code == 2
    assert error_line(r).startswith("Error: --seq-len 1024: ") and "has only 512 positions" in error_line(r)
