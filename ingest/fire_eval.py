"""`lookout eval fire DIR`: the fire/smoke chain over a folder of labelled images.

DIR holds `images/` and YOLO `labels/` (same stem, `.txt`): one line per box, `class cx cy w h`
or a polygon `class x1 y1 x2 y2 ...`; a missing or empty label file makes a negative image.
Class ids are mapped by NAME (`--classes`, or `names:` of a `data.yaml` in DIR), never by
number: the fire model numbers smoke 0 and fire 1, the shared dataset the other way round.
Every image is one sample with gating off: what the models and thresholds can do, not what the
gate lets through.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from config.errors import InvalidInput
from detectors.evaluation import CLASSES, image_maxima
from ingest.detection import DetectionStage, load_stage

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
NAME_TO_KIND = {"fire": "flame", "flame": "flame", "smoke": "smoke"}
LONG_SIDE = 640  # images are scaled like camera frames at the analysis size


@dataclass(frozen=True)
class LabelledSet:
    images: list[Path]
    truth: np.ndarray  # (I, 2) bool: flame, smoke present


def class_names(folder: Path, given: str | None) -> list[str]:
    if given:
        return [name.strip() for name in given.split(",")]
    for name in ("data.yaml", "data.yml"):
        if (folder / name).exists():
            names = yaml.safe_load((folder / name).read_text()).get("names")
            return list(names.values()) if isinstance(names, dict) else list(names)
    raise InvalidInput(f"{folder}: no data.yaml with class names; give --classes, e.g. fire,smoke", field="classes")


def load_labelled(folder: Path, names: list[str]) -> LabelledSet:
    images = sorted(p for p in (folder / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) \
        if (folder / "images").is_dir() else []
    if not images:
        raise InvalidInput(f"{folder}/images holds no images", field="dir")
    kind_of_id = {i: NAME_TO_KIND.get(name.lower()) for i, name in enumerate(names)}
    truth = np.zeros((len(images), len(CLASSES)), bool)
    for row, image in enumerate(images):
        label = folder / "labels" / (image.stem + ".txt")
        if not label.exists():
            continue
        for number, line in enumerate(label.read_text().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 5 or len(parts) % 2 == 0:
                raise InvalidInput(f"{label.name} line {number}: not a box or polygon", field="labels")
            kind = kind_of_id.get(int(parts[0]))
            if kind is not None:
                truth[row, CLASSES.index(kind)] = True
    return LabelledSet(images, truth)


def scaled(image: np.ndarray) -> np.ndarray:
    """A BGR picture as a camera frame at the analysis size: RGB, its long side `LONG_SIDE`.
    Shrunk by averaging areas; a small picture is enlarged smoothly — OpenCV's area method
    enlarges by repeating pixels, and a blocky picture is nothing a camera sends (YOLO11n found
    none of 26 children in a 202-pixel picture enlarged that way, 21 enlarged smoothly)."""
    height, width = image.shape[:2]
    factor = LONG_SIDE / max(height, width)
    size = (max(32, round(width * factor)), max(32, round(height * factor)))
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    return cv2.cvtColor(cv2.resize(image, size, interpolation=interpolation), cv2.COLOR_BGR2RGB)


def maxima_of(frames: Iterator[np.ndarray], stage: DetectionStage,
              min_area_share: float) -> tuple[np.ndarray, np.ndarray]:
    """(I, 2) best flame and smoke score of each frame, one sample per frame, twice: the fire
    model's boxes as they come, and those that pass verification (one model run for both, so
    that what the verifier adds is measured on the same boxes). Stills have no previous
    sample: the verifier's motion test is skipped."""
    kinds = stage.fire.manifest.class_kinds()
    raw, checked = [], []
    for frame in frames:
        found = stage.fire.detector.detect(frame[None], stage.fire.run)
        confirmed, _ = stage.verify(frame[None], found, None, smoke_floor=0.0)
        min_area = min_area_share * frame.shape[0] * frame.shape[1]
        raw.append(image_maxima(found, kinds, 1, min_area)[0])
        checked.append(image_maxima(confirmed, kinds, 1, min_area)[0])
    return tuple(np.array(rows, np.float32).reshape(-1, len(CLASSES)) for rows in (raw, checked))  # type: ignore[return-value]


def read_images(paths: list[Path]) -> Iterator[np.ndarray]:
    for path in paths:
        image = cv2.imread(str(path))
        if image is None:
            raise InvalidInput(f"{path.name}: not a readable image", field="images")
        yield scaled(image)


def video_frames(path: Path) -> Iterator[np.ndarray]:
    """Every frame of a clip, scaled like the images."""
    import av

    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield scaled(frame.to_ndarray(format="bgr24"))


def clip_frames(folder: Path, size: tuple[int, int], step: int = 1) -> Iterator[np.ndarray]:
    """Every `step`-th frame of every video file in `folder` (sorted by name), scaled to the
    analysis size `size` (width, height) the way the worker scales a camera's picture (whatever
    its aspect ratio): the clean footage whose frames must not alarm."""
    import av

    from ingest.video_eval import VIDEO_SUFFIXES

    clips = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES) if folder.is_dir() else []
    if not clips:
        raise InvalidInput(f"{folder} holds no video files", field="clean")
    width, height = size
    for path in clips:
        try:
            with av.open(str(path)) as container:
                for number, frame in enumerate(container.decode(video=0)):
                    if number % step == 0:
                        yield frame.to_ndarray(width=width, height=height, format="rgb24", interpolation="AREA")
        except av.error.FFmpegError as exc:
            raise InvalidInput(f"{path.name}: not a readable video: {exc}", field="clean") from None


def fire_chain(cache: Path, threads: int | None = None, precision: str = "int8") -> DetectionStage:
    """The worker's detection stage (fire model, people model for the smoke check, verifier)
    over all cores, keeping boxes from 0.05 so that any threshold above can be scored after."""
    stage = load_stage(cache, ["fire_smoke", "people"], None, thresholds=0.05, threads=threads or os.cpu_count() or 1,
                       precision=precision)
    assert stage is not None
    return stage
