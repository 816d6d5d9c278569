"""Real pictures for the detection tests: fire scenes from the fire-smoke pictures of
tests/assets, clean footage from its clips, and clips made of them for the workers. Everything
they read is in the repository (tests/assets/README.md: sources and licences), so that a bare
clone runs them all."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np

from detectors.yolo import Run, YoloDetector

#: the real clips and pictures the tests read (what each is: tests/assets/README.md)
ASSETS = Path(__file__).resolve().parent / "assets"
FIRE_SMOKE = ASSETS / "fire-smoke"  # YOLO layout: images/, labels/ (this dataset: 0 = fire, 1 = smoke)
SIZE = (360, 640)  # the analysis size (height, width)


def rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.resize(cv2.imread(str(path)), SIZE[::-1]), cv2.COLOR_BGR2RGB)


def clean_samples(count: int, every: int = 40, name: str = "hall.mp4") -> list[np.ndarray]:
    out = []
    with av.open(str(ASSETS / name)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % every == 0:
                out.append(frame.to_ndarray(format="rgb24", width=SIZE[1], height=SIZE[0]))
            if len(out) == count:
                break
    return out


def fire_scene(detector: YoloDetector, run: Run) -> np.ndarray:
    """The first real fire scene of the pictures where the model sees confident flame only, in
    the middle third of the picture."""
    fire, smoke = detector.classes.index("fire"), detector.classes.index("smoke")
    for label in sorted((FIRE_SMOKE / "labels").glob("*.txt")):
        lines = [line.split() for line in label.read_text().splitlines() if line.strip()]
        if len(lines) != 1 or lines[0][0] != "0":  # this dataset: 0 = fire
            continue
        image = rgb(next((FIRE_SMOKE / "images").glob(label.stem + ".*")))
        found = detector.detect(image[None], run)
        flames = found.select(found.class_id == fire)
        centre = (flames.xyxy[:, 0] + flames.xyxy[:, 2]) / 2 / SIZE[1]
        if len(flames) and flames.confidence.max() > 0.6 and ((centre > 0.35) & (centre < 0.65)).all() \
                and not (found.class_id == smoke).any():
            return image
    raise AssertionError("no suitable fire scene in tests/assets/fire-smoke")


def clip_of(image: np.ndarray, path: Path, seconds: float = 4.0, fps: int = 5) -> Path:
    """An H.264 MP4 of `image` with a slow pan (so that consecutive samples differ), a keyframe
    every second."""
    height, width = image.shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"x264-params": f"keyint={fps}:min-keyint={fps}:bframes=0"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(int(seconds * fps)):
            shifted = np.roll(image, 3 * i, axis=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(shifted, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
