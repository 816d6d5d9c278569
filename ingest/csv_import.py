"""Bulk import of cameras from CSV, as technicians export them from spreadsheets.

- Encoding: UTF-8 with or without BOM, or GBK/GB18030 (Chinese Excel's default), detected
  by trying a strict UTF-8 decode first: GBK text of any length is essentially never valid UTF-8.
- Columns: see `COLUMNS` (English names or the Chinese headers in the template). Unknown
  columns stop the import before anything is written, so a typo never drops a field silently.
- Upsert: a row with a `device_id` updates the camera with that id; otherwise the camera
  with the same (unit, name). Empty cells clear optional fields, except the credentials
  cells: empty ones keep the stored credentials. Columns missing from the file leave
  their fields as they are.
- Bad rows: each is reported with its line number and reason; every good row is stored,
  in one transaction, with bulk statements (no per-row round trip).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from config.database import utcnow
from config.errors import InvalidInput
from ingest import audit, camera_search
from ingest.camera_spec import CameraSpec
from ingest.camera_store import CameraRegistry
from ingest.cameras import Camera, CameraTag
from ingest.credentials import Credentials
from ingest.units import Unit, in_scope

COLUMNS: dict[str, tuple[str, ...]] = {
    "name": ("名称", "点位名称"),
    "network": ("网络", "所属网络"),
    "unit_code": ("单位编码", "区划代码"),
    "owner": ("权属单位", "所属部门"),
    "longitude": ("经度",),
    "latitude": ("纬度",),
    "address": ("地址", "安装地址"),
    "main_stream_url": ("主码流",),
    "sub_stream_url": ("子码流",),
    "onvif_host": ("ONVIF地址",),
    "onvif_port": ("ONVIF端口",),
    "device_id": ("国标编码", "设备编码"),
    "username": ("用户名",),
    "password": ("密码",),
    "tags": ("标签",),
    "enabled": ("启用",),
}
REQUIRED = ("name", "network", "unit_code")
TRUE = {"1", "true", "yes", "y", "是", "启用"}
FALSE = {"0", "false", "no", "n", "否", "停用"}
CHUNK = 2000
DATA_FIELDS = (
    "name", "network", "unit_id", "owner", "latitude", "longitude", "address", "main_stream_url",
    "sub_stream_url", "onvif_host", "onvif_port", "device_id", "enabled",
)
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
    errors: list[RowError] = field(default_factory=list)


def decode(data: bytes) -> tuple[str, str]:
    """(text, encoding name) for UTF-8 (BOM or not) or GBK/GB18030 bytes."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="strict"), "utf-8-sig"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030"), "gbk"
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InvalidInput(f"file is neither UTF-8 nor GBK (undecodable bytes on line {line})", field="file") from None


def template() -> str:
    """The downloadable template: English header, Chinese header names accepted as well."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(list(COLUMNS))
    writer.writerow([
        "东门广场1号", "xueliang", "330199001001", "城关镇综治办", "120.1551", "30.2741",
        "东门广场北侧", "rtsp://10.0.0.7:554/Streaming/Channels/101",
        "rtsp://10.0.0.7:554/Streaming/Channels/102", "10.0.0.7", "80",
        "33010200001320000001", "admin", "change-me", "广场;人员密集", "true",
    ])
    return out.getvalue()


def _header(names: list[str]) -> dict[str, int]:
    lookup = {alias: key for key, aliases in COLUMNS.items() for alias in (key, *aliases)}
    positions: dict[str, int] = {}
    unknown = []
    for index, raw in enumerate(names):
        name = raw.strip().lstrip("\ufeff")
        key = lookup.get(name) or lookup.get(name.lower())
        if key is None:
            if name:
                unknown.append(name)
            continue
        positions[key] = index
    if unknown:
        raise InvalidInput(
            f"line 1: unknown column(s) {', '.join(unknown)}; known: {', '.join(COLUMNS)}", field="file"
        )
    missing = [c for c in REQUIRED if c not in positions]
    if missing:
        raise InvalidInput(f"line 1: missing required column(s) {', '.join(missing)}", field="file")
    return positions


def _rows(text: str) -> Iterator[tuple[int, list[str]]]:
    """(line number where the row starts, cells), skipping blank lines."""
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 1
    try:
        for cells in reader:
            if any(cell.strip() for cell in cells):
                yield start, cells
            start = reader.line_num + 1
    except csv.Error as exc:
        raise InvalidInput(f"line {reader.line_num}: unreadable CSV ({exc}); nothing was imported", field="file") from None


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"] if not isinstance(p, int)) or "row"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


@dataclass(slots=True)
class _Planned:
    line: int
    values: dict[str, Any]
    tags: list[str] | None  # None: no tags column, keep the stored tags
    credentials: Credentials | None
    target: int | None  # existing camera id to update, or None to create


class CameraImporter:
    """One import run: parse, validate and resolve every row, then write the good ones."""

    def __init__(self, registry: CameraRegistry, session: Session, scope: str | None, actor: str,
                 progress: Progress | None = None) -> None:
        self.registry = registry
        self.session = session
        self.scope = scope  # None: the local CLI, which may write anywhere
        self.actor = actor
        self.progress = progress or (lambda phase, done, total: None)
        self.labels = {label: code for code, label in registry.networks.items()}

    def run(self, data: bytes, dry_run: bool = False) -> ImportReport:
        text, encoding = decode(data)
        report = ImportReport(encoding=encoding, dry_run=dry_run)
        rows = _rows(text)
        first = next(rows, None)
        if first is None:
            raise InvalidInput("the file is empty", field="file")
        positions = _header(first[1])
        self.fields = {"unit_id", *(f for f in DATA_FIELDS if f in positions)}
        body = list(rows)
        report.rows = len(body)
        plans = self._plan(body, positions, report)
        if not dry_run:
            self._write(plans, report)
        else:
            for plan in plans:
                if plan.target is None:
                    report.created += 1
                else:
                    report.updated += 1
        report.errors.sort(key=lambda e: e.line)
        return report

    # -- validation and key resolution -----------------------------------------------------
    def _units(self) -> dict[str, tuple[int, str]]:
        return {code: (uid, path) for uid, code, path in self.session.execute(select(Unit.id, Unit.code, Unit.path))}

    def _cell_dict(self, cells: list[str], positions: Mapping[str, int]) -> dict[str, str]:
        return {key: cells[i].strip() if i < len(cells) else "" for key, i in positions.items()}

    def _plan(self, body: list[tuple[int, list[str]]], positions: Mapping[str, int], report: ImportReport) -> list[_Planned]:
        units = self._units()
        existing = self.session.execute(select(Camera.id, Camera.device_id, Camera.unit_id, Camera.name)).all()
        by_device = {dev: cid for cid, dev, _, _ in existing if dev}
        by_name = {(uid, name): cid for cid, _, uid, name in existing}
        device_of = {cid: dev for cid, dev, _, _ in existing}
        seen_device: dict[str, int] = {}
        seen_name: dict[tuple[int, str], int] = {}
        plans: list[_Planned] = []
        for done, (line, cells) in enumerate(body, 1):
            if done % CHUNK == 0:
                self.progress("validate", done, len(body))
            try:
                plan = self._plan_row(line, self._cell_dict(cells, positions), units, cells, positions)
            except ValueError as exc:
                report.errors.append(RowError(line, str(exc)))
                continue
            values = plan.values
            dev, key = values.get("device_id"), (values["unit_id"], values["name"])
            if dev and dev in seen_device:
                report.errors.append(RowError(line, f"device_id {dev} already used on line {seen_device[dev]}"))
                continue
            if key in seen_name:
                report.errors.append(RowError(line, f"name {key[1]!r} already used in this unit on line {seen_name[key]}"))
                continue
            target = by_device.get(dev) if dev else None
            named = by_name.get(key)
            if target is None and named is not None:
                if dev and device_of.get(named) and device_of[named] != dev:
                    report.errors.append(RowError(
                        line, f"name {key[1]!r} is taken in this unit by camera {named} (device_id {device_of[named]})"))
                    continue
                target = named
            elif target is not None and named not in (None, target):
                report.errors.append(RowError(line, f"name {key[1]!r} is taken in this unit by camera {named}"))
                continue
            if dev:
                seen_device[dev] = line
            seen_name[key] = line
            plan.target = target
            plans.append(plan)
        self.progress("validate", len(body), len(body))
        return plans

    def _plan_row(self, line: int, row: dict[str, str], units: Mapping[str, tuple[int, str]],
                  cells: list[str], positions: Mapping[str, int]) -> _Planned:
        if len(cells) > len(positions) and any(c.strip() for c in cells[max(positions.values()) + 1:]):
            raise ValueError("more cells than columns in the header")
        code = row.get("unit_code", "")
        if code not in units:
            raise ValueError(f"unit_code: unknown unit {code!r}" if code else "unit_code: missing")
        unit_id, path = units[code]
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
        tags = sorted(set(spec.tags)) if "tags" in positions else None
        return _Planned(line, values, tags, explicit, None)

    # -- writing -----------------------------------------------------------------------------
    def _write(self, plans: list[_Planned], report: ImportReport) -> None:
        session, now = self.session, utcnow()
        creates = [p for p in plans if p.target is None]
        updates = [p for p in plans if p.target is not None]
        total, done = len(plans), 0
        audit_rows: list[dict[str, Any]] = []
        camera_search.pause_row_triggers(session)
        for chunk in _chunks(creates):
            rows = []
            for plan in chunk:
                values = dict(plan.values)
                values["credentials_sealed"] = self.registry.seal(self.registry.take_credentials(values, plan.credentials))
                values.update(status="unknown", created_at=now, updated_at=now)
                rows.append(values)
            ids = self._insert(rows)
            camera_search.reindex(session, ids)
            tag_rows = [{"camera_id": cid, "tag": t} for cid, plan in zip(ids, chunk) for t in plan.tags or ()]
            if tag_rows:
                session.connection().execute(CameraTag.__table__.insert(), tag_rows)
            for cid, values, plan in zip(ids, rows, chunk):
                after = {k: v for k, v in values.items() if k != "credentials_sealed"}
                after.update(id=cid, tags=plan.tags or [], has_credentials=values["credentials_sealed"] is not None)
                audit_rows.append(audit.audit_row(self.actor, "camera.import.create", "camera", cid, values["unit_id"], None, after))
            report.created += len(chunk)
            done += len(chunk)
            self._flush_audit(audit_rows)
            self.progress("write", done, total)
        for chunk in _chunks(updates):
            ids = [p.target for p in chunk]
            current = {c.id: c for c in session.scalars(select(Camera).where(Camera.id.in_(ids)))}
            changed_rows, tag_sets = [], {}
            for plan in chunk:
                camera = current[plan.target]  # type: ignore[index]
                values = dict(plan.values)
                wanted = self.registry.take_credentials(values, plan.credentials)
                same_creds = wanted is None or self.registry.credentials(camera) == wanted
                before = camera.public()
                same_tags = plan.tags is None or before["tags"] == plan.tags
                if all(before[k] == v for k, v in values.items()) and same_tags and same_creds:
                    report.unchanged += 1
                    continue
                values.update(id=camera.id, updated_at=now)
                if not same_creds:
                    values["credentials_sealed"] = self.registry.seal(wanted)
                changed_rows.append(values)
                if plan.tags is not None:
                    tag_sets[camera.id] = plan.tags
                after = dict(before, **{k: v for k, v in values.items() if k != "credentials_sealed"})
                after["tags"] = before["tags"] if plan.tags is None else plan.tags
                audit_rows.append(audit.audit_row(self.actor, "camera.import.update", "camera", camera.id, values["unit_id"], before, after))
            if changed_rows:
                session.execute(update(Camera), changed_rows)
                camera_search.reindex(session, [row["id"] for row in changed_rows])
            if tag_sets:
                session.execute(delete(CameraTag).where(CameraTag.camera_id.in_(list(tag_sets))))
                tag_rows = [{"camera_id": cid, "tag": t} for cid, tags in tag_sets.items() for t in tags]
                if tag_rows:
                    session.connection().execute(CameraTag.__table__.insert(), tag_rows)
            report.updated += len(changed_rows)
            done += len(chunk)
            self._flush_audit(audit_rows)
            self.progress("write", done, total)
        camera_search.resume_row_triggers(session)
        session.expire_all()
        if session.get_bind().dialect.name == "sqlite" and (report.created or report.updated):
            session.execute(text("ANALYZE"))  # fresh planner statistics after a bulk load
        audit.record(self.session, self.actor, "camera.import", "camera", None, None, None, {
            "rows": report.rows, "created": report.created, "updated": report.updated,
            "unchanged": report.unchanged, "errors": len(report.errors), "encoding": report.encoding})

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

    def _flush_audit(self, rows: list[dict[str, Any]]) -> None:
        audit.record_many(self.session, rows)
        rows.clear()


def _chunks(items: list[_Planned]) -> Iterable[list[_Planned]]:
    for start in range(0, len(items), CHUNK):
        yield items[start:start + CHUNK]
