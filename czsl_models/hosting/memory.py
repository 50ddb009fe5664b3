"""Giving memory back to the system after a visitor's large, finished work (a training run, a session): glibc
keeps freed blocks in its arenas, so a server's resident memory would otherwise stay at its peak for good."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def release_free_memory() -> bool:
    """Collect garbage and return freed heap memory to the system (glibc's malloc_trim); False where unavailable."""
    gc.collect()
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is None:
        return False
    trim(0)
    return True
