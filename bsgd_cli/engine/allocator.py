"""The C allocator's thresholds for a process that allocates the same large tensors tile after tile.

glibc's malloc serves blocks of 128 KiB and more (a threshold it raises as blocks are freed, up to
32 MiB) with fresh ``mmap`` pages and gives them back to the system on ``free``, and it returns the
top of its heap to the system as soon as 128 KiB of it are free. A tile's activations and DCT
coefficients are tens of megabytes each, allocated and freed hundreds of times per photo, so every
one was faulted in page by page again. :func:`tune_allocator` keeps blocks under 32 MiB (glibc's
largest threshold) in the heap and lets up to 256 MiB of free heap stay mapped for the next tile;
larger blocks (whole images) still come from ``mmap`` and go back to the system when freed.
Measured in docs/NOTES.md. Only on glibc (Linux); elsewhere nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
"""Blocks from this size on come from mmap (glibc's largest allowed threshold on 64-bit systems)."""
TRIM_THRESHOLD = 256 << 20
"""Free memory at the top of the heap beyond this is given back to the system."""


def tune_allocator() -> bool:
    """Set the thresholds above; True when they were set (glibc), False elsewhere or on failure."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
