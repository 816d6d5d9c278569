"""Child processes that must not outlive the process that started them."""

from __future__ import annotations

import signal


def die_with_parent() -> None:
    """Runs in a child before exec: SIGTERM it when the process that started it dies, so a
    `kill -9` of Lookout leaves no server or worker behind (Redis flushes its AOF on SIGTERM)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: a leftover server is stopped by the next start instead


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas for a process with many decoding threads.

    glibc gives busy threads their own arenas (up to 8 per core); with a reader thread per
    camera, FFmpeg's frame buffers then fragment over many arenas and RSS creeps up for hours
    without a leak. Call before the threads start. No effect outside glibc."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def trim_malloc() -> None:
    """Give memory freed inside the heap back to the system (glibc's malloc_trim)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
