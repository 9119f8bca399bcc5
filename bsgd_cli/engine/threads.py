"""How many threads the networks and the Wiener step use, and how idle ones wait.

Two settings, both measured on the 2-core machine while other jobs used it (docs/NOTES.md):

* OpenMP's idle threads sleep (``OMP_WAIT_POLICY=PASSIVE``) instead of spinning. PyTorch's CPU
  kernels run on OpenMP; spinning threads that wait for a core another process holds made a whole
  command about 3 times slower than one thread. The policy is read once, when OpenMP is loaded, so
  :func:`prepare_openmp` must run before torch is imported (the command line does it first).
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


def prepare_openmp(environ: MutableMapping[str, str] | None = None) -> None:
    """Before torch is imported: idle OpenMP threads sleep, unless the user chose a policy."""
    environ = os.environ if environ is None else environ
    if "OMP_WAIT_POLICY" not in environ and "GOMP_SPINCOUNT" not in environ:
        environ["OMP_WAIT_POLICY"] = "PASSIVE"


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
