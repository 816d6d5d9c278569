"""`detectors/` on arrays alone: the batch type and its statistics."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.frame_stats import frame_stats
from detectors.frames import FrameBatch


def test_batch_rejects_wrong_shapes() -> None:
    with pytest.raises(ValueError, match="uint8"):
        FrameBatch(np.array([1]), np.array([0.0]), np.zeros((1, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="N=2"):
        FrameBatch(np.array([1, 2]), np.array([0.0, 0.0]), np.zeros((1, 4, 4, 3), np.uint8))
    assert len(FrameBatch.stack([], [], [])) == 0


def test_stats_of_a_whole_batch_at_once() -> None:
    black = np.zeros((36, 64, 3), np.uint8)
    white = np.full((36, 64, 3), 255, np.uint8)
    noise = np.random.default_rng(1).integers(0, 256, (36, 64, 3), dtype=np.uint8)
    batch = FrameBatch.stack([1, 2, 3], [0.0, 0.0, 0.0], [black, white, noise])
    stats, gray = frame_stats(batch)
    assert stats.brightness[0] == 0 and stats.brightness[1] == pytest.approx(255, abs=0.01)
    assert stats.contrast[0] == 0 and stats.contrast[2] > 40
    assert np.isnan(stats.change).all()
    later = FrameBatch.stack([1, 2, 3], [2.0, 2.0, 2.0], [black, black, noise])
    again, _ = frame_stats(later, gray)
    assert again.change[0] == 0 and again.change[1] == pytest.approx(255, abs=0.01) and again.change[2] == 0
