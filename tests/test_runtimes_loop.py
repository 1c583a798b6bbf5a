"""Running batches (spanqa.runtimes.loop): warm-up and timed runs, rows, one-line runtime
failures, and the fit of inputs to a fixed-shape model checked before anything runs."""

from __future__ import annotations

import numpy as np
import pytest

from spanqa.errors import InferenceError
from spanqa.offline.infer import synthetic_batch
from spanqa.runtimes.loop import check_model_fit, run_batches


class FakeRuntime:
    name = "fake"
    batch_size = None
    seq_len = None

    def __init__(self):
        self.calls = 0

    def run(self, ids, types, mask):
        self.calls += 1
        return ids.astype(np.float32), -ids.astype(np.float32)


def test_run_batches_warmup_loop_and_rows():
    rt = FakeRuntime()
    mask = np.ones((2, 3), np.int64)
    mask[1] = 0  # a padding row
    batches = [synthetic_batch(2, 3, seed=i)._replace(key=str(i), attention_mask=mask) for i in range(3)]
    seen = []
    stats = run_batches(rt, batches, warmup=2, loop=3, on_output=lambda b, s, e: seen.append((b.key, s.copy())))
    assert rt.calls == 2 + 3 * 3
    assert stats.timed_runs == 9 and stats.batches == 3 and stats.rows == 3 and stats.padded_rows == 3
    assert [k for k, _ in seen] == ["0", "1", "2"]
    np.testing.assert_array_equal(seen[1][1], batches[1].input_ids.astype(np.float32))


def test_runtime_failure_is_one_line():
    class Broken(FakeRuntime):
        def run(self, ids, types, mask):
            raise RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : index 40000 out of range\nstack...")

    with pytest.raises(InferenceError) as exc:
        run_batches(Broken(), [synthetic_batch(1, 4)])
    assert str(exc.value) == "batch synthetic: fake failed ([ONNXRuntimeError] : 2 : INVALID_ARGUMENT : index 40000 out of range)"


def test_logits_of_the_wrong_shape_are_refused():
    class Short(FakeRuntime):
        def run(self, ids, types, mask):
            return ids[:, :-1].astype(np.float32), ids[:, :-1].astype(np.float32)

    with pytest.raises(InferenceError) as exc:
        run_batches(Short(), [synthetic_batch(2, 4)])
    assert str(exc.value) == "batch synthetic: fake returned logits of shape (2, 3)/(2, 3) for inputs (2, 4)"


def test_check_model_fit_names_the_fix():
    check_model_fit(4, 128, 512, 4, 128)  # fits
    check_model_fit(None, None, 512, 7, 300)  # a dynamic model takes any shape within its positions
    with pytest.raises(InferenceError) as exc:
        check_model_fit(4, 128, 512, 4, 96)
    assert str(exc.value) == (
        "features have sequence length 96 but the model is compiled for 128; "
        "preprocess with --max-seq-length 128 or compile the model with --seq-len 96"
    )
    with pytest.raises(InferenceError) as exc:
        check_model_fit(None, None, 512, 1, 1024, where="--batch-size/--seq-len")
    assert str(exc.value) == (
        "--batch-size/--seq-len have sequence length 1024 but the model has only 512 positions; "
        "preprocess with --max-seq-length 512"
    )
    with pytest.raises(InferenceError) as exc:
        check_model_fit(4, None, 512, 8, 128)
    assert str(exc.value) == (
        "features have batch size 8 but the model is compiled for batch size 4; "
        "preprocess with --batch-size 4 or compile the model with --batch-size 8"
    )


class StreamsRuntime(FakeRuntime):
    """Two calls at once, the first batch slow: outputs must still reach the sink in order."""

    parallel = 2

    def __init__(self):
        import threading

        super().__init__()
        self.lock = threading.Lock()
        self.active = self.most = 0

    def run(self, ids, types, mask):
        import time

        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
        time.sleep(0.2 if ids[0, 0] == 0 else 0.02)
        with self.lock:
            self.active -= 1
        return super().run(ids, types, mask)


def test_parallel_runtime_runs_batches_at_once_and_hands_them_on_in_order():
    rt = StreamsRuntime()
    batches = [synthetic_batch(2, 3, seed=i)._replace(key=str(i)) for i in range(6)]
    batches = [b._replace(input_ids=np.full_like(b.input_ids, i)) for i, b in enumerate(batches)]
    seen = []
    stats = run_batches(rt, batches, warmup=1, on_output=lambda b, s, e: seen.append((b.key, float(s[0, 0]))))
    assert rt.most == 2  # two in flight, never more than the runtime's streams
    assert rt.calls == 1 + 6
    assert seen == [(str(i), float(i)) for i in range(6)]
    assert stats.streams == 2 and stats.batches == 6 and stats.timed_runs == 6
    # Model time counts the two streams once: about the sum of latencies over two.
    assert stats.to_json()["inference_s"] == pytest.approx(sum(stats.latencies_ms) / 2000.0)


def test_parallel_runtime_failure_stops_the_run():
    class Failing(StreamsRuntime):
        def run(self, ids, types, mask):
            if ids[0, 0] == 3:
                raise RuntimeError("device lost\ndetails")
            return super().run(ids, types, mask)

    batches = [synthetic_batch(2, 3, seed=i)._replace(key=str(i), input_ids=np.full((2, 3), i, np.int64)) for i in range(8)]
    seen = []
    with pytest.raises(InferenceError, match=r"^batch 3: fake failed \(device lost\)$"):
        run_batches(Failing(), batches, on_output=lambda b, s, e: seen.append(b.key))
    assert seen == ["0", "1", "2"]
