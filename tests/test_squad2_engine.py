"""The Python API and `spanqa ask` with a model package built for SQuAD 2.0."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from spanqa.answers.squad2 import detect_squad_version, package_squad_version
from spanqa.cli import main
from spanqa.engine import Engine
from spanqa.models.package import open_package
from spanqa.settings import AnswerSettings, EngineSettings

CONTEXT = "The Eiffel Tower was completed in 1889. It stands on the Champ de Mars in Paris."


@pytest.fixture(scope="module")
def squad2_package(standin_package, tmp_path_factory):
    """The stand-in's package, recorded as fine-tuned for SQuAD 2.0 (as `convert --squad-version
    2` records it); the model files are linked, not copied."""
    out = tmp_path_factory.mktemp("pkg2") / "pkg"
    out.mkdir()
    for f in standin_package.iterdir():
        (out / f.name).symlink_to(f)
    manifest = json.loads((standin_package / "manifest.json").read_text())
    manifest["settings"]["squad_version"] = 2
    (out / "manifest.json").unlink()
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_detects_squad_version_from_names(tmp_path):
    assert detect_squad_version(tmp_path / "spanbert-base-squad2") == 2
    assert detect_squad_version(tmp_path / "bert_squad_v2.0.onnx") == 2
    assert detect_squad_version(tmp_path / "spanbert-squad1") == 1
    assert detect_squad_version(tmp_path / "standin-minilm-squad") is None
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"_name_or_path": "deepset/roberta-base-squad2"}))
    assert detect_squad_version(ckpt) == 2


def test_squad11_package_answers_as_before(standin_package):
    assert package_squad_version(open_package(standin_package)) is None
    with Engine.load(standin_package, threads=2) as engine:
        assert engine.settings.answers.version_2_with_negative is False
        a = engine.answer("When was the Eiffel Tower completed?", CONTEXT)
        assert a.text == "1889" and a.null_odds is None
        # The pipeline's handle_impossible_answer turns the null answer on for one call.
        b = engine.answer("When was the Eiffel Tower completed?", CONTEXT, handle_impossible_answer=True)
        assert b.text == "1889" and b.null_odds is not None and b.null_odds < 0


def test_squad2_package_says_no_answer(squad2_package):
    assert package_squad_version(open_package(squad2_package)) == 2
    question = "When was the Eiffel Tower completed?"
    with Engine.load(squad2_package, threads=2) as engine:
        assert engine.settings.answers.version_2_with_negative is True
        span = engine.answer(question, CONTEXT)
        assert span.text == "1889" and span.null_odds < 0
        # A threshold below the question's odds: the model's answer is "no answer".
        strict = AnswerSettings(null_score_diff_threshold=span.null_odds - 0.5)
    with Engine.load(squad2_package, threads=2, settings=EngineSettings(answers=strict)) as engine:
        none, second = engine.answer(question, CONTEXT, top_k=2)
        assert (none.text, none.start, none.end) == ("", 0, 0)
        assert none.null_odds == pytest.approx(span.null_odds)
        # Its logits are the null score's; the best span follows.
        assert none.start_logit + none.end_logit == pytest.approx(span.null_odds + span.start_logit + span.end_logit, abs=1e-4)
        assert second.text == "1889"
        assert none.to_json()["null_odds"] == none.null_odds
        off = engine.answer(question, CONTEXT, handle_impossible_answer=False)
        assert off.text == "1889" and off.null_odds is None


def test_ask_shows_no_answer(squad2_package):
    r = CliRunner().invoke(
        main,
        ["ask", "--model", str(squad2_package), "--context", CONTEXT, "When was the Eiffel Tower completed?", "-q"]
        + ["--null-score-diff-threshold", "-1000"],
    )
    assert r.exit_code == 0, r.output
    assert "  -> (no answer)  (p=" in r.output and ", null odds " in r.output


def test_convert_records_the_squad_version(tiny_checkpoint, tmp_path):
    for args, want in ((["--squad-version", "2"], 2), ([], None)):
        out = tmp_path / f"pkg{len(args)}"
        r = CliRunner().invoke(main, ["convert", str(tiny_checkpoint), "-o", str(out), "-q", *args])
        assert r.exit_code == 0, r.output
        assert json.loads((out / "manifest.json").read_text())["settings"]["squad_version"] == want
    with Engine.load(tmp_path / "pkg2", threads=1) as engine:
        assert engine.settings.answers.version_2_with_negative is True
