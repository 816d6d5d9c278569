"""The `lookout` command run as a user runs it, for tests that start real processes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def lookout(env: dict[str, str], *args: str) -> str:
    """Run `lookout ARGS` with `env`; its standard output (the test fails on a non-zero exit)."""
    done = subprocess.run([sys.executable, "-m", "api.cli", *args], check=False, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def admin_token(env: dict[str, str], code: str = "330199000000") -> str:
    """A county unit `code` and an admin there, made with the CLI; the admin's bearer token."""
    lookout(env, "unit", "add", "示范县", code)
    found = re.search(r"token: (lk_[\w-]+)", lookout(env, "user", "add", "chief", "--role", "admin", "--unit", code))
    assert found
    return found.group(1)
