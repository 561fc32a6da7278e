# -*- test-case-name: tests.dev.test_allocator -*-
"""
glibc's allocator, tuned for what the C{pywatt dev} process does with a streamed body:
it holds a few buffers of a few hundred KiB at a time (chunk frames, a read from a
socket, twisted's joined send buffer) and frees them as fast as it makes them.

With glibc's defaults a buffer above the mmap threshold is mapped and unmapped each
time, and freed memory at the top of the heap above the trim threshold is given back
to the kernel (C{brk}) after every burst: the next buffer of the same size then
faults in fresh zeroed pages. Relaying 256 MiB down through the front port took
~159,000 page faults in C{pywatt dev} (about 600 MB of pages zeroed; a third of its
CPU time, in the kernel); with the thresholds below, a few hundred.

The fixed thresholds keep buffers up to L{MMAP_THRESHOLD} on the heap and keep up to
L{TRIM_THRESHOLD} of free memory for reuse instead of returning it at once: the peak
memory does not grow (the same buffers are reused), only what is returned after a
burst is held a little longer.

Only the C{pywatt dev} process does this (never a module: the allocator is
process-wide, and a module's process is its author's). Not on other C libraries, and
not when the user tunes glibc's allocator through its environment variables.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from collections.abc import Mapping
from typing import Any

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "tune_allocator"]

#: glibc's C{mallopt} parameters (C{<malloc.h>}).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: Allocations below this come from the heap (glibc's default starts at 128 KiB and
#: moves with what is freed): a 4 MiB chunk's frame (X0's largest) is below it.
MMAP_THRESHOLD = 8 * 1024 * 1024

#: Free memory at the top of the heap kept for reuse before it is returned to the
#: kernel (glibc's default starts at 128 KiB).
TRIM_THRESHOLD = 32 * 1024 * 1024

#: Environment variables through which a user tunes glibc's allocator: when one is
#: set, the user's choice stands.
USER_SETTINGS = (
    "GLIBC_TUNABLES",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
)


def _glibc() -> Any:
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def tune_allocator(libc: Any = None, environ: Mapping[str, str] = os.environ) -> bool:
    """
    Set glibc's mmap and trim thresholds for this process (see the module docstring).
    Whether they were set: not on another C library, nor when C{environ} holds one
    of L{USER_SETTINGS}.

    @param libc: the C library (C{ctypes.CDLL}); found when not given.
    """
    if any(name in environ for name in USER_SETTINGS):
        return False
    if libc is None:
        libc = _glibc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    # (mallopt returns 1 on success, 0 on error)
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
