"""Keeping freed memory in the process instead of handing it back to the system.

Making a video allocates and frees buffers of 0.5-20 MB dozens of times a second (frames,
warp maps, pieces of frames on their way to ffmpeg). glibc's malloc serves blocks above
its mmap threshold with fresh mappings and returns the top of its heap to the system once
more than its trim threshold is free, so every such buffer is faulted in page by page
again: 860,000 page faults and about 2 s of system time per minute of video in `avgen
synth` (its process, the face worker and ffmpeg together). Raising both thresholds keeps
the freed memory for the next buffer (peak memory is unchanged: it is what is in use at
the busiest moment either way). Linux with glibc only; elsewhere nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

MMAP_THRESHOLD = 32 << 20   # blocks up to this come from the heap (glibc's maximum)
TRIM_THRESHOLD = 256 << 20  # free memory kept at the heap's top before it is returned

# the same settings for child processes (the face worker, ffmpeg), read by glibc at start
TUNABLES = (f"glibc.malloc.mmap_threshold={MMAP_THRESHOLD}:"
            f"glibc.malloc.trim_threshold={TRIM_THRESHOLD}")

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)


def retain_freed_memory() -> bool:
    """Raise this process's malloc thresholds (see the module's docstring). Returns
    whether they were set (False where the C library is not glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def child_environment(env: dict | None = None) -> dict:
    """`env` (default: this process's environment) with the thresholds for a child
    process; settings the user gave in GLIBC_TUNABLES win."""
    env = dict(os.environ if env is None else env)
    given = env.get("GLIBC_TUNABLES", "")
    names = {item.split("=", 1)[0] for item in given.split(":") if item}
    ours = [item for item in TUNABLES.split(":") if item.split("=", 1)[0] not in names]
    env["GLIBC_TUNABLES"] = ":".join([*filter(None, [given]), *ours])
    return env
