"""Fire/smoke quality: alarm recall on real labelled fire and smoke against false alarms on real
clean footage, over a threshold sweep; and what the gate saves and costs.

- Positives and negatives: ../shared/datasets/fire-smoke (1,891 real images, CC BY 4.0; its ids
  are 0 fire, 1 smoke, mapped by name), every image one sample (as `lookout eval fire`).
- Clean footage: every frame of the two clips of ../shared/media (no fire, no smoke: every alarm
  is a false one).
- Sweep: flame × smoke thresholds from 0.05 to 0.95; the operating point is the highest recall
  with false alarms on at most 2 % of clean frames; the shipped defaults are scored beside it.
- Gate: share of clean samples (one per 2 s) sent to the model, and share of fire images with
  enough flame colour for the flicker test (the others wait for motion or the 30 s heartbeat).

Run: `make bench` or `.venv/bin/python bench/quality.py`. Writes bench/out/quality.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from config.settings import load_settings  # noqa: E402
from detectors.evaluation import evaluate, sweep  # noqa: E402
from detectors.frames import FrameBatch  # noqa: E402
from detectors.gating import GateRules, flame_coloured, flickering_flame_share, gate  # noqa: E402
from detectors.rules import CameraRules  # noqa: E402
from detectors.video_quality import QualityMonitor  # noqa: E402
from ingest.fire_eval import fire_model, load_labelled, maxima_of, read_images, video_frames  # noqa: E402

SHARED = ROOT.parent / "shared"
OUT = Path(__file__).with_name("out")
CLIPS = ("car-detection.mp4", "one-by-one-person-detection.mp4")
MAX_FALSE_ALARMS = 0.02


def gate_figures(fps: dict[str, float]) -> dict[str, object]:
    """Samples every 2 s of each clean clip through the quality stage and the gate."""
    import cv2

    rules, sent, seen = GateRules(), 0, 0
    for clip in CLIPS:
        monitor, last = QualityMonitor(), -np.inf
        step = max(1, round(2.0 * fps[clip]))
        for i, frame in enumerate(video_frames(SHARED / "media" / clip)):
            if i % step:
                continue
            frame = cv2.resize(frame, (640, 360))
            t = i / fps[clip]
            batch = FrameBatch.stack([1], [t], [frame])
            report = monitor.observe(batch)
            flicker = flickering_flame_share(batch.frames, report.motion_mask)
            chosen = gate(report.motion, flicker, np.array([t - last]), rules)[0]
            seen += 1
            if chosen:
                sent, last = sent + 1, t
    return {"clean_samples": seen, "sent_to_model": sent, "share_sent": round(sent / seen, 3)}


def main() -> int:
    settings = load_settings()
    OUT.mkdir(exist_ok=True)
    detector, run, kinds = fire_model(settings.model_cache_dir)
    min_area = CameraRules().min_box_area
    started = time.monotonic()
    labelled = load_labelled(SHARED / "datasets" / "fire-smoke", ["fire", "smoke"])
    maxima = maxima_of(read_images(labelled.images), detector, run, kinds, min_area)
    dataset_seconds = time.monotonic() - started
    clean = []
    for clip in CLIPS:
        clean.append(maxima_of(video_frames(SHARED / "media" / clip), detector, run, kinds, min_area))
    clean_maxima = np.concatenate(clean)
    positives = labelled.truth.any(axis=1)

    grid = np.round(np.arange(0.05, 0.951, 0.05), 2)
    curve = sweep(maxima[positives], clean_maxima, grid)
    allowed = curve[curve[:, 3] <= MAX_FALSE_ALARMS]
    best = allowed[np.lexsort((allowed[:, 3], -allowed[:, 2]))][0] if len(allowed) else None
    shipped = CameraRules().thresholds
    shipped_pair = (shipped["flame"], shipped["smoke"])
    on_dataset = evaluate(labelled.truth, maxima, shipped_pair)
    shipped_false = float((clean_maxima >= np.asarray(shipped_pair)).any(axis=1).mean())

    # the recall-versus-false-alarm frontier: for each false-alarm budget, the best recall
    frontier = []
    for budget in (0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2):
        within = curve[curve[:, 3] <= budget]
        if len(within):
            top = within[np.argmax(within[:, 2])]
            frontier.append({"max_false_alarms": budget, "flame": top[0], "smoke": top[1],
                             "recall": round(float(top[2]), 4), "false_alarms": round(float(top[3]), 4)})

    fire_images = labelled.truth[:, 0]
    colour = np.array([flame_coloured(f[None], 2).mean() for f in read_images(
        [p for p, fire in zip(labelled.images, fire_images) if fire])])
    results = {
        "dataset": {"images": len(labelled.images), "positives": int(positives.sum()),
                    "negatives": int((~positives).sum()), "seconds": round(dataset_seconds, 1)},
        "clean_frames": len(clean_maxima),
        "shipped": {"thresholds": dict(zip(("flame", "smoke"), shipped_pair)), "recall": on_dataset["recall"],
                    "false_alarms_on_clean_frames": round(shipped_false, 4),
                    "false_alarm_rate_on_dataset_negatives": on_dataset["false_alarm_rate"],
                    "classes": on_dataset["classes"]},
        "best_within_2pct": None if best is None else {"flame": best[0], "smoke": best[1],
                                                      "recall": round(float(best[2]), 4),
                                                      "false_alarms": round(float(best[3]), 4)},
        "frontier": frontier,
        "gate": {**gate_figures({"car-detection.mp4": 12.5, "one-by-one-person-detection.mp4": 10.0}),
                 # stills cannot flicker: the share of fire images with enough flame colour for
                 # the flicker test to fire once the flames move
                 "fire_images_with_flame_colour": round(float((colour >= GateRules().flame_share).mean()), 3)},
        "goal": {"recall": 0.90, "max_false_alarms": MAX_FALSE_ALARMS},
    }
    (OUT / "quality.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    ok = best is not None and best[2] >= 0.90
    print("goal met" if ok else "goal NOT met: recall >= 0.90 at <= 2 % false alarms")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
