"""Handing freed memory back to the system between the phases of a long computation.

CPython frees objects at once, but the C allocator keeps freed pages of its heap for
later use: after building a million-row table, a process can sit on hundreds of
megabytes that nothing uses, and the next phase's peak is counted on top of them.
:func:`release_memory` collects cycles and asks glibc's allocator to return its free
pages (``malloc_trim``, what Dask workers do for the same reason); elsewhere it only
collects. Pandas keeps ``str`` columns in Arrow memory when pyarrow is installed, and
Arrow's allocator (mimalloc) keeps freed pages too: once pyarrow is loaded, they are
handed back as well (1M simulated shipments: 220 MiB less when the first fit starts).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
from functools import lru_cache
from typing import Any

M_ARENA_MAX = -8  # glibc's mallopt parameter number


def release_memory() -> None:
    """Collect garbage, then return the allocator's free pages to the system (glibc)."""
    gc.collect()
    give_back()


def give_back() -> bool:
    """Return the allocators' free pages to the system (Arrow's pool too, when pyarrow is
    loaded; pyarrow is never imported here); True if glibc's returned any (glibc only)."""
    arrow = sys.modules.get("pyarrow")
    if arrow is not None:
        arrow.default_memory_pool().release_unused()
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0))


def limit_arenas(arenas: int) -> bool:
    """At most `arenas` malloc arenas for the whole process (call before threads start);
    False where the C library has no such setting."""
    libc = _libc()
    return bool(libc is not None and libc.mallopt(M_ARENA_MAX, arenas))


@lru_cache(maxsize=1)
def _libc() -> Any:
    """glibc, or None where there is no ``malloc_trim`` (macOS, musl)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError, TypeError):
        return None
    return libc
