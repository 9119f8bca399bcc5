"""How many threads the networks and the Wiener step use, and how idle ones wait.

Two settings, both measured on the 2-core machine (docs/NOTES.md):

* How OpenMP's idle threads wait. PyTorch's CPU kernels run on OpenMP, and between two kernels its
  threads wait for the next one. Spinning while they wait (GNU OpenMP's default: 300 000 turns) made a
  whole command several times slower than one thread while other jobs held the cores; sleeping at
  once (``OMP_WAIT_POLICY=PASSIVE``) costs a wake-up at every kernel, which shows on an idle machine.
  So :func:`prepare_openmp` looks at the machine once: with nothing else ready to run, idle threads
  spin a short while (:data:`QUIET_SPINCOUNT`) before they sleep; otherwise they sleep at once.
  OpenMP reads this when it is loaded, so :func:`prepare_openmp` must run before torch is imported
  (the command line does it first).
* The intra-op thread count is the CPUs this process may really use (:func:`available_cpus`: its
  affinity mask, capped by a container's CPU quota), never more than PyTorch's own default (the
  physical cores), unless ``OMP_NUM_THREADS`` says otherwise.

Nothing here imports torch at module level, so the command line can call it before torch loads.
"""

from __future__ import annotations

import math
import os
from collections.abc import MutableMapping
from pathlib import Path

_CGROUP_V2 = Path("/sys/fs/cgroup/cpu.max")
_CGROUP_V1 = (Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us"))


QUIET_SPINCOUNT = 10_000
"""Turns an idle OpenMP thread spins before it sleeps when nothing else is ready to run (GNU OpenMP's
``GOMP_SPINCOUNT``)."""
_LOADAVG = Path("/proc/loadavg")


def others_running(loadavg: Path = _LOADAVG) -> int | None:
    """Tasks ready to run on the machine now besides the caller (the kernel's count in ``/proc/loadavg``),
    or None where it cannot be read (not Linux)."""
    try:
        running = int(loadavg.read_text().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0, running - 1)


def prepare_openmp(environ: MutableMapping[str, str] | None = None, *, busy: bool | None = None) -> None:
    """Before torch is imported: how idle OpenMP threads wait, unless the user chose.

    busy: whether other work is running (default: :func:`others_running` says so, or cannot tell).
    Idle threads then sleep at once (``OMP_WAIT_POLICY=PASSIVE``); on an idle machine they spin
    :data:`QUIET_SPINCOUNT` turns first.
    """
    environ = os.environ if environ is None else environ
    if "OMP_WAIT_POLICY" in environ or "GOMP_SPINCOUNT" in environ:
        return
    if busy is None:
        busy = others_running() != 0
    if busy:
        environ["OMP_WAIT_POLICY"] = "PASSIVE"
    else:
        environ["GOMP_SPINCOUNT"] = str(QUIET_SPINCOUNT)


def _cgroup_cpus() -> float | None:
    """The container's CPU quota in CPUs (cgroup v2, then v1), or None without one."""
    try:
        quota, period = _CGROUP_V2.read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us, period_us = (int(path.read_text()) for path in _CGROUP_V1)
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def available_cpus() -> int:
    """The CPUs this process may use: its affinity mask, capped by a CPU quota (rounded up); at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpus()
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def configure_torch_threads() -> int:
    """Set torch's intra-op threads to :func:`available_cpus` (at most its default); returns the count.

    ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS``, when set, win: the count is left as torch read it.
    """
    import torch

    if "OMP_NUM_THREADS" in os.environ or "MKL_NUM_THREADS" in os.environ:
        return torch.get_num_threads()
    threads = max(1, min(torch.get_num_threads(), available_cpus()))
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return threads
