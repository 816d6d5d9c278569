"""Letterbox, decode and NMS over whole batches, on arrays alone (no model, no file)."""

from __future__ import annotations

import cv2
import numpy as np

from detectors.yolo import PAD_VALUE, YoloDetector, decode, letterbox, resize_batch


def frames(n: int, height: int, width: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, height, width, 3), dtype=np.uint8)


def test_batch_resize_equals_resizing_each_frame_and_never_mixes_frames() -> None:
    batch = frames(100, 72, 128)  # more than one cv2 call's worth of channels
    for size in ((36, 64), (144, 256)):
        interpolation = cv2.INTER_AREA if size[0] < 72 else cv2.INTER_LINEAR
        naive = np.stack([cv2.resize(f, size[::-1], interpolation=interpolation) for f in batch])
        # the many-channel path rounds differently from the 3-channel SIMD one: at most 1 level
        assert np.abs(resize_batch(batch, size).astype(np.int16) - naive).max() <= 1


def test_letterbox_keeps_the_aspect_ratio_with_grey_bars() -> None:
    batch = frames(2, 360, 640)
    tensor, box = letterbox(batch, (384, 640))
    assert tensor.shape == (2, 3, 384, 640) and tensor.dtype == np.float32
    assert (box.scale, box.pad_x, box.pad_y) == (1.0, 0.0, 12.0)
    assert np.allclose(tensor[:, :, :12], PAD_VALUE / 255) and np.allclose(tensor[:, :, -12:], PAD_VALUE / 255)
    assert np.allclose(tensor[1, :, 12:372].transpose(1, 2, 0) * 255, batch[1], atol=1e-3)
    _, half = letterbox(frames(1, 720, 1280), (384, 640))
    assert (half.scale, half.pad_y) == (0.5, 12.0)
    back = half.to_frame(np.array([[0, 12, 640, 372], [-5, 0, 700, 400]], np.float32))
    assert np.allclose(back, [[0, 0, 1280, 720], [0, 0, 1280, 720]])  # mapped back and clipped


def head(n: int, boxes: list[tuple[int, float, float, float, float, int, float]], anchors: int = 8,
         classes: int = 2) -> np.ndarray:
    """A detection head output (n, 4 + classes, anchors) with the given (frame, cx, cy, w, h, class, score)."""
    out = np.zeros((n, 4 + classes, anchors), np.float32)
    used = [0] * n
    for frame, cx, cy, w, h, cls, score in boxes:
        a = used[frame]
        used[frame] += 1
        out[frame, :4, a] = (cx, cy, w, h)
        out[frame, 4 + cls, a] = score
    return out


def test_decode_thresholds_per_class_and_suppresses_within_frame_and_class_only() -> None:
    _, box = letterbox(frames(3, 360, 640), (384, 640))
    output = head(3, [
        (0, 100, 112, 40, 40, 0, 0.90),  # kept
        (0, 102, 114, 40, 40, 0, 0.80),  # same frame, same class, overlapping: suppressed
        (0, 102, 114, 40, 40, 1, 0.30),  # same place, other class: kept (its threshold is 0.25)
        (1, 100, 112, 40, 40, 0, 0.40),  # below class 0's threshold of 0.5
        (2, 500, 212, 20, 60, 1, 0.26),  # the third frame: kept, frame_index 2
    ])
    found = decode(output, box, thresholds=np.array([0.5, 0.25], np.float32), iou=0.45)
    order = np.lexsort((found.class_id, found.frame_index))
    assert found.frame_index[order].tolist() == [0, 0, 2]
    assert found.class_id[order].tolist() == [0, 1, 1]
    assert np.allclose(found.confidence[order], [0.9, 0.3, 0.26])
    assert np.allclose(found.xyxy[order][0], [80, 80, 120, 120])  # pad_y 12 taken off
    assert np.allclose(found.xyxy[order][2], [490, 170, 510, 230])


def test_decode_keeps_the_best_boxes_of_each_frame_up_to_the_cap() -> None:
    _, box = letterbox(frames(2, 360, 640), (384, 640))
    spread = [(f, 40.0 + 60 * i, 100, 20, 20, 0, 0.5 + 0.04 * i) for f in (0, 1) for i in range(8)]
    found = decode(head(2, spread, anchors=8), box, np.array([0.1, 0.1], np.float32), max_per_frame=3)
    assert found.per_frame(2).tolist() == [3, 3]
    assert np.allclose(np.sort(found.confidence[found.frame_index == 1]), [0.70, 0.74, 0.78])


def test_detector_runs_in_chunks_and_numbers_boxes_by_batch_row() -> None:
    seen: list[tuple[int, ...]] = []

    def fake_model(tensor: np.ndarray) -> np.ndarray:  # one box in the middle of every frame
        seen.append(tensor.shape)
        return head(len(tensor), [(i, 320, 192, 32, 32, 1, 0.9) for i in range(len(tensor))])

    detector = YoloDetector(("smoke", "fire"), (384, 640), np.array([0.5, 0.5], np.float32), max_batch=4)
    found = detector.detect(frames(10, 360, 640), fake_model)
    assert [s[0] for s in seen] == [4, 4, 2]
    assert found.frame_index.tolist() == list(range(10)) and (found.class_id == 1).all()
    assert len(detector.detect(frames(0, 360, 640), fake_model)) == 0
