"""The naive way for bench/throughput.py, run inside the models' export environment (torch,
ultralytics, the fire model's package): per camera a thread that reads EVERY frame with OpenCV,
paced at the clip's rate, and calls ultralytics' `model.predict()` on one frame per interval.

    python naive_predict.py MODULE WEIGHTS SECONDS WARMUP INTERVAL CLIP [CLIP ...]

Prints one JSON line: CPU per camera, cameras per core, predictions made, milliseconds each.
Imports nothing from Lookout (it runs in another environment).
"""

from __future__ import annotations

import importlib
import importlib.resources
import json
import sys
import threading
import time


def main() -> int:
    module, weights_file, seconds, warmup, interval = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:6])
    clips = sys.argv[6:]
    import cv2
    import torch

    torch.set_num_threads(1)
    importlib.import_module(module)  # fire_detector puts its FasterNet classes where the pickle looks
    from ultralytics import YOLO

    weights = str(importlib.resources.files(module).joinpath(weights_file))
    stop, measuring = threading.Event(), threading.Event()
    counts = {"predictions": 0, "predict_seconds": 0.0, "frames": 0}
    lock = threading.Lock()

    def camera(path: str) -> None:
        model = YOLO(weights)  # one per camera: predict() keeps per-call state
        capture = cv2.VideoCapture(path)
        fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        started, frame_number, next_due = time.monotonic(), 0, 0.0
        while not stop.is_set():
            ok, frame = capture.read()
            if not ok:  # loop the clip like a camera that never ends
                capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                continue
            frame_number += 1
            now = time.monotonic() - started
            if now >= next_due:
                next_due = now + interval
                t0 = time.perf_counter()
                model.predict(frame, conf=0.25, verbose=False, device="cpu")
                if measuring.is_set():
                    with lock:
                        counts["predictions"] += 1
                        counts["predict_seconds"] += time.perf_counter() - t0
            if measuring.is_set():
                with lock:
                    counts["frames"] += 1
            ahead = frame_number / fps - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)

    threads = [threading.Thread(target=camera, args=(clip,), daemon=True) for clip in clips]
    for thread in threads:
        thread.start()
    time.sleep(warmup)
    measuring.set()
    cpu0, wall0 = time.process_time(), time.monotonic()
    time.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    measuring.clear()
    stop.set()
    for thread in threads:
        thread.join(10)
    cores = cpu / wall
    print(json.dumps({
        "cameras": len(clips), "seconds": round(wall, 1), "cpu_cores_used": round(cores, 3),
        "cameras_per_core": round(len(clips) / cores, 2),
        "decoded_per_camera_per_s": round(counts["frames"] / wall / len(clips), 2),
        "analysed_per_camera_per_s": round(counts["predictions"] / wall / len(clips), 3),
        "kept_up": counts["predictions"] / wall / len(clips) >= 0.9 / interval,
        "predict_ms": round(1000 * counts["predict_seconds"] / max(counts["predictions"], 1), 1),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
