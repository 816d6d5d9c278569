"""Keys already seen in a long stream of rows (a million-row import), in bounded memory."""

from __future__ import annotations

import hashlib

import numpy as np


class SeenKeys:
    """Device ids and (unit, name) keys of the rows accepted so far, with their lines.

    Kept as 64-bit hashes in sorted numpy runs (merged as they grow, so there are only
    log(n) of them): 12 bytes a key, where a dict of strings costs ~150. A hash collision
    (about one in 10^7 for a million-row file) reports a false duplicate, never a lost one."""

    def __init__(self) -> None:
        self.runs: list[tuple[np.ndarray, np.ndarray]] = []

    @staticmethod
    def digest(key: str) -> int:
        return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")

    def lookup(self, hashes: np.ndarray) -> np.ndarray:
        """The line each hash was first seen on, 0 where it was not."""
        found = np.zeros(len(hashes), np.int64)
        for keys, lines in self.runs:
            at = np.minimum(np.searchsorted(keys, hashes), len(keys) - 1)
            hit = (keys[at] == hashes) & (found == 0)
            found[hit] = lines[at[hit]]
        return found

    def add(self, hashes: np.ndarray, lines: np.ndarray) -> None:
        if not len(hashes):
            return
        order = np.argsort(hashes, kind="stable")
        self.runs.append((hashes[order], lines[order].astype(np.int64)))
        while len(self.runs) > 1 and len(self.runs[-2][0]) <= 2 * len(self.runs[-1][0]):
            newer, older = self.runs.pop(), self.runs.pop()
            keys, lines = np.concatenate([older[0], newer[0]]), np.concatenate([older[1], newer[1]])
            order = np.argsort(keys, kind="stable")
            self.runs.append((keys[order], lines[order]))
