"""Holes 16 and 19 of issue 13: what the service leaves on disk, and the audit chain's head.

Hole 16, as a local user of the machine (any account but the service's) would attack it: read
the database, the Redis AOF, the segments, the snapshots and evidence the service writes.
Everything under data_dir must be the service user's alone (files 0600, folders 0700), on a
fresh install and on an older install whose files were made 0644 in 0755 folders.

Hole 19, as someone with write access to the database but not to the checkpoint key and files
(a database administrator, a stolen PostgreSQL password) would attack it: cut rows off the end
of the log and move the head back, or rewrite a row and every row after it and the head, as a
forger who knows the hash scheme would. `lookout audit verify` must fail on both, naming the
signed checkpoint that contradicts the database; a checkpoint line forged without the key is
itself reported.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.cli import main
from api.services import Services
from config.redis_names import EVENTS_STREAM
from registry import audit
from tests.conftest import MODEL_CACHE, SECRET, Tree, camera_body, free_port, wait_for

ROOT = Path(__file__).parents[2]


# -- hole 16: files readable by every local user --------------------------------------------------


def _exposed(root: Path) -> list[str]:
    """Every path under `root` (and `root` itself) that a group member or another user may
    read, write or enter, with its mode."""
    found = []
    for path in [root, *root.rglob("*")]:
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:  # a temporary file (SQLite's journal, Redis's rewrite) gone meanwhile
            continue
        if stat.S_ISLNK(mode):
            continue
        if stat.S_IMODE(mode) & 0o077:
            found.append(f"{path.relative_to(root.parent)} {stat.S_IMODE(mode):04o}")
    return found


def _env(data_dir: Path, media: Path) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LOOKOUT_")} | {
        "LOOKOUT_DATA_DIR": str(data_dir), "LOOKOUT_LOG_LEVEL": "INFO",
        "LOOKOUT_WORKER__SEGMENT_SECONDS": "1", "LOOKOUT_WORKER__ANALYSIS_INTERVAL_SECONDS": "0.5",
        "LOOKOUT_SECURITY__MEDIA_DIRS": json.dumps([str(media)]),
        "LOOKOUT_SECURITY__AUDIT_CHECKPOINT_SECONDS": "1",
    }


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "api.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _fire_clip(path: Path) -> Path:
    from ingest.detection import load_stage
    from tests.scenes import clip_of, fire_scene

    stage = load_stage(MODEL_CACHE, ["fire_smoke"], None)
    assert stage is not None
    return clip_of(fire_scene(stage.fire.detector, stage.fire.run), path, seconds=4.0)


def test_a_local_user_can_read_nothing_a_fresh_serve_writes(tmp_path: Path, model_files: dict[str, Path]) -> None:
    """A real `lookout serve` (embedded Redis, SQLite, a worker, the alert engine) films a fire
    from a `file:` clip: segments, a snapshot, an alert, audit rows and checkpoints are written.
    Every file of data_dir is 0600 and every folder 0700 while it runs."""
    media = tmp_path / "media"
    media.mkdir()
    clip = _fire_clip(media / "fire.mp4")
    data_dir = tmp_path / "data"
    env = _env(data_dir, media)
    _cli(env, "unit", "add", "示范县", "330199000000")
    token = re.search(r"token: (lk_[\w-]+)", _cli(env, "user", "add", "chief", "--role", "admin",
                                                    "--unit", "330199000000", "--password", "Kx9!long-enough-pw"))
    assert token
    headers = {"Authorization": f"Bearer {token.group(1)}"}
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/v1"
    log = tmp_path / "serve.log"
    with log.open("w") as err:
        process = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--workers", "1"],
                                   cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), 60)
        unit = httpx.get(f"{base}/units", headers=headers).json()[0]
        created = httpx.post(f"{base}/cameras", headers=headers, json={
            "name": "粮库", "network": "xueliang", "unit_id": unit["id"], "main_stream_url": clip.as_uri()})
        assert created.status_code == 201, created.text
        camera = created.json()["id"]
        segments = data_dir / "segments" / str(camera)
        try:
            wait_for(lambda: (segments / "index.jsonl").exists() and len(list(segments.glob("*.ts"))) >= 2, 120)
            wait_for(lambda: any((data_dir / "snapshots").rglob("*.jpg")), 120)
            wait_for(lambda: len(httpx.get(f"{base}/alerts", headers=headers).json()["items"]) >= 1, 30)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the service said:\n{log.read_text()[-4000:]}") from None
        written = {p.relative_to(data_dir).parts[0] for p in data_dir.rglob("*") if p.is_file()}
        assert {"lookout.db", "lookout.db-wal", "redis", "segments", "snapshots", "secret.key"} <= written, written
        assert any((data_dir / "redis").rglob("*.aof")), "the embedded Redis wrote no AOF"
        assert _exposed(data_dir) == []
        # the alert engine's checkpoints of the audit chain, and their key, are private too
        wait_for(lambda: any((data_dir / "audit-checkpoints").glob("*.jsonl")), 30)
        assert (data_dir / "audit-checkpoint.key").is_file()
        assert _exposed(data_dir) == []
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)
    assert _exposed(data_dir) == []


def test_an_older_install_is_tightened_when_the_service_starts(tmp_path: Path) -> None:
    """An install made before the fix: its files 0644 and folders 0755. The next `lookout serve`
    takes them back (and logs what it changed); nothing stays readable by other users."""
    media = tmp_path / "media"
    media.mkdir()
    data_dir = tmp_path / "data"
    env = _env(data_dir, media)
    _cli(env, "unit", "add", "示范县", "330199000000")
    for relative, content in (("segments/7/1700000000000.ts", b"\x47" * 188), ("segments/7/index.jsonl", b"{}\n"),
                              ("snapshots/7/20261101/e1.jpg", b"\xff\xd8"), ("evidence/3/photo.jpg", b"\xff\xd8"),
                              ("redis/appendonlydir/appendonly.aof.1.base.rdb", b"REDIS"),
                              ("secret.key", SECRET.encode())):
        target = data_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    for path in [data_dir, *data_dir.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    assert len(_exposed(data_dir)) >= 12
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as err:
        process = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--workers", "0"],
                                   cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
        try:
            wait_for(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), 60)
            assert _exposed(data_dir) == []
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(30)
    tightened = [json.loads(line) for line in log.read_text().splitlines()
                 if line.startswith("{") and "data_permissions_tightened" in line]
    assert tightened and tightened[0]["changed"] >= 12, log.read_text()[-3000:]
    assert (data_dir / "segments/7/1700000000000.ts").read_bytes() == b"\x47" * 188  # tightened, not lost


def test_the_writers_make_private_files_even_under_a_loose_umask(tmp_path: Path) -> None:
    """Lookout embedded in a process whose umask is 022 (not `lookout`'s entry point): the
    SQLite file and its WAL, the embedded Redis's AOF and the segment store are private by
    their own explicit modes."""
    import av

    from config.database import make_engine
    from config.redis_server import EmbeddedRedis
    from ingest.segments import SegmentWriter, enforce_retention
    from tests.media import make_clip

    previous = os.umask(0o022)
    try:
        root = tmp_path / "data"
        engine = make_engine(f"sqlite:///{root / 'db' / 'lookout.db'}")
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x TEXT)"))
            conn.execute(text("INSERT INTO t VALUES ('sealed')"))
        server = EmbeddedRedis(root / "redis")
        client = __import__("redis").Redis.from_url(server.start())
        client.execute_command("CONFIG", "SET", "appendfsync", "always")
        client.xadd(EVENTS_STREAM, {"kind": "flame"})
        client.close()
        writer = SegmentWriter(7, root / "segments", segment_seconds=1.0)
        with av.open(str(make_clip(tmp_path / "clip.mp4", seconds=4.0))) as source:
            for packet in source.demux(video=0):
                writer.write(packet)
        writer.finish()
        segments = sorted((root / "segments" / "7").glob("*.ts"))
        assert len(segments) >= 3
        assert any((root / "redis").rglob("*.aof"))
        assert {p.name for p in root.rglob("*")} >= {"lookout.db", "lookout.db-wal", "redis", "index.jsonl"}
        assert _exposed(root) == []
        oldest = segments[0].stat().st_size
        total = sum(p.stat().st_size for p in segments)
        assert enforce_retention(root / "segments", 3600, total - oldest) == 1  # rewrites the index
        assert _exposed(root) == []
        server.stop()
        engine.dispose()
    finally:
        os.umask(previous)


# -- hole 19: the audit chain's head lives only in the database -----------------------------------


@pytest.fixture
def cli(services: Services, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
        capsys: pytest.CaptureFixture[str]):
    """`cli(*args)` → (exit code, what `lookout ...` printed) for the test database and data_dir."""
    monkeypatch.setenv("LOOKOUT_DATABASE_URL", services.engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("LOOKOUT_SECRET_KEY", SECRET)
    monkeypatch.setenv("LOOKOUT_DATA_DIR", str(services.settings.data_dir))

    def run(*args: str) -> tuple[int, str]:
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse: an unknown command
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    return run


_names = itertools.count()


def _writes(client: TestClient, tree: Tree, login, count: int = 6) -> None:  # type: ignore[no-untyped-def]
    """`2 * count` audit rows: a camera created and edited, `count` times."""
    admin = login("admin", tree.county)
    for _ in range(count):
        name = f"cam{next(_names)}"
        response = client.post("/api/v1/cameras", json=camera_body(tree.village_a1, name), headers=admin)
        assert response.status_code == 201, response.text
        client.patch(f"/api/v1/cameras/{response.json()['id']}", json={"address": f"路{name}号"}, headers=admin)


def _cut_back_to(services: Services, last: int) -> None:
    """The attacker deletes every row after `last` and moves the head back onto `last`."""
    with services.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE id > :last"), {"last": last})
        conn.execute(text("UPDATE audit_head SET last_id = :last, "
                          "last_hash = (SELECT row_hash FROM audit_log WHERE id = :last) WHERE id = 1"),
                     {"last": last})


def _rewrite_from(services: Services, first: int) -> None:
    """The forger edits row `first` and recomputes its hash, every later row's links and hashes,
    and the head: the chain in the database is consistent again."""
    with services.sessions() as session:
        rows = session.query(audit.AuditEntry).filter(audit.AuditEntry.id >= first).order_by(audit.AuditEntry.id).all()
        digest = rows[0].prev_hash
        rows[0].actor = "user:nobody"
        for entry in rows:
            entry.prev_hash = digest
            entry.row_hash = digest = audit.row_digest(digest, {c: getattr(entry, c) for c in audit.CHAINED})
        head = session.get(audit.AuditHead, 1)
        assert head is not None
        head.last_id, head.last_hash = rows[-1].id, digest
        session.commit()


def _checkpoints(services: Services) -> Path:
    [found] = (Path(services.settings.data_dir) / "audit-checkpoints").glob("*.jsonl")
    return found


def test_rows_cut_off_the_end_with_the_head_moved_back_are_named_by_the_checkpoint(
        client: TestClient, tree: Tree, login, cli, services: Services) -> None:  # type: ignore[no-untyped-def]
    _writes(client, tree, login)
    code, out = cli("audit", "checkpoint")
    assert code == 0, out
    _cut_back_to(services, 9)
    code, out = cli("audit", "verify")
    assert code == 1, out
    assert "broken at row 10" in out and "checkpoint" in out and "row 12" in out, out


def test_rows_cut_and_refilled_through_the_api_are_named_by_the_checkpoint(
        client: TestClient, tree: Tree, login, cli, services: Services) -> None:  # type: ignore[no-untyped-def]
    """After the cut the attacker lets the service write new rows 10.. over the deleted ones."""
    _writes(client, tree, login)
    assert cli("audit", "checkpoint")[0] == 0
    _cut_back_to(services, 9)
    _writes(client, tree, login, 3)
    code, out = cli("audit", "verify")
    assert code == 1, out
    assert "broken at row 12" in out and "checkpoint" in out, out


def test_a_rewrite_of_every_later_row_and_the_head_is_named_by_the_checkpoint(
        client: TestClient, tree: Tree, login, cli, services: Services) -> None:  # type: ignore[no-untyped-def]
    _writes(client, tree, login, 3)
    assert cli("audit", "checkpoint")[0] == 0  # row 6
    _writes(client, tree, login, 3)
    assert cli("audit", "checkpoint")[0] == 0  # row 12
    _rewrite_from(services, 8)
    with services.sessions() as session:
        assert audit.verify_chain(session).intact  # the database alone cannot tell
    code, out = cli("audit", "verify")
    assert code == 1, out
    assert "broken at row 12" in out and "checkpoint" in out and "rows 7 to 12" in out, out


def test_a_checkpoint_line_forged_without_the_key_is_reported(
        client: TestClient, tree: Tree, login, cli, services: Services) -> None:  # type: ignore[no-untyped-def]
    """The attacker cuts rows 10-12 and appends a checkpoint of row 9, signed with a key of his
    own: the line is reported as forged and the genuine checkpoint still names the cut."""
    _writes(client, tree, login)
    assert cli("audit", "checkpoint")[0] == 0
    _cut_back_to(services, 9)
    with services.sessions() as session:
        row9 = session.get(audit.AuditEntry, 9)
        assert row9 is not None
    line = json.loads(_checkpoints(services).read_text().splitlines()[-1])
    line |= {"last_id": 9, "last_hash": row9.row_hash, "at": "2099-01-01T00:00:00+00:00"}
    body = json.dumps({k: v for k, v in line.items() if k != "mac"}, sort_keys=True, separators=(",", ":"))
    line["mac"] = hmac.new(b"a key the attacker made up", body.encode(), hashlib.sha256).hexdigest()
    with _checkpoints(services).open("a") as handle:
        handle.write(json.dumps(line) + "\n")
    code, out = cli("audit", "verify")
    assert code == 1, out
    assert "line 2" in out and "signature" in out, out
    assert "broken at row 10" in out, out


def test_an_untouched_log_with_checkpoints_verifies_and_grows_past_them(
        client: TestClient, tree: Tree, login, cli, services: Services) -> None:  # type: ignore[no-untyped-def]
    _writes(client, tree, login, 3)
    assert cli("audit", "checkpoint")[0] == 0
    _writes(client, tree, login, 3)
    assert cli("audit", "checkpoint")[0] == 0
    _writes(client, tree, login, 3)  # rows after the last checkpoint
    code, out = cli("audit", "verify")
    assert code == 0, out
    assert "intact: 18 rows" in out and "2 checkpoints" in out, out
    folder = _checkpoints(services).parent
    key = Path(services.settings.data_dir) / "audit-checkpoint.key"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(_checkpoints(services).stat().st_mode) == 0o600
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    with services.sessions() as session:  # the key is nowhere in the database
        dump = json.dumps([list(r) for r in session.execute(text("SELECT * FROM audit_log")).all()], default=str)
    assert key.read_text().strip() not in dump


def test_the_alert_engine_thread_checkpoints_the_head_at_its_interval(
        client: TestClient, tree: Tree, login, services: Services) -> None:  # type: ignore[no-untyped-def]
    from registry.audit_checkpoints import Checkpointer

    settings = services.settings.model_copy(update={"security": services.settings.security.model_copy(
        update={"audit_checkpoint_seconds": 0.2})})
    checkpointer = Checkpointer.from_settings(settings, services.sessions)
    thread = threading.Thread(target=checkpointer.run, daemon=True)
    thread.start()
    try:
        _writes(client, tree, login, 2)

        def saw(row: int) -> bool:
            files = list((Path(settings.data_dir) / "audit-checkpoints").glob("*.jsonl"))
            return bool(files) and any(json.loads(line)["last_id"] == row for line in files[0].read_text().splitlines())

        wait_for(lambda: saw(4), 10)
        _writes(client, tree, login, 1)
        wait_for(lambda: saw(6), 10)
        time.sleep(0.6)  # an unchanged head is not written again and again
        lines = _checkpoints(services).read_text().splitlines()
        assert [json.loads(line)["last_id"] for line in lines].count(6) == 1
    finally:
        checkpointer.stop_event.set()
        thread.join(5)
    assert not thread.is_alive()
