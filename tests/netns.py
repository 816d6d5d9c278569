"""A loopback-only network namespace for the calling thread, for tests of devices that
multicast or bind every interface (the ONVIF emulator).

Linux network namespaces belong to threads: after `unshare(CLONE_NEWNET)` the calling thread,
every thread and process it starts, and every socket they open live in a new namespace that
has only `lo`. Sockets opened before keep their own namespace, so anything the test needs
inside (Redis, RTSP server, device emulator, the API's client threads) must be started after
entering. Leaving restores the thread's original namespace; the new one disappears with its
last process and socket. Needs CAP_SYS_ADMIN (root, as in CI).
"""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class NamespaceUnavailable(RuntimeError):
    pass


@contextmanager
def loopback_namespace() -> Iterator[None]:
    """Enter a new network namespace with `lo` up and multicast routed over it; leave on exit."""
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if _libc.unshare(CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise NamespaceUnavailable(f"unshare(CLONE_NEWNET): {errno.errorcode.get(code, code)}")
        try:
            for command in (["ip", "link", "set", "lo", "up"], ["ip", "link", "set", "lo", "multicast", "on"],
                            ["ip", "route", "add", "224.0.0.0/4", "dev", "lo"]):
                subprocess.run(command, check=True, capture_output=True)
            yield
        finally:
            if _libc.setns(original, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the original network namespace failed")
    finally:
        os.close(original)
