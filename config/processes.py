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
