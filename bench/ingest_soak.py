"""Ingest on one worker: CPU per camera, keyframe-only against full decoding, and a soak.

1080p H.264 like a camera's main stream (25 fps, a keyframe every 2 s, 4 Mbit/s), made here with
PyAV from the real footage of ../shared/media/car-detection.mp4 scaled up, with sensor-like noise
on every frame (a synthetic test pattern decodes far cheaper than a real scene and would flatter
full decoding), played as looping `file:` cameras (real demux and decode, no network: the RTSP
server would compete for the same two cores). Everything a worker does per camera runs: a
reader thread, the segment writer, and a tick that batches the latest frames into one
`FrameBatch` and runs the video-quality diagnosis on it.

1. Side by side, same process: CPU per camera with one analysed frame per 2 s (keyframe-only
   decoding) and with one per 0.5 s (the analysis interval is shorter than the GOP, so every
   frame is decoded) — the latter with fewer cameras, so that it does not saturate the cores.
2. Soak: 50 cameras for `--minutes` (default 10); RSS sampled every 10 s; growth measured from
   the first minute's level to the end.
Run: `make bench` or `.venv/bin/python bench/ingest_soak.py [--minutes 10] [--cameras 50]`.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from config.processes import limit_malloc_arenas, trim_malloc  # noqa: E402
from detectors.video_quality import QualityMonitor  # noqa: E402
from ingest.segments import SegmentWriter, enforce_retention  # noqa: E402
from ingest.stream_reader import StreamReader, latest_batch  # noqa: E402

OUT = Path(__file__).with_name("out")
SOURCE = ROOT.parent / "shared" / "media" / "car-detection.mp4"


def camera_clip(path: Path, frames: int = 250) -> Path:
    """10 s of 1080p25 from real footage: each source frame (12.5 fps) twice, each time with
    its own noise, so that every P-frame carries a residual as a real sensor's do."""
    import av
    import numpy as np

    rng = np.random.default_rng(0)
    params = "keyint=50:min-keyint=50:bframes=0:scenecut=0:bitrate=4000:vbv-maxrate=4000:vbv-bufsize=8000"
    with av.open(str(SOURCE)) as source, av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"x264-params": params, "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
        made = 0
        for frame in source.decode(video=0):
            image = frame.to_ndarray(format="rgb24", width=1920, height=1080, interpolation="BICUBIC")
            for _ in range(2):
                noisy = np.clip(image + rng.integers(-3, 4, image.shape, dtype=np.int16), 0, 255).astype(np.uint8)
                for packet in stream.encode(av.VideoFrame.from_ndarray(noisy, format="rgb24")):
                    out.mux(packet)
                made += 1
            if made >= frames:
                break
        for packet in stream.encode():
            out.mux(packet)
    return path


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Rig:
    """`cameras` readers of `clip` with segment writers and a 1 s batching tick."""

    def __init__(self, clip: Path, cameras: int, interval: float, folder: Path) -> None:
        self.folder = folder
        self.writers = [SegmentWriter(i, folder, 10.0) for i in range(cameras)]
        self.readers = [
            StreamReader(i, clip.as_uri(), size=(640, 360), interval=interval,
                         on_packet=lambda _id, p, w=self.writers[i]: w.write(p))
            for i in range(cameras)
        ]
        self.stop = threading.Event()
        self.batches = 0
        self.frames = 0
        self.tick_thread = threading.Thread(target=self._tick, daemon=True)

    def _tick(self) -> None:
        quality = QualityMonitor()
        trimmed = time.monotonic()
        while not self.stop.wait(1.0):
            batch = latest_batch(self.readers)
            if len(batch):
                quality.observe(batch)
                self.batches += 1
                self.frames += len(batch)
            enforce_retention(self.folder, 3600, 200 * 2**20)
            if time.monotonic() - trimmed >= 60:  # as CameraRunner.tick does
                trim_malloc()
                trimmed = time.monotonic()

    def __enter__(self) -> Rig:
        for r in self.readers:
            r.start()
        self.tick_thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for r in self.readers:
            r.stop()
        for r in self.readers:
            r.join(10)
        for w in self.writers:
            w.finish()
        self.tick_thread.join(5)


def cpu_per_camera(clip: Path, cameras: int, interval: float, seconds: float, folder: Path) -> dict[str, float]:
    with Rig(clip, cameras, interval, folder) as rig:
        time.sleep(5)  # warm up: connect, learn the GOP
        decoded0 = sum(r.stats.decoded for r in rig.readers)
        packets0 = sum(r.stats.packets for r in rig.readers)
        cpu0, wall0 = time.process_time(), time.monotonic()
        time.sleep(seconds)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        decoded = sum(r.stats.decoded for r in rig.readers) - decoded0
        packets = sum(r.stats.packets for r in rig.readers) - packets0
    return {"cameras": cameras, "interval_s": interval, "cpu_share_per_camera": round(cpu / wall / cameras, 4),
            "decoded_per_camera_per_s": round(decoded / wall / cameras, 2),
            "packets_per_camera_per_s": round(packets / wall / cameras, 2)}


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--minutes", type=float, default=10.0)
    args.add_argument("--cameras", type=int, default=50)
    args.add_argument("--full-decode-cameras", type=int, default=4)
    args.add_argument("--measure-seconds", type=float, default=60.0)
    opts = args.parse_args()
    limit_malloc_arenas()  # as `lookout worker` does
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.monotonic()
        clip = camera_clip(folder / "1080p.mp4")
        results["clip"] = {"source": SOURCE.name, "size": "1920x1080", "fps": 25, "gop_frames": 50, "seconds": 10,
                           "bitrate_kbps": 4000,
                           "made_in_s": round(time.monotonic() - t0, 1)}
        keyframes = cpu_per_camera(clip, opts.cameras, 2.0, opts.measure_seconds, folder / "a")
        full = cpu_per_camera(clip, opts.full_decode_cameras, 0.5, opts.measure_seconds, folder / "b")
        results["keyframe_only"] = keyframes
        results["full_decode"] = full
        results["cpu_ratio_keyframe_over_full"] = round(
            keyframes["cpu_share_per_camera"] / full["cpu_share_per_camera"], 3)
        samples = []
        with Rig(clip, opts.cameras, 2.0, folder / "soak") as rig:
            start = time.monotonic()
            while time.monotonic() - start < opts.minutes * 60:
                time.sleep(10)
                samples.append((round(time.monotonic() - start), round(rss_mb(), 1)))
            reconnects = sum(r.stats.reconnects for r in rig.readers)
            errors = [r.stats.last_error for r in rig.readers if r.stats.last_error]
            batches, frames = rig.batches, rig.frames
        baseline = max(rss for t, rss in samples if t <= 60) if samples else rss_mb()
        results["soak"] = {
            "cameras": opts.cameras, "minutes": opts.minutes, "rss_mb_after_1_min": baseline,
            "rss_mb_end": samples[-1][1], "rss_growth": round(samples[-1][1] / baseline - 1, 4),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "batches": batches, "frames_analysed": frames, "reconnects": reconnects, "errors": errors[:5],
            "samples": samples,
        }
    OUT.mkdir(exist_ok=True)
    (OUT / "ingest_soak.json").write_text(json.dumps(results, indent=2))
    print(json.dumps({k: v for k, v in results.items() if k != "soak"} | {
        "soak": {k: v for k, v in results["soak"].items() if k != "samples"}}, indent=2))  # type: ignore[union-attr]
    ok = results["cpu_ratio_keyframe_over_full"] <= 0.1 and results["soak"]["rss_growth"] < 0.10  # type: ignore[index,operator]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
