"""CPU training without page faults: the step's large tensors reuse freed memory.

A training step allocates and frees the same large tensors every step (the logits, their
log-softmax and its gradient: 4 MB each for the demo's model, 134 MB for a 8,192-token vocabulary
at 16 x 256 tokens). glibc's malloc serves a block above its mmap threshold (128 KB, raised
dynamically to at most 32 MB) with a fresh mapping and gives freed memory at the top of its heap
back to the system, so every step faults the same pages in again and the kernel zeroes them.
Keeping them in the heap saves ~5% of a demo step (benchmarks/cpu_memory.py); the numbers do not
change, only where the memory comes from. The process keeps its peak heap, which every step
reaches anyway.

``MIXSCALE_CPU_MALLOC=system`` leaves glibc as it is, and so does any ``MALLOC_*`` tuning
variable of the user's own (glibc reads those at start-up), or an allocator put in with
LD_PRELOAD (jemalloc, tcmalloc), which ignores glibc's settings anyway.
"""

from __future__ import annotations

import ctypes
import os
import sys

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# blocks up to 1 GB come from the heap; mallopt takes a C int, so the largest trim threshold is
# INT_MAX (2 GB): never trim in practice
HEAP_BLOCKS_UP_TO = 1 << 30
NEVER_TRIM = 2**31 - 1
USER_TUNING = (
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
    "GLIBC_TUNABLES",
)


def reuse_freed_memory() -> str:
    """Set glibc's malloc to keep large freed blocks; returns what the process uses, for the
    run's metrics: "glibc, large blocks kept", "system" or why it was left alone."""
    if os.environ.get("MIXSCALE_CPU_MALLOC", "") == "system":
        return "system (MIXSCALE_CPU_MALLOC)"
    user = [name for name in USER_TUNING if name in os.environ]
    if user or "LD_PRELOAD" in os.environ:
        return f"system ({', '.join(user) or 'LD_PRELOAD'} set)"
    libc = _glibc()
    if libc is None:
        return "system (not glibc)"
    kept = libc.mallopt(M_MMAP_THRESHOLD, HEAP_BLOCKS_UP_TO) and libc.mallopt(
        M_TRIM_THRESHOLD, NEVER_TRIM
    )
    return "glibc, large blocks kept" if kept else "system (mallopt refused)"


def _glibc() -> ctypes.CDLL | None:
    """This process's C library if it is glibc (musl's mallopt does nothing; macOS has none)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError):
        return None
    return libc
