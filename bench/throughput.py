"""Cameras per CPU core, end to end (decode + detect), against the naive way in the same run.

Cameras: H.264 at 25 fps with a keyframe every 2 s, played as looping `file:` sources at their
own rate (real demux and decode, no network), one analysed frame per 2 s. By default each camera
is its sub stream (640×360, 512 kbit/s), which is what `lookout worker` analyses when a camera
has one (nearly every IP camera does); `--stream main` gives each camera only its 1080p main
stream (4 Mbit/s), decoded at 1080p and scaled to 640×360 inside the decoder. The scene mix:
- static (most): an empty hall from ../shared/media with sensor noise on every frame;
- motion (some): the parking lot of ../shared/media, cars coming and going;
- fire (a few): a real fire photograph of ../shared/datasets/fire-smoke, panning.
That mostly-static mix (80 / 15 / 5 %) is the goal's; a busy mix (20 / 70 / 10 %, where nearly
every sample goes to the fire model) is measured after it and reported beside it
(`--busy-cameras`, 40 by default, 0 to skip). Then the mostly-static mix again with a share of
its cameras counting crowds (`--crowd-share`, 10 % by default, 0 to skip; `--crowd-only` runs
this mix alone): those cameras, spread evenly over the mix and showing its same footage (a count
costs the same whatever the picture), get one crowd zone over the whole picture (100 m²), and
the stage loads the crowd models, counting each such camera once per `--crowd-interval` (the
worker's default). Reported beside the goal (`ours_crowd_mix`), not held to it: cameras per
core, whether the cameras kept up, CPU per camera, and under `crowd` the counts made and the
crowd step's cost (`stage_seconds` and `ms_per_count`: the stage's wall-clock figures; the
`cpu_` figures and shares: the counting thread's CPU time in the counts).

Ours: what `lookout worker` runs — a PyAV reader thread per camera (keyframe-only decoding,
at 640×360), and a 1 s tick that batches the latest frame of every camera into one FrameBatch:
video quality and motion, gate, fire model (ONNX Runtime, one thread, the precision of the
settings: int8 by default), verifier (the people model where a smoke candidate needs it),
rules, and the crowd count where a camera has a crowd zone (`DetectionStage.crowd_events`:
the people model of `crowd_people` and the density model of `crowd_density`, on a counting
thread beside the tick, as in a worker). The segment store is left out here (bench/ingest_soak.py measures it with decoding).

Naive, same run, in the models' export environment (it has torch and ultralytics): one thread
per camera reading every frame with OpenCV and calling ultralytics' `model.predict()` on one
frame every 2 s, the fire model's own weights at its default 640 input, torch on one thread
per call.

Cameras per core = cameras / (process CPU seconds / wall seconds), measured over `--seconds`
after a warm-up; each side must also keep up (≥ 90 % of the due frames analysed).
Run: `make bench` or `.venv/bin/python bench/throughput.py [--cameras 80] [--seconds 60]
[--stream sub|main] [--precision int8|fp32] [--crowd-share 0.1] [--crowd-only]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import describe as machine
from config.processes import limit_malloc_arenas
from config.settings import load_settings
from config.worker import WorkerSettings
from detectors.rules import CameraRules, RuleEngine, Zone
from detectors.video_quality import QualityMonitor
from ingest.detection import CROWD_MODELS, STEPS, load_stage
from ingest.stream_reader import StreamReader, latest_batch
from models.manifest import manifests

SHARED = ROOT.parent / "shared"
OUT = Path(__file__).with_name("out")
STREAMS = {"main": ((1920, 1080), 4000), "sub": ((640, 360), 512)}  # (width, height), kbit/s
ANALYSIS_SIZE = (640, 360)
FPS, GOP, SECONDS = 25, 50, 10
INTERVAL = 2.0
MIX = {"static": 0.80, "motion": 0.15, "fire": 0.05}  # the goal's mix: most surveillance scenes are still
# what a busy deployment costs (city streets, markets, stations): most scenes move and every
# sample goes to the fire model; reported beside the goal, not held to it
BUSY_MIX = {"static": 0.20, "motion": 0.70, "fire": 0.10}
# a crowd camera's zone: the whole picture, so its fire path watches what it watched without one
CROWD_ZONE = Zone("crowd", ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)), True, area_m2=100.0)


def encode(path: Path, frames: object, size: tuple[int, int], kbits: int) -> Path:
    """An H.264 clip like a camera's stream of `size` from an iterator of RGB frames of that size."""
    params = (f"keyint={GOP}:min-keyint={GOP}:bframes=0:scenecut=0:bitrate={kbits}:vbv-maxrate={kbits}"
              f":vbv-bufsize={2 * kbits}")
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS, options={"x264-params": params, "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        for image in frames:  # type: ignore[attr-defined]
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def noisy(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(image + rng.integers(-3, 4, image.shape, dtype=np.int16), 0, 255).astype(np.uint8)


def static_frames(size: tuple[int, int]) -> object:
    rng = np.random.default_rng(1)
    with av.open(str(SHARED / "media" / "one-by-one-person-detection.mp4")) as source:
        first = next(source.decode(video=0)).to_ndarray(format="rgb24", width=size[0], height=size[1])
    for _ in range(FPS * SECONDS):
        yield noisy(first, rng)


def motion_frames(size: tuple[int, int]) -> object:
    rng = np.random.default_rng(2)
    made = 0
    with av.open(str(SHARED / "media" / "car-detection.mp4")) as source:
        for frame in source.decode(video=0):  # 12.5 fps: each frame twice
            image = frame.to_ndarray(format="rgb24", width=size[0], height=size[1])
            for _ in range(2):
                yield noisy(image, rng)
                made += 1
            if made >= FPS * SECONDS:
                return


def fire_image() -> Path:
    """A real fire scene: the first labelled fire-only image of the dataset at least 640 wide."""
    for label in sorted((SHARED / "datasets/fire-smoke/labels").glob("*.txt")):
        lines = [line.split() for line in label.read_text().splitlines() if line.strip()]
        if lines and all(parts[0] == "0" for parts in lines):  # this dataset: 0 = fire
            image = next((SHARED / "datasets/fire-smoke/images").glob(label.stem + ".*"))
            if cv2.imread(str(image)).shape[1] >= 640:
                return image
    raise SystemExit("no fire image in the dataset")


def fire_frames(size: tuple[int, int]) -> object:
    rng = np.random.default_rng(3)
    image = cv2.cvtColor(cv2.resize(cv2.imread(str(fire_image())), size), cv2.COLOR_BGR2RGB)
    pan = max(1, round(4 * size[0] / 1920))  # the same pan speed across the picture at every size
    for i in range(FPS * SECONDS):
        yield noisy(np.roll(image, pan * i, axis=1), rng)


def make_clips(folder: Path, stream: str) -> dict[str, Path]:
    size, kbits = STREAMS[stream]
    return {kind: encode(folder / f"{kind}.mp4", frames(size), size, kbits)
            for kind, frames in (("static", static_frames), ("motion", motion_frames), ("fire", fire_frames))}


def camera_kinds(cameras: int, mix: dict[str, float] = MIX) -> list[str]:
    counts = {kind: round(share * cameras) for kind, share in mix.items()}
    counts["static"] = cameras - counts["motion"] - counts["fire"]
    return [kind for kind, count in counts.items() for _ in range(count)]


def crowd_cameras(cameras: int, share: float) -> np.ndarray:
    """The ids of `share` of `cameras` (at least one when `share` > 0), spread evenly over the
    ids: `camera_kinds` lists the mix kind by kind, so each kind gets its part of the crowd cameras."""
    wanted = min(cameras, max(1, round(share * cameras))) if share > 0 else 0
    return np.unique(np.arange(wanted) * cameras // max(wanted, 1)).astype(np.int64)


def thread_cpu_timed(count: Callable[..., np.ndarray], total: list[float]) -> Callable[..., np.ndarray]:
    """`count`, adding the CPU seconds its thread spends in it to `total[0]`. The stage's figures
    are wall seconds, which a machine busy with other work stretches; the crowd count runs on its
    own thread (ONNX Runtime on one thread runs on the caller's), so that thread's CPU is its cost."""

    def timed(*args: object) -> np.ndarray:
        started = time.thread_time()
        try:
            return count(*args)
        finally:
            total[0] += time.thread_time() - started

    return timed


def ours(clips: dict[str, Path], cameras: int, seconds: float, warmup: float, precision: str,
         mix: dict[str, float] = MIX, crowd_share: float = 0.0,
         crowd_interval: float = WorkerSettings().crowd_interval_seconds) -> dict[str, object]:
    """`cameras` of `mix` through the worker's path; with `crowd_share`, that share of them
    counts crowds (`crowd_cameras`, `CROWD_ZONE`) every `crowd_interval` seconds."""
    settings = load_settings()
    crowd = crowd_cameras(cameras, crowd_share)
    if len(crowd):
        rules = RuleEngine({int(camera): CameraRules(zones=(CROWD_ZONE,)) for camera in crowd})
        stage = load_stage(settings.model_cache_dir, ["fire_smoke", "people", *CROWD_MODELS], None, rules,
                           precision=precision, crowd_interval=crowd_interval, crowd_background=True)
    else:
        stage = load_stage(settings.model_cache_dir, ["fire_smoke", "people"], None, precision=precision)
    assert stage is not None
    crowd_cpu = [0.0]
    if stage.crowd is not None:
        stage.crowd.count = thread_cpu_timed(stage.crowd.count, crowd_cpu)  # type: ignore[method-assign]
    kinds = camera_kinds(cameras, mix)
    readers = [StreamReader(i, clips[kind].as_uri(), size=ANALYSIS_SIZE, interval=INTERVAL)
               for i, kind in enumerate(kinds)]
    stop = threading.Event()
    tick = {"quality": 0.0, "frames": 0, "events": 0, "longest": 0.0}
    raised: Counter[str] = Counter()  # over the whole run, warm-up included: fire cameras must alarm

    def run_ticks() -> None:
        quality = QualityMonitor()
        while not stop.wait(max(0.0, 1.0 - (time.monotonic() % 1.0))):
            started = time.perf_counter()
            batch = latest_batch(readers)
            if not len(batch):
                continue
            t0 = time.perf_counter()
            report = quality.observe(batch)
            tick["quality"] += time.perf_counter() - t0
            events = stage.run(batch, report)
            tick["events"] += len(events)
            raised.update(f"{event.kind} from {kinds[event.camera_id]} cameras" for event in events)
            tick["frames"] += len(batch)
            tick["longest"] = max(tick["longest"], time.perf_counter() - started)

    for reader in readers:
        reader.start()
    ticker = threading.Thread(target=run_ticks, daemon=True)
    ticker.start()
    ticker_clock = time.pthread_getcpuclockid(ticker.ident)  # type: ignore[arg-type]
    time.sleep(warmup)
    before = dict(stage.figures.seconds), stage.figures.frames, stage.figures.inferred, stage.figures.counted
    decoded0 = sum(r.stats.decoded for r in readers)
    tick0 = dict(tick, longest=0.0)
    crowd_cpu0 = crowd_cpu[0]
    tick["longest"] = 0.0
    cpu0, wall0, ticker0 = time.process_time(), time.monotonic(), time.clock_gettime(ticker_clock)
    time.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    ticker_cpu = time.clock_gettime(ticker_clock) - ticker0
    counted_cpu = crowd_cpu[0] - crowd_cpu0
    decoded = sum(r.stats.decoded for r in readers) - decoded0
    analysed = tick["frames"] - tick0["frames"]
    stop.set()
    for reader in readers:
        reader.stop()
    for reader in readers:
        reader.join(10)
    ticker.join(60)
    steps = {step: stage.figures.seconds[step] - before[0][step] for step in STEPS}
    frames = stage.figures.frames - before[1]
    inferred = stage.figures.inferred - before[2]
    per_frame_ms = {f"{step}_ms_per_sample": round(1000 * steps[step] / max(frames, 1), 2) for step in STEPS}
    cores = cpu / wall
    result: dict[str, object] = {
        "cameras": cameras, "mix": {kind: kinds.count(kind) for kind in mix}, "precision": precision,
        "seconds": round(wall, 1),
        "cpu_cores_used": round(cores, 3), "cameras_per_core": round(cameras / cores, 1),
        "analysed_per_camera_per_s": round(analysed / wall / cameras, 3),
        "kept_up": analysed / wall / cameras >= 0.9 / INTERVAL,
        "decoded_per_camera_per_s": round(decoded / wall / cameras, 3),
        "gate_share_to_models": round(inferred / max(frames, 1), 3),
        "events": int(tick["events"] - tick0["events"]), "events_whole_run": dict(raised),
        "longest_tick_s": round(tick["longest"], 3),
        "breakdown_core_share": {
            "decode_and_demux (reader threads)": round((cpu - ticker_cpu) / wall, 3),
            "tick thread (everything below)": round(ticker_cpu / wall, 3),
            "quality_and_motion": round((tick["quality"] - tick0["quality"]) / wall, 3),
            **{step: round(steps[step] / wall, 3) for step in STEPS},
        },
        "per_sample": per_frame_ms,
    }
    if len(crowd):
        counted = stage.figures.counted - before[3]
        result["cpu_per_camera_share_of_core"] = round(cores / cameras, 4)
        result["crowd"] = {
            "cameras": len(crowd), "share": round(len(crowd) / cameras, 3),
            "by_kind": dict(Counter(kinds[int(camera)] for camera in crowd)),
            "zone": {"polygon": "whole picture", "area_m2": CROWD_ZONE.area_m2}, "interval_s": crowd_interval,
            "counted": counted,  # stage.figures.counted
            # each crowd camera is due a count every interval, at its next analysed frame after it
            "seconds_between_counts_per_camera": round(len(crowd) * wall / counted, 1) if counted else None,
            "stage_seconds": round(steps["crowd"], 2),  # stage.figures.seconds["crowd"]: wall seconds
            "ms_per_count": round(1000 * steps["crowd"] / counted, 1) if counted else None,
            "cpu_ms_per_count": round(1000 * counted_cpu / counted, 1) if counted else None,
            "core_share": round(counted_cpu / wall, 3),
            "core_share_per_crowd_camera": round(counted_cpu / wall / len(crowd), 4),
            "share_of_process_cpu": round(counted_cpu / cpu, 3),
        }
    return result


def naive(clips: dict[str, Path], cameras: int, seconds: float, warmup: float) -> dict[str, object]:
    """The naive loop in the export environment's Python (torch and ultralytics live there)."""
    settings = load_settings()
    python = settings.model_cache_dir / "export-env" / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"{python} is missing: run `lookout models build` first")
    source = manifests()["fire_smoke"].source
    kinds = camera_kinds(cameras)
    paths = [str(clips[kind]) for kind in kinds]
    env = {**os.environ, "YOLO_OFFLINE": "1", "PYTHONNOUSERSITE": "1", "OMP_NUM_THREADS": "1",
           "YOLO_CONFIG_DIR": str(settings.model_cache_dir / "export-env" / "ultralytics")}
    done = subprocess.run([str(python), str(Path(__file__).with_name("naive_predict.py")), source.module, source.file,
                           str(seconds), str(warmup), str(INTERVAL), *paths],
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"naive loop failed: {done.stderr[-2000:]}")
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    result["mix"] = {kind: kinds.count(kind) for kind in MIX}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cameras", type=int, default=80)
    parser.add_argument("--naive-cameras", type=int, default=2, help="0: measure ours only")
    parser.add_argument("--busy-cameras", type=int, default=40, help="cameras of the busy mix run (0: skip it)")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--stream", choices=sorted(STREAMS), default="sub", help="what each camera delivers")
    parser.add_argument("--precision", choices=("int8", "fp32"), default=load_settings().worker.model_precision)
    parser.add_argument("--crowd-share", type=float, default=0.1,
                        help="share of the --cameras of the mostly-static mix that count crowds in its crowd run "
                        "(0: skip that run)")
    parser.add_argument("--crowd-interval", type=float, default=WorkerSettings().crowd_interval_seconds,
                        help="seconds between two counts of a crowd camera (the worker's default)")
    parser.add_argument("--crowd-only", action="store_true",
                        help="run only the mix with crowd cameras (no goal check, nothing written)")
    opts = parser.parse_args()
    if not 0 <= opts.crowd_share <= 1:
        parser.error(f"--crowd-share must be between 0 and 1, not {opts.crowd_share}")
    if opts.crowd_only and not opts.crowd_share:
        parser.error("--crowd-only needs a --crowd-share above 0")
    if opts.crowd_interval <= 0:
        parser.error(f"--crowd-interval must be positive, not {opts.crowd_interval}")
    limit_malloc_arenas()  # as `lookout worker` does
    with tempfile.TemporaryDirectory() as tmp:
        clips = make_clips(Path(tmp), opts.stream)
        if opts.crowd_only:
            crowd = ours(clips, opts.cameras, opts.seconds, opts.warmup, opts.precision,
                         crowd_share=opts.crowd_share, crowd_interval=opts.crowd_interval)
            print(json.dumps({"ours_crowd_mix": crowd}, indent=2), flush=True)
            return 0
        mine = ours(clips, opts.cameras, opts.seconds, opts.warmup, opts.precision)
        print(json.dumps({"ours": mine}, indent=2), flush=True)
        busy = crowd = None
        if opts.busy_cameras:
            busy = ours(clips, opts.busy_cameras, opts.seconds, opts.warmup, opts.precision, BUSY_MIX)
            print(json.dumps({"ours_busy_mix": busy}, indent=2), flush=True)
        if opts.crowd_share:
            crowd = ours(clips, opts.cameras, opts.seconds, opts.warmup, opts.precision,
                         crowd_share=opts.crowd_share, crowd_interval=opts.crowd_interval)
            print(json.dumps({"ours_crowd_mix": crowd}, indent=2), flush=True)
        if not opts.naive_cameras:
            return 0
        theirs = naive(clips, opts.naive_cameras, opts.seconds, opts.warmup)
    results = {"machine": machine(), "stream": opts.stream, "ours": mine, "ours_busy_mix": busy,
               "ours_crowd_mix": crowd, "naive": theirs,
               "ratio_cameras_per_core": round(float(mine["cameras_per_core"]) / float(theirs["cameras_per_core"]), 1),
               "goal": {"cameras_per_core": 60, "ratio": 5}}
    OUT.mkdir(exist_ok=True)
    (OUT / "throughput.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    ok = (mine["kept_up"] and float(mine["cameras_per_core"]) >= 60 and results["ratio_cameras_per_core"] >= 5)
    print("goal met" if ok else "goal NOT met: >= 60 cameras per core, keeping up, and >= 5x the naive loop")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
