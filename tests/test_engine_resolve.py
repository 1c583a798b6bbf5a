"""From what a user names to a model package (spanqa.engine.resolve): packages as they are,
checkpoints and .onnx files built once into the package cache, keyed by content."""

from __future__ import annotations

import json
import shutil

import pytest

from spanqa.engine.resolve import cache_key, resolve_model, source_key
from spanqa.errors import UsageError
from spanqa.settings import CompileSettings


def test_checkpoint_is_converted_once_into_cache(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("SPANQA_HOME", str(tmp_path / "home"))
    package, converted = resolve_model(tiny_checkpoint)
    key = cache_key(source_key(tiny_checkpoint), CompileSettings(target="cpu-fp32"))
    assert converted and package.root == tmp_path / "home" / "packages" / f"{tiny_checkpoint.name}-cpu-fp32-{key}"
    assert package.target == "cpu-fp32" and (package.root / "exported.onnx").is_file()
    again, converted_again = resolve_model(tiny_checkpoint)
    assert not converted_again and again.root == package.root
    # Keyed by content, not by path: the same checkpoint copied elsewhere is not converted again.
    copy = tmp_path / "elsewhere" / tiny_checkpoint.name
    shutil.copytree(tiny_checkpoint, copy)
    assert resolve_model(copy) == (again, False)


def test_cache_key_follows_content_and_settings(tiny_checkpoint, tmp_path):
    copy = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, copy)
    source = source_key(copy)
    assert source == source_key(tiny_checkpoint)
    fp32 = cache_key(source, CompileSettings(target="cpu-fp32"))
    assert cache_key(source, CompileSettings(target="cpu-fp32", seq_len=128)) != fp32
    assert cache_key(source, CompileSettings(target="cpu-int8-ort", unguarded=True)) != fp32
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "hidden_dropout_prob": 0.2}))
    assert source_key(copy) != source
    (copy / "config.json").write_text(json.dumps(config))
    (copy / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n")
    assert source_key(copy) != source
    # Data files count by their content, not their path.
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text("{}")
    b.write_text("{}")
    assert cache_key(source, CompileSettings(target="cpu-int8", guard=str(a))) == cache_key(
        source, CompileSettings(target="cpu-int8", guard=str(b))
    )


def test_not_a_model(tmp_path):
    with pytest.raises(UsageError) as exc:
        resolve_model(tmp_path)
    assert str(exc.value) == (
        f"{tmp_path}: is neither a model package, a .onnx file nor a checkpoint directory (config.json + weights); "
        "pass a model package, a .onnx or a checkpoint directory"
    )
    with pytest.raises(UsageError, match="nope: does not exist; pass a model package"):
        resolve_model(tmp_path / "nope")


def test_onnx_with_a_target_is_compiled_into_cache(tiny_package, tmp_path, monkeypatch):
    monkeypatch.setenv("SPANQA_HOME", str(tmp_path / "home"))
    exported = tiny_package / "exported.onnx"
    as_is, built = resolve_model(exported)
    assert not built and as_is.model_path == exported
    # A reduced-precision target is built only with the accuracy guard or an explicit --no-guard.
    with pytest.raises(UsageError) as exc:
        resolve_model(exported, "cpu-int8-ort")
    assert str(exc.value) == (
        "--target cpu-int8-ort is reduced precision: pass --guard DATASET.json (its F1 must stay within "
        "0.5% of fp32's) or --no-guard to build it unmeasured"
    )
    assert not (tmp_path / "home" / "packages").exists() or not any((tmp_path / "home" / "packages").iterdir())
    package, built = resolve_model(exported, "cpu-int8-ort", unguarded=True)
    assert built and package.target == "cpu-int8-ort" and package.root.parent == tmp_path / "home" / "packages"
    assert package.manifest.guard == {"unguarded": True, "passed": False, "reason": "--no-guard"}
    assert not package.manifest.guarded
    assert resolve_model(exported, "cpu-int8-ort", unguarded=True) == (package, False)
    assert resolve_model(package.root) == (package, False)  # a package is used as it is
    with pytest.raises(
        UsageError, match=r"--target cpu-bf16: .* is a cpu-fp32 model package, which runs as it is; drop --target"
    ):
        resolve_model(tiny_package, "cpu-bf16")
