"""Bulk import of cameras from CSV, as technicians export them from spreadsheets (the file
itself, its encodings and columns: `registry.csv_file`).

- Scope: a row may only name a unit inside the importer's scope, and its upsert only ever
  matches cameras inside that scope. A `device_id` that another camera outside the scope
  holds is the row error "device_id not available", in dry runs too, naming nothing else:
  no import moves a camera out of a subtree its importer does not hold.
- Upsert: a row with a `device_id` updates the camera with that id; otherwise the camera
  with the same (unit, name). Empty cells clear optional fields, except the credentials
  cells: empty ones keep the stored credentials, unless the row moves a stream URL or the
  ONVIF endpoint to another host or port (then they are dropped, and the row gets a notice).
  Columns missing from the file leave their fields as they are.
- Size: the file is read twice as a stream, never whole: a first pass (`csv_file.scan`)
  detects the encoding, checks the header and the CSV structure and counts the rows against
  `max_rows`, so that a file-level problem stops the import before anything is written; the
  second validates and writes. Memory stays bounded by one batch, plus ~24 bytes per row for finding rows that
  repeat a device id or name.
- Writes: batch by batch, each batch in its own short transaction (cameras, tags, search
  rows, its error rows, then its audit rows, which take the audit chain's head lock last),
  sized so that a batch's write stays near `WRITE_BUDGET_SECONDS`: alert actions and other
  writers wait at most about that long. Rows already written stay when a later batch fails.
- Bad rows: each is reported with its line number and reason; the report holds the first
  `errors_shown`, the table `camera_import_rows` (registry.camera_imports) holds every one.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
from pydantic import ValidationError
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from config.database import utcnow
from config.errors import InvalidInput
from registry import audit, camera_search
from registry.camera_credentials import credentials_after, sealed_after_write, take_credentials
from registry.camera_imports import CLI_SCOPE, MESSAGE_MAX, CameraImport, CameraImportRow, purge
from registry.camera_spec import CameraSpec
from registry.camera_store import DEVICE_ID_TAKEN, CameraRegistry
from registry.cameras import Camera, CameraTag
from registry.credentials import Credentials
from registry.csv_file import records, scan
from registry.seen_keys import SeenKeys
from registry.units import Unit, in_scope, subtree_ids

log = logging.getLogger("lookout.import")

TRUE = {"1", "true", "yes", "y", "是", "启用"}
FALSE = {"0", "false", "no", "n", "否", "停用"}
DATA_FIELDS = (
    "name", "network", "unit_id", "owner", "latitude", "longitude", "address", "main_stream_url",
    "sub_stream_url", "onvif_host", "onvif_port", "device_id", "enabled",
)
FIRST_BATCH_ROWS = 500
MIN_BATCH_ROWS, MAX_BATCH_ROWS = 50, 5000
#: Seconds one batch's write transaction aims at: the longest an alert action waits for it.
WRITE_BUDGET_SECONDS = 0.08
FEED_EVERY_SECONDS = 10.0  # how often a long import tells the workers to re-read the registry
RETRIES = 3  # a batch whose insert races another writer's is resolved again this many times
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    message: str


@dataclass
class ImportReport:
    encoding: str
    dry_run: bool
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    credentials_dropped: int = 0
    errors_total: int = 0
    errors: list[RowError] = field(default_factory=list)  # the first `errors_shown` of them
    import_id: int | None = None


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"] if not isinstance(p, int)) or "row"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


# -- one import ------------------------------------------------------------------------------------

@dataclass(slots=True)
class _Planned:
    line: int
    values: dict[str, Any]
    tags: list[str] | None  # None: no tags column, keep the stored tags
    credentials: Credentials | None  # explicit cells, or taken from the URLs
    target: int | None = None  # existing camera id to update, or None to create
    keys: tuple[int, ...] = ()  # hashes for SeenKeys


@dataclass(slots=True)
class _Batch:
    plans: list[_Planned] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    notices: list[RowError] = field(default_factory=list)
    created: int = 0
    updated: int = 0
    unchanged: int = 0


class CameraImporter:
    """One import run: scan the file, then validate, resolve and write it batch by batch."""

    def __init__(self, registry: CameraRegistry, session: Session, scope: str | None, actor: str,
                 progress: Progress | None = None, *, max_rows: int | None = None, errors_shown: int = 100,
                 keep_days: int | None = None) -> None:
        self.registry = registry
        self.session = session
        self.scope = scope  # None: the local CLI, which may write anywhere
        self.actor = actor
        self.progress = progress or (lambda phase, done, total: None)
        self.max_rows = max_rows
        self.errors_shown = errors_shown
        self.keep_days = keep_days
        self.labels = {label: code for code, label in registry.networks.items()}
        self.batch_rows = FIRST_BATCH_ROWS
        self.locked_seconds = 0.0  # how long the last batch held the write transaction
        self.seen = SeenKeys()
        self.fields: set[str] = set()
        self.positions: dict[str, int] = {}
        self._units: dict[str, tuple[int, str]] = {}
        self._published = time.monotonic()
        self._unpublished = False

    def run(self, data: bytes | IO[bytes], dry_run: bool = False) -> ImportReport:
        """Import `data` (bytes, or a seekable binary file such as an upload's spool file)."""
        source: IO[bytes] = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
        encoding, self.positions, total = scan(source, self.max_rows)
        codec = {"gbk": "gb18030"}.get(encoding, encoding)
        self.fields = {"unit_id", *(f for f in DATA_FIELDS if f in self.positions)}
        if self.keep_days is not None:
            purge(self.session, self.keep_days)
        self._units = {code: (uid, path) for uid, code, path in
                       self.session.execute(select(Unit.id, Unit.code, Unit.path))}
        run = CameraImport(actor=self.actor, scope=self.scope if self.scope is not None else CLI_SCOPE,
                           dry_run=dry_run, state="running", encoding=encoding, rows=total, created=0, updated=0,
                           unchanged=0, credentials_dropped=0, errors=0, started_at=utcnow())
        self.session.add(run)
        self.session.commit()
        report = ImportReport(encoding=encoding, dry_run=dry_run, rows=total, import_id=run.id)
        log.info("camera_import_started", extra={"import_id": run.id, "actor": self.actor, "rows": total,
                                                 "encoding": encoding, "dry_run": dry_run})
        try:
            rows = records(source, codec)
            next(rows)  # the header, checked by the scan
            done = 0
            while True:
                chunk = [record for _, record in zip(range(self.batch_rows), rows)]
                if not chunk:
                    break
                self._batch(chunk, report, dry_run)
                done += len(chunk)
                self.progress("validate", done, total)
                self.progress("write", done, total)
                self._publish(report, final=False)
        except BaseException as exc:
            self.session.rollback()
            try:  # the batches written so far stay; the record says where it stopped
                self._finish(report, "failed", f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}")
            except Exception:  # the database itself may be what failed: keep the first error
                self.session.rollback()
                log.exception("camera_import_record_failed", extra={"import_id": report.import_id})
            self._publish(report, final=True)
            raise
        self._finish(report, "done", None)
        self._publish(report, final=True)
        return report

    def _finish(self, report: ImportReport, state: str, detail: str | None) -> None:
        self.session.execute(update(CameraImport).where(CameraImport.id == report.import_id).values(
            state=state, detail=detail, created=report.created, updated=report.updated, unchanged=report.unchanged,
            credentials_dropped=report.credentials_dropped, errors=report.errors_total, finished_at=utcnow()))
        if not report.dry_run and state == "done":
            if self.session.get_bind().dialect.name == "sqlite" and (report.created or report.updated):
                # fresh planner statistics after a bulk load, from a sample: a full ANALYZE of a
                # million cameras holds the write lock for over a second
                self.session.execute(text("PRAGMA analysis_limit = 1000"))
                self.session.execute(text("ANALYZE"))
            audit.record(self.session, self.actor, "camera.import", "camera", None, None, None, {
                "import_id": report.import_id, "rows": report.rows, "created": report.created,
                "updated": report.updated, "unchanged": report.unchanged, "errors": report.errors_total,
                "credentials_dropped": report.credentials_dropped, "encoding": report.encoding})
        self.session.commit()
        log.info("camera_import_finished", extra={
            "import_id": report.import_id, "state": state, "cameras_created": report.created,
            "cameras_updated": report.updated, "cameras_unchanged": report.unchanged,
            "row_errors": report.errors_total})

    def _publish(self, report: ImportReport, final: bool) -> None:
        """Tell the workers to re-read the registry: at the end, and every `FEED_EVERY_SECONDS`
        of a long import (not per batch: each `bulk` makes every worker re-read everything)."""
        if report.dry_run or not self._unpublished:
            return
        if final or time.monotonic() - self._published >= FEED_EVERY_SECONDS:
            self.registry.feed.publish("bulk")
            self._published, self._unpublished = time.monotonic(), False

    # -- one batch -------------------------------------------------------------------------------
    def _batch(self, chunk: list[tuple[int, list[str]]], report: ImportReport, dry_run: bool) -> None:
        validated: list[_Planned] = []
        invalid: list[RowError] = []
        for line, cells in chunk:
            try:
                validated.append(self._plan_row(line, cells))
            except ValueError as exc:
                invalid.append(RowError(line, str(exc)))
        for attempt in range(1, RETRIES + 1):
            batch = _Batch(errors=list(invalid))
            self._resolve(validated, batch)
            batch.errors.sort(key=lambda e: e.line)
            try:
                self._write(batch, report, dry_run)
                break
            except IntegrityError:  # another writer took a name or device id since we looked
                self.session.rollback()
                if attempt == RETRIES:
                    raise
        if not dry_run and batch.plans:  # the next batch sized so that its locked part fits the budget
            wanted = int(len(chunk) * WRITE_BUDGET_SECONDS / max(self.locked_seconds, 1e-3))
            self.batch_rows = max(MIN_BATCH_ROWS, min(MAX_BATCH_ROWS, wanted, 2 * len(chunk)))
        keys = [(k, p.line) for p in batch.plans for k in p.keys]
        if keys:
            self.seen.add(np.array([k for k, _ in keys], np.uint64), np.array([n for _, n in keys], np.int64))
        report.created += batch.created
        report.updated += batch.updated
        report.unchanged += batch.unchanged
        report.errors_total += len(batch.errors)
        report.credentials_dropped += len(batch.notices)
        room = self.errors_shown - len(report.errors)
        if room > 0:
            report.errors.extend(batch.errors[:room])

    def _plan_row(self, line: int, cells: list[str]) -> _Planned:
        positions = self.positions
        if len(cells) > len(positions) and any(c.strip() for c in cells[max(positions.values()) + 1:]):
            raise ValueError("more cells than columns in the header")
        row = {key: cells[i].strip() if i < len(cells) else "" for key, i in positions.items()}
        code = row.get("unit_code", "")
        if code not in self._units:
            raise ValueError(f"unit_code: unknown unit {code!r}" if code else "unit_code: missing")
        unit_id, path = self._units[code]
        if self.scope is not None and not in_scope(path, self.scope):
            raise ValueError(f"unit_code: unit {code} is outside your scope")
        network = row.get("network", "")
        network = self.labels.get(network, network)
        data: dict[str, Any] = {k: v for k, v in row.items() if v != "" and k not in ("unit_code", "tags", "enabled")}
        data["network"] = network
        data["unit_id"] = unit_id
        if row.get("tags"):
            data["tags"] = [t for t in (p.strip() for p in row["tags"].replace("|", ";").replace(",", ";").split(";")) if t]
        enabled = row.get("enabled", "").lower()
        if enabled:
            if enabled not in TRUE | FALSE:
                raise ValueError(f"enabled: {row['enabled']!r} is not true/false")
            data["enabled"] = enabled in TRUE
        try:
            spec = CameraSpec.model_validate(data)
        except ValidationError as exc:
            raise ValueError(_describe(exc)) from None
        if spec.network not in self.registry.networks:
            raise ValueError(f"network: unknown network {spec.network!r}")
        values = spec.model_dump(include=self.fields)
        explicit = None
        if spec.username is not None or spec.password is not None:
            explicit = Credentials(spec.username or "", spec.password.get_secret_value() if spec.password else "")
        try:
            given = take_credentials(values, explicit)  # URLs lose theirs here, before anything else
        except InvalidInput as exc:
            raise ValueError(exc.message) from None
        tags = sorted(set(spec.tags)) if "tags" in positions else None
        return _Planned(line, values, tags, given)

    def _resolve(self, validated: list[_Planned], batch: _Batch) -> None:
        """Each row's target: a camera of the caller's scope with its device id, or with its
        (unit, name); a device id held outside the scope is refused without saying where."""
        devices = sorted({p.values["device_id"] for p in validated if p.values.get("device_id")})
        by_device: dict[str, tuple[int, str | None, bool]] = {}
        for start in range(0, len(devices), 900):
            for cid, dev, path in self.session.execute(
                    select(Camera.id, Camera.device_id, Unit.path).join(Unit, Unit.id == Camera.unit_id)
                    .where(Camera.device_id.in_(devices[start:start + 900]))):
                by_device[dev] = (cid, dev, self.scope is None or in_scope(path, self.scope))
        names = sorted({p.values["name"] for p in validated})
        unit_ids = sorted({p.values["unit_id"] for p in validated})
        by_name: dict[tuple[int, str], tuple[int, str | None]] = {}
        for start in range(0, len(names), 900):
            for cid, dev, uid, name in self.session.execute(
                    select(Camera.id, Camera.device_id, Camera.unit_id, Camera.name)
                    .where(Camera.name.in_(names[start:start + 900]), Camera.unit_id.in_(unit_ids))):
                by_name[(uid, name)] = (cid, dev)
        digest = SeenKeys.digest
        hashes = [(digest(f"d\0{p.values['device_id']}") if p.values.get("device_id") else 0,
                   digest(f"n\0{p.values['unit_id']}\0{p.values['name']}")) for p in validated]
        flat = np.array([h for pair in hashes for h in pair], np.uint64)
        earlier = self.seen.lookup(flat).reshape(-1, 2) if len(flat) else np.zeros((0, 2), np.int64)
        here: dict[int, int] = {}
        self.session.rollback()  # end the read transaction: the write starts a fresh one
        for plan, (dev_key, name_key), (dev_line, name_line) in zip(validated, hashes, earlier.tolist()):
            values = plan.values
            dev, key = values.get("device_id"), (values["unit_id"], values["name"])
            dev_line = dev_line or (here.get(dev_key, 0) if dev else 0)
            name_line = name_line or here.get(name_key, 0)
            if dev and dev_line:
                batch.errors.append(RowError(plan.line, f"device_id {dev} already used on line {dev_line}"))
                continue
            if name_line:
                batch.errors.append(RowError(plan.line,
                                             f"name {key[1]!r} already used in this unit on line {name_line}"))
                continue
            target = None
            if dev and dev in by_device:
                cid, _, mine = by_device[dev]
                if not mine:
                    batch.errors.append(RowError(plan.line, DEVICE_ID_TAKEN))
                    continue
                target = cid
            named = by_name.get(key)
            if target is None and named is not None:
                if dev and named[1] and named[1] != dev:
                    batch.errors.append(RowError(plan.line, f"name {key[1]!r} is taken in this unit by camera "
                                                             f"{named[0]} (device_id {named[1]})"))
                    continue
                target = named[0]
            elif target is not None and named is not None and named[0] != target:
                batch.errors.append(RowError(plan.line, f"name {key[1]!r} is taken in this unit by camera {named[0]}"))
                continue
            plan.target = target
            plan.keys = (dev_key, name_key) if dev else (name_key,)
            if dev:
                here[dev_key] = plan.line
            here[name_key] = plan.line
            batch.plans.append(plan)

    # -- writing ---------------------------------------------------------------------------------
    def _write(self, batch: _Batch, report: ImportReport, dry_run: bool) -> None:
        """One transaction: everything computed first (sealing, audit snapshots), then the
        statements, the audit rows last, so the head lock is held for the shortest time."""
        session, now = self.session, utcnow()
        creates = [p for p in batch.plans if p.target is None]
        updates = [p for p in batch.plans if p.target is not None]
        if dry_run:
            batch.created, batch.updated = len(creates), len(updates)
            self._write_problems(batch, report)
            session.commit()
            self.locked_seconds = 0.0
            return
        create_rows, created_audit = [], []
        for plan in creates:
            values = dict(plan.values)
            creds = credentials_after(None, {}, values, plan.credentials)[0] if plan.credentials else None
            values["credentials_sealed"] = self.registry.seal(creds)
            values.update(status="unknown", created_at=now, updated_at=now)
            create_rows.append(values)
            after = {k: v for k, v in values.items() if k != "credentials_sealed"}
            after.update(id=None, tags=plan.tags or [], has_credentials=creds is not None)
            created_audit.append(audit.audit_row(self.actor, "camera.import.create", "camera", None,
                                                 values["unit_id"], None, after))  # ids filled in below
        current: dict[int, Camera] = {}
        if updates:  # read again, inside the scope: a camera may have been deleted or moved since `_resolve`
            query = select(Camera).where(Camera.id.in_([p.target for p in updates]))
            if self.scope is not None:
                query = query.where(Camera.unit_id.in_(subtree_ids(self.scope)))
            current = {c.id: c for c in session.scalars(query)}
        changed_rows: list[dict[str, Any]] = []
        tag_sets: dict[int, list[str]] = {}
        audit_rows: list[dict[str, Any]] = []
        for plan in updates:
            camera = current.get(plan.target)  # type: ignore[arg-type]
            if camera is None:
                batch.errors.append(RowError(plan.line, "the camera this row updates was deleted or moved out of "
                                                        "your scope during the import; import the row again"))
                continue
            values = dict(plan.values)
            before = camera.public()
            sealed, creds_changed, dropped = sealed_after_write(self.registry.cipher, camera, before, values,
                                                                 plan.credentials)
            same_tags = plan.tags is None or before["tags"] == plan.tags
            if all(before[k] == v for k, v in values.items()) and same_tags and not creds_changed:
                batch.unchanged += 1
                continue
            values.update(id=camera.id, updated_at=now)
            if creds_changed:
                values["credentials_sealed"] = sealed
            if dropped:
                batch.notices.append(RowError(plan.line, "credentials dropped: the stream URL or ONVIF endpoint "
                                                         "moved to another host or port; give them again"))
            changed_rows.append(values)
            if plan.tags is not None:
                tag_sets[camera.id] = plan.tags
            after = dict(before, **{k: v for k, v in values.items() if k != "credentials_sealed"})
            after["tags"] = before["tags"] if plan.tags is None else plan.tags
            after["has_credentials"] = values.get("credentials_sealed", camera.credentials_sealed) is not None
            if dropped:
                after["credentials_dropped"] = True
            audit_rows.append(audit.audit_row(self.actor, "camera.import.update", "camera", camera.id,
                                              values["unit_id"], before, after))
        session.expunge_all()
        locked = time.perf_counter()
        if create_rows or changed_rows:
            camera_search.pause_row_triggers(session)  # the first write: the transaction's lock starts here
        if create_rows:
            ids = self._insert(create_rows)
            camera_search.reindex(session, ids)
            tag_rows = [{"camera_id": cid, "tag": t} for cid, plan in zip(ids, creates) for t in plan.tags or ()]
            if tag_rows:
                session.execute(insert(CameraTag), tag_rows)
            for cid, row in zip(ids, created_audit):
                row["target_id"] = row["after"]["id"] = cid
        if changed_rows:
            session.execute(update(Camera), changed_rows)
            camera_search.reindex(session, [row["id"] for row in changed_rows])
        if tag_sets:
            session.execute(delete(CameraTag).where(CameraTag.camera_id.in_(list(tag_sets))))
            tag_rows = [{"camera_id": cid, "tag": t} for cid, tags in tag_sets.items() for t in tags]
            if tag_rows:
                session.execute(insert(CameraTag), tag_rows)
        if create_rows or changed_rows:
            camera_search.resume_row_triggers(session)
        self._write_problems(batch, report)
        entries = created_audit + audit_rows
        stamp = utcnow()
        for entry in entries:  # stamped when they join the chain, like every other writer's rows
            entry["at"] = stamp
        audit.record_many(session, entries)
        session.commit()
        self.locked_seconds = time.perf_counter() - locked
        batch.created, batch.updated = len(create_rows), len(changed_rows)
        if create_rows or changed_rows:
            self._unpublished = True

    def _write_problems(self, batch: _Batch, report: ImportReport) -> None:
        rows = [{"import_id": report.import_id, "line": e.line, "kind": kind, "message": e.message[:MESSAGE_MAX]}
                for kind, items in (("error", batch.errors), ("notice", batch.notices)) for e in items]
        if rows:
            self.session.execute(insert(CameraImportRow), rows)

    def _insert(self, rows: list[dict[str, Any]]) -> list[int]:
        """Insert with one executemany and return the new ids in row order.

        Not `INSERT ... RETURNING`: with ordered returning, SQLAlchemy falls back to one
        statement per row on SQLite. The new rows are found again by their unique
        (unit, name), which is safe even if other writers insert at the same time."""
        table = Camera.__table__
        floor = self.session.scalar(select(func.coalesce(func.max(Camera.id), 0)))
        self.session.connection().execute(table.insert(), rows)
        found = {
            (unit_id, name): cid
            for cid, unit_id, name in self.session.execute(
                select(Camera.id, Camera.unit_id, Camera.name).where(Camera.id > floor)
            )
        }
        return [found[(row["unit_id"], row["name"])] for row in rows]
