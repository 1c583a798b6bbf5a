"""Shared fixtures. Helpers that build models live in tests/models.py."""

from __future__ import annotations

from pathlib import Path

import pytest

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
