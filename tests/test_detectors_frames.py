"""`detectors/` on arrays alone: the batch type."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.frames import FrameBatch


def test_batch_rejects_wrong_shapes() -> None:
    with pytest.raises(ValueError, match="uint8"):
        FrameBatch(np.array([1]), np.array([0.0]), np.zeros((1, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="N=2"):
        FrameBatch(np.array([1, 2]), np.array([0.0, 0.0]), np.zeros((1, 4, 4, 3), np.uint8))
    assert len(FrameBatch.stack([], [], [])) == 0
