"""Thread settings: idle OpenMP threads sleep unless the user chose, and torch never gets more threads
than the process may use."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from bsgd_cli.engine import threads


def test_prepare_openmp_spins_briefly_only_on_an_idle_machine_unless_chosen() -> None:
    busy: dict[str, str] = {}
    threads.prepare_openmp(busy, busy=True)
    assert busy == {"OMP_WAIT_POLICY": "PASSIVE"}
    idle: dict[str, str] = {}
    threads.prepare_openmp(idle, busy=False)
    assert idle == {"GOMP_SPINCOUNT": str(threads.QUIET_SPINCOUNT)}
    chosen = {"OMP_WAIT_POLICY": "ACTIVE"}
    threads.prepare_openmp(chosen, busy=False)
    assert chosen == {"OMP_WAIT_POLICY": "ACTIVE"}
    spin = {"GOMP_SPINCOUNT": "1000"}
    threads.prepare_openmp(spin, busy=True)
    assert spin == {"GOMP_SPINCOUNT": "1000"}


def test_others_running_reads_the_kernels_count_of_ready_tasks(tmp_path) -> None:
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("0.08 0.12 0.30 1/93 4501\n")  # only the reader itself
    assert threads.others_running(loadavg) == 0
    loadavg.write_text("2.91 1.40 0.70 3/95 4502\n")
    assert threads.others_running(loadavg) == 2
    assert threads.others_running(tmp_path / "absent") is None  # not Linux: prepare_openmp sleeps at once


def test_available_cpus_respects_a_quota(monkeypatch, tmp_path) -> None:
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")
    monkeypatch.setattr(threads, "_CGROUP_V2", quota)
    assert threads.available_cpus() == min(2, len(os.sched_getaffinity(0)))
    quota.write_text("max 100000\n")
    assert threads.available_cpus() >= 1


def test_configure_torch_threads_never_raises_the_count(monkeypatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert threads.configure_torch_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_the_command_line_sets_the_policy_before_torch_loads() -> None:
    code = (
        "import os, sys\nfrom bsgd_cli.cli import main\nsys.argv = ['bsgd', '--version']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('OMP_WAIT_POLICY' in os.environ or 'GOMP_SPINCOUNT' in os.environ, 'torch' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert done.stdout.strip().splitlines()[-1] == "True False"  # a policy is set, and torch is not loaded yet


def test_tune_allocator_is_safe_to_call_twice() -> None:
    from bsgd_cli.engine.allocator import tune_allocator

    first = tune_allocator()
    assert tune_allocator() == first
    assert isinstance(first, bool)


_PREFAULT_PROBE = """
import ctypes, os, sys
from bsgd_cli.engine.allocator import prefault_heap, tune_allocator

def resident():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
tune_allocator()
before = resident()
thread = prefault_heap(128 << 20)
if thread is None:
    sys.exit(3)
thread.join()
kept = resident() - before
block = libc.malloc(20 << 20)  # the main thread's next blocks land on the pages already faulted in
ctypes.memset(block, 1, 20 << 20)
print(kept >> 20, (resident() - before - kept) >> 20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_the_prefaulted_heap_stays_mapped_for_the_main_thread() -> None:
    """prefault_heap: the pages stay resident after the background thread freed them, and the main
    thread's next heap block is served from them instead of new pages."""
    done = subprocess.run([sys.executable, "-c", _PREFAULT_PROBE], capture_output=True, text=True, timeout=60)
    if done.returncode == 3:
        pytest.skip("not glibc, or a single CPU")
    assert done.returncode == 0, done.stderr
    kept, grown = map(int, done.stdout.split())
    assert kept >= 100, done.stdout  # MiB still resident after the free
    assert grown < 8, done.stdout  # the 20 MiB block reused them
