"""Shared fixtures. Helpers that build models live in tests/models.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/models.py

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "data").is_dir():
        pytest.skip(f"{SHARED} is absent: the real SQuAD data and stand-in model live there")
    return SHARED


@pytest.fixture(scope="session")
def dev_json(shared_dir) -> Path:
    return shared_dir / "data" / "squad" / "dev-v1.1.json"


@pytest.fixture(scope="session")
def heldout_json(shared_dir) -> Path:
    return shared_dir / "data" / "squad" / "dev-v1.1-heldout.json"


@pytest.fixture(scope="session")
def standin_dir(shared_dir) -> Path:
    return shared_dir / "models" / "standin-minilm-squad"


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A 2-layer random SpanBERT-format checkpoint (cased vocab size, no vocab file)."""
    from models import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt")


@pytest.fixture(scope="session")
def tiny_package(tiny_checkpoint, tmp_path_factory) -> Path:
    """The tiny checkpoint converted to a cpu-fp32 model package (dynamic shapes)."""
    from spanqa.compile import convert_checkpoint

    out = tmp_path_factory.mktemp("tinypkg") / "pkg"
    convert_checkpoint(tiny_checkpoint, out)
    return out


@pytest.fixture(scope="session")
def standin_package(standin_dir, tmp_path_factory) -> Path:
    """The real stand-in QA model converted to a cpu-fp32 model package (made once per run)."""
    from spanqa.compile import convert_checkpoint

    out = tmp_path_factory.mktemp("standinpkg") / "pkg"
    convert_checkpoint(standin_dir, out)
    return out
