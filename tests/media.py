"""Test media made here with PyAV: small looping H.264/H.265 clips of a moving pattern."""

from __future__ import annotations

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

