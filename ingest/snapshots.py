"""The JPEG snapshot of an event: the analysed frame with the event's boxes drawn and a caption
(kind, score, local time), written where the API serves evidence from.

Apart from the detection stage (`ingest.detection`), which decides what an event is: this
module only draws and writes. Files are private (0700 folders, a 0600 file), since what a
camera saw is nobody else's; a frame OpenCV cannot encode leaves the event without a snapshot
and a `snapshot_failed` line, never without the event.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import cv2
import numpy as np

from config.private_files import private_dir, write_private
from detectors.events import Event

log = logging.getLogger("lookout.detection")
COLOURS = {"flame": (0, 64, 255), "smoke": (160, 160, 160), "person": (0, 200, 0)}  # BGR for OpenCV
OTHER_COLOUR = (0, 255, 255)  # a kind without a colour of its own
JPEG_QUALITY = 85


def drawn(event: Event, frame: np.ndarray) -> np.ndarray:
    """`frame` (RGB) as a BGR picture with the event's boxes (normalised x1, y1, x2, y2 in its
    evidence) and its caption drawn on it."""
    image = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    height, width = image.shape[:2]
    boxes = np.asarray(event.evidence.get("boxes", []), np.float32).reshape(-1, 4) * [width, height, width, height]
    colour = COLOURS.get(event.kind, OTHER_COLOUR)
    for x1, y1, x2, y2 in boxes.astype(int).tolist():
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, 2)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.at))
    cv2.putText(image, f"{event.kind} {event.score:.2f} {stamp}", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                colour, 2)
    return image


def with_snapshot(event: Event, frame: np.ndarray, snapshot_dir: Path) -> Event:
    """The event with `snapshot` in its evidence: the path, relative to `snapshot_dir`
    (`<camera id>/<local day>/<event id>.jpg`), of `frame` (RGB) drawn by `drawn`. The event
    unchanged when the picture cannot be encoded."""
    day = time.strftime("%Y%m%d", time.localtime(event.at))
    relative = Path(str(event.camera_id)) / day / f"{event.event_id}.jpg"
    target = snapshot_dir / relative
    private_dir(target.parent)  # 0700 folders, a 0600 file: what a camera saw is nobody else's
    ok, data = cv2.imencode(".jpg", drawn(event, frame), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        log.warning("snapshot_failed", extra={"camera_id": event.camera_id, "event_id": event.event_id})
        return event
    write_private(target, data.tobytes())
    return Event(event.camera_id, event.kind, event.at, event.score,
                 {**event.evidence, "snapshot": str(relative)}, event.event_id)
