"""Growing delays between sign-in tries, per username and per client address, shared by every
API process through Redis.

Each try is counted *before* its password is checked, in one atomic step (a Lua script), so
60 guesses sent at once cannot all slip through before the first failure is recorded. After
`security.login_free_failures` tries for one username (or `login_address_free_failures` from
one address, whatever the usernames) each further try sets a wait of 1, 2, 4 ... seconds, up
to `login_max_delay_seconds`. A try during the wait is refused at once (429 with Retry-After,
no Argon2 hash spent on it) and still counts, so a guesser who keeps knocking keeps the door
shut for the longest wait; a person who waits the Retry-After gets one more try each time.

A right password clears the username's count and takes its own try back from the address's.
Counts are forgotten after twice the longest wait of quiet. An admin who sets a person's
password lifts that username's wait (`forget_user`).

The username's count does not depend on whether the user exists, so the throttle tells a
guesser nothing about which names are real. The price of any per-user throttle stays: anyone
may keep one account waiting by guessing at it; the person then asks an admin, who resets
the password (and with it the wait).

Without Redis (or while it is down) the same counts live in this process's memory, bounded
in size: each API process then throttles on its own.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from dataclasses import dataclass

import redis
from fastapi import FastAPI

from config.redis_names import LOGIN_ADDRESS_PREFIX, LOGIN_USER_PREFIX
from config.security import SecuritySettings

log = logging.getLogger("lookout.auth")

MEMORY_LIMIT = 100_000  # counters kept in memory without Redis

# KEYS: the username's counter, the address's. ARGV: free tries of each, longest wait, ttl.
# Returns the seconds to wait ("0": go ahead, the try is counted).
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local free = {tonumber(ARGV[1]), tonumber(ARGV[2])}
local longest, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local function locked_until(key)
  return tonumber(redis.call('HGET', key, 'until') or '0')
end
local function charge(i)
  local fails = redis.call('HINCRBY', KEYS[i], 'fails', 1)
  if fails > free[i] then
    local delay = math.min(longest, 2 ^ (fails - free[i] - 1))
    redis.call('HSET', KEYS[i], 'until', string.format('%.3f', math.max(locked_until(KEYS[i]), now + delay)))
  end
  redis.call('EXPIRE', KEYS[i], ttl)
end
local refused = false
for i = 1, 2 do
  if locked_until(KEYS[i]) > now then
    refused = true
    charge(i)
  end
end
if not refused then
  charge(1)
  charge(2)
  return '0'
end
return string.format('%.3f', math.max(locked_until(KEYS[1]), locked_until(KEYS[2])) - now)
"""

# KEYS: the username's counter, the address's. ARGV: the address's free tries.
_SUCCEEDED = """
redis.call('DEL', KEYS[1])
local fails = redis.call('HINCRBY', KEYS[2], 'fails', -1)
if fails <= 0 then
  redis.call('DEL', KEYS[2])
elseif fails <= tonumber(ARGV[1]) then
  redis.call('HDEL', KEYS[2], 'until')
end
return 0
"""


@dataclass(slots=True)
class _Count:
    fails: int = 0
    until: float = 0.0
    expires: float = 0.0


class _MemoryCounts:
    """The same counting as the scripts, in this process (no Redis)."""

    def __init__(self) -> None:
        self.counts: dict[str, _Count] = {}
        self.lock = threading.Lock()

    def _get(self, key: str, now: float) -> _Count:
        count = self.counts.get(key)
        if count is None or count.expires <= now:
            if len(self.counts) >= MEMORY_LIMIT:
                self._shrink(now)
            count = self.counts[key] = _Count()
        return count

    def _shrink(self, now: float) -> None:
        live = sorted(((c.expires, k) for k, c in self.counts.items() if c.expires > now), reverse=True)
        self.counts = {k: self.counts[k] for _, k in live[: MEMORY_LIMIT // 2]}

    def admit(self, keys: tuple[str, str], free: tuple[int, int], longest: float, ttl: float) -> float:
        now = time.time()
        with self.lock:
            counts = [self._get(key, now) for key in keys]

            def charge(i: int) -> None:
                count = counts[i]
                count.fails += 1
                if count.fails > free[i]:
                    count.until = max(count.until, now + min(longest, 2.0 ** min(count.fails - free[i] - 1, 64)))
                count.expires = now + ttl

            locked = [i for i in (0, 1) if counts[i].until > now]
            for i in locked:
                charge(i)
            if not locked:
                charge(0)
                charge(1)
                return 0.0
            return max(c.until for c in counts) - now

    def succeeded(self, keys: tuple[str, str], address_free: int) -> None:
        with self.lock:
            self.counts.pop(keys[0], None)
            count = self.counts.get(keys[1])
            if count is not None:
                count.fails -= 1
                if count.fails <= 0:
                    del self.counts[keys[1]]
                elif count.fails <= address_free:
                    count.until = 0.0

    def forget(self, key: str) -> None:
        with self.lock:
            self.counts.pop(key, None)


class LoginThrottle:
    def __init__(self, client: redis.Redis | None, settings: SecuritySettings) -> None:
        self.client = client
        self.free = (settings.login_free_failures, settings.login_address_free_failures)
        self.longest = settings.login_max_delay_seconds
        self.ttl = max(2 * settings.login_max_delay_seconds, 600.0)
        self.memory = _MemoryCounts()
        self._admit = client.register_script(_ADMIT) if client is not None else None
        self._succeeded = client.register_script(_SUCCEEDED) if client is not None else None

    @staticmethod
    def _keys(username: str, address: str) -> tuple[str, str]:
        return LOGIN_USER_PREFIX + username.lower(), LOGIN_ADDRESS_PREFIX + client_network(address)

    def admit(self, username: str, address: str) -> float:
        """Count one try of `username` from `address`: 0 to go ahead, else the seconds to wait
        (the try is refused and its password must not be checked)."""
        keys = self._keys(username, address)
        if self._admit is not None:
            try:
                return max(0.0, float(self._admit(keys=list(keys), args=[*self.free, self.longest, int(self.ttl)])))
            except redis.RedisError as exc:
                log.warning("login_throttle_in_memory", extra={"error": str(exc)[:200]})
        return self.memory.admit(keys, self.free, self.longest, self.ttl)

    def succeeded(self, username: str, address: str) -> None:
        """The try admitted by `admit` had the right password."""
        keys = self._keys(username, address)
        if self._succeeded is not None:
            try:
                self._succeeded(keys=list(keys), args=[self.free[1]])
                return
            except redis.RedisError as exc:
                log.warning("login_throttle_in_memory", extra={"error": str(exc)[:200]})
        self.memory.succeeded(keys, self.free[1])

    def forget_user(self, username: str) -> None:
        """An admin set this person's password: lift the username's wait."""
        key = LOGIN_USER_PREFIX + username.lower()
        if self.client is not None:
            try:
                self.client.delete(key)
            except redis.RedisError as exc:
                log.warning("login_throttle_in_memory", extra={"error": str(exc)[:200]})
        self.memory.forget(key)


def client_network(address: str) -> str:
    """What one client's tries are counted under: its IPv4 address, or its IPv6 /64 (one host
    is given a whole /64 and may take any address in it, so counting per /128 counts nothing)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def throttle_of(app: FastAPI) -> LoginThrottle:
    """The app's one `LoginThrottle` (made on first use, with the app's Redis and settings)."""
    found: LoginThrottle | None = getattr(app.state, "login_throttle", None)
    if found is None:
        services = app.state.services
        found = app.state.login_throttle = LoginThrottle(services.redis, services.settings.security)
    return found
