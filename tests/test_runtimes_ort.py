"""ONNX Runtime's session options as spanqa sets them: the threads it was given, and no spinning
when OMP_WAIT_POLICY=PASSIVE says the process shares its cores."""

from __future__ import annotations

import pytest

from spanqa.models.package import open_package
from spanqa.runtimes import RuntimeOptions
from spanqa.runtimes.ort import OrtRuntime

SPIN = "session.intra_op.allow_spinning"


@pytest.mark.parametrize(("policy", "spinning"), [("PASSIVE", "0"), ("ACTIVE", None), ("", None)])
def test_threads_and_spinning(tiny_package, monkeypatch, policy, spinning):
    monkeypatch.setenv("OMP_WAIT_POLICY", policy)
    runtime = OrtRuntime(open_package(tiny_package), RuntimeOptions(threads=2))
    options = runtime.session.get_session_options()
    assert options.intra_op_num_threads == 2 and options.inter_op_num_threads == 1
    try:
        set_to = options.get_session_config_entry(SPIN)
    except RuntimeError:  # not set: ORT's default, which spins
        set_to = None
    assert set_to == spinning
