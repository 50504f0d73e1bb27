"""Resident memory of this process, for the memory tests (Linux: ``/proc/self/statm``)."""
from __future__ import annotations

import ctypes
import gc
import os


def rss_mib() -> float:
    """Resident memory after a collection and glibc's trim (freed heap pages handed back)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: RSS as it is
        pass
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
