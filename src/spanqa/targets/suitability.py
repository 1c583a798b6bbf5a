"""Which targets suit this machine, and the fastest of them (``--target auto``).

Read from the CPU's flags and the installed backends, not guessed: a CPU without AVX512-BF16 or
AMX cannot compute bf16 natively, and one without VNNI runs int8 through slow emulation
(measured on an AVX2-only machine: OpenVINO int8 slower than fp32).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from spanqa.registry import TARGETS, TargetEntry
from spanqa.sysinfo import cpu_flags

# Fastest first, as measured on SpanBERT-base (README): int8 with VNNI, then bf16, then fp32.
PREFERENCE = ("cpu-int8", "cpu-bf16", "cpu-int8-ort", "cpu-fp32")


@dataclass(frozen=True)
class Suitability:
    target: TargetEntry
    status: str  # "ok", "slow here", "no bf16", "no GPU", "needs [extra]"
    best: bool = False

    @property
    def usable(self) -> bool:
        return self.status == "ok"


def _gpu_providers() -> list[str]:
    if importlib.util.find_spec("onnxruntime") is None:
        return []
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def _status(target: TargetEntry, flags: set[str], providers: list[str]) -> str:
    if target.provider:
        return "ok" if target.provider in providers else "no GPU"
    backend = "openvino" if target.runtime == "openvino" else "onnxruntime"
    if importlib.util.find_spec(backend) is None:
        return f"needs [{target.extra}]"
    if target.precision == "bf16" and not flags & {"avx512_bf16", "amx_bf16"}:
        return "no bf16"
    if target.precision == "int8" and not flags & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        return "slow here"
    return "ok"


def suitability(flags: list[str] | None = None) -> list[Suitability]:
    """Every target with its status on this machine; the fastest usable CPU one marked best."""
    have = set(cpu_flags() if flags is None else flags)
    providers = _gpu_providers()
    rows = {name: Suitability(t, _status(t, have, providers)) for name, t in sorted(TARGETS.items())}
    best = auto_target(rows)
    return [Suitability(r.target, r.status, r.target.name == best) for r in rows.values()]


def auto_target(rows: dict[str, Suitability] | None = None) -> str:
    """The fastest target that runs natively here (cpu-fp32 when nothing else does)."""
    rows = rows if rows is not None else {r.target.name: r for r in suitability()}
    return next((name for name in PREFERENCE if rows[name].usable), "cpu-fp32")
