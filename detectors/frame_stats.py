"""Cheap statistics of a whole `FrameBatch`, computed as array operations over all frames.

These are the first numbers the worker has about a picture (and the raw material of the
video-quality checks to come): brightness, contrast and how much changed since the same
camera's previous sample, on a small grayscale copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detectors.frames import FrameBatch

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True, slots=True)
class FrameStats:
    brightness: np.ndarray  # (N,) mean luma, 0-255
    contrast: np.ndarray  # (N,) std of luma
    change: np.ndarray  # (N,) mean |luma - previous luma| of the same camera; NaN without one


def small_gray(frames: np.ndarray, step: int = 4) -> np.ndarray:
    """(N, H/step, W/step) float32 luma of the batch, by striding (no per-frame loop)."""
    return frames[:, ::step, ::step, :].astype(np.float32) @ LUMA


def frame_stats(batch: FrameBatch, previous: np.ndarray | None = None) -> tuple[FrameStats, np.ndarray]:
    """Statistics of `batch`, and its small gray copy to pass as `previous` next tick.

    `previous` is an earlier tick's small gray copy aligned to the same camera ids (rows of
    cameras without a previous sample may hold NaN)."""
    gray = small_gray(batch.frames)
    n = len(batch)
    flat = gray.reshape(n, -1)
    change = np.full(n, np.nan, dtype=np.float32)
    if previous is not None and previous.shape == gray.shape:
        change = np.abs(flat - previous.reshape(n, -1)).mean(axis=1)
    return FrameStats(flat.mean(axis=1), flat.std(axis=1), change), gray
