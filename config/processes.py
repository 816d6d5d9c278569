"""Child processes: they must not outlive the process that started them, `lookout serve`
starts them again when they die, and serve alone decides when and in which order they stop.

Each child runs in its own process group: Ctrl-C in a terminal signals the whole foreground
group at once, and a child that got it too would stop on its own (a KeyboardInterrupt
traceback if it was still importing) while serve stops the embedded Redis beside it."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
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


_stop_callbacks: list[Callable[[], object]] = []


def on_stop_signals(callback: Callable[[], object]) -> None:
    """Call `callback` on SIGTERM and SIGINT, in a thread of its own, never inside a signal
    handler. Call it from the main thread; callbacks added later run too, in order.

    A handler runs in the main thread between two of its bytecodes, perhaps while that thread
    holds the lock `Event.set` takes (inside `Event.wait`, or inside the same handler run for
    an earlier signal), and then waits for itself forever. A child of `lookout serve` killed
    with -9 gets its parent-death signal once for each of serve's threads that ends, so an
    alert engine stopping by `Event.set` in its handler hung. Here the handler does nothing:
    the signal's number reaches a pipe (`signal.set_wakeup_fd`), read by the thread that calls
    the callbacks."""
    if not _stop_callbacks:
        read, write = os.pipe()
        os.set_blocking(write, False)
        signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _to_the_pipe)
        threading.Thread(target=_relay_stop_signals, args=(read,), name="stop-signals", daemon=True).start()
    _stop_callbacks.append(callback)


def _to_the_pipe(sig: int, frame: FrameType | None) -> None:
    """Nothing: Python's own handler has written the signal's number to the wake-up pipe."""


def _relay_stop_signals(pipe: int) -> None:
    while received := os.read(pipe, 64):
        if signal.SIGTERM in received or signal.SIGINT in received:
            for callback in _stop_callbacks:
                callback()


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
    ends; the watcher lives as long as the children may. Once stopping began (`terminate`), it
    waits for them instead, SIGKILLs those still running `stop_seconds` later, and says how each
    ended, as it ends."""

    def __init__(self, env: dict[str, str], check_seconds: float = 1.0, stop_seconds: float = 8.0) -> None:
        self.env, self.check_seconds, self.stop_seconds = env, check_seconds, stop_seconds
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
        self._terminated: dict[int, float] = {}  # pid → when it was sent SIGTERM (monotonic)
        self._stop_from: float | None = None  # when stopping began: `stop_seconds` count from it
        self._hurried = False  # a plain flag: set from a signal handler, which must take no lock
        self._reaping = threading.Lock()
        self._reaped: set[int] = set()  # the pids whose end was said

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
                                process_group=0,  # a terminal's Ctrl-C is serve's alone (module docstring)
                                umask=PRIVATE_UMASK)  # what the children write is private too

    def watch(self) -> None:
        """Restart dead servers and children, fork new children, until stopping begins; then
        wait for the children to end."""
        while not self.stop_event.is_set():
            if self._stopping:
                self._reap()
                return
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

    def terminate(self) -> None:
        """Begin stopping: no child is forked or started again from now on, each running one
        is sent SIGTERM, and the watcher waits for them. Returns at once, and a signal handler
        may call it (only other threads hold the lock, and briefly); `stop` waits."""
        with self.changed:
            self._stopping = True
            if self._stop_from is None:
                self._stop_from = time.monotonic()
            processes = [process for _, process in self.running if process is not None]
            self.changed.notify_all()
        for process in processes:
            if process.pid not in self._terminated and process.returncode is None:
                self._terminated[process.pid] = time.monotonic()
                try:
                    process.send_signal(signal.SIGTERM)
                except ProcessLookupError:  # it ended meanwhile: `_reap` says how
                    pass
        self._wake.set()

    def hurry(self) -> None:
        """SIGKILL what is left now instead of at the bound (a second Ctrl-C); a signal handler
        may call it at any moment."""
        self._hurried = True

    def stop(self) -> None:
        """Stop the children (servers are their owner's to stop), then the watcher: SIGTERM,
        SIGKILL for those still running `stop_seconds` after stopping began. One line each."""
        self.terminate()
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            assert self._stop_from is not None
            watcher.join(max(0.0, self._stop_from + self.stop_seconds - time.monotonic()) + 1.0)
        self._reap()  # what the watcher did not (none; or it is stuck starting a server again)
        self.stop_event.set()
        self._wake.set()

    def _reap(self) -> None:
        """Wait for the children told to stop; one line for each as it ends, SIGKILL at the bound."""
        with self._reaping:
            with self.lock:
                waiting = [(args, process) for args, process in self.running
                           if process is not None and process.pid not in self._reaped]
            deadline = (self._stop_from or time.monotonic()) + self.stop_seconds
            while waiting:
                for args, process in [(a, p) for a, p in waiting if p.poll() is not None]:
                    self._ended(args, process, killed=False)
                    waiting.remove((args, process))
                if not waiting or time.monotonic() >= deadline or self._hurried:
                    break
                time.sleep(0.05)
            for args, process in waiting:
                process.kill()
                process.wait()
                self._ended(args, process, killed=True)

    def _ended(self, args: list[str], process: subprocess.Popen[bytes], killed: bool) -> None:
        self._reaped.add(process.pid)
        sent = self._terminated.get(process.pid)
        expected = process.returncode in (0, -signal.SIGTERM)  # -SIGTERM: stopped while it started
        log.log(logging.INFO if expected and not killed else logging.WARNING, "child_stopped", extra={
            "command": " ".join(args), "pid": process.pid, "exit_code": process.returncode, "killed": killed,
            "seconds": None if sent is None else round(time.monotonic() - sent, 2)})
