"""Child processes: they must not outlive the process that started them, and `lookout serve`
starts them again when they die."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading

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


class Children:
    """The processes `lookout serve` runs beside the API (workers, the alert engine), started
    again when one dies: a crashed child loses nothing (its cameras and events are taken over
    through Redis), but on one machine there may be no other to take them over."""

    def __init__(self, env: dict[str, str], check_seconds: float = 1.0) -> None:
        self.env, self.check_seconds = env, check_seconds
        self.running: list[tuple[list[str], subprocess.Popen[bytes]]] = []
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.restarts = 0

    def start(self, args: list[str]) -> None:
        with self.lock:
            self.running.append((args, self._spawn(args)))

    def _spawn(self, args: list[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "api.cli", *args], env=self.env, preexec_fn=die_with_parent,
                                umask=PRIVATE_UMASK)  # what the children write is private too

    def watch(self) -> None:
        """Restart dead children until `stop()`; run it in a thread."""
        while not self.stop_event.wait(self.check_seconds):
            with self.lock:
                for i, (args, process) in enumerate(self.running):
                    if process.poll() is not None and not self.stop_event.is_set():
                        log.warning("child_restarted", extra={"command": " ".join(args), "pid": process.pid,
                                                              "exit_code": process.returncode})
                        self.running[i] = (args, self._spawn(args))
                        self.restarts += 1

    def stop(self, timeout: float = 20.0) -> None:
        self.stop_event.set()
        with self.lock:
            processes = [process for _, process in self.running]
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
