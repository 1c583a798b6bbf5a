"""The answering engine's model path (spanqa.engine.core): logits through length-aware batching,
fixed-shape models, feature settings checked against the model, -inf wherever no batch computed a
logit, and parity with PyTorch and with the recipe's padded batches on every held-out feature.

The held-out run is conftest's ``heldout_run`` ('spanqa run' over every held-out question, or
every k-th with ``SPANQA_HELDOUT_STRIDE=k``); the Engine's question-and-answer API is tested in
test_engine_api.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from spanqa.answers.extraction import predict
from spanqa.data.features import build_features
from spanqa.data.squad import read_squad
from spanqa.engine import Engine
from spanqa.errors import InferenceError, UsageError
from spanqa.models.package import open_package
from spanqa.settings import BatchingSettings, EngineSettings, FeatureSettings
from squad_files import subset
from torch_reference import atol, committed_is_current

SEQ = 96  # conftest's tiny_features and fixed_package


def reference(package, features) -> tuple[np.ndarray, np.ndarray]:
    """ONNX Runtime on all features in one padded batch, outside the engine."""
    from spanqa.runtimes import open_runtime

    runtime = open_runtime(package)
    return runtime.run(features.input_ids, features.segment_ids, features.input_mask)


def computed_positions(plan, n: int, width: int) -> np.ndarray:
    """bool [n, width]: the positions some batch of ``plan`` ran."""
    out = np.zeros((n, width), dtype=bool)
    for batch in plan:
        out[batch.rows, : batch.seq_len] = True
    return out


@pytest.fixture(scope="module")
def small_heldout(heldout_json, tmp_path_factory):
    return subset(heldout_json, tmp_path_factory.mktemp("data") / "heldout-60.json", 60)


# ---------------------------------------------------------------------------------------------
# Length-aware batching


def test_length_aware_logits_match_padded(standin_package, small_heldout):
    package = open_package(standin_package)
    features = build_features(read_squad(small_heldout), package.tokenizer)
    with Engine(package) as aware:
        s1, e1, stats1 = aware.logits(features)
        plan = aware.plan(features)
    with Engine(package, settings=EngineSettings(batching=BatchingSettings(length_aware=False))) as padded:
        s2, e2, stats2 = padded.logits(features)
    real = features.input_mask.astype(bool)
    assert np.abs(s1 - s2)[real].max() < 1e-4 and np.abs(e1 - e2)[real].max() < 1e-4
    # -inf exactly where length-aware batching computed nothing; never at a real token.
    computed = computed_positions(plan, len(features), 512)
    assert (computed >= real).all()
    for logits in (s1, e1):
        assert np.array_equal(np.isfinite(logits), computed) and np.isneginf(logits[~computed]).all()
    assert np.isfinite(s2).all() and np.isfinite(e2).all()  # padded: every position ran
    # Length-aware batching ran far fewer positions than the padded path, and no padding rows.
    assert computed.sum() < 0.5 * real.size
    assert stats1.rows == stats2.rows == len(features) and stats1.padded_rows == 0
    assert predict(features, s1, e1)[0] == predict(features, s2, e2)[0]


def test_tiny_length_aware_logits_equal_one_padded_batch(tiny_package, tiny_features):
    # One window per passage, well short of 256 tokens: batches are cut to their longest feature.
    f = build_features(tiny_features.examples, open_package(tiny_package).tokenizer, FeatureSettings(256, 128, 16))
    assert len(f) == len(f.examples) and f.lengths.max() < 240
    with Engine(open_package(tiny_package)) as engine:
        start, end, stats = engine.logits(f)
        computed = computed_positions(engine.plan(f), len(f), 256)
    ref_start, ref_end = reference(tiny_package, f)
    real = f.input_mask.astype(bool)
    assert np.abs(ref_start[real]).max() > 1.0  # logits vary by whole units: 1e-4 means something
    np.testing.assert_allclose(start[real], ref_start[real], atol=1e-4, rtol=0)
    np.testing.assert_allclose(end[real], ref_end[real], atol=1e-4, rtol=0)
    assert np.array_equal(np.isfinite(start), computed) and np.array_equal(np.isfinite(end), computed)
    assert computed.sum() < 0.8 * computed.size and np.isneginf(start[~computed]).all()
    assert stats.rows == len(f) and stats.padded_rows == 0


def test_batch_size_caps_padded_batches(tiny_package, tiny_features):
    f = tiny_features
    settings = EngineSettings(batch_size=3, batching=BatchingSettings(length_aware=False))
    with Engine(open_package(tiny_package), settings=settings) as engine:
        start, end, stats = engine.logits(f)
    ref_start, ref_end = reference(tiny_package, f)
    np.testing.assert_allclose(start, ref_start, atol=1e-4, rtol=0)
    np.testing.assert_allclose(end, ref_end, atol=1e-4, rtol=0)
    assert stats.run_rows == [3, 3, 3, 3, 3, 2] and stats.rows == 17 and stats.padded_rows == 0


# ---------------------------------------------------------------------------------------------
# Fixed-shape models


def test_fixed_shape_model_runs_padded_batches(fixed_package, tiny_package, tiny_features):
    f = tiny_features
    with Engine(open_package(fixed_package)) as engine:
        assert engine.settings.features.max_seq_length == SEQ  # the model's own length by default
        start, end, stats = engine.logits(f)
    ref_start, ref_end = reference(tiny_package, f)
    assert start.shape == end.shape == (len(f), SEQ)
    np.testing.assert_allclose(start, ref_start, atol=1e-3, rtol=0)  # fused vs unfused graph
    np.testing.assert_allclose(end, ref_end, atol=1e-3, rtol=0)
    # Every batch is the model's [4, 96]: the last one padded with zero rows.
    assert stats.batches == -(-len(f) // 4) and stats.rows == len(f) and stats.batch_size == 4
    assert stats.padded_rows == stats.batches * 4 - len(f)


def test_shorter_features_on_a_fixed_length_model(fixed_package, tiny_package, tiny_features):
    short = build_features(tiny_features.examples, open_package(tiny_package).tokenizer, FeatureSettings(64, 16, 16))
    with Engine(open_package(fixed_package), settings=EngineSettings(features=short.settings)) as engine:
        start, end, _ = engine.logits(short)
    ref_start, ref_end = reference(tiny_package, short)
    assert start.shape == (len(short), 64)
    real = short.input_mask.astype(bool)
    np.testing.assert_allclose(start[real], ref_start[real], atol=1e-3, rtol=0)
    np.testing.assert_allclose(end[real], ref_end[real], atol=1e-3, rtol=0)


def test_settings_the_model_cannot_run_are_refused(fixed_package, tiny_package, tiny_features):
    fixed = open_package(fixed_package)
    with pytest.raises(UsageError) as exc:
        Engine(fixed, settings=EngineSettings(features=FeatureSettings(128, 16, 16)))
    assert str(exc.value) == (
        f"--max-seq-length 128: {fixed.root} was compiled for 96-token inputs; "
        "use --max-seq-length 96 (or less), or compile the model with --seq-len 128"
    )
    with pytest.raises(UsageError) as exc:
        Engine(open_package(tiny_package), settings=EngineSettings(features=FeatureSettings(1024)))
    assert str(exc.value) == "--max-seq-length 1024: the model has only 512 positions; use at most 512"
    with Engine(open_package(tiny_package)) as engine:
        assert engine.settings.features == FeatureSettings(max_seq_length=512)
    # Features built elsewhere, longer than the fixed model takes.
    long = build_features(tiny_features.examples, fixed.tokenizer, FeatureSettings(128, 16, 16))
    with Engine(fixed) as engine:
        with pytest.raises(InferenceError) as exc:
            engine.logits(long)
    assert str(exc.value) == "features are 128 tokens long but the model takes 96; rebuild them with --max-seq-length 96"


# ---------------------------------------------------------------------------------------------
# The stand-in on every held-out feature


def test_the_committed_pytorch_reference_is_current(heldout_features, heldout_stride, standin_dir):
    """Its halves' keys are those of today's held-out features, checkpoint, versions and code:
    a stale file would make every run compute PyTorch afresh (~7 min of a worker)."""
    if heldout_stride != 1:
        pytest.skip("SPANQA_HELDOUT_STRIDE: the committed reference holds every held-out feature")
    assert committed_is_current(heldout_features, standin_dir), (
        "stale: run python tests/torch_reference.py and commit tests/data/"
    )


def test_heldout_logits_equal_pytorch_and_the_padded_recipe(
    heldout_run, heldout_features, heldout_torch_logits, heldout_infer_runs
):
    """Length-aware batching (through 'spanqa run') against PyTorch and against 'spanqa infer' at
    batch size 8 on the recipe's 512-token files, at every real token of every feature; -inf
    wherever no batch computed a logit."""
    from spanqa.offline.outputs import read_outputs

    evaluation = heldout_run.evaluation
    f = evaluation.features
    n = len(f)
    assert np.array_equal(f.input_ids, heldout_features.input_ids)
    real = f.input_mask.astype(bool)
    out, _, rows = heldout_infer_runs[8]  # the padded recipe's rows (conftest.BS8_EVERY)
    parts = [read_outputs(out, str(b), 8, 512) for b in range(-(-len(rows) // 8))]
    padded = tuple(np.concatenate([p[k] for p in parts])[: len(rows)] for k in (0, 1))
    for k, ours in enumerate((evaluation.start_logits, evaluation.end_logits)):
        assert ours.shape == (n, 512)
        assert np.abs(ours - heldout_torch_logits[k])[real].max() < atol(1e-4)
        assert np.abs(ours[rows] - padded[k])[real[rows]].max() < 1e-4
        # Each feature's logits are a finite prefix (its batch's padded length, a multiple of 8)
        # then -inf.
        finite = np.isfinite(ours)
        widths = finite.sum(axis=1)
        assert np.array_equal(finite, np.arange(512)[None, :] < widths[:, None])
        assert (finite >= real).all() and (widths % 8 == 0).all()
        assert np.isneginf(ours[~finite]).all()
        assert finite.sum() < 0.5 * real.size
