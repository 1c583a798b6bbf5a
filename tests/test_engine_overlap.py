"""The engine's overlapped stages (spanqa.engine.overlap): more questions than one chunk run as a
pipeline whose answers, features and logits equal the one-pass path's."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from spanqa.data.features import Features, build_features
from spanqa.data.squad import read_squad
from spanqa.engine import Engine
from spanqa.errors import UsageError
from spanqa.models.package import open_package
from squad_files import subset


@pytest.fixture(scope="module")
def heldout_40(heldout_json, tmp_path_factory):
    return read_squad(subset(heldout_json, tmp_path_factory.mktemp("data") / "heldout-40.json", 40))


def test_chunked_prediction_equals_one_pass(standin_package, heldout_40):
    with Engine(open_package(standin_package)) as engine:
        whole = engine.predict(heldout_40, spans=True)
        chunked = engine.with_settings(replace(engine.settings, stream_questions=7)).predict(heldout_40, spans=True)
    assert len(heldout_40) > 7 * 5  # six chunks
    assert chunked.predictions == whole.predictions
    assert chunked.nbest.keys() == whole.nbest.keys()
    for qid, cands in whole.nbest.items():
        other = chunked.nbest[qid]
        assert [c["text"] for c in other] == [c["text"] for c in cands]
        np.testing.assert_allclose([c["probability"] for c in other], [c["probability"] for c in cands], rtol=1e-5)
    # Features equal, example indexes shifted back to the whole list.
    assert np.array_equal(chunked.features.input_ids, whole.features.input_ids)
    assert np.array_equal(chunked.features.example_index, whole.features.example_index)
    assert chunked.features.tokens == whole.features.tokens
    assert [e.qas_id for e in chunked.features.examples] == [e.qas_id for e in heldout_40]
    # Logits on every real token agree (other batches, other padding: float noise only).
    real = whole.features.input_mask.astype(bool)
    np.testing.assert_allclose(chunked.start_logits[real], whole.start_logits[real], atol=1e-4)
    np.testing.assert_allclose(chunked.end_logits[real], whole.end_logits[real], atol=1e-4)
    assert chunked.stats.rows == whole.stats.rows == len(whole.features)
    assert set(chunked.timings) == {"preprocess_s", "inference_s", "answers_s", "wall_s"}
    assert chunked.questions_per_s == pytest.approx(len(heldout_40) / chunked.timings["wall_s"])


def test_features_concat_shifts_example_indexes(standin_package, heldout_40):
    tokenizer = open_package(standin_package).tokenizer
    parts = [build_features(heldout_40[:15], tokenizer), build_features(heldout_40[15:], tokenizer)]
    whole = build_features(heldout_40, tokenizer)
    joined = Features.concat(parts)
    for name in ("input_ids", "input_mask", "segment_ids", "example_index", "span_index"):
        assert np.array_equal(getattr(joined, name), getattr(whole, name)), name
    assert joined.token_to_orig_map == whole.token_to_orig_map
    assert joined.token_is_max_context == whole.token_is_max_context


def test_an_error_in_a_later_chunk_reaches_the_caller(standin_package, heldout_40, monkeypatch):
    import threading

    with Engine(open_package(standin_package)) as engine:
        chunked = engine.with_settings(replace(engine.settings, stream_questions=10))
        calls = []
        real_features = Engine.features

        def features(self, examples):
            calls.append(len(examples))
            if len(calls) == 3:
                raise UsageError("question x: 'question' is empty")
            return real_features(self, examples)

        monkeypatch.setattr(Engine, "features", features)
        with pytest.raises(UsageError, match="'question' is empty"):
            chunked.predict(heldout_40)
    assert calls == [10, 10, 10]  # the fourth chunk was never started
    assert not [t for t in threading.enumerate() if t.name.startswith("spanqa-stages")]
