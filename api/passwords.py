"""Passwords: which ones a person may choose, and hashing them without stalling the API.

The policy follows NIST SP 800-63B (§3.1.1.2) rather than composition rules, which only teach
people `Password1!`: a minimum length, and no password that a guesser tries first —

- shorter than `security.password_min_length` (default 12). Sign-in is a single factor that
  opens a county's cameras and alerts; OWASP ASVS 4.0 (V2.1.1) asks 12 for user-chosen
  passwords, NIST 800-63B-4 asks 15 for single-factor ones. 12 is what a shift operator still
  types every day without writing it down; a center may raise it;
- one of the 19,640 most common passwords (api/common_passwords.txt, the list Django ships,
  see api/COMMON_PASSWORDS_LICENSE.md), or one of them with digits or symbols around it
  (`password2024!`), or the service's and the camera networks' own names (`lookout123456`);
- a run or a repetition (`123456789012`, `qwertyuiopas`, `abababababab`);
- the username inside it, in any case.

Hashing: one Argon2id hash takes 64 MiB and ~0.2 s of a core. Run in the request's thread,
60 concurrent sign-ins held 60 threads and 1.3 GB, and every other request waited its turn.
`PasswordHashing` runs them in the thread pool behind an asyncio semaphore
(`security.login_hash_concurrency`), so the waiting sign-ins hold no thread and no memory.
"""

from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TypeVar

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from config.errors import InvalidInput

COMMON_PASSWORDS = Path(__file__).with_name("common_passwords.txt")
#: words of this service that a guesser tries with digits around them
CONTEXT_WORDS = frozenset({"lookout", "admin", "administrator", "operator", "technician", "camera", "cameras",
                           "tianwang", "xueliang", "huiyan", "hikvision", "dahua", "county", "password"})
_SEQUENCES = ("0123456789", "abcdefghijklmnopqrstuvwxyz", "qwertyuiopasdfghjklzxcvbnm",
              "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p")
_EDGES = re.compile(r"^[\d\W_]+|[\d\W_]+$")
T = TypeVar("T")


@cache
def common_passwords() -> frozenset[str]:
    """The list, read once per process (~1 MB in memory)."""
    return frozenset(line.strip() for line in COMMON_PASSWORDS.read_text(encoding="utf-8").splitlines() if line.strip())


def _is_run(text: str) -> bool:
    """`123456789012`, `zyxwvu...`, `qwertyuiop...`: inside one of the sequences (repeated, either way)."""
    return any(text in seq * 4 or text in (seq * 4)[::-1] for seq in _SEQUENCES)


def password_problem(password: str, username: str, min_length: int) -> str | None:
    """Why `password` may not be chosen by `username`, or None. The reason never quotes it."""
    if len(password) < min_length:
        return f"password must be at least {min_length} characters (a few words make a good one)"
    lower = password.lower()
    name = username.lower()
    if len(set(lower)) < 5:
        return "password repeats too few characters"
    if _is_run(lower) or _is_run(lower.replace(" ", "")):
        return "password is a run of keys or digits"
    core = _EDGES.sub("", lower)
    common = common_passwords()
    if lower in common or (len(core) >= 4 and (core in common or core in CONTEXT_WORDS)):
        return "password is too common: it is among the first that guessers try"
    if "lookout" in lower:
        return "password may not contain the name of the service"
    if len(name) >= 3 and (name in lower or name[::-1] in lower):
        return "password may not contain the username"
    return None


def check_password(password: str, username: str, min_length: int, field: str = "password") -> None:
    """Raise InvalidInput (422, naming `field`) when the policy refuses `password`."""
    problem = password_problem(password, username, min_length)
    if problem is not None:
        raise InvalidInput(problem, field=field)


class PasswordHashing:
    """Argon2 off the event loop, at most `concurrency` at once in this process.

    Sign-ins beyond that wait on the semaphore without holding a thread, so the thread pool
    stays free for every other request. `verifications` and `peak` are what the tests (and an
    engineer with a debugger) read: how many hashes were checked, and the most ever at once."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self._gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary())
        self.verifications = 0
        self.hashes = 0
        self.in_flight = 0
        self.peak = 0

    def _gate(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        gate = self._gates.get(loop)
        if gate is None:
            gate = self._gates[loop] = asyncio.Semaphore(self.concurrency)
        return gate

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        async with self._gate():
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            try:
                return await run_in_threadpool(fn, *args)
            finally:
                self.in_flight -= 1

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """`password` against `password_hash`, or against the dummy hash when None (an unknown
        user: the same work, inside the same gate)."""
        from registry.users import dummy_hash, verify_password

        def check() -> bool:
            return verify_password(password_hash if password_hash is not None else dummy_hash(), password)

        self.verifications += 1
        return await self._run(check)

    async def hash(self, password: str) -> str:
        from registry.users import hash_password

        self.hashes += 1
        return await self._run(hash_password, password)


def hashing_of(app: FastAPI) -> PasswordHashing:
    """The app's one `PasswordHashing` (made on first use, with the app's settings)."""
    found: PasswordHashing | None = getattr(app.state, "password_hashing", None)
    if found is None:
        found = app.state.password_hashing = PasswordHashing(
            app.state.services.settings.security.login_hash_concurrency)
    return found
