"""Pure computation: a batch of frames in, detections and events out.

`frames` (`FrameBatch`: one array for every camera of a tick), `video_quality` (diagnosis and
motion), `gating` (which frames go to the models), `yolo` (a YOLO model over a whole batch:
letterbox, decode; the runtime session is handed in), `detections` (`Detections` as parallel
arrays), `verify` (a second look at fire candidates), `rules` (zones, thresholds, persistence),
`camera_health` and `camera_rows` (per-camera state in arrays), `events` (`Event`, the type the
worker writes and the alert engine reads), `evaluation` (scoring against labels).

No I/O, no Redis, no database, nothing of the project (not even `config`): everything here is
testable with arrays alone (tests/test_layering.py holds it).
"""
