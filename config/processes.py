"""Child processes: they must not outlive the process that started them, and `lookout serve`
starts them again when they die."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from typing import Protocol

from config.private_files import PRIVATE_UMASK

log = logging.getLogger("lookout.processes")


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


class Supervised(Protocol):
    """A server `Children` keeps running beside the child processes (the embedded Redis)."""

    name: str

    def exit_code(self) -> int | None:
        """How it ended when it died by itself; None while it runs (or after it was stopped)."""

    def restart(self) -> object:
        """Start it again, the same way; raise when it does not come up (tried again later)."""


class Children:
    """The processes `lookout serve` runs beside the API (workers, the alert engine), started
    again when one dies: a crashed child loses nothing (its cameras and events are taken over
    through Redis), but on one machine there may be no other to take them over. Servers given
    to `supervise` (the embedded Redis) are started again first, each round.

    Once `watching()` runs, the watch thread forks every child, also those `start` asks for
    from another thread: a child's parent-death signal follows the *thread* that forked it, so
    a child forked by a short-lived thread (serve's start-up) would be stopped when that thread
    ends; the watcher lives as long as the children may."""

    def __init__(self, env: dict[str, str], check_seconds: float = 1.0) -> None:
        self.env, self.check_seconds = env, check_seconds
        self.running: list[tuple[list[str], subprocess.Popen[bytes] | None]] = []  # None: not forked yet
        self.servers: list[Supervised] = []
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.restarts = 0
        self._wake = threading.Event()
        self._stopping = False
        self._down: dict[int, tuple[float, float]] = {}  # a server whose restart failed: (next try, backoff)
        self._watcher: threading.Thread | None = None

    def supervise(self, server: Supervised) -> None:
        self.servers.append(server)

    def watching(self) -> threading.Thread:
        """Run `watch` in its own thread, from now on the one that forks the children."""
        self._watcher = threading.Thread(target=self.watch, name="children", daemon=True)
        self._watcher.start()
        return self._watcher

    def start(self, args: list[str], timeout: float = 30.0) -> None:
        """Run `args` as a child and keep it running; returns once it is forked."""
        if self._watcher is None or threading.current_thread() is self._watcher:
            with self.lock:
                if not self._stopping:
                    self.running.append((args, self._spawn(args)))
            return
        with self.changed:
            if self._stopping:
                return
            self.running.append((args, None))
            index = len(self.running) - 1
            self._wake.set()
            if not self.changed.wait_for(lambda: self.running[index][1] is not None or self._stopping, timeout):
                # the watcher is busy (an embedded Redis loading a large AOF): forked when it is free
                log.warning("child_start_delayed", extra={"command": " ".join(args), "waited_s": timeout})

    def _spawn(self, args: list[str]) -> subprocess.Popen[bytes]:
        # die_with_parent only calls prctl (no lock, no allocation): safe between fork and exec
        return subprocess.Popen([sys.executable, "-m", "api.cli", *args], env=self.env,
                                preexec_fn=die_with_parent,  # noqa: PLW1509
                                umask=PRIVATE_UMASK)  # what the children write is private too

    def watch(self) -> None:
        """Restart dead servers and children, fork new children, until `stop()`."""
        while not self.stop_event.is_set():
            try:
                self._check_servers()
                self._check_children()
            except Exception:  # the watcher must outlive a failed fork: its end would stop every child
                log.exception("supervisor_error", extra={"retry_in": self.check_seconds})
            self._wake.wait(self.check_seconds)
            self._wake.clear()

    def _check_children(self) -> None:
        with self.changed:
            try:
                for i, (args, process) in enumerate(self.running):
                    if self._stopping:
                        break
                    if process is None:
                        self.running[i] = (args, self._spawn(args))
                    elif process.poll() is not None:
                        log.warning("child_restarted", extra={"command": " ".join(args), "pid": process.pid,
                                                              "exit_code": process.returncode})
                        self.running[i] = (args, self._spawn(args))
                        self.restarts += 1
            finally:
                self.changed.notify_all()

    def _check_servers(self) -> None:
        for i, server in enumerate(self.servers):
            if self._stopping:
                return
            down = self._down.get(i)
            if down is None and server.exit_code() is None:
                continue
            if down is not None and time.monotonic() < down[0]:
                continue
            try:
                server.restart()  # it logs its own restart, with the exit code
            except Exception as exc:  # noqa: BLE001 - keep supervising; try again, less and less often
                backoff = min(30.0, 2 * down[1]) if down else self.check_seconds
                self._down[i] = (time.monotonic() + backoff, backoff)
                log.error("server_restart_failed", extra={"server": server.name, "error": str(exc)[:300],
                                                          "retry_in": backoff})
            else:
                self._down.pop(i, None)

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the children (servers are their owner's to stop), then the watcher."""
        with self.changed:
            self._stopping = True
            processes = [process for _, process in self.running if process is not None]
            self.changed.notify_all()
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
        self.stop_event.set()
        self._wake.set()
