"""`Unit`: the county → township → village tree every camera and person hangs under.

Each unit stores its materialised `path` ("1/4/9/": the ids from the root down), so a
subtree — the scope of every read and write — is one indexed prefix match, whatever the depth.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, func, literal, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from config.database import Base, UTCDateTime, utcnow
from config.errors import Conflict, Forbidden, InvalidInput, NotFound

#: ASCII digits only: `\d` takes every script's digits, and `３３０１…` (full-width) next to
#: `3301…` would be two units that read the same; fullmatch, since `$` lets a final newline in
ADMIN_CODE = re.compile(r"[0-9]{12}")


class Unit(Base):
    __tablename__ = "units"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    code: Mapped[str] = mapped_column(String(12), unique=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), index=True)
    path: Mapped[str] = mapped_column(String(400), index=True)
    depth: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def snapshot(self) -> dict[str, object]:
        """The unit as the audit log records it."""
        return {"id": self.id, "name": self.name, "code": self.code, "parent_id": self.parent_id}


def in_scope(path: str, scope: str) -> bool:
    return path.startswith(scope)


def units_in_scope(session: Session, scope: str) -> dict[int, str]:
    """Every unit under (and including) the unit whose path is `scope`: id → path."""
    return dict(session.execute(select(Unit.id, Unit.path).where(Unit.path.startswith(scope, autoescape=True))).all())


def rolled_up(units: dict[int, str], unit_id: int) -> list[int]:
    """The unit `unit_id` and each of its ancestors among `units` (id → path, as
    `units_in_scope` gives): where a figure counted at `unit_id` is added when figures are rolled
    up the tree."""
    by_path = {path: uid for uid, path in units.items()}
    prefixes = [units[unit_id][: i + 1] for i, char in enumerate(units[unit_id]) if char == "/"]
    return [by_path[prefix] for prefix in prefixes if prefix in by_path]


def subtree_ids(scope: str):  # type: ignore[no-untyped-def]
    """A SELECT of the ids of every unit under (and including) the unit whose path is `scope`."""
    return select(Unit.id).where(Unit.path.startswith(scope, autoescape=True))


def check_code(code: str) -> None:
    if not ADMIN_CODE.fullmatch(code):
        raise InvalidInput("unit code must be the 12-digit administrative code (ASCII digits 0-9)", field="code")


def get_unit(session: Session, unit_id: int, scope: str) -> Unit:
    unit = session.get(Unit, unit_id)
    if unit is None or not in_scope(unit.path, scope):
        raise NotFound(f"unit {unit_id} not found", unit_id=unit_id)
    return unit


def unit_by_code(session: Session, code: str) -> Unit | None:
    """The unit with this code; None for anything but 12 ASCII digits (a look-alike code left
    in an old database is not found by its look-alike either)."""
    if not ADMIN_CODE.fullmatch(code):
        return None
    return session.scalar(select(Unit).where(Unit.code == code))


def create_unit(
    session: Session, *, name: str, code: str, parent_id: int | None, scope: str | None
) -> Unit:
    """Create a unit under `parent_id` (a root only when `scope` is None: the CLI/demo)."""
    check_code(code)
    if unit_by_code(session, code) is not None:
        raise Conflict(f"unit code {code} already exists", field="code")
    parent = None
    if parent_id is None:
        if scope is not None:
            raise Forbidden("only a root administrator can create a top-level unit", field="parent_id")
    else:
        parent = session.get(Unit, parent_id)
        if parent is None or (scope is not None and not in_scope(parent.path, scope)):
            raise NotFound(f"parent unit {parent_id} not found", field="parent_id", unit_id=parent_id)
    unit = Unit(name=name, code=code, parent_id=parent_id, path="", depth=0 if parent is None else parent.depth + 1)
    session.add(unit)
    session.flush()
    unit.path = (parent.path if parent else "") + f"{unit.id}/"
    session.flush()
    return unit


def update_unit(
    session: Session, unit: Unit, *, name: str | None, code: str | None, parent_id: int | None,
    move: bool, scope: str,
) -> Unit:
    """Rename, recode or move a unit (with its whole subtree) inside the caller's scope."""
    if name is not None:
        unit.name = name
    if code is not None and code != unit.code:
        check_code(code)
        if unit_by_code(session, code) is not None:
            raise Conflict(f"unit code {code} already exists", field="code")
        unit.code = code
    if move and parent_id != unit.parent_id:
        if parent_id is None:
            raise Forbidden("a unit cannot be made a root through the API", field="parent_id")
        if unit.path == scope:
            raise Forbidden("you cannot move your own unit", field="parent_id")
        parent = session.get(Unit, parent_id)
        if parent is None or not in_scope(parent.path, scope):
            raise NotFound(f"parent unit {parent_id} not found", field="parent_id", unit_id=parent_id)
        if parent.path.startswith(unit.path):
            raise Conflict("a unit cannot be moved under itself", field="parent_id", unit_id=unit.id)
        old_path, new_path = unit.path, parent.path + f"{unit.id}/"
        delta = parent.depth + 1 - unit.depth
        session.execute(
            update(Unit)
            .where(Unit.path.startswith(old_path, autoescape=True))
            .values(
                path=literal(new_path, String) + func.substr(Unit.path, len(old_path) + 1),
                depth=Unit.depth + delta,
            )
            .execution_options(synchronize_session=False)
        )
        unit.parent_id = parent_id
        session.flush()
        session.refresh(unit)
    session.flush()
    return unit


def delete_unit(session: Session, unit: Unit, has_cameras: bool, has_users: bool) -> None:
    children = session.scalar(select(func.count()).select_from(Unit).where(Unit.parent_id == unit.id))
    if children:
        raise Conflict(f"unit {unit.id} has {children} child units; move or delete them first", unit_id=unit.id)
    if has_cameras:
        raise Conflict(f"unit {unit.id} still has cameras; move or delete them first", unit_id=unit.id)
    if has_users:
        raise Conflict(f"unit {unit.id} still has users; move or delete them first", unit_id=unit.id)
    session.delete(unit)
    session.flush()
