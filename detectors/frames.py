"""`FrameBatch`: the latest due frame of every camera of one tick, as ONE array.

All frames of a batch share the analysis size (the readers scale inside PyAV), so every
stage after this works on `(N, H, W, 3)` at once instead of looping over cameras.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class FrameBatch:
    camera_ids: np.ndarray  # (N,) int64
    timestamps: np.ndarray  # (N,) float64, Unix seconds when each frame was captured
    frames: np.ndarray  # (N, H, W, 3) uint8, RGB

    def __post_init__(self) -> None:
        n = len(self.camera_ids)
        if self.frames.ndim != 4 or self.frames.shape[0] != n or self.frames.shape[3] != 3:
            raise ValueError(f"frames must be (N, H, W, 3) with N={n}, got {self.frames.shape}")
        if self.frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8, got {self.frames.dtype}")
        if self.timestamps.shape != (n,):
            raise ValueError(f"timestamps must be ({n},), got {self.timestamps.shape}")

    def __len__(self) -> int:
        return len(self.camera_ids)

    @classmethod
    def stack(cls, camera_ids: list[int], timestamps: list[float], frames: list[np.ndarray]) -> FrameBatch:
        if not frames:
            return cls(np.empty(0, np.int64), np.empty(0, np.float64), np.empty((0, 0, 0, 3), np.uint8))
        return cls(np.asarray(camera_ids, np.int64), np.asarray(timestamps, np.float64), np.stack(frames))
