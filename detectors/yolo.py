"""A YOLO detector over a whole `FrameBatch`: letterbox into one input tensor, run, decode and
non-maximum suppression — all batch-wide array operations.

Pure computation: the model itself is a callable `run(tensor) -> output` handed in by the
worker (an ONNX Runtime session there, a fake in tests), so nothing here reads a file.
The output layout is ultralytics' detection head: `(N, 4 + C, anchors)`, boxes as centre x,
centre y, width, height in input pixels, then one score per class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from detectors.detections import Detections

CV_MAX_CHANNELS = 126  # cv2 Mats hold at most 128 channels (OpenCV 5): 42 RGB frames per call
PAD_VALUE = 114  # the grey ultralytics letterboxes with; the models were trained on it

Run = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How frames of one size were fitted into the model input: one scale and padding for the
    whole batch, since every frame of a batch has the analysis size."""

    scale: float
    pad_x: float
    pad_y: float
    frame_size: tuple[int, int]  # (height, width) of the frames

    def to_frame(self, xyxy: np.ndarray) -> np.ndarray:
        """Input-tensor pixels → frame pixels, clipped to the frame."""
        height, width = self.frame_size
        out = (xyxy - np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], np.float32)) / self.scale
        np.clip(out[:, 0::2], 0, width, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0, height, out=out[:, 1::2])
        return out


def resize_batch(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, H, W, 3) → (N, h, w, 3) with one cv2.resize call per 42 frames when enlarging: the
    frames are laid side by side as channels, so the interpolation never mixes two frames
    (shrinking averages areas, which OpenCV does for 4 channels at most: one frame per call)."""
    n, height, width, _ = frames.shape
    new_h, new_w = size
    if (new_h, new_w) == (height, width):
        return frames
    interpolation = cv2.INTER_AREA if new_h < height else cv2.INTER_LINEAR
    # OpenCV's area shrinking takes at most 4 channels: one frame per call then
    per_call = 1 if interpolation == cv2.INTER_AREA else CV_MAX_CHANNELS // 3
    out = np.empty((n, new_h, new_w, 3), np.uint8)
    for start in range(0, n, per_call):
        chunk = frames[start:start + per_call]
        planes = np.ascontiguousarray(chunk.transpose(1, 2, 0, 3).reshape(height, width, -1))
        resized = cv2.resize(planes, (new_w, new_h), interpolation=interpolation)
        out[start:start + len(chunk)] = resized.reshape(new_h, new_w, len(chunk), 3).transpose(2, 0, 1, 3)
    return out


def letterbox(frames: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """(N, H, W, 3) uint8 RGB → (N, 3, h, w) float32 in [0, 1], aspect ratio kept, grey bars."""
    n, height, width, _ = frames.shape
    input_h, input_w = size
    scale = min(input_h / height, input_w / width)
    new_h, new_w = int(round(height * scale)), int(round(width * scale))
    top, left = (input_h - new_h) // 2, (input_w - new_w) // 2
    canvas = np.full((n, input_h, input_w, 3), PAD_VALUE, np.uint8)
    canvas[:, top:top + new_h, left:left + new_w] = resize_batch(frames, (new_h, new_w))
    tensor = canvas.transpose(0, 3, 1, 2).astype(np.float32)
    tensor *= 1.0 / 255.0
    return tensor, Letterbox(new_w / width, float(left), float(top), (height, width))


def decode(output: np.ndarray, box: Letterbox, thresholds: np.ndarray, iou: float = 0.45,
           max_per_frame: int = 100) -> Detections:
    """Boxes above their class's threshold, suppressed per frame and class, in frame pixels.

    `thresholds` holds one minimum score per class, so smoke and fire (or any pair) can be
    tuned apart. NMS is OpenCV's batched NMS over the whole batch in one call (frame and class
    folded into its class id)."""
    n, channels, _ = output.shape
    classes = channels - 4
    scores = output[:, 4:, :]  # (N, C, A)
    class_id = scores.argmax(axis=1)  # (N, A)
    confidence = np.take_along_axis(scores, class_id[:, None, :], axis=1)[:, 0, :]
    keep = confidence >= thresholds[class_id]
    frame_index, anchor = np.nonzero(keep)
    if not len(frame_index):
        return Detections.empty()
    cx, cy, w, h = (output[frame_index, i, anchor] for i in range(4))
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)
    conf = confidence[frame_index, anchor].astype(np.float32)
    cls = class_id[frame_index, anchor].astype(np.int32)
    groups = (frame_index * classes + cls).astype(np.int32)
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1).astype(np.float64)
    kept = np.asarray(cv2.dnn.NMSBoxesBatched(xywh, conf, groups, 0.0, iou), np.int64).reshape(-1)
    # the best `max_per_frame` of each frame: rank within frame by descending score
    order = kept[np.lexsort((-conf[kept], frame_index[kept]))]
    frames_sorted = frame_index[order]
    first = np.searchsorted(frames_sorted, frames_sorted, side="left")
    order = order[np.arange(len(order)) - first < max_per_frame]
    return Detections(box.to_frame(xyxy[order]), conf[order], cls[order], frame_index[order].astype(np.int32))


@dataclass(frozen=True)
class YoloDetector:
    """One model over whole batches: its classes, input size and per-class thresholds."""

    classes: tuple[str, ...]
    input_size: tuple[int, int]  # (height, width), multiples of 32, for 16:9 frames; see `input_for`
    thresholds: np.ndarray  # (C,) minimum score per class
    iou: float = 0.45
    max_batch: int = 16  # frames per run: bounds the input tensor's memory

    def __post_init__(self) -> None:
        if self.thresholds.shape != (len(self.classes),):
            raise ValueError(f"one threshold per class: {len(self.classes)} classes, {self.thresholds.shape}")
        if self.input_size[0] % 32 or self.input_size[1] % 32:
            raise ValueError(f"input size must be multiples of 32, got {self.input_size}")

    def input_for(self, frame_size: tuple[int, int]) -> tuple[int, int]:
        """The input (height, width) for frames of `frame_size`: the longer side of
        `input_size`, the shorter fitted to the frames' aspect and rounded up to 32. A 16:9
        frame gets 384×640 and a square one 640×640 — the same scale either way, rather than
        shrinking a square picture into a 16:9 input (the exported models take any size)."""
        longest = max(self.input_size)
        scale = longest / max(frame_size)
        height, width = (min(longest, -(-round(side * scale) // 32) * 32) for side in frame_size)
        return height, width

    def detect(self, frames: np.ndarray, run: Run) -> Detections:
        """Every box in `frames` (N, H, W, 3), its frame_index the row in `frames`."""
        parts = []
        size = self.input_for(frames.shape[1:3]) if len(frames) else self.input_size
        for start in range(0, len(frames), self.max_batch):
            tensor, box = letterbox(frames[start:start + self.max_batch], size)
            found = decode(run(tensor), box, self.thresholds, self.iou)
            parts.append(Detections(found.xyxy, found.confidence, found.class_id,
                                    (found.frame_index + start).astype(np.int32)))
        if not parts:
            return Detections.empty()
        return Detections(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                            ("xyxy", "confidence", "class_id", "frame_index")))
