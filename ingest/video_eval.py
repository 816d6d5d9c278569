"""`lookout eval video`: the fire/smoke chain judged at the level operators live with — events.

Each clip is played as one camera through the worker's own code on a simulated clock
(`ingest.clip_playback`): the `StreamReader` samples it at the analysis interval with
keyframe-only decoding, and every analysed frame goes, as a one-camera batch, through
`QualityMonitor.observe` and `DetectionStage.run` exactly as `CameraRunner.analyse` sends it
(gate, models, verifier, zones, k-of-n persistence, cooldown), the stage's `now` being the
simulated time. Clips are positives (fire becomes visible `fire_visible_s` into the clip) or
negatives; a clip shorter than its span is looped from a new place each pass.

Per clip: its flame and smoke events, and for a positive the first alarm's delay after the fire
became visible (an event before that is "early", reported apart and never a hit). In all:
event recall, median and p90 time to alarm, false events (any event on a negative) per
camera-hour. `--sweep` adds the frontier over thresholds × persistence (`ingest.video_sweep`).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import numpy as np

from config.errors import ConfigError, InvalidInput
from detectors.frames import FrameBatch
from detectors.rules import FIRE_KINDS, CameraRules, RuleEngine
from detectors.video_quality import QualityMonitor
from ingest.clip_playback import SimulatedClock, play
from ingest.detection import DetectionStage, load_stage
from ingest.stream_reader import StreamReader
from ingest.video_sweep import Grid, RecordingRules, frontier, replay, steps_of
from registry.fields import has_control_characters

log = logging.getLogger("lookout.eval")

# containers only: a raw .h264/.h265 elementary stream carries no timestamps, so the simulated
# clock could not follow it, and it cannot be seeked to loop
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".ts", ".flv", ".avi")
MANIFEST_MAX_BYTES = 1 << 20
MAX_CLIPS = 10_000
CLASSES = ("positive", "negative")


@dataclass(frozen=True)
class Clip:
    path: Path
    name: str  # as the folder or manifest names it
    positive: bool
    visible: float = 0.0  # seconds into the clip when the fire becomes visible (positives)


@dataclass(frozen=True)
class Playing:
    """How clips are played: the worker's sampling, and each clip's span (camera-seconds)."""

    interval: float = 2.0
    size: tuple[int, int] = (640, 360)
    span: float | None = None  # every clip's; None: a positive `positive_span`, a negative `negative_span`
    negative_span: float = 600.0
    # a fire goes on burning: a 3 s clip played once gives two samples, too few for any
    # persistence rule, so positives are looped (or cut) to this many seconds after the fire
    # becomes visible; None: once through
    positive_span: float | None = 60.0

    def span_of(self, clip: Clip) -> float | None:
        if self.span is not None:
            return self.span
        if not clip.positive:
            return self.negative_span
        return None if self.positive_span is None else clip.visible + self.positive_span


EventRow = tuple[float, str, float]  # (seconds into the playback, kind, score)


@dataclass
class ClipResult:
    clip: Clip
    seconds: float  # camera-seconds played
    length: float  # the clip's own length
    starts: list[float]  # where in the clip each pass started
    events: list[EventRow] = field(default_factory=list)
    samples: int = 0  # frames analysed
    inferred: int = 0  # of them, sent to the models by the gate

    @property
    def early(self) -> list[EventRow]:
        """A positive's events before its fire is visible."""
        return [e for e in self.events if e[0] < self.clip.visible] if self.clip.positive else []

    @property
    def time_to_alarm(self) -> float | None:
        """A positive's first event at or after its fire became visible, in seconds after that."""
        if not self.clip.positive:
            return None
        return next((round(e[0] - self.clip.visible, 3) for e in self.events if e[0] >= self.clip.visible), None)

    def as_dict(self) -> dict[str, object]:
        return {"clip": self.clip.name, "class": "positive" if self.clip.positive else "negative",
                "fire_visible_s": self.clip.visible if self.clip.positive else None,
                "camera_seconds": round(self.seconds, 3), "clip_seconds": round(self.length, 3),
                "passes": len(self.starts), "pass_starts": [round(s, 3) for s in self.starts],
                "events": [{"t": t, "kind": k, "score": s} for t, k, s in self.events],
                "time_to_alarm": self.time_to_alarm, "early_events": len(self.early),
                "samples": self.samples, "inferred": self.inferred}


# -- the clips -----------------------------------------------------------------------------
def _checked_name(name: str, where: str) -> None:
    if has_control_characters(name) or len(name) > 1000:
        raise InvalidInput(f"{where}: the file name holds control characters or is too long", field="clips")


def clips_in_folder(folder: Path) -> list[Clip]:
    """The video files of `folder`/positives and `folder`/negatives, in name order."""
    clips = []
    for kind in CLASSES:
        sub = folder / f"{kind}s"
        if not sub.is_dir():
            continue
        for path in sorted(sub.iterdir()):
            _checked_name(path.name, str(sub))
            if path.suffix.lower() in VIDEO_SUFFIXES and path.is_file():
                clips.append(Clip(path, f"{kind}s/{path.name}", kind == "positive"))
    if not clips:
        raise InvalidInput(f"{folder}: no video files in positives/ or negatives/", field="dir")
    return clips[:MAX_CLIPS]


def read_manifest(manifest: Path, root: Path | None = None, split: str | None = None) -> list[Clip]:
    """The clips a CSV names: a header with `file` and `class` (positive|negative), optionally
    `fire_visible_s` (default 0) and `split`; other columns are ignored. Files are relative to
    `root` (default: the CSV's folder) and may not leave it. InvalidInput naming the line."""
    if not manifest.is_file():
        raise InvalidInput(f"{manifest}: no such manifest", field="manifest")
    if manifest.stat().st_size > MANIFEST_MAX_BYTES:
        raise InvalidInput(f"{manifest}: a manifest is at most {MANIFEST_MAX_BYTES} bytes", field="manifest")
    try:
        text = manifest.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput(f"{manifest}: not UTF-8", field="manifest") from None
    root = manifest.parent if root is None else root
    rows = csv.DictReader(io.StringIO(text))
    header = rows.fieldnames or []
    if not {"file", "class"} <= set(header):
        raise InvalidInput(f"{manifest} line 1: the header needs file and class columns "
                           "(and optionally fire_visible_s, split)", field="manifest")
    if split is not None and "split" not in header:
        raise InvalidInput(f"{manifest}: --split {split} given, but the manifest has no split column", field="split")
    clips = []
    for row in rows:
        where = f"{manifest.name} line {rows.line_num}"
        if split is not None and (row.get("split") or "").strip() != split:
            continue
        clips.append(_clip_of(row, root, where))
        if len(clips) > MAX_CLIPS:
            raise InvalidInput(f"{where}: more than {MAX_CLIPS} clips", field="manifest")
    if not clips:
        raise InvalidInput(f"{manifest}: no clips" + (f" in split {split!r}" if split is not None else ""),
                           field="manifest")
    return clips


def _clip_of(row: dict[str | None, str | None], root: Path, where: str) -> Clip:
    name = (row.get("file") or "").strip()
    if not name:
        raise InvalidInput(f"{where}: no file", field="manifest")
    _checked_name(name, where)
    relative = PurePosixPath(name)
    if relative.is_absolute() or ".." in relative.parts:
        raise InvalidInput(f"{where}: {name!r} must be a path inside {root}", field="manifest")
    kind = (row.get("class") or "").strip().lower()
    if kind not in CLASSES:
        raise InvalidInput(f"{where}: class must be positive or negative, not {kind[:40]!r}", field="manifest")
    visible_text = (row.get("fire_visible_s") or "").strip()
    try:
        visible = float(visible_text) if visible_text else 0.0
    except ValueError:
        visible = math.nan
    if not (math.isfinite(visible) and visible >= 0):
        raise InvalidInput(f"{where}: fire_visible_s must be seconds (0 or more), not {visible_text[:40]!r}",
                           field="manifest")
    path = root / relative
    if not path.is_file():
        raise InvalidInput(f"{where}: no such file: {name}", field="manifest")
    return Clip(path, name, kind == "positive", visible)


def persistence_of(text: str) -> tuple[int, int]:
    """"K/N" as (k, n)."""
    k, _, n = text.partition("/")
    try:
        pair = int(k), int(n)
    except ValueError:
        raise InvalidInput(f"persistence is K/N (e.g. 3/5), not {text[:40]!r}", field="persistence") from None
    if not 1 <= pair[0] <= pair[1] <= 30:
        raise InvalidInput("persistence must be K/N with 1 <= K <= N <= 30", field="persistence")
    return pair


# -- playing them --------------------------------------------------------------------------
def evaluate(clips: list[Clip], stage: DetectionStage, playing: Playing,
             reader_factory: Callable[..., StreamReader] = StreamReader) -> list[ClipResult]:
    """Play every clip as its own camera (ids 1, 2, ...) through `stage`, with its rules as they
    are; what each raised. The models are loaded once; each clip starts with a fresh video
    quality monitor and the stage's state of its camera forgotten after it."""
    results = []
    for camera_id, clip in enumerate(clips, 1):
        clock = SimulatedClock()
        reader = reader_factory(camera_id, clip.path.resolve().as_uri(), size=playing.size,
                                interval=playing.interval, clock=clock)
        quality = QualityMonitor()
        frames, inferred = stage.figures.frames, stage.figures.inferred
        events: list[EventRow] = []

        def analyse(stamp: float, image: np.ndarray, camera_id: int = camera_id, clock: SimulatedClock = clock,
                    quality: QualityMonitor = quality, events: list[EventRow] = events) -> None:
            batch = FrameBatch.stack([camera_id], [stamp], [image])  # as CameraRunner.analyse gets it
            for event in stage.run(batch, quality.observe(batch), now=clock.time()):
                if event.kind in FIRE_KINDS:
                    events.append((round(clock.since_start(event.at), 3), event.kind, round(event.score, 3)))

        started = time.perf_counter()
        playback = play(reader, clip.path, playing.span_of(clip), analyse)
        stage.forget({camera_id})
        result = ClipResult(clip, playback.seconds, playback.length, playback.starts, events,
                            stage.figures.frames - frames, stage.figures.inferred - inferred)
        results.append(result)
        log.info("clip_played", extra={"camera_id": camera_id, "clip": clip.name, "camera_seconds": round(result.seconds, 1),
                                       "passes": playback.passes, "events": len(events), "samples": result.samples,
                                       "seconds": round(time.perf_counter() - started, 2)})
    return results


def totals(results: list[ClipResult]) -> dict[str, object]:
    """Event recall, time to alarm, false events per camera-hour, samples: over all clips."""
    positives = [r for r in results if r.clip.positive]
    negatives = [r for r in results if not r.clip.positive]
    delays = [d for d in (r.time_to_alarm for r in positives) if d is not None]
    false_events = sum(len(r.events) for r in negatives)
    negative_hours = sum(r.seconds for r in negatives) / 3600

    def rounded(value: float | None, digits: int = 3) -> float | None:
        return None if value is None else round(float(value), digits)

    return {
        "positives": len(positives), "alarmed": len(delays),
        "recall": rounded(len(delays) / len(positives) if positives else None, 4),
        "median_time_to_alarm": rounded(float(np.median(delays)) if delays else None),
        "p90_time_to_alarm": rounded(float(np.percentile(delays, 90)) if delays else None),
        "early_events": sum(len(r.early) for r in positives),
        "negatives": len(negatives), "false_events": false_events,
        "negative_camera_hours": round(negative_hours, 4),
        "false_events_per_camera_hour": rounded(false_events / negative_hours if negative_hours else None, 4),
        "camera_hours": round(sum(r.seconds for r in results) / 3600, 4),
        "samples": sum(r.samples for r in results), "inferred": sum(r.inferred for r in results),
    }


def stage_rules(rules: CameraRules, grid: Grid | None) -> RuleEngine:
    """The rule engine to play the clips with: `rules` for every camera; for a sweep, a
    recording one at the lowest thresholds of the grid and `rules` (see `ingest.video_sweep`)."""
    if grid is None:
        return RuleEngine({}, rules)
    lowest = {"flame": min(grid.flame + (rules.thresholds["flame"],)),
              "smoke": min(grid.smoke + (rules.thresholds["smoke"],))}
    return RecordingRules(replace(rules, thresholds={**rules.thresholds, **lowest}))


def load_eval_stage(cache: Path, detectors: list[str], rules: RuleEngine, threads: int,
                    precision: str) -> DetectionStage:
    """The worker's detection stage (its models, as `worker.detectors` names them) over `rules`,
    loaded as `ingest.main` loads it: the models keep boxes from the lowest threshold of the rules
    per kind (`DetectionStage.fit_decoding`), as the worker's do."""
    stage = load_stage(cache, detectors, None, rules, threads=threads, precision=precision)
    if stage is None:
        raise ConfigError("the worker runs no detectors (worker.detectors is empty): nothing to evaluate",
                          field="detectors")
    return stage


def replayed(results: list[ClipResult], recorder: RecordingRules, rules: CameraRules) -> list[ClipResult]:
    """`results` with the events the recorded calls raise under `rules` instead."""
    steps = steps_of(recorder.calls)
    return _with_events(results, replay(steps, recorder.kinds, recorder.size, rules))


def _with_events(results: list[ClipResult], events: list) -> list[ClipResult]:  # type: ignore[type-arg]
    epoch = SimulatedClock().epoch
    by_camera: dict[int, list[EventRow]] = {}
    for event in events:
        by_camera.setdefault(event.camera_id, []).append((round(event.at - epoch, 3), event.kind, round(event.score, 3)))
    return [replace(r, events=sorted(by_camera.get(i, []))) for i, r in enumerate(results, 1)]


def sweep(results: list[ClipResult], recorder: RecordingRules, grid: Grid, base: CameraRules) -> list[dict[str, object]]:
    """Every point of `grid`, with the totals its rules give and whether it is on the frontier."""
    steps = steps_of(recorder.calls)
    points = []
    for rules in grid.points(base):
        figures = totals(_with_events(results, replay(steps, recorder.kinds, recorder.size, rules)))
        points.append({"flame": rules.thresholds["flame"], "smoke": rules.thresholds["smoke"],
                       "persistence": list(rules.persistence), **{k: figures[k] for k in (
                           "recall", "median_time_to_alarm", "p90_time_to_alarm", "early_events", "false_events",
                           "false_events_per_camera_hour")}})

    def column(name: str) -> np.ndarray:
        return np.array([np.nan if p[name] is None else p[name] for p in points], float)

    best = frontier(column("recall"), column("median_time_to_alarm"), column("false_events_per_camera_hour"))
    for point, on in zip(points, best.tolist()):
        point["frontier"] = on
    return points


# -- the whole evaluation, and what it prints ----------------------------------------------------
def run(clips: list[Clip], stage: DetectionStage, playing: Playing, rules: CameraRules, grid: Grid | None = None,
        reader_factory: Callable[..., StreamReader] = StreamReader) -> dict[str, object]:
    """The evaluation as one JSON-able object. `stage.rules` must be `stage_rules(rules, grid)`:
    with a grid, the clips' events are those the recording replays under `rules`, the very code
    and the same samples, so the clips are played once for the whole frontier."""
    started = time.perf_counter()
    results = evaluate(clips, stage, playing, reader_factory)
    if grid is not None:
        assert isinstance(stage.rules, RecordingRules), "a sweep plays the clips with stage_rules(rules, grid)"
        results = replayed(results, stage.rules, rules)
    report: dict[str, object] = {
        "settings": {"interval": playing.interval, "size": list(playing.size), "span": playing.span,
                     "negative_span": playing.negative_span,
                     "positive_span": playing.positive_span, "flame_threshold": rules.thresholds["flame"],
                     "smoke_threshold": rules.thresholds["smoke"], "persistence": list(rules.persistence),
                     "cooldown_seconds": rules.cooldown_seconds},
        "clips": [r.as_dict() for r in results],
        "totals": totals(results),
    }
    if grid is not None:
        report["sweep"] = sweep(results, stage.rules, grid, rules)  # type: ignore[arg-type]
    report["wall_seconds"] = round(time.perf_counter() - started, 2)
    return report


def _shown(value: object, form: str = ".3f", unit: str = "") -> str:
    return "-" if value is None else f"{format(value, form)}{unit}"


def text_report(report: dict) -> str:  # type: ignore[type-arg]
    """The report as a table per clip, the totals, and the frontier of a sweep."""
    head = f"{'clip':<44} {'class':<8} {'played':>9} {'passes':>6} {'samples':>7} {'model':>6}  {'alarm after visible':<20}"
    lines = [head + " events (t kind score)"]
    for c in report["clips"]:
        shown = ", ".join(f"{e['t']:.1f} {e['kind']} {e['score']:.2f}" for e in c["events"][:3])
        more = f" +{len(c['events']) - 3}" if len(c["events"]) > 3 else ""
        alarm = ""
        if c["class"] == "positive":
            alarm = "missed" if c["time_to_alarm"] is None else _shown(c["time_to_alarm"], ".1f", " s")
        if c["early_events"]:
            alarm += f" ({c['early_events']} early)"
        lines.append(f"{c['clip'][:44]:<44} {c['class']:<8} {c['camera_seconds']:>7.0f} s {c['passes']:>6} "
                     f"{c['samples']:>7} {c['inferred']:>6}  {alarm:<20} {shown}{more}")
    t, s = report["totals"], report["settings"]
    rules = (f"rules: flame ≥ {s['flame_threshold']:.2f}, smoke ≥ {s['smoke_threshold']:.2f}, persistence "
             f"{s['persistence'][0]} of {s['persistence'][1]}, cooldown {s['cooldown_seconds']:.0f} s; "
             f"a sample every {s['interval']:g} s")
    positives = (f"positives {t['positives']}: event recall {_shown(t['recall'])} ({t['alarmed']} alarmed), "
                 f"time to alarm median {_shown(t['median_time_to_alarm'], '.1f', ' s')}, "
                 f"p90 {_shown(t['p90_time_to_alarm'], '.1f', ' s')}; "
                 f"{t['early_events']} early events (before the fire is visible)")
    negatives = (f"negatives {t['negatives']}: {t['false_events']} false events in "
                 f"{t['negative_camera_hours']:.2f} camera-hours = "
                 f"{_shown(t['false_events_per_camera_hour'], '.2f')} per camera-hour")
    work = (f"{t['samples']} samples analysed, {t['inferred']} sent to the models; "
            f"{t['camera_hours']:.2f} camera-hours in {report['wall_seconds']:.0f} s")
    lines += ["", rules, positives, negatives, work]
    if "sweep" in report:
        points = report["sweep"]
        best = sorted((p for p in points if p["frontier"]), key=lambda p: (
            p["false_events_per_camera_hour"] or 0.0, -(p["recall"] or 0.0), p["median_time_to_alarm"] or math.inf))
        lines += ["", f"sweep: {len(points)} points, {len(best)} on the frontier (--json for all):",
                  f"{'flame':>6} {'smoke':>6} {'k/n':>5} {'recall':>7} {'median':>8} {'p90':>8} {'false':>6} {'per h':>7}"]
        for p in best:
            kn = f"{p['persistence'][0]}/{p['persistence'][1]}"
            lines.append(f"{p['flame']:>6.2f} {p['smoke']:>6.2f} {kn:>5} {_shown(p['recall']):>7} "
                         f"{_shown(p['median_time_to_alarm'], '.1f', ' s'):>8} "
                         f"{_shown(p['p90_time_to_alarm'], '.1f', ' s'):>8} {p['false_events']:>6} "
                         f"{_shown(p['false_events_per_camera_hour'], '.2f'):>7}")
    return "\n".join(lines)
