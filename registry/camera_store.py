"""Reads and writes of the camera registry, always inside the caller's unit scope.

`scope` is the materialised path of the caller's unit; every function takes it and applies
it in SQL, so no route can forget the subtree check. A camera outside the scope is reported
as not found, so its existence does not leak to other townships.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, and_, func, select
from sqlalchemy.orm import Session

from config.errors import Conflict, InvalidInput, LookoutError, NotFound
from registry import audit
from registry.camera_credentials import (
    CREDENTIALS_DROPPED,
    ENDPOINT_FIELDS,
    credentials_after,
    endpoints_of,
    take_credentials,
)
from registry.camera_search import text_match
from registry.camera_spec import CameraPatch, CameraSpec
from registry.cameras import Camera, CameraTag
from registry.credentials import (
    CredentialCipher,
    Credentials,
    onvif_endpoint,
)
from registry.registry_feed import RegistryFeed
from registry.rules_spec import RulesSpec
from registry.units import Unit, in_scope, rolled_up, subtree_ids, units_in_scope

#: Shown for a device id another camera has, inside the caller's scope or not: the unique
#: constraint forces a refusal, but which camera or unit holds the id is not the caller's to learn.
DEVICE_ID_TAKEN = "device_id not available"


@dataclass(slots=True)
class CameraFilter:
    networks: Sequence[str] = ()
    statuses: Sequence[str] = ()
    unit_id: int | None = None
    tag: str | None = None
    text: str | None = None
    bbox: tuple[float, float, float, float] | None = None  # min_lon, min_lat, max_lon, max_lat
    enabled: bool | None = None


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    try:
        min_lon, min_lat, max_lon, max_lat = (float(v) for v in text.split(","))
    except ValueError:
        raise InvalidInput("bbox must be min_lon,min_lat,max_lon,max_lat", field="bbox") from None
    if not (-180 <= min_lon <= max_lon <= 180 and -90 <= min_lat <= max_lat <= 90):
        raise InvalidInput("bbox corners out of range or in the wrong order", field="bbox")
    return min_lon, min_lat, max_lon, max_lat


@dataclass(frozen=True, slots=True)
class Updated:
    """What `CameraRegistry.update` did: the camera, and whether its credentials were dropped."""

    camera: Camera
    credentials_dropped: bool

    @property
    def notice(self) -> str | None:
        return CREDENTIALS_DROPPED if self.credentials_dropped else None


@dataclass
class CameraRegistry:
    """The camera registry's operations, bound to the deployment's key and network list."""

    cipher: CredentialCipher
    networks: Mapping[str, str]
    feed: RegistryFeed = field(default_factory=lambda: RegistryFeed(None))

    # -- validation ---------------------------------------------------------------------
    def check_network(self, network: str) -> None:
        if network not in self.networks:
            raise InvalidInput(
                f"unknown network {network!r}; one of: {', '.join(self.networks)}", field="network"
            )

    def _unit_in_scope(self, session: Session, unit_id: int, scope: str) -> Unit:
        unit = session.get(Unit, unit_id)
        if unit is None or not in_scope(unit.path, scope):
            raise NotFound(f"unit {unit_id} not found", field="unit_id", unit_id=unit_id)
        return unit

    def check_device_id(self, session: Session, device_id: str | None, camera_id: int | None = None) -> None:
        """Refuse a device id another camera has, wherever that camera is, with one message."""
        if not device_id:
            return
        query = select(Camera.id).where(Camera.device_id == device_id)
        if camera_id is not None:
            query = query.where(Camera.id != camera_id)
        if session.scalar(query.limit(1)) is not None:
            raise Conflict(DEVICE_ID_TAKEN, field="device_id")

    def seal(self, credentials: Credentials | None) -> str | None:
        return self.cipher.seal(credentials) if credentials else None

    # -- reads --------------------------------------------------------------------------
    def get(self, session: Session, camera_id: int, scope: str) -> Camera:
        camera = session.scalar(
            select(Camera).where(Camera.id == camera_id, Camera.unit_id.in_(subtree_ids(scope)))
        )
        if camera is None:
            raise NotFound(f"camera {camera_id} not found", camera_id=camera_id)
        return camera

    @staticmethod
    def _scope_is_everything(session: Session, scope: str) -> bool:
        """True when `scope` is the only root unit: then every camera is inside it by foreign
        key, and leaving the redundant subtree test out lets the planner use better indexes."""
        if scope.count("/") != 1:
            return False
        roots = session.scalars(select(Unit.path).where(Unit.parent_id.is_(None)).limit(2)).all()
        return roots == [scope]

    def _filtered(self, query: Select[Any], scope: str, flt: CameraFilter, session: Session) -> Select[Any]:
        if not self._scope_is_everything(session, scope):
            query = query.where(Camera.unit_id.in_(subtree_ids(scope)))
        if flt.unit_id is not None:
            unit = session.get(Unit, flt.unit_id)
            if unit is None or not in_scope(unit.path, scope):
                raise NotFound(f"unit {flt.unit_id} not found", field="unit", unit_id=flt.unit_id)
            if unit.path != scope:
                query = query.where(Camera.unit_id.in_(subtree_ids(unit.path)))
        if flt.networks:
            query = query.where(Camera.network.in_(list(flt.networks)))
        if flt.statuses:
            query = query.where(Camera.status.in_(list(flt.statuses)))
        if flt.enabled is not None:
            query = query.where(Camera.enabled.is_(flt.enabled))
        if flt.tag:
            query = query.where(Camera.id.in_(select(CameraTag.camera_id).where(CameraTag.tag == flt.tag)))
        if flt.text:
            query = query.where(text_match(session, flt.text))
        if flt.bbox:
            min_lon, min_lat, max_lon, max_lat = flt.bbox
            query = query.where(
                and_(Camera.latitude.between(min_lat, max_lat), Camera.longitude.between(min_lon, max_lon))
            )
        return query

    def list(
        self, session: Session, scope: str, flt: CameraFilter, *, after_id: int = 0, limit: int = 50
    ) -> tuple[list[Camera], int | None]:
        """One page in id order and the id to continue after (None on the last page)."""
        query = self._filtered(select(Camera), scope, flt, session)
        rows = list(session.scalars(query.where(Camera.id > after_id).order_by(Camera.id).limit(limit + 1)))
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (rows[-1].id if more and rows else None)

    def count(self, session: Session, scope: str, flt: CameraFilter) -> int:
        query = self._filtered(select(func.count()).select_from(Camera), scope, flt, session)
        return int(session.scalar(query) or 0)

    def credentials(self, camera: Camera) -> Credentials | None:
        """The decrypted credentials, for the ingest worker only; never for the API."""
        if camera.credentials_sealed is None:
            return None
        return self.cipher.open(camera.credentials_sealed, camera.id)

    def onvif_credentials(self, camera: Camera) -> Credentials | None:
        """The credentials for the camera's ONVIF endpoint: None unless they were given for it."""
        creds = self.credentials(camera)
        if creds is None or not creds.allows(onvif_endpoint(camera.onvif_host, camera.onvif_port)):
            return None
        return creds

    # -- writes -------------------------------------------------------------------------
    def create(self, session: Session, spec: CameraSpec, scope: str, actor: str) -> Camera:
        self.check_network(spec.network)
        self._unit_in_scope(session, spec.unit_id, scope)
        self.check_device_id(session, spec.device_id)
        values = spec.model_dump(exclude={"username", "password", "tags"})
        explicit = None
        if spec.username is not None or spec.password is not None:
            explicit = Credentials(spec.username or "", spec.password.get_secret_value() if spec.password else "")
        given = take_credentials(values, explicit)
        values["credentials_sealed"] = self.seal(credentials_after(None, {}, values, given)[0])
        camera = Camera(**values)
        camera.tags = spec.tags
        session.add(camera)
        session.flush()
        audit.record(session, actor, "camera.create", "camera", camera.id, camera.unit_id, None, camera.public())
        return camera

    def update(self, session: Session, camera: Camera, patch: CameraPatch, scope: str, actor: str) -> Updated:
        """Apply `patch`. Stored credentials belong to the endpoints they were given for: a
        change of host or port drops them unless new ones come in the same patch (`Updated`
        says so, and so does the audit entry)."""
        before = camera.public()
        changes = patch.model_dump(exclude_unset=True, exclude={"username", "password", "clear_credentials", "tags"})
        if "network" in changes:
            self.check_network(changes["network"])
        if "unit_id" in changes:
            self._unit_in_scope(session, changes["unit_id"], scope)
        if changes.get("device_id"):
            self.check_device_id(session, changes["device_id"], camera.id)
        lat = changes.get("latitude", camera.latitude)
        lon = changes.get("longitude", camera.longitude)
        if (lat is None) != (lon is None):
            raise InvalidInput("latitude and longitude must be given together", field="latitude")
        old, unreadable = None, False
        if not patch.clear_credentials:
            try:
                old = self.credentials(camera)
            except LookoutError:  # sealed under another key: kept as it is unless the camera moves
                unreadable = True
        endpoints_before = {name: before[name] for name in ENDPOINT_FIELDS}
        embedded = take_credentials(changes, None)
        endpoints_after = {**endpoints_before, **{k: v for k, v in changes.items() if k in ENDPOINT_FIELDS}}
        new = embedded
        if patch.username is not None or patch.password is not None:
            # the other half of a pair is kept only while the camera stays where it was given for
            stays = old is not None and not credentials_after(old, endpoints_before, endpoints_after, None)[1]
            keep = old if stays else None
            new = Credentials(
                patch.username if patch.username is not None else (keep.username if keep else ""),
                patch.password.get_secret_value() if patch.password is not None else (keep.password if keep else ""),
            ).bound((), embedded.forms if embedded else {})
        result, dropped = credentials_after(old, endpoints_before, endpoints_after, new)
        if unreadable and new is None:
            dropped = endpoints_of(endpoints_after) != endpoints_of(endpoints_before)
        for name, value in changes.items():
            setattr(camera, name, value)
        if patch.tags is not None:
            camera.tags = patch.tags
        if result is None:
            if not unreadable or new is not None or dropped:
                camera.credentials_sealed = None
        elif new is not None or any(k in changes for k in ENDPOINT_FIELDS) or old is None or old.endpoints is None:
            camera.credentials_sealed = self.seal(result)
        session.flush()
        after = camera.public()
        after["credentials_changed"] = bool(patch.clear_credentials or new is not None or dropped)
        after["credentials_dropped"] = dropped
        audit.record(session, actor, "camera.update", "camera", camera.id, camera.unit_id, before, after)
        return Updated(camera, dropped)

    def set_rules(self, session: Session, camera: Camera, rules: RulesSpec | None, actor: str) -> None:
        """Store the camera's own detection rules (None: back to the defaults), audited."""
        before: dict[str, Any] | None = None
        if camera.detection_rules:
            try:
                before = json.loads(camera.detection_rules)
            except ValueError:
                pass
            if not isinstance(before, dict):  # edited in the database by hand: keep what was there
                before = {"unreadable": camera.detection_rules[:1000]}
        camera.detection_rules = rules.model_dump_json() if rules is not None else None
        session.flush()
        after = rules.model_dump() if rules is not None else None
        audit.record(session, actor, "camera.rules", "camera", camera.id, camera.unit_id, before, after)

    def delete(self, session: Session, camera: Camera, actor: str) -> None:
        before = camera.public()
        session.delete(camera)
        session.flush()
        audit.record(session, actor, "camera.delete", "camera", before["id"], before["unit_id"], before, None)

    def root_paths(self, session: Session) -> list[str]:
        return list(session.scalars(select(Unit.path).where(Unit.parent_id.is_(None))))

    def online_by_unit(self, session: Session, scope: str) -> dict[int, dict[str, int]]:
        """Camera counts by status for every unit in `scope`, each rolled up over its subtree
        (enabled cameras only: a disabled camera is not expected to be online)."""
        units = units_in_scope(session, scope)
        rows = session.execute(
            select(Camera.unit_id, Camera.status, func.count())
            .where(Camera.enabled.is_(True), Camera.unit_id.in_(list(units)))
            .group_by(Camera.unit_id, Camera.status)
        ).all()
        totals: dict[int, dict[str, int]] = {uid: {} for uid in units}
        for unit_id, status, count in rows:
            for ancestor in rolled_up(units, unit_id):  # the unit and every ancestor within the scope
                totals[ancestor][status] = totals[ancestor].get(status, 0) + int(count)
        return totals

    def at_onvif_addresses(
        self, session: Session, addresses: Sequence[tuple[str, int]], scope: str
    ) -> dict[tuple[str, int], tuple[bool, list[int]]]:
        """For each (host, port): whether any camera of the registry is registered there, and
        the ids of those inside `scope`. A camera without a port counts at port 80."""
        hosts = sorted({host for host, _ in addresses})
        found: dict[tuple[str, int], tuple[bool, list[int]]] = {address: (False, []) for address in addresses}
        if not hosts:
            return found
        rows = session.execute(
            select(Camera.id, Camera.onvif_host, Camera.onvif_port, Unit.path)
            .join(Unit, Unit.id == Camera.unit_id)
            .where(Camera.onvif_host.in_(hosts))
            .order_by(Camera.id)
        ).all()
        for camera_id, host, port, path in rows:
            key = (host, port or 80)
            if key in found:
                ids = found[key][1]
                if in_scope(path, scope):
                    ids.append(camera_id)
                found[key] = (True, ids)
        return found

    def status_counts(self, session: Session) -> list[tuple[str, str, int]]:
        """(network, status, count) over the whole registry, for /metrics."""
        rows = session.execute(
            select(Camera.network, Camera.status, func.count()).group_by(Camera.network, Camera.status)
        )
        return [(n, s, int(c)) for n, s, c in rows]
