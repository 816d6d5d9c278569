"""Fire and smoke at the level operators live with: events per camera-hour on clean footage and
time to alarm on real fires, through `lookout eval video` (the worker's own reader, gate,
models, verifier and rules on a simulated clock), on both parts of the development data:

- `dev`: what the shipped thresholds and persistence were chosen on;
- `validation`: set aside by `bench/video_dev.py` (a hash of the file names) before anything was
  tuned, and run once the defaults were fixed.

Each part holds the video-dev clips of its split (`bench/video_dev.csv`, ../shared/datasets/video-dev)
and the event-level positives made from the fire-smoke picture sequences (`bench/video_dev.py
make-sequences`, made here into bench/out/video-dev-sequences when missing). Negatives are looped to
`--negative-span` seconds each (6,000 s: the 6 validation negatives give 10 camera-hours), positives
to 60 s (a 3 s clip played once gives two samples, too few for any persistence rule).

Goal (issue 16, acceptance 2), on validation: no false event; ≥ 90 % of positives alarm; median
time to alarm ≤ 15 s after the fire is visible. The frontier over thresholds × persistence comes
from `--sweep` (the verified boxes of one run replayed through the same rules for every grid
point). Figures: bench/out/video_events.json. Run: `.venv/bin/python bench/video_events.py
[--part dev|validation|both] [--negative-span S]`.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import describe as machine

VIDEO_DEV = ROOT.parent / "shared" / "datasets" / "video-dev"
OUT = Path(__file__).with_name("out")
SEQUENCES = OUT / "video-dev-sequences"
PLAYGROUND = OUT / "video-events"  # links to the clips, and one manifest per part
GOAL = {"false_events": 0, "recall": 0.9, "median_time_to_alarm": 15.0}


def prepare() -> None:
    """The sequence clips (made once), and one folder where every clip has a relative path."""
    if not (SEQUENCES / "manifest.csv").exists():
        subprocess.run([sys.executable, str(ROOT / "bench" / "video_dev.py"), "make-sequences", str(SEQUENCES)],
                       check=True)
    PLAYGROUND.mkdir(parents=True, exist_ok=True)
    for name, target in (("negatives", VIDEO_DEV / "negatives"), ("positives", VIDEO_DEV / "positives"),
                         ("seq", SEQUENCES)):
        link = PLAYGROUND / name
        if not link.is_symlink():
            link.symlink_to(target, target_is_directory=True)
    rows = [dict(r) for r in csv.DictReader((ROOT / "bench" / "video_dev.csv").open())]
    rows += [dict(r, file=f"seq/{r['file']}") for r in csv.DictReader((SEQUENCES / "manifest.csv").open())]
    with (PLAYGROUND / "manifest.csv").open("w", newline="") as out:
        writer = csv.DictWriter(out, ["file", "class", "fire_visible_s", "split"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def run_part(part: str, negative_span: float) -> dict[str, object]:
    command = [str(ROOT / ".venv" / "bin" / "lookout"), "eval", "video", str(PLAYGROUND), "--manifest",
               str(PLAYGROUND / "manifest.csv"), "--split", part, "--negative-span", str(negative_span),
               "--sweep", "--sweep-smoke", "0.4,0.5,0.6,0.7,0.8,0.9", "--json"]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"lookout eval video ({part}) failed: {done.stderr[-3000:]}")
    result: dict[str, object] = json.loads(done.stdout)
    result["bench_wall_seconds"] = round(time.monotonic() - started, 1)
    return result


def summary(result: dict[str, object]) -> dict[str, object]:
    totals = dict(result["totals"])  # type: ignore[arg-type]
    clips = result["clips"]  # type: ignore[assignment]
    totals["false_event_clips"] = [c["clip"] for c in clips if c["class"] == "negative" and c["events"]]
    totals["missed"] = [c["clip"] for c in clips if c["class"] == "positive" and c["time_to_alarm"] is None]
    return totals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("dev", "validation", "both"), default="both")
    parser.add_argument("--negative-span", type=float, default=6000.0, help="camera-seconds per negative")
    opts = parser.parse_args()
    if not VIDEO_DEV.is_dir():
        raise SystemExit(f"{VIDEO_DEV} is missing: this bench needs the shared development clips")
    prepare()
    parts = ("dev", "validation") if opts.part == "both" else (opts.part,)
    results = {"machine": machine(), "goal": GOAL, "negative_span": opts.negative_span}
    ok = True
    for part in parts:
        result = run_part(part, opts.negative_span)
        results[part] = result
        totals = summary(result)
        print(json.dumps({part: totals}, indent=2), flush=True)
        if part == "validation":
            ok = (totals["false_events"] == GOAL["false_events"] and (totals["recall"] or 0) >= GOAL["recall"]
                  and (totals["median_time_to_alarm"] or 1e9) <= GOAL["median_time_to_alarm"])
    OUT.mkdir(exist_ok=True)
    (OUT / "video_events.json").write_text(json.dumps(results, indent=2))
    if "validation" in parts:
        print("goal met" if ok else "goal NOT met: no false event, >= 90 % of fires alarm, median <= 15 s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
