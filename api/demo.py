"""`lookout serve --demo`: one county with 2 townships, 4 villages and cameras on every network.

Demo cameras read real clips as `file:` sources that loop, so the demo shows real footage
without any camera: those of `shared/media/` when they sit beside the checkout, else the short
cuts of them the repository carries for its tests (`tests/assets/`, CC BY 4.0).
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry import audit
from registry.camera_spec import CameraSpec
from registry.camera_store import CameraRegistry
from registry.units import Unit, create_unit, unit_by_code
from registry.users import Role, User, hash_password, issue_token

COUNTY = ("示范县", "330199000000")
TOWNSHIPS = {
    ("城关镇", "330199001000"): [("东门社区", "330199001001"), ("西街村", "330199001002")],
    ("河口镇", "330199002000"): [("河口村", "330199002001"), ("桥头村", "330199002002")],
}
BASE = (30.27, 120.15)
ROOT = Path(__file__).resolve().parents[1]
MEDIA = next((folder for folder in (ROOT.parent / "shared" / "media", ROOT / "tests" / "assets")
              if any(folder.glob("*.mp4"))), None)


def media_dirs() -> list[Path]:
    """The folder of the demo's clips, when there is one: `lookout serve --demo` adds it to the
    media folders its workers may read `file:` streams from."""
    return [MEDIA] if MEDIA is not None else []


def _stream(index: int) -> str:
    clips = sorted(MEDIA.glob("*.mp4")) if MEDIA is not None else []
    if clips:
        return clips[index % len(clips)].as_uri()
    return f"rtsp://127.0.0.1:8554/demo/{index}"


def seed(session: Session, registry: CameraRegistry) -> Unit:
    """Create the demo county once; later calls find it and change nothing."""
    county = unit_by_code(session, COUNTY[1])
    if county is not None:
        return county
    county = create_unit(session, name=COUNTY[0], code=COUNTY[1], parent_id=None, scope=None)
    networks = list(registry.networks)
    index = 0
    for t, ((t_name, t_code), villages) in enumerate(TOWNSHIPS.items()):
        township = create_unit(session, name=t_name, code=t_code, parent_id=county.id, scope=None)
        for v, (v_name, v_code) in enumerate(villages):
            village = create_unit(session, name=v_name, code=v_code, parent_id=township.id, scope=None)
            for n, network in enumerate(networks[:4]):
                index += 1
                spec = CameraSpec(
                    name=f"{v_name}{registry.networks[network]}{n + 1:02d}",
                    network=network,
                    unit_id=village.id,
                    owner=f"{t_name}综治中心",
                    latitude=BASE[0] + t * 0.05 + v * 0.01 + n * 0.001,
                    longitude=BASE[1] + t * 0.05 + v * 0.01 + n * 0.001,
                    address=f"{t_name}{v_name}{n + 1}号点位",
                    main_stream_url=_stream(index),
                    tags=["demo", "广场"] if n == 0 else ["demo"],
                )
                registry.create(session, spec, county.path, "demo")
        for n, network in enumerate(networks[4:]):
            index += 1
            registry.create(session, CameraSpec(
                name=f"{t_name}{registry.networks[network]}{n + 1:02d}", network=network, unit_id=township.id,
                latitude=BASE[0] + t * 0.05, longitude=BASE[1] + t * 0.05 + n * 0.002,
                main_stream_url=_stream(index), tags=["demo"],
            ), county.path, "demo")
    audit.record(session, "demo", "demo.seed", "unit", county.id, county.id, None, {"cameras": index})
    return county


def demo_admin_token(session: Session, county: Unit, ttl: timedelta) -> str:
    """A token for the demo's `admin` user at the county (created on first run)."""
    user = session.scalar(select(User).where(User.username == "admin"))
    if user is None:
        user = User(username="admin", display_name="Demo administrator", role=Role.admin.value,
                    unit_id=county.id, password_hash=hash_password(secrets.token_urlsafe(16)))
        session.add(user)
        session.flush()
        audit.record(session, "demo", "user.create", "user", user.id, county.id, None, user.snapshot())
    token, _ = issue_token(session, user, ttl, "demo")
    return token
