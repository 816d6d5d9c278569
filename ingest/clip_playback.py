"""A clip played as a camera through the worker's own `StreamReader`, at the clip's rate but at
once: the reader is never started as a thread; its packets are fed one by one (`feed`) on a
`SimulatedClock` that follows their timestamps, so that everything the reader times (which
keyframe is due, the analysed frame's stamp) happens as it would live, and an hour of video
costs what decoding its keyframes costs.

A clip shorter than the span asked for is looped as a `file:` camera loops, except that each
new pass starts elsewhere (golden-ratio steps through the clip, at the keyframe before) and
plays the whole clip round from there (to the end, then from the start back to where it began),
so that a short clip looped for an hour does not show the models the same few samples again
and again, and every part of it is played as often. The simulated time runs on across passes
and the jumps between them, one frame's time after the last packet, as a looping camera's does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from config.errors import InvalidInput
from ingest.media_paths import MediaRefused
from ingest.stream_reader import StreamReader, UnsupportedStream, packet_seconds, source_of

#: Where the simulated wall clock starts (2026-01-01 00:00 UTC): any fixed day, so that runs repeat.
SIMULATED_EPOCH = 1_767_225_600.0
#: Where the simulated monotonic clock starts: well above 0, as a host's is (0 reads as "never").
SIMULATED_MONOTONIC = 100_000.0
GOLDEN = 0.6180339887498949
FALLBACK_FPS = 25.0

Sample = Callable[[float, np.ndarray], None]  # (Unix time stamp, RGB frame) of each analysed frame


@dataclass
class SimulatedClock:
    """A reader's clock (`ingest.stream_reader.Clock`) that moves only when told: `elapsed`
    seconds since the clip started playing."""

    elapsed: float = 0.0
    epoch: float = SIMULATED_EPOCH

    def monotonic(self) -> float:
        return SIMULATED_MONOTONIC + self.elapsed

    def time(self) -> float:
        return self.epoch + self.elapsed

    def advance_to(self, elapsed: float) -> None:
        """On to `elapsed`, never back (a stream with B-frames demuxes out of presentation order)."""
        self.elapsed = max(self.elapsed, elapsed)

    def since_start(self, stamp: float) -> float:
        """Seconds into the playback of a Unix time stamp this clock gave."""
        return stamp - self.epoch


@dataclass
class Playback:
    """What playing one clip took: camera-seconds played, the clip's own length (one pass), and
    where in the clip each pass started (seconds)."""

    seconds: float = 0.0
    length: float = 0.0
    starts: list[float] = field(default_factory=list)

    @property
    def passes(self) -> int:
        return len(self.starts)


def play(reader: StreamReader, path: Path, span: float | None, on_sample: Sample) -> Playback:
    """Play `path` through `reader` (made with a `SimulatedClock`) for `span` camera-seconds
    (None: once through), calling `on_sample` with each frame the reader analyses, as the
    worker's tick would take it. InvalidInput, naming the clip, for a file that is no video
    Lookout reads."""
    clock = reader.clock
    if not isinstance(clock, SimulatedClock):
        raise TypeError("a clip is played on a SimulatedClock")
    try:
        source, options, _ = source_of(path.resolve().as_uri())  # the file protocol and video demuxers only
        container = av.open(source, options=options)
    except (MediaRefused, av.error.FFmpegError) as exc:
        raise InvalidInput(f"{path.name}: cannot open: {exc}", field="clip") from None
    with container:
        if not container.streams.video:
            raise InvalidInput(f"{path.name}: no video stream", field="clip")
        stream = container.streams.video[0]
        codec = stream.codec_context
        try:
            reader.prepare(codec)
        except UnsupportedStream as exc:
            raise InvalidInput(f"{path.name}: {exc}", field="clip") from None
        time_base = float(stream.time_base) if stream.time_base else 1 / 90000
        frame = 1 / float(stream.average_rate or stream.guessed_rate or FALLBACK_FPS)
        result = Playback()
        played = 0.0  # where the next packet's simulated time starts from

        def segment(until: float | None) -> tuple[float | None, bool]:
            """Packets from where the container stands to its end or to pts `until`: (the first
            one's pts, whether the span ended it)."""
            nonlocal played
            first = last = None
            for packet in container.demux(stream):
                pts = packet_seconds(packet, time_base)
                if packet.size == 0 or (until is not None and pts >= until):  # a flush packet: the end
                    break
                first = pts if first is None else first
                at = played + max(0.0, pts - first)
                if span is not None and at >= span:
                    played = span
                    return first, True
                clock.advance_to(at)
                reader.feed(packet, clock.elapsed, codec)
                last = clock.elapsed
                sample = reader.take_latest()
                if sample is not None:
                    on_sample(*sample)
            if last is not None:
                played = last + frame  # the last picture is shown for one frame's time
            return first, False

        def guarded(until: float | None) -> tuple[float | None, bool]:
            """`segment`, with a clip damaged part-way through named in a clear error, not a
            traceback that ends the whole evaluation."""
            try:
                return segment(until)
            except av.error.FFmpegError as exc:
                raise InvalidInput(f"{path.name}: unreadable after {played:.1f} s of playback: "
                                   f"{exc.strerror or type(exc).__name__}", field="clip") from None

        origin = 0.0
        while span is None or played < span:
            offset = (len(result.starts) * GOLDEN) % 1.0 * result.length
            if result.starts:  # a new pass: from a keyframe elsewhere to the end, then from the start to there
                _seek(container, stream, origin + offset, time_base, path)
                reader.rewound(codec)
            first, ended = guarded(None)
            if first is None:
                raise InvalidInput(f"{path.name}: no video packets from {offset:.1f} s on", field="clip")
            if not result.starts:
                origin, result.length = first, played
            result.starts.append(first - origin)
            if not ended and first > origin:
                _seek(container, stream, origin, time_base, path)
                reader.rewound(codec)
                _, ended = guarded(first)
            if ended or span is None:
                break
        result.seconds = played
    return result


def _seek(container: av.container.InputContainer, stream: av.video.stream.VideoStream, seconds: float,
          time_base: float, path: Path) -> None:
    """To the keyframe at or before `seconds` of the clip's own time line."""
    try:
        container.seek(int(seconds / time_base), stream=stream, backward=True)
    except av.error.FFmpegError as exc:
        raise InvalidInput(f"{path.name}: cannot seek to {seconds:.1f} s to loop it: {exc}", field="clip") from None
