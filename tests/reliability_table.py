"""The "What was tried" table of docs/reliability.md, as data: each row names the tests that check it.

tests/test_reliability_docs.py renders these rows and requires the doc's table to be exactly
that rendering, every cited test to exist, and every quoted message fragment (the parts of a
`...`-quoted message between "..." ellipses) to appear in a cited test's source: the table can
claim no message that no test checks. To change the table, change a row here (and its test),
then run `python tests/reliability_table.py` to rewrite the doc.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"
START, END = "<!-- reliability-table: start (generated from tests/reliability_table.py) -->", "<!-- reliability-table: end -->"


@dataclass(frozen=True)
class Row:
    tried: str
    sees: str
    exit: str
    left: str
    tests: tuple[str, ...]  # "tests/test_x.py::test_name"


R = "tests/test_reliability_cli.py::"
F = "tests/test_reliability_faults.py::"
OUT = "tests/test_cli_outputs.py::"

ROWS = [
    Row(
        "every command's output (`-o`, `--out`, `--plot`, `--html`, `--json`, `--dir`) on a user's file, a user's "
        "directory, each of the command's inputs, and its own earlier artifact",
        "one line naming the option and the path: a user's file or directory `... spanqa did not write ...`; an input "
        "`... that is (or holds) the input ...`; its own artifact `... pass --overwrite to replace it` "
        "(`download`, a cache, says it is already there and writes nothing)",
        "4",
        "every byte as it was (checksums before and after)",
        (OUT + "test_output_rule", OUT + "test_every_command_that_writes_is_covered"),
    ),
    Row(
        "`--overwrite` on a file spanqa wrote and the user edited since",
        "`... spanqa did not write ...`",
        "4",
        "the user's edit",
        (OUT + "test_overwrite_replaces_only_spanqa_files",),
    ),
    Row(
        "`run/evaluate/compile -o DIR` holding a user's files",
        "`the directory holds files spanqa did not write; name a new or empty directory for the result`",
        "4",
        "DIR untouched",
        (
            R + "test_run_keeps_a_users_directory",
            R + "test_evaluate_keeps_a_users_directory",
            R + "test_compile_keeps_a_users_directory",
        ),
    ),
    Row(
        "`download squad1 --dir DIR` holding a user's files",
        "`... for the checkpoint`",
        "4",
        "DIR untouched",
        (R + "test_download_keeps_a_users_directory",),
    ),
    Row(
        "`run -o RESULT` twice",
        "`a result is already there; pass --overwrite to replace it`",
        "4",
        "the first result",
        (R + "test_run_twice_needs_overwrite",),
    ),
    Row(
        "`run -o .` (or `~`)",
        "`refusing to write into` the directory itself",
        "4",
        "nothing new",
        (R + "test_run_into_cwd_refused", "tests/test_fileutil.py::test_cwd_and_home_refused"),
    ),
    Row(
        "`preprocess -o /proc/x`",
        "`-o /proc/x:` ... `cannot create it` (...)",
        "4",
        "nothing",
        (R + "test_unwritable_output_is_one_line",),
    ),
    Row(
        "disk full while writing features / a package",
        "`No space left on device; check the path, its permissions and the free space`",
        "4",
        "no features dir / no package",
        (
            F + "test_disk_full_while_writing_features",
            F + "test_disk_full_while_writing_a_package",
            R + "test_os_error_is_one_line",
        ),
    ),
    Row(
        "disk full while writing infer outputs",
        "same line",
        "4",
        "finished pairs only; `--resume` completes",
        (F + "test_disk_full_while_writing_outputs", R + "test_os_error_is_one_line"),
    ),
    Row(
        "`compile --target cpu-int8` without `--guard`",
        "`is reduced precision: pass --guard DATASET.json ... or --no-guard`",
        "2",
        "nothing",
        (R + "test_compile_int8_without_guard_refused",),
    ),
    Row(
        "`run --target cpu-int8-ort` on a small set",
        "guarded on DATASET by default: `3 questions are too few for a guard decision (at least 200` ... "
        "`or --no-guard to build the model unmeasured`",
        "2",
        "nothing (no lock file either)",
        (R + "test_run_int8_guards_by_default",),
    ),
    Row(
        "`convert --target cpu-int8 --guard SMALL.json`",
        "`questions are too few for a guard decision`, before the export starts",
        "2",
        "nothing",
        (R + "test_a_guard_set_too_small_stops_convert_before_the_export",),
    ),
    Row(
        "`run --target ... --no-guard`",
        "runs, with `built without the accuracy guard: its answers are unmeasured against fp32`; "
        "the manifest's guard says unguarded",
        "0",
        "result",
        (R + "test_run_int8_guards_by_default",),
    ),
    Row(
        "`run --model PKG --target cpu-int9`",
        "`--target cpu-int9: unknown target; choose one of: cpu-bf16, cpu-fp32, ...`",
        "2",
        "nothing",
        (R + "test_an_unknown_target_is_named_with_the_list",),
    ),
    Row(
        "`run --model PKG --target cpu-fp32` on a cpu-int8 / cpu-bf16 package",
        "`--target cpu-fp32: PKG is a T model package, which runs as it is; drop --target (or pass --target T)` ...",
        "2",
        "nothing",
        ("tests/test_engine_package_target.py::test_another_target_with_a_package_is_one_line",),
    ),
    Row(
        "`run --target gpu-fp16` on a machine without the CUDA provider",
        "`needs onnxruntime's CUDAExecutionProvider to build and verify the model, and this machine has none`, "
        "before the guard reads its questions",
        "1",
        "nothing",
        (
            R + "test_a_gpu_target_without_a_gpu_says_so_before_the_guard",
            "tests/test_engine_api.py::test_gpu_target_without_gpu_is_one_line",
        ),
    ),
    Row(
        "`run --max-seq-length 1024` on a 512-position model",
        "`--max-seq-length 1024: the model has only 512 positions; use at most 512` (before any preprocessing)",
        "2",
        "nothing",
        (R + "test_max_seq_length_over_positions_fails_before_work",),
    ),
    Row(
        "512-token features on a package compiled `--seq-len 384`",
        "`was compiled for 384-token inputs; use --max-seq-length 384 (or less)`; without `--max-seq-length`, "
        "features are built at 384",
        "2",
        "nothing",
        ("tests/test_engine_api.py::test_fixed_length_package_refuses_longer_features",),
    ),
    Row(
        "`compile --seq-len 10`",
        "`--seq-len 10: must lie between 68`",
        "2",
        "nothing",
        (R + "test_compile_seq_len_too_short",),
    ),
    Row(
        "`infer --input MISSING`, `evaluate --outputs MISSING`, `bench --seq-len 1024`",
        "`no such folder; pass the features directory from 'spanqa preprocess'` / "
        "`no such directory; run 'spanqa infer' first and pass its -o` / `--seq-len 1024: `",
        "2",
        "nothing",
        (R + "test_missing_inputs_are_usage_errors",),
    ),
    Row(
        "`infer --batch-size 4` on features made at another batch size",
        "`the features' manifest.json says 2; drop --batch-size`",
        "2",
        "nothing",
        ("tests/test_cli_infer.py::test_usage_errors_are_one_line",),
    ),
    Row(
        '`ask --context "Node.js" "What?"` (a passage that looks like a file name)',
        "answers from the passage; stderr: `no such file, so it is the passage itself (a file: --context @FILE)`",
        "0",
        "—",
        ("tests/test_cli_ask.py::test_a_passage_that_looks_like_a_file_name_is_a_passage",),
    ),
    Row(
        '`ask --context ... ""`',
        "`a question is empty`",
        "2",
        "—",
        (R + "test_ask_empty_question",),
    ),
    Row(
        "a paragraph whose context is empty or whitespace",
        "`paragraph 0: the context is empty; every question needs a passage`",
        "3",
        "nothing",
        (R + "test_empty_context_is_an_error_not_a_silent_empty_answer",),
    ),
    Row(
        "a dataset without gold answers",
        "`run` answers it and writes predictions.json + summary.json, no result.json: `no gold answers: nothing scored`",
        "0",
        "predictions",
        (R + "test_dataset_without_answers_is_predicted_not_scored",),
    ),
    Row(
        "a SQuAD 1.1 file where some questions lack gold answers",
        "the labelled ones are scored (`total`), the others counted (`unlabelled` in result.json): "
        "`questions without gold answers were not scored`",
        "0",
        "result",
        (R + "test_a_partly_labelled_file_scores_its_labelled_questions",),
    ),
    Row(
        "`report RESULT_DIR` on a directory `spanqa run` wrote",
        "its rows/s and questions/s, and EM/F1",
        "0",
        "—",
        ("tests/test_report_cli.py::test_plain_report_of_a_run_directory",),
    ),
    Row(
        "`report MISSING` / `report not-json.json`",
        "`no such file or directory; pass an infer log, a summary.json, a result.json or a result directory` / "
        "`not valid JSON (` ...",
        "2 / 3",
        "—",
        ("tests/test_report_cli.py::test_missing_and_non_json_files_exit_2_and_3",),
    ),
    Row(
        "a features dir given as `run --model`",
        "`a features folder (from 'spanqa preprocess'), not a model package`",
        "3",
        "nothing",
        (R + "test_features_folder_is_not_a_model",),
    ),
    Row(
        "`evaluate` with another dataset than the features were built from",
        "`not the dataset the features in` ... were built from",
        "3",
        "nothing",
        (R + "test_evaluate_against_another_dataset",),
    ),
    Row(
        "`infer --resume` into a dir without its `infer_settings.json`",
        "`--resume needs the infer_settings.json of the run it continues`",
        "1",
        "untouched",
        (R + "test_resume_without_settings_refused",),
    ),
    Row(
        "a package written by a newer spanqa",
        "`package format version 99 is newer than this spanqa understands`",
        "3",
        "—",
        ("tests/test_engine_api.py::test_newer_package_format_refused",),
    ),
    Row(
        "a GPU provider that does not start (missing CUDA/TensorRT libs)",
        "`CUDAExecutionProvider did not start` (never a silent CPU run)",
        "1",
        "—",
        ("tests/test_engine_api.py::test_gpu_provider_that_did_not_start_is_an_error",),
    ),
    Row(
        "`compile notqa.onnx`",
        "`not an extractive-QA BERT model (no input input_ids`",
        "1",
        "nothing",
        (R + "test_compile_a_non_qa_onnx_names_the_users_file",),
    ),
    Row(
        "a pickle that would run code as checkpoint",
        "`refused: the file is not a plain tensor state dict and loading it would run arbitrary code`",
        "3",
        "nothing",
        ("tests/test_models_checkpoint.py::test_code_running_pickle_refused",),
    ),
    Row(
        "offline first `spanqa run`",
        "`Error: cannot fetch squad-v1.1-dev (dev-v1.1.json) and squad1 (spanbert_squad1.tar.gz): offline?`",
        "1",
        "nothing",
        ("tests/test_cli_run.py::test_run_offline_says_what_to_download",),
    ),
    Row(
        "an internal error",
        "`internal error (KeyError: 'boom'); this is a bug in spanqa, rerun with --debug`",
        "70",
        "—",
        (R + "test_internal_error_is_one_line_with_exit_70_and_debug_shows_it",),
    ),
    Row(
        "SIGTERM / SIGKILL during `preprocess`, `convert`, `run`",
        "SIGTERM: `Interrupted.`",
        "130 / -9",
        "no artifact (SIGTERM also removes the temp dir; after SIGKILL a hidden `.NAME.*.tmp` may remain, never under the final name)",
        (F + "test_signal_during_preprocess", F + "test_signal_during_convert", F + "test_signal_during_run"),
    ),
    Row(
        "SIGTERM during `infer`",
        "`Interrupted. Finished batches are kept: rerun with --resume to complete`",
        "130",
        "finished output pairs",
        (F + "test_sigterm_during_infer_says_how_to_resume",),
    ),
    Row(
        "SIGKILL during `infer`, then `--resume`",
        "completes the run, redoing only unfinished batches",
        "0",
        "every file complete",
        (F + "test_sigkill_during_infer_then_resume",),
    ),
    Row(
        "two `spanqa run` on one new checkpoint at once",
        "both finish; one conversion (a file lock in the package cache)",
        "0",
        "one cached package",
        (F + "test_two_concurrent_runs_build_once",),
    ),
    Row(
        "`infer` with stderr not a terminal",
        "a plain progress line every 30 s",
        "—",
        "—",
        (R + "test_line_progress_when_not_a_terminal",),
    ),
]


def render(rows=ROWS) -> str:
    lines = [START, "| input or fault | what the user sees | exit | left on disk | checked by |", "|---|---|---:|---|---|"]
    for r in rows:
        tests = ", ".join(f"`{t.split('::')[1]}`" for t in r.tests)
        lines.append(f"| {r.tried} | {r.sees} | {r.exit} | {r.left} | {tests} |")
    lines.append(END)
    return "\n".join(lines)


def fragments(row: Row) -> list[str]:
    """The message parts a test must hold: each `...`-quoted text split at "..." ellipses and at
    placeholders (all-capital words: PKG, T, DIR)."""
    out = []
    for quoted in re.findall(r"`([^`]+)`", row.sees):
        for part in re.split(r"\s*\.\.\.\s*|\b[A-Z][A-Z0-9_]*\b", quoted):
            if len(part.strip()) >= 15 and not part.startswith(("run", "--overwrite")):
                out.append(part.strip())
    return out


def write() -> None:
    text = DOC.read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(head + render() + tail, encoding="utf-8")


if __name__ == "__main__":
    write()
    sys.stdout.write(f"wrote {len(ROWS)} rows to {DOC}\n")
