"""Accounts: usernames unique regardless of case, and an index to purge expired tokens.

`Admin` and `admin` could both exist before this revision, so one person could pass for
another in the audit log (`user:Admin`). A unique index on lower(username) now forbids it.

Existing clashes are resolved, not refused (a failing migration would keep `lookout serve`
from starting at all): in each group of usernames equal but for case, the oldest account
(lowest id) keeps its name and every later one is renamed `<name>-dup<id>`, which an admin
sees in the user list and the warning this migration logs. The renamed accounts keep their
password, role and tokens, so nobody is locked out; they sign in with the new name.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

log = logging.getLogger("lookout.migrate")
USERNAME_MAX = 64


def renamed_clashes(rows: list[tuple[int, str]]) -> dict[int, str]:
    """id → new username for every account whose name equals an older one's but for case;
    the new names clash with nothing (in any case)."""
    taken = {name.lower() for _, name in rows}
    first: dict[str, int] = {}
    renames: dict[int, str] = {}
    for user_id, name in sorted(rows):
        key = name.lower()
        if key not in first:
            first[key] = user_id
            continue
        n = 0
        while True:
            suffix = f"-dup{user_id}" + (f"-{n}" if n else "")
            candidate = name[: USERNAME_MAX - len(suffix)] + suffix
            if candidate.lower() not in taken:
                break
            n += 1
        taken.add(candidate.lower())
        renames[user_id] = candidate
    return renames


def upgrade() -> None:
    bind = op.get_bind()
    rows = [(int(r[0]), str(r[1])) for r in bind.execute(sa.text("SELECT id, username FROM users"))]
    for user_id, new_name in renamed_clashes(rows).items():
        old = dict(rows)[user_id]
        bind.execute(sa.text("UPDATE users SET username = :name WHERE id = :id"), {"name": new_name, "id": user_id})
        log.warning("username_clash_renamed", extra={"user_id": user_id, "old_username": old,
                                                     "new_username": new_name})
    op.create_index("uq_users_username_lower", "users", [sa.text("lower(username)")], unique=True)
    op.create_index("ix_api_tokens_expires_at", "api_tokens", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_api_tokens_expires_at", table_name="api_tokens")
    op.drop_index("uq_users_username_lower", table_name="users")
