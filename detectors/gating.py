"""Which frames of a batch go to the models: inference is the expensive stage, and most
surveillance scenes are static most of the time.

A frame goes to the fire model when something moved since the camera's previous sample, when
flame-coloured pixels changed (a small fire flickers long before it is big enough to count as
motion; warm lamps and wooden floors are flame-coloured too, but they do not change), or when
the camera's last inference is older than the heartbeat (slow smoke that changes too little
per sample to count as motion is still seen, only later). Measured by bench/quality.py: what
it saves on clean footage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GateRules:
    motion_share: float = 0.002  # share of moving pixels that counts as motion
    flame_share: float = 0.0002  # share of changed flame-coloured pixels that counts as a candidate
    heartbeat_seconds: float = 30.0  # a static scene is re-checked this often anyway


def flame_coloured(frames: np.ndarray, step: int, min_red: int = 190, red_over_blue: int = 80) -> np.ndarray:
    """(N, H/step, W/step) bool: pixels that look like open flame — bright, red over green over
    blue, red well above blue (the classic RGB fire-pixel rule) — on a strided copy of the batch.
    The gate uses the strict defaults (a candidate must be unmistakable to cost a model run);
    the verifier (`detectors.verify`) a looser rule, since it only confirms the model's box."""
    small = frames[:, ::step, ::step].astype(np.int16)
    r, g, b = small[..., 0], small[..., 1], small[..., 2]
    return (r > min_red) & (r >= g) & (g > b) & (r - b > red_over_blue)


def flickering_flame_share(frames: np.ndarray, motion_mask: np.ndarray) -> np.ndarray:
    """(N,) share of pixels both flame-coloured and changed since the previous sample; the
    motion mask's grid sets the stride."""
    step = frames.shape[1] // motion_mask.shape[1] if motion_mask.size else 1
    flame = flame_coloured(frames, step)[:, : motion_mask.shape[1], : motion_mask.shape[2]]
    return (flame & motion_mask).reshape(len(frames), -1).mean(axis=1)


def gate(motion: np.ndarray, flame_share: np.ndarray, since_inference: np.ndarray, rules: GateRules) -> np.ndarray:
    """(N,) bool: the frames worth a model run. `since_inference` is inf for a camera never run."""
    return (motion >= rules.motion_share) | (flame_share >= rules.flame_share) | (since_inference >= rules.heartbeat_seconds)
