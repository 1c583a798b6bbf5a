"""What this machine offers a process: usable cores (affinity, cgroup CPU quota, physical
cores), the CPU's model and instruction-set flags, and SIGTERM handling for long work."""

from __future__ import annotations

import math
import os
import platform
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
# Flags that decide which targets run natively (names as /proc/cpuinfo spells them).
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def _affinity() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs a container's quota allows (cgroup v2 cpu.max or v1 cfs quota), None when unlimited."""
    candidates = [(root / "cpu.max", None), (root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us")]
    for quota_file, period_file in candidates:
        try:
            if period_file is None:
                quota, period = quota_file.read_text().split()[:2]
            else:
                quota, period = quota_file.read_text().strip(), period_file.read_text().strip()
        except (OSError, ValueError):
            continue
        if quota in ("max", "-1"):
            return None
        try:
            return max(float(quota) / float(period), 0.0) or None
        except (ValueError, ZeroDivisionError):
            continue
    return None


def physical_cores(cpus: list[int] | None = None, cpuinfo: str | None = None) -> int:
    """Distinct physical cores among ``cpus`` (hyper-threads share one); the count of ``cpus``
    when /proc/cpuinfo does not say."""
    cpus = cpus if cpus is not None else _affinity()
    try:
        text = cpuinfo if cpuinfo is not None else Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return len(cpus)
    cores, current = set(), {}
    for block in text.split("\n\n"):
        current = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        current = {k.strip(): v.strip() for k, v in current.items()}
        if "processor" in current and int(current["processor"]) in cpus:
            if "core id" not in current:
                return len(cpus)
            cores.add((current.get("physical id", "0"), current["core id"]))
    return len(cores) or len(cpus)


def usable_cores() -> int:
    """The physical cores this process may use, capped by a container's CPU quota: the CPUs a
    local Ray started by spanqa offers."""
    cores = physical_cores()
    limit = cgroup_cpu_limit()
    if limit is not None:
        cores = min(cores, max(1, math.floor(limit)))
    return max(1, cores)


def default_threads() -> int:
    """Inference threads by default: the usable cores (ONNX Runtime and OpenVINO would otherwise
    size their pools from the whole machine's cores), or fewer where OMP_NUM_THREADS says so:
    the convention a batch system, Ray (for its workers) or a user sharing the machine sets."""
    cores = usable_cores()
    try:
        cap = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:  # unset, or a list such as "4,2" (nested levels): the cores decide
        return cores
    return max(1, min(cores, cap))


def passive_wait() -> bool:
    """OMP_WAIT_POLICY=PASSIVE: this process shares its cores with others, so idle pool threads
    should sleep rather than spin. OpenMP (PyTorch) reads it; ONNX Runtime's own pool is told
    the same. A spinning pool in one process slowed another's work on the same 2 cores 4-15x."""
    return os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"


@contextmanager
def env_default(name: str, value: str) -> Iterator[None]:
    """``name`` set to ``value`` unless the user set it, for what starts inside (Ray reads its
    settings from the environment when it starts, in this process and the ones it spawns); then
    this process's environment as it was: it is not spanqa's to keep."""
    previous = os.environ.get(name)
    if not previous:
        os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def cpu_flags(cpuinfo: str | None = None) -> list[str]:
    """The instruction-set flags in CPU_FLAGS this CPU has."""
    try:
        text = cpuinfo if cpuinfo is not None else Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return []
    for line in text.splitlines():
        if line.startswith("flags"):
            have = set(line.split(":", 1)[1].split())
            return [f for f in CPU_FLAGS if f in have]
    return []


def cpu_info() -> dict:
    model = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    model = model or platform.processor() or platform.machine() or "unknown"
    return {
        "model": model,
        "cores": len(_affinity()),
        "physical_cores": physical_cores(),
        "cgroup_cpu_limit": cgroup_cpu_limit(),
        "flags": cpu_flags(),
    }


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while the block runs, so `kill` unwinds like Ctrl-C:
    temp files are removed and finished outputs stay."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
