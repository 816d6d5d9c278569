"""Stopping `lookout serve`: Ctrl-C in its terminal, SIGTERM to serve alone, `kill -9` of serve.

Ctrl-C reaches the terminal's whole foreground process group at once. Serve alone must decide
the order: the workers and the alert engine first, the embedded Redis last, so that no child
meets a Redis that is gone; one line per process, no traceback, nothing left behind. The
workers run no models here (`worker.detectors: []`): stopping is what is tested, not detection.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from tests.conftest import children_of, free_port, wait_for

ROOT = Path(__file__).parents[1]
WORKERS = 2
STOP_SECONDS = 10.0  # issue 15: `make run`, then Ctrl-C: exit within 10 s
# what a child says when the Redis it talks to is gone
REDIS_GONE = {"registry_feed_unavailable", "worker_step_failed", "alert_engine_waiting", "delivery_waiting",
              "alert_feed_waiting"}


class Serve:
    """`lookout serve --demo` in its own session, as a shell starts a foreground job."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.out, self.err = tmp_path / "serve.out", tmp_path / "serve.err"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKOUT_")} | {
            "LOOKOUT_DATA_DIR": str(tmp_path / "data"), "LOOKOUT_WORKER__DETECTORS": "[]"}
        with self.out.open("w") as out, self.err.open("w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "serve", "--demo", "--port", str(self.port),
                 "--workers", str(WORKERS)], cwd=ROOT, env=env, stdout=out, stderr=err, start_new_session=True)
        self.pid = self.process.pid
        self.seen: dict[int, str] = {}  # every child seen, for `kill`

    def children(self) -> dict[int, str]:
        found = children_of(self.pid)
        self.seen.update(found)
        return found

    def up(self) -> dict[int, str]:
        """Wait for /healthz 200, the workers and the alert engine in their loops; the children."""
        wait_for(lambda: self._answers() or self.process.poll() is not None, 60)
        assert self.process.poll() is None, self.text()
        wait_for(lambda: self.events().count("worker_started") == WORKERS
                 and "alert_engine_started" in self.events(), 60)
        children = self.children()
        assert sum(" worker" in c for c in children.values()) == WORKERS, children
        assert sum(" alert-engine" in c for c in children.values()) == 1, children
        assert sum("redis-server" in c for c in children.values()) == 1, children
        return children

    def _answers(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def text(self) -> str:
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")

    def lines(self) -> list[dict[str, object]]:
        found = []
        for line in self.text().splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
        return found

    def events(self) -> list[object]:
        return [line.get("event") for line in self.lines()]

    def stopped_within(self, seconds: float) -> int:
        try:
            return self.process.wait(seconds)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"serve still running {seconds} s after the signal:\n{self.text()[-3000:]}") from None

    def open_feed(self) -> threading.Thread:
        """An alert feed (SSE) held open, as a console does: it must not hold serve's stop up
        (uvicorn waits 5 s for it, then cancels it with a traceback)."""
        token = re.search(r"(lk_[\w-]+)", self.out.read_text())
        assert token, self.text()
        opened = threading.Event()

        def follow() -> None:
            try:
                with httpx.stream("GET", f"http://127.0.0.1:{self.port}/api/v1/alerts/stream",
                                  headers={"Authorization": f"Bearer {token.group(1)}"}, timeout=30) as stream:
                    assert stream.status_code == 200
                    opened.set()
                    for _ in stream.iter_lines():
                        pass
            except httpx.HTTPError:
                pass

        thread = threading.Thread(target=follow, daemon=True)
        thread.start()
        assert opened.wait(10)
        return thread

    def kill(self) -> None:
        """Whatever the test left running: serve's group, and every child seen (each has its own)."""
        for pid in [self.pid, *self.children(), *self.seen]:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.process.wait(10)


def alive(pid: int) -> bool:
    """Running: a zombie, dead and waiting to be reaped by whoever adopted it, is not."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def assert_stopped_in_order(serve: Serve, children: dict[int, str], said_before: int) -> None:
    """`said_before`: how many log lines there were when the signal was sent."""
    text = serve.text()
    assert "Traceback" not in text, text[-5000:]
    assert "KeyboardInterrupt" not in text, text[-5000:]
    lines = serve.lines()
    events = [line.get("event") for line in lines]
    # one line per process: serve's for each child, the embedded Redis's, serve's own
    stopped = [line for line in lines if line.get("event") == "child_stopped"]
    python_children = {pid for pid, command in children.items() if "redis-server" not in command}
    assert sorted(line["pid"] for line in stopped) == sorted(python_children), stopped  # type: ignore[type-var]
    assert all(line["exit_code"] == 0 for line in stopped), stopped
    assert events.count("embedded_redis_stopped") == 1 and events.count("serve_stopped") == 1, events[-30:]
    [redis_stopped] = [line for line in lines if line.get("event") == "embedded_redis_stopped"]
    assert redis_stopped["exit_code"] == 0, redis_stopped  # stopped by serve, not by the terminal's signal
    last_child = max(i for i, event in enumerate(events) if event == "child_stopped")
    assert last_child < events.index("embedded_redis_stopped") < events.index("serve_stopped")
    # each child stopped talking to Redis before it went: no child met a Redis that was gone
    gone = [line for line in lines[said_before:] if line.get("event") in REDIS_GONE]
    assert not gone, gone
    assert events.count("worker_stopped") == WORKERS and events.count("alert_engine_stopped") == 1
    wait_for(lambda: not any(alive(pid) for pid in children), 5)


@pytest.mark.parametrize("signal_to", ["terminal", "serve"])
def test_ctrl_c_or_sigterm_stops_children_first_and_redis_last(tmp_path: Path, signal_to: str) -> None:
    serve = Serve(tmp_path)
    try:
        children = serve.up()
        feed = serve.open_feed()
        said_before = len(serve.lines())
        if signal_to == "terminal":  # Ctrl-C: the terminal signals the whole foreground process group
            os.killpg(serve.pid, signal.SIGINT)
        else:  # a service manager's stop: serve alone
            serve.process.terminate()
        assert serve.stopped_within(STOP_SECONDS) == 0
        assert_stopped_in_order(serve, children, said_before)
        feed.join(5)
        assert not feed.is_alive()  # ended by serve: the client reconnects and resumes from its last id
    finally:
        serve.kill()


def test_ctrl_c_while_the_children_start(tmp_path: Path) -> None:
    """Ctrl-C before the children are up (still importing): no KeyboardInterrupt anywhere."""
    serve = Serve(tmp_path)
    try:
        # all forked (the workers, then the alert engine), most still importing
        wait_for(lambda: sum(" worker" in c or " alert-engine" in c for c in serve.children().values())
                 == WORKERS + 1, 60)
        children = serve.children()
        os.killpg(serve.pid, signal.SIGINT)
        assert serve.stopped_within(STOP_SECONDS) == 0
        text = serve.text()
        assert "Traceback" not in text and "KeyboardInterrupt" not in text, text[-5000:]
        stopped = [line for line in serve.lines() if line.get("event") == "child_stopped"]
        assert len(stopped) == len({pid for pid, c in children.items() if "redis-server" not in c}), stopped
        wait_for(lambda: not any(alive(pid) for pid in children), 5)
    finally:
        serve.kill()


def test_kill_9_of_serve_takes_every_child_along(tmp_path: Path) -> None:
    """No one is left to stop them in order: the parent-death signal stops each by itself."""
    serve = Serve(tmp_path)
    try:
        children = serve.up()
        serve.process.kill()
        serve.process.wait(5)
        wait_for(lambda: not any(alive(pid) for pid in children), 15)
        # each child got SIGTERM once for every thread of serve that ended: stopped all the same
        assert "Traceback" not in serve.text(), serve.text()[-5000:]
    finally:
        serve.kill()
