"""Test media made here with PyAV: small looping H.264/H.265 clips of a moving pattern."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def make_clip(path: Path, codec: str = "h264", seconds: float = 3.0, fps: int = 10, gop: int = 10,
              size: tuple[int, int] = (320, 240)) -> Path:
    """An elementary stream (`.h264` / `.h265`), or an MP4 file for a `.mp4` path, with a
    keyframe every `gop` frames."""
    width, height = size
    fmt = None if path.suffix == ".mp4" else "h264" if codec == "h264" else "hevc"
    encoder = {"h264": "libx264", "h265": "libx265"}.get(codec, codec)  # others: FFmpeg's own, e.g. mpeg4
    with av.open(str(path), "w", format=fmt) as out:
        # no B-frames, fixed GOP: like most IP cameras. The encoder's own parameter string is
        # the one that takes effect (plain `bframes` options are silently ignored).
        params = f"keyint={gop}:min-keyint={gop}:bframes=0:scenecut=0"
        options = ({"x264-params": params} if codec == "h264" else {"x265-params": params + ":log-level=error"}
                   if codec == "h265" else {})
        stream = out.add_stream(encoder, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.gop_size = gop
        y, x = np.mgrid[0:height, 0:width]
        for i in range(int(seconds * fps)):
            image = np.stack([(x + 8 * i) % 256, (y + 4 * i) % 256, (x + y + 12 * i) % 256], -1).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path



# -- broken video: damaged slices, a stream joined mid-GOP, a resolution change ---------------
#: NAL unit types of picture slices: H.264 1 (non-IDR) and 5 (IDR); H.265 0-9 and 16-21 (IRAP).
_SLICE_TYPES = {"h264": frozenset({1, 5}), "h265": frozenset([*range(10), *range(16, 22)])}


def nal_units(data: bytes, codec: str = "h264") -> list[tuple[int, int, int, bool]]:
    """(start, end, type, first slice of its picture) of each NAL unit of an Annex-B stream;
    `start` is the NAL header's first byte. The first slice of a picture is told by the first
    bit after the header: H.264's first_mb_in_slice = 0 is ue(v) '1', H.265 has a flag there."""
    starts, at = [], data.find(b"\x00\x00\x01")
    while at >= 0:
        starts.append(at + 3)
        at = data.find(b"\x00\x00\x01", at + 3)
    units = []
    for i, start in enumerate(starts):
        end = starts[i + 1] - 3 if i + 1 < len(starts) else len(data)
        while end > start and data[end - 1] == 0:  # the zero byte of a 4-byte start code
            end -= 1
        kind = data[start] & 0x1F if codec == "h264" else (data[start] >> 1) & 0x3F
        header = 1 if codec == "h264" else 2
        first = kind in _SLICE_TYPES[codec] and bool(data[start + header] & 0x80)
        units.append((start, end, kind, first))
    return units


def damage(src: Path, dst: Path, pictures: set[int], codec: str = "h264", count: int = 8, seed: int = 0) -> Path:
    """A copy of an elementary stream with `count` bytes overwritten in the first slice of each
    picture numbered in `pictures` (decode order from 0), past its slice header: bit errors on
    the wire, parameter sets intact so the stream still opens. The bytes written (0x10-0xEF)
    cannot make a start code or an emulation-prevention pattern."""
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(seed)
    picture = -1
    for start, end, _, first in nal_units(bytes(data), codec):
        if not first:
            continue
        picture += 1
        if picture in pictures:
            low = start + (8 if end - start > 24 else 3)
            spots = rng.integers(low, max(low + 1, end - 2), count)
            for spot in spots.tolist():
                data[spot] = int(rng.integers(0x10, 0xF0))
    dst.write_bytes(bytes(data))
    return dst


def cut_head(src: Path, dst: Path, pictures: int, codec: str = "h264") -> Path:
    """The stream without the slices of its first `pictures` pictures (parameter sets kept): it
    begins mid-GOP, with pictures whose references never came, as a camera joined late does."""
    data = src.read_bytes()
    keep, picture = [], -1
    for start, end, kind, first in nal_units(data, codec):
        picture += first
        if kind not in _SLICE_TYPES[codec] or picture >= pictures:
            keep.append(b"\x00\x00\x00\x01" + data[start:end])
    dst.write_bytes(b"".join(keep))
    return dst


def make_resized_clip(path: Path, sizes: tuple[tuple[int, int], ...] = ((320, 240), (480, 272)),
                      seconds: float = 2.0, codec: str = "h264") -> Path:
    """One elementary stream of parts encoded at different sizes, each with its own parameter
    sets: a camera whose resolution is changed while it streams."""
    parts = [make_clip(path.with_name(f"{path.stem}.part{i}{path.suffix}"), codec, seconds=seconds, size=size)
             for i, size in enumerate(sizes)]
    path.write_bytes(b"".join(part.read_bytes() for part in parts))
    return path


def as_mpegts(src: Path, dst: Path, fps: int = 10) -> Path:
    """An elementary stream remuxed as MPEG-TS, as cameras and their recorders carry it: the same
    bytes, parameter sets in band, with the timestamps a raw stream lacks (a `file:` camera is
    paced by them, and loops by seeking, which a raw stream cannot)."""
    with av.open(str(src), format="h264" if src.suffix == ".h264" else "hevc") as source, \
            av.open(str(dst), "w", format="mpegts") as out:
        stream = out.add_stream_from_template(source.streams.video[0])
        for i, packet in enumerate(p for p in source.demux(video=0) if p.size):
            packet.time_base = Fraction(1, 90_000)  # MPEG-TS's own clock
            packet.pts = packet.dts = i * 90_000 // fps
            packet.stream = stream
            out.mux(packet)
    return dst
