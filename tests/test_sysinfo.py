"""Thread defaults that respect containers: cgroup CPU quotas and physical cores."""

import os

import pytest

from spanqa import sysinfo

CPUINFO_SMT = "\n\n".join(
    f"processor\t: {p}\nphysical id\t: 0\ncore id\t\t: {p // 2}\nflags\t\t: fpu avx2 fma avx512f avx512_vnni" for p in range(4)
)


def test_cgroup_v2_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert sysinfo.cgroup_cpu_limit(tmp_path) == 1.5


def test_cgroup_v2_unlimited(tmp_path):
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert sysinfo.cgroup_cpu_limit(tmp_path) is None


def test_cgroup_v1_quota(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert sysinfo.cgroup_cpu_limit(tmp_path) == 3.0
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert sysinfo.cgroup_cpu_limit(tmp_path) is None


def test_physical_cores_counts_hyperthreads_once():
    assert sysinfo.physical_cores([0, 1, 2, 3], CPUINFO_SMT) == 2
    assert sysinfo.physical_cores([0, 1], CPUINFO_SMT) == 1
    assert sysinfo.physical_cores([0, 2], CPUINFO_SMT) == 2


def test_default_threads_capped_by_quota(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(sysinfo, "physical_cores", lambda: 8)
    monkeypatch.setattr(sysinfo, "cgroup_cpu_limit", lambda: 2.5)
    assert sysinfo.default_threads() == 2
    monkeypatch.setattr(sysinfo, "cgroup_cpu_limit", lambda: 0.5)
    assert sysinfo.default_threads() == 1
    monkeypatch.setattr(sysinfo, "cgroup_cpu_limit", lambda: None)
    assert sysinfo.default_threads() == 8


def test_default_threads_capped_by_omp_num_threads(monkeypatch):
    monkeypatch.setattr(sysinfo, "physical_cores", lambda: 8)
    monkeypatch.setattr(sysinfo, "cgroup_cpu_limit", lambda: 6.0)
    for value, threads in (("3", 3), ("16", 6), ("0", 1), ("4,2", 6), ("", 6)):
        monkeypatch.setenv("OMP_NUM_THREADS", value)
        assert (sysinfo.default_threads(), sysinfo.usable_cores()) == (threads, 6), value


def test_passive_wait_follows_omp_wait_policy(monkeypatch):
    for value, passive in (("PASSIVE", True), ("passive ", True), ("ACTIVE", False), ("", False)):
        monkeypatch.setenv("OMP_WAIT_POLICY", value)
        assert sysinfo.passive_wait() is passive, value


def test_cpu_flags_reads_the_ones_that_pick_targets():
    assert sysinfo.cpu_flags(CPUINFO_SMT) == ["avx2", "fma", "avx512f", "avx512_vnni"]


def test_env_default_sets_only_what_the_user_left_unset_and_restores_it(monkeypatch):
    name = "SPANQA_TEST_ENV_DEFAULT"
    for before, inside in ((None, "10"), ("", "10"), ("3", "3")):
        if before is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, before)
        with sysinfo.env_default(name, "10"):
            assert os.environ[name] == inside, before
        assert os.environ.get(name) == before
    monkeypatch.delenv(name)
    with pytest.raises(KeyError), sysinfo.env_default(name, "10"):
        raise KeyError  # restored on the way out of an error too
    assert name not in os.environ
