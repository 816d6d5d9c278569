"""The worker's event outbox against a real private redis-server: events leave in the order they
were put, only after Redis took them; a full outbox drops its oldest and says how many; what a
process leaves behind is sent by the next one; a file another outbox holds is never taken."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from config.redis_names import EVENTS_STREAM
from config.redis_server import find_redis_server
from detectors.events import Event
from ingest.outbox import REOPEN_SECONDS, Outbox
from tests.conftest import captured_logs, start_redis
from tests.test_segments import small_disk


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], redis.Redis]]:
    process, url = start_redis(tmp_path)
    client = redis.Redis.from_url(url, decode_responses=True)
    yield process, client
    client.close()
    if process.poll() is None:
        process.terminate()
        process.wait(10)


def events(count: int, camera_id: int = 7, start: int = 0) -> list[Event]:
    return [Event(camera_id, "flame", 1_700_000_000.0 + i, 0.8, {"n": i}) for i in range(start, start + count)]


def sent(client: redis.Redis) -> list[Event]:
    return [Event.from_fields(fields) for _, fields in client.xrange(EVENTS_STREAM)]


def logged(stream: object, name: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]  # type: ignore[attr-defined]
    return [line for line in lines if line.get("event") == name or line.get("message") == name]


def test_events_leave_in_order_and_only_once_redis_took_them(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    process, client = store
    outbox = Outbox(tmp_path / "outbox")
    first = events(5)
    outbox.put(first[:2])
    outbox.put(first[2:])
    assert outbox.pending == 5
    assert outbox.flush(client) == 5
    assert outbox.pending == 0
    assert [e.event_id for e in sent(client)] == [e.event_id for e in first]
    assert sent(client)[0] == first[0]  # every field as put

    process.kill()  # Redis gone: nothing is lost, the caller is not stopped, one line says so
    process.wait()
    later = events(3, start=5)
    with captured_logs() as stream:
        outbox.put(later)
        assert outbox.flush(client) == 0
        assert outbox.flush(client) == 0  # backing off: not even tried
        assert outbox.pending == 3
    waiting = logged(stream, "event_outbox_waiting")
    assert len(waiting) == 1 and waiting[0]["pending"] == 3 and waiting[0]["error"]
    assert "Traceback" not in stream.getvalue()
    outbox.close()


def test_a_full_outbox_drops_its_oldest_and_counts_them(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox", max_events=4)
    put = events(6)
    with captured_logs() as stream:
        outbox.put(put[:3])
        outbox.put(put[3:])
    assert outbox.pending == 4 and outbox.dropped == 2
    full = logged(stream, "event_outbox_full")
    assert len(full) == 1 and full[0]["dropped"] == 2 and full[0]["max_events"] == 4
    assert [e.event_id for e in outbox.peek()] == [e.event_id for e in put[2:]]  # the newest four, in order
    outbox.close()


def test_what_a_process_left_behind_is_sent_by_the_next_one(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, client = store
    folder = tmp_path / "outbox"
    old = Outbox(folder)
    left = events(4, camera_id=3)
    old.put(left)
    old.close()  # as a worker stopped while Redis was down: its file stays
    assert len(list(folder.glob("*.db"))) == 1
    new = Outbox(folder)
    assert new.pending == 4
    mine = events(2, camera_id=3, start=4)
    new.put(mine)
    assert new.flush(client) == 6
    assert [e.event_id for e in sent(client)] == [e.event_id for e in left + mine]  # the camera's order kept
    new.close()
    assert list(folder.iterdir()) == []  # an outbox closed empty leaves nothing


def test_a_file_another_outbox_holds_is_never_taken(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, client = store
    folder = tmp_path / "outbox"
    first = Outbox(folder)
    first.put(events(3))
    second = Outbox(folder)  # the same folder, a live owner: hands off
    assert second.pending == 0
    assert second.path != first.path
    assert second.flush(client) == 0 and sent(client) == []
    second.adopt()  # later rounds too
    assert second.pending == 0 and first.pending == 3
    assert first.flush(client) == 3
    first.close()
    second.close()


def test_a_redelivered_event_keeps_its_id(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A crash between Redis's answer and the delete sends the batch again: the same event ids,
    which the alert engine stores as primary keys (tests/test_dependency_faults.py sees them
    land in alerts once)."""
    _, client = store
    folder = tmp_path / "outbox"
    outbox = Outbox(folder)
    put = events(2)
    outbox.put(put)
    # what a crash after XADD and before the delete leaves: the events on the stream and still in the file
    for event in outbox.peek():
        client.xadd(EVENTS_STREAM, event.fields())
    outbox.close()
    again = Outbox(folder)
    assert again.flush(client) == 2
    ids = [e.event_id for e in sent(client)]
    assert ids == [e.event_id for e in put] * 2
    again.close()


def test_an_in_memory_outbox_is_the_same_code_without_a_file(store) -> None:  # type: ignore[no-untyped-def]
    _, client = store
    outbox = Outbox(None)
    assert outbox.path is None
    outbox.put(events(2))
    assert outbox.flush(client) == 2 and len(sent(client)) == 2
    outbox.close()


def test_backoff_doubles_to_its_cap_and_the_drain_is_logged(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    process, client = store
    port = client.connection_pool.connection_kwargs["port"]
    process.kill()
    process.wait()
    outbox = Outbox(tmp_path / "outbox")
    outbox.put(events(2))
    clock = 1000.0
    waits = []
    with captured_logs() as stream:
        for _ in range(8):
            outbox.flush(client, now=clock)
            waits.append(round(outbox.retry_at - clock, 3))
            clock = outbox.retry_at
        restarted = subprocess.Popen([find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while outbox.flush(client, now=clock) == 0:
                assert time.monotonic() < deadline
                clock = outbox.retry_at
                time.sleep(0.05)
            assert outbox.pending == 0
        finally:
            restarted.terminate()
            restarted.wait(10)
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert len(logged(stream, "event_outbox_waiting")) == 1
    drained = logged(stream, "event_outbox_drained")
    assert len(drained) == 1 and drained[0]["sent"] == 2
    outbox.close()


def test_a_killed_workers_file_is_taken_only_once_it_is_dead(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Another process puts three events and is killed with SIGKILL while Redis is down: while
    it lives its file is left alone, once dead its events are sent by the next outbox."""
    _, client = store
    folder = tmp_path / "outbox"
    script = ("import sys, time\nfrom pathlib import Path\nfrom detectors.events import Event\n"
              "from ingest.outbox import Outbox\n"
              "box = Outbox(Path(sys.argv[1]))\n"
              "box.put([Event(9, 'smoke', 1.0 + i, 0.7, {'n': i}, event_id=f'killed-{i}') for i in range(3)])\n"
              "print('READY', flush=True)\ntime.sleep(60)\n")
    worker = subprocess.Popen([sys.executable, "-c", script, str(folder)], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[1])
    try:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "READY"
        alive = Outbox(folder)
        assert alive.pending == 0  # its owner lives
        worker.kill()
        worker.wait()
        assert alive.adopt() == 3  # the next round (every minute) takes it
        assert alive.flush(client) == 3
        assert [e.event_id for e in sent(client)] == ["killed-0", "killed-1", "killed-2"]
        alive.close()
        assert list(folder.iterdir()) == []
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def fill(disk: Path) -> Path:
    """A ballast file taking every free byte of `disk` (a tmpfs the test mounted)."""
    path = disk / "ballast"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 16, 1 << 12, 1):
            while True:
                try:
                    os.write(fd, b"\0" * chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
    finally:
        os.close(fd)
    return path


def test_a_write_the_full_disk_refused_keeps_the_cameras_order(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The disk fills: a camera's `camera_offline` is kept in memory; space comes back and its
    `camera_online` follows: both reach the file, the offline first, and leave in that order."""
    _, client = store
    with small_disk(tmp_path / "disk", 1) as disk:
        outbox = Outbox(disk / "outbox")
        offline = Event(7, "camera_offline", 1_700_000_000.0, evidence={"previous": "online"})
        online = Event(7, "camera_online", 1_700_000_005.0, evidence={"previous": "offline"})
        ballast = fill(disk)
        with captured_logs() as stream:
            outbox.put([offline])
            outbox.put([Event(8, "flame", 1_700_000_001.0)])  # still full: one line for the episode
        assert len(logged(stream, "event_outbox_write_failed")) == 1
        assert outbox.pending == 2
        ballast.unlink()
        with captured_logs() as stream:
            outbox.put([online])  # to the file with the two ahead of it, or behind them in memory until
            outbox.close()  # the next try (close is one): Redis not asked, all in the file, in order
        assert len(logged(stream, "event_outbox_write_recovered")) == 1
        assert not logged(stream, "event_outbox_lost")
        again = Outbox(disk / "outbox")
        assert [e.kind for e in again.peek()] == ["camera_offline", "flame", "camera_online"]
        assert again.flush(client) == 3
        assert [e.kind for e in sent(client)] == ["camera_offline", "flame", "camera_online"]
        again.close()


def test_an_outbox_made_on_a_full_disk_keeps_events_until_its_file_opens(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A worker starting on a full disk (Redis down too): no crash, one error line, the events
    in memory; every `REOPEN_SECONDS` the file is tried again, and once it opens what memory
    held moves into it, in order, durable for the next worker."""
    process, client = store
    process.kill()
    process.wait()
    with small_disk(tmp_path / "disk", 1) as disk:
        folder = disk / "outbox"
        ballast = fill(disk)
        with captured_logs() as stream:
            outbox = Outbox(folder)
            first = events(3)
            outbox.put(first)
            start = time.monotonic()
            outbox.flush(client, now=start + REOPEN_SECONDS + 1)  # tried again: still full
        assert len(logged(stream, "event_outbox_unavailable")) == 1
        assert "Traceback" not in stream.getvalue()
        assert outbox.path is None and outbox.pending == 3
        assert not folder.exists() or list(folder.iterdir()) == []  # no half-made file left
        ballast.unlink()
        with captured_logs() as stream:
            outbox.flush(client, now=start + REOPEN_SECONDS + 2)  # not yet: every REOPEN_SECONDS
            assert outbox.path is None
            outbox.flush(client, now=start + 2 * REOPEN_SECONDS + 2)
        assert outbox.path is not None
        opened = logged(stream, "event_outbox_opened")
        assert len(opened) == 1 and opened[0]["events"] == 3
        later = events(2, start=3)
        outbox.put(later)
        outbox.close()  # Redis still down: the file stays
        again = Outbox(folder)
        assert [e.event_id for e in again.peek()] == [e.event_id for e in first + later]
        again.close()


def test_a_fresh_hidden_lock_file_of_another_process_is_left_alone(tmp_path: Path) -> None:
    """`.NAME.lock.tmp` exists, unlocked, between another process's create and its flock: only
    one old enough to be a dead process's is removed."""
    folder = tmp_path / "outbox"
    folder.mkdir()
    fresh, stale = folder / ".events-1-aaaaaaaa.lock.tmp", folder / ".events-2-bbbbbbbb.lock.tmp"
    fresh.touch()
    stale.touch()
    os.utime(stale, (time.time() - 120, time.time() - 120))
    outbox = Outbox(folder)
    assert fresh.exists() and not stale.exists()
    outbox.close()


def test_a_lock_file_taken_away_while_it_is_named_is_made_again(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The race that cannot be timed from here (a fake of its timing only): another process
    deletes the hidden lock file between this one's create and rename; the real rename then
    fails and the outbox claims a new name instead of failing the worker's start."""
    folder = tmp_path / "outbox"
    real_rename = os.rename
    raced: list[str] = []

    def rename_after_a_rival(src, dst):  # type: ignore[no-untyped-def]
        if str(src).endswith(".lock.tmp") and not raced:
            raced.append(str(src))
            os.unlink(src)
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename_after_a_rival)
    outbox = Outbox(folder)
    assert raced and outbox.path is not None and outbox.path.with_suffix(".lock").exists()
    outbox.put(events(1))
    assert outbox.pending == 1
    outbox.close()
