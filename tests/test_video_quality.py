"""Video-quality diagnosis on real frames (the clips of tests/assets) and on frames made faulty on purpose,
all cameras in one batch per tick, as the worker calls it."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from detectors.frames import FrameBatch
from detectors.video_quality import QualityMonitor
from tests.scenes import ASSETS as MEDIA


def samples(name: str, every: int, count: int) -> np.ndarray:
    """`count` frames of a real clip, one per `every` frames, at the analysis size."""
    out = []
    with av.open(str(MEDIA / name)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % every == 0:
                out.append(frame.to_ndarray(format="rgb24", width=640, height=360))
            if len(out) == count:
                break
    return np.stack(out)


@pytest.fixture(scope="module")
def clips() -> dict[str, np.ndarray]:
    return {"street": samples("parking-lot.mp4", 19, 12), "hall": samples("hall.mp4", 20, 12)}


def with_clock(frame: np.ndarray) -> np.ndarray:
    """A camera's on-screen clock in the corner, as every camera here burns in."""
    out = frame.copy()
    cv2.putText(out, "2026-11-24 10:00:00", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
    return out


def run(ticks: list[dict[int, np.ndarray]], monitor: QualityMonitor) -> list[tuple[int, str, int]]:
    events = []
    for t, frames in enumerate(ticks):
        ids = sorted(frames)
        report = monitor.observe(FrameBatch.stack(ids, [float(t)] * len(ids), [frames[c] for c in ids]))
        events += [(e.camera_id, e.evidence["reason"], t) for e in report.events]
    return events


def test_each_fault_raises_one_event_with_its_reason_and_clean_cameras_none(clips: dict[str, np.ndarray]) -> None:
    street, hall = clips["street"], clips["hall"]
    black = with_clock(np.full_like(street[0], 3))
    tinted = np.clip(hall.astype(np.float32) * [1.9, 0.6, 0.9], 0, 255).astype(np.uint8)
    ticks = [{
        1: street[t], 2: hall[t],  # clean, moving
        3: black,  # black, clock still burnt in
        4: hall[0],  # frozen: the same picture again and again
        5: cv2.GaussianBlur(hall[t], (0, 0), 3),  # out of focus
        6: tinted[t],  # stuck IR-cut filter
        7: with_clock(np.full_like(hall[0], (40, 90, 160))),  # uniform blue: no picture
    } for t in range(12)]
    events = run(ticks, QualityMonitor())
    assert sorted((c, reason) for c, reason, _ in events) == [
        (3, "black"), (4, "frozen"), (5, "blurred"), (6, "colour_cast"), (7, "blank")]
    when = {c: t for c, _, t in events}
    assert when[3] == when[5] == when[6] == when[7] == 2  # after 3 faulty samples (sustain)
    assert when[4] == 7  # 5 unchanged samples make it frozen, then 3 more to sustain it


def test_a_single_bad_sample_raises_nothing_and_recovery_rearms(clips: dict[str, np.ndarray]) -> None:
    hall = clips["hall"]
    black = np.zeros_like(hall[0])
    sequence = [hall[0], black, hall[1], black, black, black, black, hall[2], hall[3], black, black, black]
    events = run([{9: frame} for frame in sequence], QualityMonitor())
    assert events == [(9, "black", 5), (9, "black", 11)]


def test_motion_is_the_share_of_changed_pixels_against_the_previous_sample(clips: dict[str, np.ndarray]) -> None:
    monitor = QualityMonitor()
    hall = clips["hall"]
    first = monitor.observe(FrameBatch.stack([1, 2], [0.0, 0.0], [hall[0], hall[0]]))
    assert (first.motion == 0).all() and np.isnan(first.change).all()  # nothing to compare with yet
    moved = hall[0].copy()
    moved[100:200, 200:400] = 255 - moved[100:200, 200:400]  # something crosses a tenth of the picture
    second = monitor.observe(FrameBatch.stack([1, 2], [2.0, 2.0], [hall[0], moved]))
    assert second.motion[0] == 0 and 0.05 < second.motion[1] < 0.15
    assert second.motion_mask.shape == (2, 180, 320) and second.motion_mask[1, 50:100, 100:200].mean() > 0.5
    monitor.forget({2})
    third = monitor.observe(FrameBatch.stack([2], [4.0], [hall[0]]))
    assert third.motion[0] == 0 and np.isnan(third.change[0])
