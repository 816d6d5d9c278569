"""Signed checkpoints of the audit chain's head, kept outside the database.

The chain (registry.audit) finds a row edited, or deleted in the middle. But its head lives in
the same database: whoever can write there can delete the last rows and move the head back,
or rewrite a row together with every later hash and the head, and the chain still holds. A
checkpoint is the head — last row id, its hash, the time — signed with HMAC-SHA256 under a
key that is not in the database, and appended as one JSON line to a file outside it.
`lookout audit verify` then checks every checkpoint against the rows: each checkpointed row
must still exist with that hash, so history before the latest checkpoint cannot be cut or
rewritten without the key. A line whose signature does not hold is reported (forged,
damaged, or signed with another key).

Written at an interval by the alert engine (`Checkpointer`, a thread of `lookout
alert-engine`: the long-running process every deployment has, the one writing most audit
rows) and on demand by `lookout audit checkpoint`. What it does not protect: rows written
after the latest checkpoint, and an attacker who holds the key and can rewrite the file —
keep the folder on another host or on an append-only mount (`chattr +a`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.errors import ConfigError
from config.private_files import append_private, private_dir, secret_file
from config.settings import Settings
from registry.audit import Anchor, AuditHead

log = logging.getLogger("lookout.audit.checkpoints")

VERSION = 1
FILE_NAME = "checkpoints.jsonl"
#: The fields a line's MAC covers (every field but `mac`).
SIGNED = ("v", "last_id", "last_hash", "at", "by")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One valid line of the checkpoint file."""

    last_id: int
    last_hash: str
    at: str
    line: int
    path: Path

    @property
    def label(self) -> str:
        return f"checkpoint {self.line} of {self.path} ({self.at})"

    def anchor(self) -> Anchor:
        return Anchor(self.last_id, self.last_hash, self.label)


def _body(fields: dict[str, object]) -> bytes:
    return json.dumps({k: fields[k] for k in SIGNED}, sort_keys=True, separators=(",", ":")).encode()


def sign(key: bytes, fields: dict[str, object]) -> str:
    return hmac.new(key, _body(fields), hashlib.sha256).hexdigest()


def key_path(settings: Settings) -> Path:
    return settings.data_dir / "audit-checkpoint.key"


def checkpoint_dir(settings: Settings) -> Path:
    return settings.security.audit_checkpoint_dir or settings.data_dir / "audit-checkpoints"


def load_key(settings: Settings, create: bool) -> bytes | None:
    """The HMAC key: `security.audit_checkpoint_key` if set, else the file
    data_dir/audit-checkpoint.key, made (0600, 256 random bits) on first use when `create`.
    None when there is none and `create` is false (a `verify` never makes a key)."""
    if settings.security.audit_checkpoint_key is not None:
        key = settings.security.audit_checkpoint_key.get_secret_value().strip()
        if len(key) < 16:
            raise ConfigError("audit_checkpoint_key must be at least 16 characters",
                              field="security.audit_checkpoint_key")
        return key.encode()
    key = secret_file(key_path(settings), (lambda: secrets.token_hex(32)) if create else None)
    return None if key is None else key.encode()


class CheckpointFile:
    """The append-only file of one deployment's checkpoints, and its key."""

    def __init__(self, folder: Path, key: bytes | None) -> None:
        self.folder = folder
        self.path = folder / FILE_NAME
        self.key = key

    @classmethod
    def from_settings(cls, settings: Settings, create_key: bool) -> CheckpointFile:
        return cls(checkpoint_dir(settings), load_key(settings, create_key))

    def append(self, last_id: int, last_hash: str, by: str) -> Checkpoint:
        """Sign the head and append it as one line, flushed to disk before returning."""
        if self.key is None:
            raise ConfigError("no audit checkpoint key", field="security.audit_checkpoint_key")
        fields: dict[str, object] = {"v": VERSION, "last_id": last_id, "last_hash": last_hash,
                                     "at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "by": by}
        fields["mac"] = sign(self.key, fields)
        private_dir(self.folder)
        with append_private(self.path) as handle:
            handle.write(json.dumps(fields, separators=(",", ":")) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        log.info("audit_checkpoint_written", extra={"last_id": last_id, "path": str(self.path)})
        return Checkpoint(last_id, last_hash, str(fields["at"]), 0, self.path)  # line: not counted here

    def read(self) -> tuple[list[Checkpoint], list[str]]:
        """The lines whose signature holds, in file order, and one problem per line that does not
        (unreadable, or a MAC made without the key)."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return [], []
        except OSError as exc:
            return [], [f"the checkpoint file {self.path} cannot be read ({exc.strerror})"]
        if self.key is None:
            return [], [f"{self.path} holds checkpoints but their key is missing (security.audit_checkpoint_key, "
                        "default data_dir/audit-checkpoint.key): they cannot be checked"]
        valid, problems = [], []
        for number, raw in enumerate(text.splitlines(), 1):
            if not raw.strip():
                continue
            try:
                fields = json.loads(raw)
                checkpoint = Checkpoint(int(fields["last_id"]), str(fields["last_hash"]), str(fields["at"]),
                                        number, self.path)
                good = fields["v"] == VERSION and hmac.compare_digest(str(fields["mac"]), sign(self.key, fields))
            except (ValueError, KeyError, TypeError):
                problems.append(f"checkpoint line {number} of {self.path} cannot be read (damaged)")
                continue
            if not good:
                problems.append(f"checkpoint line {number} of {self.path} has a bad signature "
                                "(forged, damaged, or signed with another key); it was not used")
                continue
            valid.append(checkpoint)
        return valid, problems


def current_head(session: Session) -> tuple[int, str] | None:
    row = session.execute(select(AuditHead.last_id, AuditHead.last_hash).where(AuditHead.id == 1)).one_or_none()
    return None if row is None else (int(row[0]), str(row[1]))


class Checkpointer:
    """Writes a checkpoint of the head every `interval` seconds when the head has moved (an idle
    log does not grow the file), and one more when stopped. Run `run` in a thread."""

    def __init__(self, sessions: sessionmaker[Session], store: CheckpointFile, interval: float,
                 by: str = "alert-engine") -> None:
        self.sessions, self.store, self.interval, self.by = sessions, store, interval, by
        self.stop_event = threading.Event()
        self._last: tuple[int, str] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, sessions: sessionmaker[Session]) -> Checkpointer:
        return cls(sessions, CheckpointFile.from_settings(settings, create_key=True),
                   settings.security.audit_checkpoint_seconds)

    def step(self) -> Checkpoint | None:
        with self.sessions() as session:
            head = current_head(session)
        if head is None or head[0] == 0 or head == self._last:
            return None
        written = self.store.append(head[0], head[1], self.by)
        self._last = head
        return written

    def run(self) -> None:
        while True:
            try:
                self.step()
            except Exception:  # noqa: BLE001 - a database hiccup must not end the checkpoints
                log.exception("audit_checkpoint_failed", extra={"path": str(self.store.path)})
            if self.stop_event.wait(self.interval):
                break
        try:
            self.step()
        except Exception:  # noqa: BLE001 - logged; the process is stopping
            log.exception("audit_checkpoint_failed", extra={"path": str(self.store.path)})
