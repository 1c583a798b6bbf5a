"""Model packages (spanqa.models.package) and their typed manifest (spanqa.models.manifest): what
opens, what is refused with a one-line error, and what a newer spanqa wrote."""

from __future__ import annotations

import json
import shutil

import pytest

from spanqa.errors import PackageError
from spanqa.fileutil import sha256_file
from spanqa.models.manifest import FORMAT_VERSION, Manifest, Shapes
from spanqa.models.package import open_package


@pytest.fixture
def package_copy(tiny_package, tmp_path):
    out = tmp_path / "pkg"
    shutil.copytree(tiny_package, out)
    return out


def _edit_manifest(root, **changes):
    data = json.loads((root / "manifest.json").read_text())
    data.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del data[key]
    (root / "manifest.json").write_text(json.dumps(data))


def test_open_package(tiny_package):
    package = open_package(tiny_package)
    assert (package.target, package.precision, package.runtime) == ("cpu-fp32", "fp32", "onnxruntime")
    assert package.is_package and package.model_path == tiny_package / "model.onnx"
    assert package.manifest.shapes == Shapes(None, None, 512) and package.max_positions == 512
    assert (package.batch_size, package.seq_len) == (None, None)
    assert package.manifest.format_version == FORMAT_VERSION and package.manifest.extra == {}
    assert package.tokenizer.vocab_path == tiny_package / "vocab.txt" and package.tokenizer.do_lower_case is False
    assert package.sha256() == sha256_file(tiny_package / "model.onnx")
    # The manifest reads back to what was written, key for key.
    assert package.manifest.to_json() == json.loads((tiny_package / "manifest.json").read_text())


def test_a_bare_onnx_is_an_fp32_model(tiny_package):
    package = open_package(tiny_package / "exported.onnx")
    assert (package.target, package.precision, package.runtime) == ("onnx", "fp32", "onnxruntime")
    assert not package.is_package and package.manifest.format == "onnx"
    assert package.manifest.shapes == Shapes(None, None, 512)
    assert package.tokenizer.do_lower_case is False


def test_unknown_keys_are_kept(package_copy):
    _edit_manifest(package_copy, added_later={"a": 1})
    manifest = open_package(package_copy).manifest
    assert manifest.extra == {"added_later": {"a": 1}}
    assert manifest.to_json()["added_later"] == {"a": 1}
    assert Manifest.from_json(manifest.to_json(), "x") == manifest


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"format_version": FORMAT_VERSION + 1},
            f"package format version {FORMAT_VERSION + 1} is newer than this spanqa understands ({FORMAT_VERSION}); "
            "upgrade spanqa or re-run 'spanqa compile' with this one",
        ),
        ({"runtime": None, "target": 7}, "the manifest lacks target, runtime; re-run 'spanqa compile'"),
        ({"shapes": [4, 96]}, "'shapes' is not an object; re-run 'spanqa compile'"),
    ],
)
def test_bad_manifests_are_refused(package_copy, changes, message):
    _edit_manifest(package_copy, **changes)
    with pytest.raises(PackageError) as exc:
        open_package(package_copy)
    assert str(exc.value) == f"{package_copy / 'manifest.json'}: {message}"


def test_what_is_not_a_package(package_copy, tmp_path):
    (package_copy / "model.onnx").unlink()
    with pytest.raises(PackageError) as exc:
        open_package(package_copy)
    assert str(exc.value) == f"{package_copy}: the manifest names model.onnx, which is missing; re-run 'spanqa compile'"
    with pytest.raises(PackageError) as exc:
        open_package(tmp_path)
    assert str(exc.value) == (
        f"{tmp_path}: not a model package (no manifest.json); make one with 'spanqa compile' or 'spanqa convert', "
        "or pass a .onnx file"
    )
    features = tmp_path / "features"
    features.mkdir()
    (features / "manifest.json").write_text(json.dumps({"kind": "spanqa-features"}))
    with pytest.raises(PackageError, match="a features folder \\(from 'spanqa preprocess'\\), not a model package"):
        open_package(features)
    with pytest.raises(PackageError) as exc:
        open_package(tmp_path / "nope.onnx")
    assert str(exc.value) == f"{tmp_path / 'nope.onnx'}: no such model package or .onnx file"
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(PackageError, match=r"bad\.onnx: not a readable ONNX model \("):
        open_package(tmp_path / "bad.onnx")
