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
import threading

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD = 32 << 20
"""Blocks from this size on come from mmap (glibc's largest allowed threshold on 64-bit systems)."""
TRIM_THRESHOLD = 256 << 20
"""Free memory at the top of the heap beyond this is given back to the system."""


def _libc() -> ctypes.CDLL | None:
    """glibc with mallopt, malloc and free typed; None elsewhere (musl and others have no mallopt)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt, malloc, free = libc.mallopt, libc.malloc, libc.free
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    malloc.argtypes, malloc.restype = [ctypes.c_size_t], ctypes.c_void_p
    free.argtypes, free.restype = [ctypes.c_void_p], None
    return libc


def tune_allocator() -> bool:
    """Set the thresholds above; True when they were set (glibc), False elsewhere or on failure."""
    libc = _libc()
    if libc is None:
        return False
    mmap_set = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    return mmap_set and bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


PREFAULT_BYTES = 224 << 20
"""Heap the first photo's tiles would fault in page by page, faulted in ahead by :func:`prefault_heap`
(under :data:`TRIM_THRESHOLD`, so it stays mapped once freed)."""
_PREFAULT_BLOCK = 28 << 20  # under MMAP_THRESHOLD: from the heap


def prefault_heap(total: int = PREFAULT_BYTES) -> threading.Thread | None:
    """Fault in ``total`` bytes of malloc's heap on a background thread, then free them.

    On this kind of machine a page's first touch is slow (docs/PROFILE.md), and a command's first photo
    pays for every page its tiles use. Started before torch is imported, the work runs on an idle core
    while the import holds the main thread; the memset runs without the GIL. Threads then share one
    malloc arena (``M_ARENA_MAX`` 1), so the main thread finds these pages. Needs :func:`tune_allocator`'s
    thresholds first. None (nothing done) off glibc, or with a single CPU (no idle core to do it on).
    """
    from .threads import available_cpus

    libc = _libc()
    if libc is None or available_cpus() < 2 or not libc.mallopt(_M_ARENA_MAX, 1):
        return None
    thread = threading.Thread(target=_touch, args=(libc, total), name="bsgd-prefault", daemon=True)
    thread.start()
    return thread


def _touch(libc: ctypes.CDLL, total: int) -> None:
    blocks = []
    try:
        for _ in range(max(1, total // _PREFAULT_BLOCK)):
            block = libc.malloc(_PREFAULT_BLOCK)
            if not block:
                break
            blocks.append(block)
            ctypes.memset(block, 0, _PREFAULT_BLOCK)
    finally:
        for block in reversed(blocks):
            libc.free(block)
