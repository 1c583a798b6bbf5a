"""Feature folders (spanqa.data.folders): the recipe's input_ids/, input_mask/, segment_ids/ plus
metadata, written atomically, read back exactly, and refused when inconsistent."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spanqa.data.features import build_features
from spanqa.data.folders import load_features, preprocess, read_features_manifest, write_features
from spanqa.data.squad import read_squad
from spanqa.data.vocab import default_vocab_path
from spanqa.errors import DatasetError, FeaturesError, OutputError
from spanqa.fileutil import MARKER, sha256_file
from spanqa.settings import FeatureSettings
from squad_files import squad_json, tokenizer


@pytest.fixture(scope="module")
def small_features(tmp_path_factory):
    path = squad_json(
        tmp_path_factory.mktemp("small") / "small.json",
        [
            ("The Normans gave their name to Normandy, a region in France. " * 6, ["Who?", "What region?"]),
            ("Short one.", ["Is it short?", "", "Really?"]),
        ],
    )
    features = build_features(read_squad(path), tokenizer(False), FeatureSettings(40, 16, 8))
    return path, features


def _assert_same(a, b):
    assert a.settings == b.settings
    for name in ("input_ids", "input_mask", "segment_ids", "example_index", "span_index"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
        assert getattr(a, name).dtype == np.int64
    assert a.tokens == b.tokens
    assert a.token_to_orig_map == b.token_to_orig_map
    assert a.token_is_max_context == b.token_is_max_context
    assert [_stored(ex) for ex in a.examples] == [_stored(ex) for ex in b.examples]


def _stored(ex):
    """What a features directory keeps of an example (the passage's text and word offsets stay
    with the dataset: answers written from features need only its words)."""
    return (ex.qas_id, ex.question_text, ex.doc_tokens, ex.answers, ex.is_impossible)


@pytest.mark.parametrize("fmt", ["bin", "npy"])
def test_write_then_load_round_trip(tmp_path, small_features, fmt):
    dataset, features = small_features
    n = len(features)
    assert n == 13
    out = tmp_path / "features"
    manifest = write_features(features, out, batch_size=4, fmt=fmt, tokenizer=tokenizer(False), dataset=dataset)
    assert manifest == read_features_manifest(out)

    assert {
        k: manifest[k]
        for k in (
            "format",
            "batch_size",
            "max_seq_length",
            "num_features",
            "num_batches",
            "num_padding_rows",
            "num_examples",
            "num_contexts",
            "unique_id_base",
            "do_lower_case",
            "dataset",
            "dataset_sha256",
            "vocab_sha256",
        )
    } == {
        "format": fmt,
        "batch_size": 4,
        "max_seq_length": 40,
        "num_features": n,
        "num_batches": 4,
        "num_padding_rows": 3,
        "num_examples": 5,
        "num_contexts": 2,
        "unique_id_base": 1000000000,
        "do_lower_case": False,
        "dataset": "small.json",
        "dataset_sha256": sha256_file(dataset),
        "vocab_sha256": sha256_file(default_vocab_path()),
    }
    assert manifest["settings"] == {"max_seq_length": 40, "doc_stride": 16, "max_query_length": 8, "do_lower_case": False}
    for name in ("input_ids", "input_mask", "segment_ids"):
        files = sorted(p.name for p in (out / name).iterdir())
        assert files == [f"0.{fmt}", f"1.{fmt}", f"2.{fmt}", f"3.{fmt}"]
        last = out / name / f"3.{fmt}"
        if fmt == "bin":
            assert last.stat().st_size == 4 * 40 * 8
            raw = np.frombuffer(last.read_bytes(), dtype="<i8").reshape(4, 40)
        else:
            raw = np.load(last, allow_pickle=False)
            assert raw.dtype == np.dtype("<i8") and raw.shape == (4, 40)
        assert np.array_equal(raw[:1], getattr(features, name)[12:13])
        assert raw[0].any() and not raw[1:].any()  # one real row, three padding rows
    _assert_same(load_features(out), features)


def test_small_features_layout(small_features):
    _, f = small_features
    assert f.example_index.tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 3, 4]
    assert f.span_index.tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 0, 0]
    # Exact values for the short context, question "Is it short?":
    i = f.example_index.tolist().index(2)
    assert f.tokens[i] == ["[CLS]", "Is", "it", "short", "?", "[SEP]", "Short", "one", ".", "[SEP]"]
    assert f.token_to_orig_map[i] == {6: 0, 7: 1, 8: 1}
    assert f.token_is_max_context[i] == {6: True, 7: True, 8: True}
    assert f.segment_ids[i, :11].tolist() == [0] * 6 + [1] * 4 + [0]
    assert f.input_mask[i].sum() == 10
    assert f.unique_ids[i] == 1000000000 + i


def test_write_replaces_a_features_dir_only_with_overwrite(tmp_path, small_features):
    _, features = small_features
    out = tmp_path / "out"
    write_features(features, out, batch_size=2)
    assert json.loads((out / MARKER).read_text()) == {"kind": "features"}
    with pytest.raises(OutputError) as exc:
        write_features(features, out, batch_size=5, fmt="npy")
    assert str(exc.value) == f"-o {out}: a features is already there; pass --overwrite to replace it"
    assert read_features_manifest(out)["batch_size"] == 2
    write_features(features, out, batch_size=5, fmt="npy", overwrite=True)
    assert read_features_manifest(out)["batch_size"] == 5
    assert sorted(p.name for p in (out / "input_ids").iterdir()) == ["0.npy", "1.npy", "2.npy"]

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("keep me")
    with pytest.raises(OutputError) as exc:
        write_features(features, precious, overwrite=True)
    assert str(exc.value) == (
        f"-o {precious}: the directory holds files spanqa did not write; name a new or empty directory for the features"
    )
    assert [p.name for p in precious.iterdir()] == ["thesis.tex"]


def test_failed_write_leaves_nothing(tmp_path, small_features, monkeypatch):
    _, features = small_features
    import spanqa.data.folders

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    # Fails after every batch file is written: the half-made directory must vanish.
    monkeypatch.setattr(spanqa.data.folders.np, "savez_compressed", no_space)
    with pytest.raises(OSError, match="No space left"):
        write_features(features, tmp_path / "out", batch_size=2)
    assert list(tmp_path.iterdir()) == []


def test_preprocess_refuses_a_bad_output_before_reading_the_dataset(tmp_path):
    dataset = tmp_path / "broken.json"
    dataset.write_text("{not json", encoding="utf-8")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(OutputError, match="the directory holds files spanqa did not write"):
        preprocess(dataset, mine, tokenizer(False))
    with pytest.raises(OutputError, match="that is \\(or holds\\) the input"):
        preprocess(dataset, tmp_path, tokenizer(False))
    with pytest.raises(DatasetError, match="not valid JSON"):
        preprocess(dataset, tmp_path / "new", tokenizer(False))
    assert not (tmp_path / "new").exists()


def test_preprocess_in_memory_equals_written(tmp_path, small_features):
    dataset, features = small_features
    built, manifest = preprocess(dataset, tmp_path / "f", tokenizer(False), features.settings, batch_size=3)
    _assert_same(built, features)
    _assert_same(load_features(tmp_path / "f"), features)
    assert manifest == read_features_manifest(tmp_path / "f") and manifest["num_batches"] == 5
    assert preprocess(dataset, None, tokenizer(False), features.settings)[1] is None


def test_load_rejects_inconsistent_dirs(tmp_path, small_features):
    _, features = small_features
    out = tmp_path / "f"
    with pytest.raises(FeaturesError, match=r"no manifest.json; not a features directory"):
        load_features(out)
    write_features(features, out, batch_size=4, overwrite=True)

    (out / "segment_ids" / "2.bin").unlink()
    with pytest.raises(FeaturesError, match=r"segment_ids: expected 4 files 0.bin..3.bin; missing 2.bin$"):
        load_features(out)
    write_features(features, out, batch_size=4, overwrite=True)

    with open(out / "input_mask" / "1.bin", "r+b") as fh:
        fh.truncate(100)
    with pytest.raises(
        FeaturesError, match=r"input_mask/1.bin: 100 bytes, expected 1280 \(int64 \[4, 40\]\); re-run spanqa preprocess$"
    ):
        load_features(out)
    write_features(features, out, batch_size=4, overwrite=True)

    block = np.fromfile(out / "input_ids" / "3.bin", dtype="<i8")
    block[-1] = 7
    block.tofile(out / "input_ids" / "3.bin")
    with pytest.raises(FeaturesError, match=r"padding rows after row 13 are not zero"):
        load_features(out)
    write_features(features, out, batch_size=4, overwrite=True)

    manifest = json.loads((out / "manifest.json").read_text())
    manifest["num_features"] = 12
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FeaturesError, match=r"padding rows after row 12 are not zero"):
        load_features(out)
    write_features(features, out, batch_size=4, overwrite=True)

    np.savez(out / "features.npz", **{k: v[:-1] for k, v in np.load(out / "features.npz").items()})
    with pytest.raises(FeaturesError, match=r"features.npz 'unique_id' has 12 rows, expected 13"):
        load_features(out)
