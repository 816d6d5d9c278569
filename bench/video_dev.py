"""Event-level development data for the fire/smoke chain (issue 16): labels, the split, and
positives made from the still pictures of fire-smoke.

Why: the chain is tuned on event-level figures (does a fire clip alarm, how soon after the fire
is visible; false events per camera-hour on clean clips). `../shared/datasets/video-dev` has
only 6 fire clips, so more positives are made from the sequences of one scene inside
`../shared/datasets/fire-smoke`; and a validation part is set aside BEFORE tuning, by a rule
that does not look at any result, so that its figures mean something.

- `bench/video_dev.csv` (committed, written by hand after looking at every positive frame by
  frame): one row per video-dev clip, `file,class,fire_visible_s,split,note`; `file` relative
  to the video-dev folder; `fire_visible_s` the first moment fire or smoke can be seen (empty
  for negatives), from which time to alarm is measured.
- The split rule, the same for both sources: per class, order the items by the sha256 of their
  name (video-dev: the clip's file name without folder; sequences: the event name, so that two
  groups showing one event stay on one side) and put the first third, rounded up, in
  `validation`, the rest in `dev`.
- `make-sequences OUT_DIR`: groups the pictures of fire-smoke by name (the prefix before the
  trailing frame number, `_jpg.rf.<hash>.jpg` stripped), keeps the groups of >= 8 pictures that
  were looked at and found to be one scene (`SEQUENCES`; the others are in `DROPPED` with the
  reason) and that carry a fire or smoke label, and encodes each as a clip: pictures in frame
  order, each held `--hold` s with slight sensor noise per frame (a held picture is not a frozen
  stream), the black bars already in the pictures cut and the picture padded to 16:9 with
  black bars like video-dev, at most 640 px wide, no upscaling, H.264 yuv420p,
  10 fps, a keyframe every second, no B-frames. `fire_visible_s` is where the first picture with
  a fire or smoke label starts. Writes `OUT_DIR/manifest.csv` with the columns of the CSV.
  The pictures are CC BY 4.0 (Roboflow Universe, workspace teju-sfeyg, "fire and smoke
  detector"): keep that attribution with any figure measured on these clips.
- `split`: prints the split and checks the CSV against the folder: every clip listed and
  present, its sha256 as in video-dev's `manifest.csv`, the split as the rule gives it, a
  fire_visible_s inside each positive clip. Exit 1 on any mismatch. `--sequences DIR` checks a
  made sequence folder the same way.
- `hours`: camera-hours that the validation negatives give when each is looped to `--span` s,
  and the span per clip needed for `--target` camera-hours (acceptance 2 asks for >= 10).

No network; the data stays in ../shared and OUT_DIR (bench/out/ is not committed).
Run: `.venv/bin/python bench/video_dev.py split`.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import math
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.build import sha256

SHARED = ROOT.parent / "shared" / "datasets"
VIDEO_DEV = SHARED / "video-dev"
FIRE_SMOKE = SHARED / "fire-smoke"
CSV_PATH = Path(__file__).with_name("video_dev.csv")
COLUMNS = ("file", "class", "fire_visible_s", "split", "note")
CLASS_OF_FOLDER = {"negatives": "negative", "positives": "positive"}
MIN_PICTURES = 8
FIRE_SMOKE_CLASSES = frozenset({"0", "1"})  # this dataset's ids: 0 fire, 1 smoke
ATTRIBUTION = "fire-smoke pictures, Roboflow Universe teju-sfeyg, CC BY 4.0"

#: Groups looked at (contact sheets of every picture) and found to show one event seen by one
#: camera — fixed, or hand-held panning/walking, but without cuts to other shots:
#: name -> (event, kind of scene). Groups of one event share the event, so the split keeps them
#: on one side.
SEQUENCES: dict[str, tuple[str, str]] = {
    "fire39frame": ("fire39frame", "indoor fireplace, log grate, close fixed view"),
    "fire38frame": ("fire38frame", "indoor fireplace, brick surround, close fixed view"),
    "fire14frame": ("fire14frame", "outdoor CCTV over a paved corner: a box is lit, burns small, goes out"),
    "case2_house": ("case2_house", "house fire from the street, hand-held, police car, black smoke"),
    "barbecue": ("barbecue", "small fire among bricks at night, hand-held close-up, some smoke"),
    "HouseFour": ("model_house_burn", "burn-test model house outdoors, fire in a lower room, fixed"),
    "HouseFive": ("model_house_burn", "burn-test model house, fire in a room, fixed, closer"),
    "hand_held_winnebago": ("hand_held_winnebago", "motorhome fire on a mountain road, hand-held, big smoke"),
    "HouseOne": ("HouseOne", "stick model house set alight with a torch, close, hands in view"),
    "case2_car": ("case2_car", "car fire on a residential street, hand-held walking closer"),
    "CarThree": ("ap_car_fire_rescue", "car fire in a street, crowd lifting the car, elevated news camera"),
    "CarTwo": ("ap_car_fire_rescue", "car fire in a street, extinguished into a white cloud, elevated news camera"),
    "HouseTwo": ("toy_house_fire", "toy fire engines before a model house with a flame on its roof, fixed"),
    "HouseThree": ("toy_house_fire", "toy ladder truck before a model house, flame at the roof, fixed"),
    "Two": ("Two", "house fire across a street, hand-held, black smoke, fire engines arrive"),
    "fire1frame": ("fire1frame", "potted plant set alight in a paved yard, fixed, people pass, smoke after"),
    "fire36frame": ("fire36frame", "kitchen sink fire, fixed, a woman at the counter"),
    "hand_held_batteries_night": ("hand_held_batteries_night", "burning frame at night, fixed, OSD clock"),
    "hand_held_camera_wildfire": ("hand_held_camera_wildfire", "lorry fire by a building, hand-held, black smoke"),
    "fire6frame": ("fire6frame", "small fire on a red field by a wall, fixed outdoor camera"),
    "fire13frame": ("fire13frame", "small fire in a bin at the end of a corridor, fixed, a man walks in"),
    "fire41frame": ("fire41frame", "bonfire close-up before a gate, nearly fixed"),
    "fire34frame": ("fire34frame", "fire basket against a wall, fixed"),
    "fire40frame": ("fire40frame", "small fire with black smoke on grass by a river, fixed, a firefighter"),
    "FireDataThree": ("FireDataThree", "fire test in a room seen down a dark corridor, fixed"),
    "Ogdenhousefire": ("Ogdenhousefire", "house fire across a street, hand-held, last picture wider"),
    "WaterMistFireDemonstration": ("WaterMistFireDemonstration",
                                   "lab fire test of a workbench with timecode, fixed, last two closer"),
    "fire32frame": ("fire32frame", "distant hill-top fire with a smoke plume, fixed"),
    "Four": ("Four", "SUV fire in a residential street, hand-held, walks around it"),
    "Seven": ("Seven", "car fire at a training ground, fire engine behind, nearly fixed"),
}

#: Groups of >= MIN_PICTURES looked at and left out, with the reason.
DROPPED: dict[str, str] = {
    "fire_": "unrelated wildfire photographs",
    "WEB": "unrelated web pictures of many sizes",
    "abc": "unrelated wildfire photographs",
    "WEBFire": "unrelated web pictures of many sizes",
    "MirrorWEBFire": "unrelated web pictures of many sizes",
    "NoiseWEBFire": "unrelated web pictures of many sizes",
    "new_fire_fire-": "unrelated web pictures of many sizes",
    "hand_held_nasa_training": "edited film: cuts between fire-ground shots and close-ups of faces",
    "CarOne": "edited film: three camera angles and a cut to bystanders, no run of 8 in one shot",
    "MASSIVEFURNITURESTOREFIRE-5thAlarmFireNHRFRNorthBergenNJ": "news edit: cuts between angles",
    "FireDataTwo": "edited film: cuts between wide shots and close-ups of a pool fire",
    "FrontRoomFire": "documentary edit: cuts between rooms and angles, caption overlays",
    "coolerbot": "no fire in view (robot camera travelling a garden; two labels on a flower)",
    "cleaner": "no fire or smoke (robot vacuum camera indoors)",
}


@dataclass(frozen=True)
class Row:
    """One clip of the CSV or of a sequence manifest."""

    file: str
    cls: str
    fire_visible_s: float | None
    split: str
    note: str

    def as_dict(self) -> dict[str, str]:
        visible = "" if self.fire_visible_s is None else f"{self.fire_visible_s:g}"
        return {"file": self.file, "class": self.cls, "fire_visible_s": visible, "split": self.split,
                "note": self.note}


def split_by_hash(names: list[str]) -> dict[str, str]:
    """The split rule: order by sha256 of the name, the first third (rounded up) validation."""
    order = sorted(set(names), key=lambda name: hashlib.sha256(name.encode()).hexdigest())
    validation = math.ceil(len(order) / 3)
    return {name: "validation" if i < validation else "dev" for i, name in enumerate(order)}


def read_rows(path: Path) -> list[Row]:
    """Rows of a CSV with COLUMNS; exits with the line at fault on a bad header or value."""
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            sys.exit(f"{path}: header {reader.fieldnames}, expected {list(COLUMNS)}")
        rows = []
        for line, r in enumerate(reader, start=2):
            try:
                visible = float(r["fire_visible_s"]) if r["fire_visible_s"] else None
            except ValueError:
                sys.exit(f"{path}:{line}: fire_visible_s {r['fire_visible_s']!r} is not a number")
            rows.append(Row(r["file"], r["class"], visible, r["split"], r["note"]))
    return rows


def write_rows(path: Path, rows: list[Row]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(row.as_dict() for row in rows)


def clip_seconds(path: Path) -> float:
    """Duration of a clip from its stream, falling back to frames / rate."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        return float(stream.frames / stream.average_rate)


def rule_errors(rows: list[Row], key_of: dict[str, str], where: str) -> list[str]:
    """Checks the split column against the rule, per class, over the keys in `key_of`."""
    errors = []
    by_class: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        by_class[row.cls].append(key_of[row.file])
    expected = {cls: split_by_hash(keys) for cls, keys in by_class.items()}
    for row in rows:
        want = expected[row.cls][key_of[row.file]]
        if row.split != want:
            errors.append(f"{where}: {row.file}: split {row.split!r}, the rule gives {want!r}")
    return errors


def visible_errors(row: Row, seconds: float, where: str) -> list[str]:
    if row.cls == "negative":
        return [] if row.fire_visible_s is None else [f"{where}: {row.file}: a negative with fire_visible_s"]
    if row.fire_visible_s is None or not 0 <= row.fire_visible_s < seconds:
        return [f"{where}: {row.file}: fire_visible_s {row.fire_visible_s} outside the clip (0..{seconds:.1f} s)"]
    return []


def check_video_dev(csv_path: Path, folder: Path) -> tuple[list[Row], dict[str, float], list[str]]:
    """The CSV against the folder and its manifest; returns rows, seconds per file, errors."""
    rows, errors = read_rows(csv_path), []
    with (folder / "manifest.csv").open(newline="") as f:
        manifest = {r["file"]: r for r in csv.DictReader(f)}
    present = {f"{p.parent.name}/{p.name}" for sub in CLASS_OF_FOLDER for p in (folder / sub).glob("*.mp4")}
    listed = [row.file for row in rows]
    errors += [f"{csv_path.name}: {name} listed twice" for name in sorted({n for n in listed if listed.count(n) > 1})]
    errors += [f"{csv_path.name}: {name} is in the folder, not in the CSV" for name in sorted(present - set(listed))]
    errors += [f"{csv_path.name}: {name} is in the CSV, not in the folder" for name in sorted(set(listed) - present)]
    seconds: dict[str, float] = {}
    for row in rows:
        path = folder / row.file
        if not path.is_file():
            continue
        if CLASS_OF_FOLDER.get(path.parent.name) != row.cls:
            errors.append(f"{csv_path.name}: {row.file}: class {row.cls!r} but folder {path.parent.name}/")
        if row.split not in ("dev", "validation"):
            errors.append(f"{csv_path.name}: {row.file}: split {row.split!r}")
        entry = manifest.get(row.file)
        if entry is None:
            errors.append(f"manifest.csv: no row for {row.file}")
        elif sha256(path) != entry["sha256"]:
            errors.append(f"{row.file}: sha256 differs from manifest.csv")
        seconds[row.file] = float(entry["seconds"]) if entry else clip_seconds(path)
        errors += visible_errors(row, seconds[row.file], csv_path.name)
    known = [row for row in rows if row.file in seconds]
    errors += rule_errors(known, {row.file: Path(row.file).name for row in known}, csv_path.name)
    return rows, seconds, errors


def check_sequences(folder: Path) -> tuple[list[Row], dict[str, float], list[str]]:
    """A made sequence folder: every clip of its manifest present, split by event as the rule."""
    manifest = folder / "manifest.csv"
    rows, errors, seconds = read_rows(manifest), [], {}
    for row in rows:
        path = folder / row.file
        if not path.is_file():
            errors.append(f"{manifest}: {row.file} missing")
            continue
        seconds[row.file] = clip_seconds(path)
        errors += visible_errors(row, seconds[row.file], manifest.name)
    events = {f"{name}.mp4": event for name, (event, _) in SEQUENCES.items()}
    unknown = [row.file for row in rows if row.file not in events]
    errors += [f"{manifest}: {name} is not a known sequence" for name in unknown]
    errors += rule_errors([row for row in rows if row.file in events], events, manifest.name)
    return rows, seconds, errors


def print_split(title: str, rows: list[Row], seconds: dict[str, float]) -> None:
    print(f"\n{title}")
    for split in ("validation", "dev"):
        for cls in ("positive", "negative"):
            part = [row for row in rows if row.split == split and row.cls == cls]
            total = sum(seconds.get(row.file, 0.0) for row in part)
            print(f"  {split:<10} {cls:<8} {len(part):>3} clips, {total:7.1f} s")
            for row in sorted(part, key=lambda r: r.file):
                visible = "" if row.fire_visible_s is None else f"fire visible {row.fire_visible_s:g} s"
                print(f"    {row.file:<48} {seconds.get(row.file, 0.0):6.1f} s  {visible}")


# -- sequences ------------------------------------------------------------------------------
_ROBOFLOW_SUFFIX = re.compile(r"\.rf\.[0-9a-f]+\.jpg$")
_EXPORT_EXT = re.compile(r"_(jpg|png)$")
_FRAME_NUMBER = re.compile(r"^(.*\D)(\d+)$")


def group_pictures(images: Path) -> dict[str, list[tuple[int, Path]]]:
    """Pictures grouped by the name before the trailing frame number, in frame order; names
    that are a number alone belong to no group."""
    groups: dict[str, list[tuple[int, Path]]] = defaultdict(list)
    for path in images.iterdir():
        stem = _EXPORT_EXT.sub("", _ROBOFLOW_SUFFIX.sub("", path.name))
        match = _FRAME_NUMBER.match(stem)
        if match:
            groups[match.group(1)].append((int(match.group(2)), path))
    return {name: sorted(pictures) for name, pictures in groups.items()}


def fire_or_smoke(image: Path) -> bool:
    """Whether the picture's label file has a fire or smoke box (class ids of fire-smoke)."""
    label = image.parent.parent / "labels" / (image.name.removesuffix(".jpg") + ".txt")
    if not label.is_file():
        return False
    return any(line.split()[0] in FIRE_SMOKE_CLASSES for line in label.read_text().splitlines() if line.strip())


def canvas_size(width: int, height: int, max_width: int) -> tuple[int, int]:
    """16:9 frame holding a width x height picture with black bars, no wider than max_width,
    both sides even (yuv420p)."""
    if width * 9 < height * 16:
        out_w, out_h = math.ceil(height * 16 / 9), height
    else:
        out_w, out_h = width, math.ceil(width * 9 / 16)
    if out_w > max_width:
        out_w, out_h = max_width, round(out_h * max_width / out_w)
    return out_w + out_w % 2, out_h + out_h % 2


def fitted(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, tuple[slice, slice]]:
    """The picture scaled into `size` keeping its aspect, centred on black; and where it lies."""
    out_w, out_h = size
    height, width = image.shape[:2]
    scale = min(out_w / width, out_h / height)
    new_w, new_h = min(out_w, round(width * scale)), min(out_h, round(height * scale))
    if (new_w, new_h) != (width, height):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    canvas = np.zeros((out_h, out_w, 3), np.uint8)
    top, left = (out_h - new_h) // 2, (out_w - new_w) // 2
    where = (slice(top, top + new_h), slice(left, left + new_w))
    canvas[where] = image
    return canvas, where


def content_box(images: list[np.ndarray], dark: int = 24, share: float = 0.02) -> tuple[slice, slice]:
    """Rows and columns that hold picture in any of the images: the black bars many of these
    frames already carry (a 16:9 video letterboxed into 4:3, a 4:3 one pillarboxed into a
    square) are cut before the clip's own 16:9 padding, so the scene is not boxed twice."""
    active = [(img.max(axis=2) > dark) for img in images]
    rows = np.any([a.mean(axis=1) > share for a in active], axis=0)
    cols = np.any([a.mean(axis=0) > share for a in active], axis=0)
    if not rows.any() or not cols.any():
        return slice(None), slice(None)
    top, bottom = np.flatnonzero(rows)[[0, -1]]
    left, right = np.flatnonzero(cols)[[0, -1]]
    return slice(int(top), int(bottom) + 1), slice(int(left), int(right) + 1)


def encode_sequence(pictures: list[Path], path: Path, hold_s: float, fps: int, noise: float, seed: int,
                    max_width: int = 640) -> float:
    """Encodes the pictures as an H.264 clip like a camera's: black bars already in the pictures
    cut (`content_box`), each held `hold_s` seconds with Gaussian sensor noise (sigma `noise`
    levels) drawn afresh per frame over the picture (the bars stay black), a keyframe every
    second, no B-frames. Returns the clip's seconds."""
    images = [cv2.imread(str(picture)) for picture in pictures]
    unreadable = [str(p) for p, image in zip(pictures, images) if image is None]
    if unreadable:
        raise RuntimeError(f"cannot be read: {unreadable}")
    box = content_box(images)
    first = images[0][box]
    size = canvas_size(first.shape[1], first.shape[0], max_width)
    rng = np.random.default_rng(seed)
    per_picture = max(1, round(hold_s * fps))
    params = f"keyint={fps}:min-keyint={fps}:bframes=0:scenecut=0"
    index = 0
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"x264-params": params, "crf": "23",
                                                              "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.gop_size = fps
        for image in images:
            canvas, where = fitted(image[box], size)
            base = canvas[where].astype(np.float32)
            for _ in range(per_picture):
                grain = rng.standard_normal(base.shape, dtype=np.float32) * noise
                canvas[where] = np.clip(base + grain + 0.5, 0, 255).astype(np.uint8)
                frame = av.VideoFrame.from_ndarray(canvas, format="bgr24")
                frame.pts, frame.time_base = index, Fraction(1, fps)
                index += 1
                for packet in stream.encode(frame):
                    out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return index / fps


def make_sequences(out_dir: Path, dataset: Path, hold_s: float, fps: int, noise: float) -> int:
    """Encodes every kept group into out_dir and writes out_dir/manifest.csv; 1 if a group of
    enough pictures was never looked at (it must be judged and listed first)."""
    groups = {name: pics for name, pics in group_pictures(dataset / "images").items() if len(pics) >= MIN_PICTURES}
    unseen = sorted(set(groups) - set(SEQUENCES) - set(DROPPED))
    if unseen:
        print(f"groups of >= {MIN_PICTURES} pictures never looked at: {unseen}; view them and list them in "
              "SEQUENCES or DROPPED", file=sys.stderr)
        return 1
    missing = sorted(set(SEQUENCES) - set(groups))
    if missing:
        print(f"sequences not found in {dataset}: {missing}", file=sys.stderr)
        return 1
    for name in sorted(DROPPED):
        if name in groups:
            print(f"dropped  {name:<58} {len(groups[name]):>3} pictures: {DROPPED[name]}")
    kept: dict[str, list[tuple[int, Path]]] = {}
    for name in sorted(SEQUENCES):
        labelled = [fire_or_smoke(path) for _, path in groups[name]]
        if not any(labelled):
            print(f"dropped  {name:<58} {len(groups[name]):>3} pictures: no fire or smoke label")
            continue
        kept[name] = groups[name]
    split = split_by_hash([SEQUENCES[name][0] for name in kept])
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, pictures in kept.items():
        event, kind = SEQUENCES[name]
        first = next(i for i, (_, path) in enumerate(pictures) if fire_or_smoke(path))
        seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
        file = f"{name}.mp4"
        seconds = encode_sequence([path for _, path in pictures], out_dir / file, hold_s, fps, noise, seed)
        note = (f"{kind}; {len(pictures)} pictures (frames {pictures[0][0]}-{pictures[-1][0]}) held {hold_s:g} s"
                f" each; event {event}; {ATTRIBUTION}")
        rows.append(Row(file, "positive", first * hold_s, split[event], note))
        print(f"kept     {name:<58} {len(pictures):>3} pictures, {seconds:5.0f} s, fire visible "
              f"{first * hold_s:g} s, {split[event]:<10} {kind}")
    write_rows(out_dir / "manifest.csv", sorted(rows, key=lambda r: r.file))
    print(f"\n{len(rows)} clips, {sum(r.split == 'validation' for r in rows)} validation; "
          f"{out_dir / 'manifest.csv'}")
    return 0


# -- camera-hours ---------------------------------------------------------------------------
def camera_hours(csv_path: Path, folder: Path, span_s: float, target_h: float) -> int:
    """Camera-hours of the validation (and dev) negatives looped to span_s each, and the span
    per clip that reaches target_h on the validation negatives."""
    rows, seconds, errors = check_video_dev(csv_path, folder)
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 1
    for split in ("validation", "dev"):
        negatives = [row for row in rows if row.cls == "negative" and row.split == split]
        hours = len(negatives) * span_s / 3600
        need = math.ceil(target_h * 3600 / len(negatives))
        print(f"{split}: {len(negatives)} negatives x {span_s:g} s = {hours:.2f} camera-hours "
              f"({sum(seconds[r.file] for r in negatives):.1f} s of distinct video); "
              f">= {target_h:g} camera-hours needs a span of {need} s ({need / 60:.0f} min) per clip")
        for row in sorted(negatives, key=lambda r: r.file):
            print(f"    {row.file:<48} {seconds[row.file]:5.1f} s, looped {span_s / seconds[row.file]:7.1f} times")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    seq = sub.add_parser("make-sequences", help="encode the fire-smoke sequences as clips, with a manifest")
    seq.add_argument("out_dir", type=Path)
    seq.add_argument("--dataset", type=Path, default=FIRE_SMOKE)
    seq.add_argument("--hold", type=float, default=2.0, help="seconds each picture is held")
    seq.add_argument("--fps", type=int, default=10)
    seq.add_argument("--noise", type=float, default=2.0, help="sensor noise, standard deviation in levels")
    spl = sub.add_parser("split", help="print the split and check the CSV against video-dev")
    spl.add_argument("--csv", type=Path, default=CSV_PATH)
    spl.add_argument("--video-dev", type=Path, default=VIDEO_DEV)
    spl.add_argument("--sequences", type=Path, help="a folder made by make-sequences, checked too")
    hrs = sub.add_parser("hours", help="camera-hours of the validation negatives looped to a span")
    hrs.add_argument("--span", type=float, default=6000.0, help="seconds each negative is played (looped)")
    hrs.add_argument("--target", type=float, default=10.0, help="camera-hours wanted")
    hrs.add_argument("--csv", type=Path, default=CSV_PATH)
    hrs.add_argument("--video-dev", type=Path, default=VIDEO_DEV)
    args = parser.parse_args(argv)

    if args.command == "make-sequences":
        return make_sequences(args.out_dir, args.dataset, args.hold, args.fps, args.noise)
    if args.command == "hours":
        return camera_hours(args.csv, args.video_dev, args.span, args.target)
    rows, seconds, errors = check_video_dev(args.csv, args.video_dev)
    print_split(f"video-dev ({args.csv.name})", rows, seconds)
    if args.sequences:
        seq_rows, seq_seconds, seq_errors = check_sequences(args.sequences)
        print_split(f"sequences ({args.sequences / 'manifest.csv'})", seq_rows, seq_seconds)
        errors += seq_errors
    if errors:
        print("\n" + "\n".join(errors), file=sys.stderr)
        return 1
    print("\nchecked: every clip present, sha256 as in manifest.csv, split as the rule")
    return 0


if __name__ == "__main__":
    sys.exit(main())
