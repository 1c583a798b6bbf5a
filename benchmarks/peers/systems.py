"""Every system of the table, in row order: the peers, then spanqa's targets."""

from __future__ import annotations

from . import hf_pipeline, optimum_openvino, optimum_ort, spanqa_targets, torch_eager
from .base import System

# One module per system family, each exposing ``systems() -> list[System]``.
PEER_MODULES = (hf_pipeline, torch_eager, optimum_ort, optimum_openvino, spanqa_targets)


def all_systems() -> list[System]:
    return [system for module in PEER_MODULES for system in module.systems()]
