"""Spreading cameras over the live ingest workers, through Redis.

- Membership: every worker writes a heartbeat (its id, score = time) into the sorted set
  `lookout:workers`; a worker whose heartbeat is older than the TTL is dead.
- Placement: rendezvous (highest-random-weight) hashing of camera id × worker id, computed
  for all cameras at once as one numpy array operation. Every worker computes the same
  answer from the same live set, and when a worker dies only its cameras move.
- Leases: a worker reads a camera only while it holds `lookout:lease:<camera_id>` (SET NX
  with a TTL, renewed together in one Lua call), so two workers with a momentarily different
  view of the live set never read the same camera twice.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence

import numpy as np
import redis

from config.redis_names import LEASE_PREFIX, WORKERS_SET

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)

# Renew the leases that are still ours; take the free ones. Returns 1/0 per key.
_CLAIM = """
local got = {}
for i, key in ipairs(KEYS) do
  local holder = redis.call('GET', key)
  if holder == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2]); got[i] = 1
  elseif not holder then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2]); got[i] = 1
  else
    got[i] = 0
  end
end
return got
"""
_RELEASE = """
local n = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key); n = n + 1 end
end
return n
"""


def _seed(worker_id: str) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.blake2b(worker_id.encode(), digest_size=8).digest(), "little"))


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a well-spread 64-bit hash of each element (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = values + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return (z ^ (z >> np.uint64(31))) & _MASK


def rendezvous(camera_ids: Sequence[int] | np.ndarray, workers: Sequence[str]) -> np.ndarray:
    """Index into `workers` of the owner of each camera (all cameras in one array operation)."""
    cameras = np.asarray(camera_ids, dtype=np.uint64)
    if not workers:
        return np.full(cameras.shape, -1, dtype=np.int64)
    seeds = np.array([_seed(w) for w in workers], dtype=np.uint64)
    weights = _mix(cameras[:, None] ^ seeds[None, :])  # (cameras, workers)
    return weights.argmax(axis=1)


class Membership:
    """This worker's heartbeat and the set of live workers."""

    def __init__(self, client: redis.Redis, worker_id: str, ttl: float) -> None:
        self.client = client
        self.worker_id = worker_id
        self.ttl = ttl

    def beat(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(WORKERS_SET, {self.worker_id: now})
        pipe.zremrangebyscore(WORKERS_SET, "-inf", now - 10 * self.ttl)  # forget long-dead workers
        pipe.execute()

    def live(self, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        return sorted(self.client.zrangebyscore(WORKERS_SET, now - self.ttl, "+inf"))

    def leave(self) -> None:
        self.client.zrem(WORKERS_SET, self.worker_id)


class Leases:
    """Per-camera leases held by one worker."""

    def __init__(self, client: redis.Redis, worker_id: str, ttl: float) -> None:
        self.client = client
        self.worker_id = worker_id
        self.ttl_ms = int(ttl * 1000)
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)

    def claim(self, camera_ids: Sequence[int]) -> set[int]:
        """Renew or take the leases of `camera_ids`; the ids this worker now holds."""
        held: set[int] = set()
        for start in range(0, len(camera_ids), 5000):
            chunk = list(camera_ids[start:start + 5000])
            got = self._claim(keys=[f"{LEASE_PREFIX}{c}" for c in chunk], args=[self.worker_id, self.ttl_ms])
            held.update(c for c, ok in zip(chunk, got) if ok)
        return held

    def release(self, camera_ids: Iterable[int]) -> None:
        ids = list(camera_ids)
        for start in range(0, len(ids), 5000):
            self._release(keys=[f"{LEASE_PREFIX}{c}" for c in ids[start:start + 5000]], args=[self.worker_id])
