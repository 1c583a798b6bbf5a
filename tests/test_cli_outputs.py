"""The output rule over every command, generated from the CLI's own command tree.

For every command that declares an output (``spanqa.cli._common.OutputPath``) the test tries: a
user's file at the output path, a user's directory there, each of the command's declared inputs
(``InputPath``), and the command's own earlier artifact without ``--overwrite``. Each must end in
exit 4 with the user's bytes unchanged (a cache-like output declared ``idempotent`` instead says
it is already there, exit 0, and writes nothing). The cases come from walking ``main``: a command
added later is covered by declaring its paths, without editing this file. Sample values are
chosen by an input's role, or for other required parameters by their name.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from spanqa.cli import main
from spanqa.cli._common import InputPath, OutputPath, param_label
from squad_files import tiny_squad_json

SHARED_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad" / "dev-v1.1.json"


def _walk(group: click.Group, prefix: str = ""):
    for name in sorted(group.commands):
        command = group.commands[name]
        if isinstance(command, click.Group):
            yield from _walk(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


COMMANDS = dict(_walk(main))
_PATHS = {id(c): name.split() for name, c in COMMANDS.items()}


def command_path(command: click.Command) -> list[str]:
    return _PATHS[id(command)]


def _cases():
    for name, command in COMMANDS.items():
        for out in (p for p in command.params if isinstance(p.type, OutputPath)):
            inputs = [p for p in command.params if isinstance(p.type, InputPath)]
            for case in ("user-file", "user-dir", *(f"input:{param_label(p)}" for p in inputs), "own-artifact"):
                yield pytest.param(name, out.name, case, id=f"{name} {param_label(out)} {case}")


CASES = list(_cases())


def test_every_command_that_writes_is_covered():
    """The commands known to write must all declare their outputs (a guard on the generator)."""
    covered = {c.values[0] for c in CASES}
    assert {"export", "compile", "convert", "preprocess", "infer", "evaluate", "run", "bench", "download"} <= covered
    for name, command in COMMANDS.items():
        if name in covered:
            continue
        # A command without a declared output has no option that looks like one either.
        for p in command.params:
            assert not ({"-o", "--output", "--out", "--html", "--plot", "--dir"} & set(getattr(p, "opts", []))), (name, p.name)


@pytest.fixture(scope="module")
def samples(tmp_path_factory, tiny_checkpoint, tiny_package):
    """One existing value per input role, and the artifacts the reading commands need."""
    from spanqa.data.folders import preprocess
    from spanqa.data.vocab import TokenizerSettings, default_vocab_path
    from spanqa.offline.evaluate import evaluate
    from spanqa.offline.infer import infer_folders
    from spanqa.settings import AnswerSettings, FeatureSettings, InferSettings

    root = tmp_path_factory.mktemp("samples")
    squad = tiny_squad_json(root / "tiny.json")
    features = root / "features"
    preprocess(squad, features, TokenizerSettings(default_vocab_path(), False), FeatureSettings(96, 16, 16), 4, "bin")
    outputs = root / "outputs"
    infer_folders(tiny_package, features, outputs, InferSettings())
    result = root / "result"
    evaluate(squad, features, outputs, result, AnswerSettings())
    text = root / "passage.txt"
    text.write_text("The Normans gave their name to Normandy.", encoding="utf-8")
    return {
        "squad": squad,
        "model": tiny_package,
        "checkpoint": tiny_checkpoint,
        "onnx": tiny_package / "exported.onnx",
        "features": features,
        "outputs": outputs,
        "result": result,
        "file": text,
    }


# Required parameters that are not paths, by name (download needs a local source: no network).
NAMED = {"asset": "squad-v1.1-dev", "url": str(SHARED_DEV)}
# Optional parameters that only make a run shorter (a timed LoadGen run lasts 30 s by default).
QUICK = {"duration_s": "1", "min_queries": "16"}


def _fingerprint(path: Path) -> dict:
    """Every file's bytes under ``path`` (or of the file itself), by relative name."""
    if path.is_file():
        return {".": hashlib.sha256(path.read_bytes()).hexdigest()}
    if not path.exists():
        return {}
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(path.rglob("*"))
    }


def _argv(command: click.Command, samples: dict, output: click.Parameter, value, set_inputs: dict) -> list[str]:
    args: list[str] = []
    positional: list[str] = []
    for p in command.params:
        if p is output:
            v = value
        elif p.name in set_inputs:
            v = set_inputs[p.name]
        elif isinstance(p.type, InputPath) and (p.required or isinstance(p, click.Argument) or p.type.role == "model"):
            v = samples[p.type.role]
        elif p.name in NAMED and (p.required or isinstance(p, click.Argument) or p.name == "url"):
            v = NAMED[p.name]
        elif p.name in QUICK:
            v = QUICK[p.name]
        elif p.required:
            pytest.fail(f"{command.name}: no sample value for the required parameter {p.name}; add one to NAMED")
        else:
            continue
        if isinstance(p, click.Argument):
            positional.append(str(v))
        else:
            args += [max(p.opts, key=len), str(v)]
    return [*command_path(command), *args, *positional]


def _real_output(output: click.Parameter, params: dict, value) -> tuple[Path, bool]:
    t = output.type
    if t.locate:
        path, _, is_file = t.locate(params, value)
        return Path(path), is_file
    return Path(value), t.file


@pytest.mark.parametrize("name,output_name,case", CASES)
def test_output_rule(name, output_name, case, samples, tmp_path, monkeypatch):
    if not SHARED_DEV.is_file() and name == "download":
        pytest.skip(f"{SHARED_DEV} is absent (download's local source)")
    monkeypatch.setenv("SPANQA_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    command = COMMANDS[name]
    output = next(p for p in command.params if p.name == output_name)
    label = param_label(output)
    named = {p.name: NAMED.get(p.name) for p in command.params}
    set_inputs: dict = {}
    value = tmp_path / "out" / ("artifact.onnx" if output.type.file else "artifact")
    if output.type.file and output.type.kind == "ONNX model":
        value = tmp_path / "out" / "model.onnx"
    real, is_file = _real_output(output, named, value)
    real.parent.mkdir(parents=True, exist_ok=True)
    runner = CliRunner()

    if case == "user-file":
        real.write_bytes(b"the user's own bytes\n")
        watched = real
    elif case == "user-dir":
        real.mkdir()
        (real / "notes.txt").write_text("the user's notes\n", encoding="utf-8")
        watched = real
    elif case.startswith("input:"):
        param = next(p for p in command.params if param_label(p) == case.split(":", 1)[1])
        watched = value = samples[param.type.role]
        if output.type.locate:  # the option names a place: put the input where the output would go
            value = tmp_path / "in"
            watched = _real_output(output, named, value)[0]
            watched.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(samples[param.type.role], watched)
        set_inputs[param.name] = watched
    else:  # own-artifact: the command's first run makes it
        first = runner.invoke(main, _argv(command, samples, output, value, set_inputs))
        assert first.exit_code == 0, (first.output, repr(first.exception))
        watched = real
        assert watched.exists(), f"{name} wrote nothing at {watched}"
    before = _fingerprint(watched)
    result = runner.invoke(main, _argv(command, samples, output, value, set_inputs))
    assert _fingerprint(watched) == before, f"{name} {label}: the bytes at {watched} changed"
    if case == "own-artifact" and output.type.idempotent:
        assert result.exit_code == 0, result.output
        assert "already" in result.output
        return
    assert result.exit_code == 4, (result.exit_code, result.output, repr(result.exception))
    line = result.output.strip().splitlines()[-1]
    assert line.startswith(f"Error: {label} "), line
    expected = {
        "user-file": "spanqa did not write" if is_file else "is not a directory",
        "user-dir": "spanqa did not write" if not is_file else "is a directory",
        "own-artifact": "pass --overwrite to replace it",
    }.get(case, "that is (or holds) the input")
    assert expected in line, line


def test_overwrite_replaces_only_spanqa_files(tmp_path, tiny_package, monkeypatch):
    """--overwrite replaces a file spanqa wrote, never one the user changed since."""
    from spanqa.fileutil import file_marker

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "bench.json"
    args = ["bench", "--model", str(tiny_package), "--batch-sizes", "1", "--seq-len", "16", "--repeat", "1", "-o", str(out)]
    assert CliRunner().invoke(main, args).exit_code == 0
    assert file_marker(out).is_file()
    again = CliRunner().invoke(main, [*args, "--overwrite"])
    assert again.exit_code == 0, again.output
    out.write_text(out.read_text(encoding="utf-8") + " ", encoding="utf-8")  # the user edits it
    edited = out.read_bytes()
    refused = CliRunner().invoke(main, [*args, "--overwrite"])
    assert refused.exit_code == 4
    assert "spanqa did not write" in refused.output
    assert out.read_bytes() == edited
