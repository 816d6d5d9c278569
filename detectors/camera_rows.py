"""`CameraRows`: where each camera's state lives in the per-camera arrays a stage keeps
(previous sample, histories, timers), found for a whole batch with one sorted search."""

from __future__ import annotations

import numpy as np


def lookup(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Index in `ids` (any order, no repeats) of each of `wanted`, -1 where it is not there:
    one sorted search for the whole array instead of a dict per camera."""
    wanted = np.asarray(wanted, np.int64)
    out = np.full(len(wanted), -1, np.int64)
    if len(ids) and len(wanted):
        order = np.argsort(ids, kind="stable")
        at = np.minimum(np.searchsorted(ids[order], wanted), len(ids) - 1)
        found = ids[order][at] == wanted
        out[found] = order[at][found]
    return out


class CameraRows:
    def __init__(self) -> None:
        self.ids = np.empty(0, np.int64)

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, camera_ids: np.ndarray) -> tuple[np.ndarray, int]:
        """(row of each camera, how many new cameras were appended at the end): the caller
        grows its arrays by that many rows before indexing them."""
        camera_ids = np.asarray(camera_ids, np.int64)
        new = np.setdiff1d(camera_ids, self.ids)
        if len(new):
            self.ids = np.concatenate([self.ids, new])
        return lookup(self.ids, camera_ids), len(new)

    def remove(self, camera_ids: set[int] | np.ndarray) -> np.ndarray:
        """Drop cameras; the boolean mask of rows kept, to apply to the caller's arrays."""
        keep = ~np.isin(self.ids, np.asarray(list(camera_ids) if isinstance(camera_ids, set) else camera_ids))
        self.ids = self.ids[keep]
        return keep


def grow(array: np.ndarray, rows: int, fill: object) -> np.ndarray:
    """`array` with `rows` more rows of `fill` at the end."""
    if not rows:
        return array
    return np.concatenate([array, np.full((rows, *array.shape[1:]), fill, array.dtype)])
