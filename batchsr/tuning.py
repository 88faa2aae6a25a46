"""Process-wide settings: for processes batchsr owns (the CLI, Ray actors) and for a run.

Neither changes a result; both change how the cores and memory are used.
"""

from __future__ import annotations

import ctypes
import sys
from contextlib import contextmanager

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
# Blocks up to this size come from malloc's heap and are reused, not mapped fresh.
MMAP_THRESHOLD = 32 << 20
# Free memory kept at the top of a heap before any is handed back to the kernel.
TRIM_THRESHOLD = 128 << 20


def tune_allocator() -> bool:
    """Let glibc's malloc keep freed memory for the next image instead of returning it.

    Every image allocates the same few-megabyte temporaries (bands, chroma
    planes, PNG rows). By default glibc maps blocks over 128 KB (a limit it
    raises only as such blocks are freed) and trims a heap once 2x that is
    free at its top, so each image faulted its temporaries' pages in afresh:
    a 100-image B100 run with the fast model spent 0.50 s in the kernel and
    took 1.61 s, against 0.21 s and 1.44 s with these limits (median of six
    interleaved runs each, 2-core machine). Memory stays bounded by the
    largest working set, as before: what is kept is what the next image
    reuses. Returns whether the allocator took it (glibc on Linux);
    elsewhere nothing changes.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        _ = libc.gnu_get_libc_version  # glibc only (AttributeError elsewhere): musl's mallopt does nothing
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


@contextmanager
def single_threaded_blas():
    """numpy's BLAS on one thread while the block runs; the previous setting comes back after it.

    batchsr already keeps every core busy with its parallel images and
    onnxruntime's threads. OpenBLAS would split each of the chroma resize's
    small matrix products (:mod:`batchsr.resample`) over all cores too and
    leave its threads spinning: on the 2-core machine that made a 100-image
    run take 2.6-2.8 s instead of 1.5-1.8 s.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def own_process() -> None:
    """Both settings for the rest of a process batchsr owns (the CLI, a Ray actor)."""
    from threadpoolctl import threadpool_limits

    tune_allocator()
    threadpool_limits(limits=1, user_api="blas")
