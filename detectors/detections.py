"""`Detections`: every box a model found in one batch, as parallel arrays — never an object
per box, so that thresholds, zones and counts are array operations over the whole batch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Detections:
    xyxy: np.ndarray  # (K, 4) float32, pixels of the analysed frame
    confidence: np.ndarray  # (K,) float32
    class_id: np.ndarray  # (K,) int32, index into the model's classes
    frame_index: np.ndarray  # (K,) int32, row of the FrameBatch the box belongs to

    def __post_init__(self) -> None:
        k = len(self.confidence)
        if self.xyxy.shape != (k, 4) or self.class_id.shape != (k,) or self.frame_index.shape != (k,):
            raise ValueError(f"Detections arrays disagree: {self.xyxy.shape}, {self.confidence.shape}, "
                             f"{self.class_id.shape}, {self.frame_index.shape}")

    def __len__(self) -> int:
        return len(self.confidence)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.empty((0, 4), np.float32), np.empty(0, np.float32), np.empty(0, np.int32), np.empty(0, np.int32))

    def select(self, mask: np.ndarray) -> Detections:
        """The boxes where `mask` (a boolean (K,) array or an index array) holds."""
        return Detections(self.xyxy[mask], self.confidence[mask], self.class_id[mask], self.frame_index[mask])

    def on_rows(self, rows: np.ndarray) -> Detections:
        """The same boxes with each frame_index f replaced by rows[f]: from a sub-batch's rows
        back to the batch's (rows = the sub-batch's row numbers in the batch), or the reverse."""
        return Detections(self.xyxy, self.confidence, self.class_id, rows[self.frame_index].astype(np.int32))

    @property
    def areas(self) -> np.ndarray:
        return np.clip(self.xyxy[:, 2] - self.xyxy[:, 0], 0, None) * np.clip(self.xyxy[:, 3] - self.xyxy[:, 1], 0, None)

    def per_frame(self, frames: int) -> np.ndarray:
        """How many boxes each of `frames` frames has: (frames,) int."""
        return np.bincount(self.frame_index, minlength=frames)
