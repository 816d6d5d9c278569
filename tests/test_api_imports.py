"""The API process does not load the video and model stack: PyAV (FFmpeg), OpenCV, ONNX
Runtime. It shows the workers' stream figures, and once did so by importing the stream
reader for a type, which loaded FFmpeg into every API process; `ingest.stream_stats` now
holds that type apart from the reader."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: what only a worker needs: the video decoder, the pictures, the models, and the modules that load them
WORKER_ONLY = ("av", "cv2", "onnxruntime", "ingest.stream_reader", "ingest.detection", "ingest.snapshots",
               "ingest.camera_runner", "ingest.worker")


def test_the_api_process_loads_neither_pyav_nor_opencv_nor_onnx_runtime() -> None:
    # a fresh interpreter: the test session itself has long imported all of them
    check = ("import sys\n"
             "import api.app, api.cli, api.serve\n"
             f"print(','.join(m for m in {WORKER_ONLY!r} if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"the API process imports {done.stdout.strip()}"
