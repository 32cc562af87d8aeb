"""Keep the CPU heap resident: an opt-in fix for XLA:CPU page faults.

XLA:CPU allocates one temporary buffer per executable run (about 190 MiB for
the ``ecg`` train step of ``bench/throughput.py``). glibc serves a block
that large with a fresh ``mmap`` and returns it with ``munmap``, so every
step touches brand-new pages: about 49,000 page faults and 150 ms of kernel
time per ``ecg`` step on the 2-core benchmark machine, a quarter of the
step's CPU time (bench/RESULTS.md).

:func:`tune_cpu_allocator` asks glibc to serve every block from one heap
that is never trimmed (``mallopt``: one arena, no ``mmap`` blocks, no trim),
so the buffer's pages stay mapped from one step to the next. The cost: the
process keeps its peak heap size until it exits (like a caching allocator
on GPU), and all threads share one malloc arena. It changes the whole
process, which is why the library never does it on import; the
``jax-lstm-ae`` command line does it at start-up.

It must run before JAX starts its CPU client (before the first computation):
a thread that already owns a malloc arena keeps it. The same effect from the
environment, for any program:
``GLIBC_TUNABLES=glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_applied = False


def tune_cpu_allocator() -> bool:
    """Make glibc keep freed heap memory mapped (module doc). Returns True when
    the settings were applied (now or by an earlier call), False where there
    is no glibc (macOS, Windows, musl): there it does nothing."""
    global _applied
    if _applied:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    ok = all(
        libc.mallopt(param, value) == 1
        for param, value in ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1))
    )
    _applied = ok
    return ok
