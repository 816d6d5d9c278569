#!/usr/bin/python3
"""A real RTSP server for the tests: GStreamer's rtsp-server on the system Python (python3-gi).

    /usr/bin/python3 tests/rtsp_server.py --port 8554 --mount h264=/tmp/a.h264 --mount h265=/tmp/b.h265

Each clip (an H.264 or H.265 elementary stream) is parsed into access units once; every
mount then plays them in a loop through an `appsrc` with timestamps that keep increasing
(the textbook `multifilesrc loop=true` restarts them at 0 every loop, which breaks clients).
Prints "READY <port>" when it accepts connections.
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def load_access_units(path, codec):
    caps = f"video/x-{codec},stream-format=byte-stream,alignment=au"
    pipeline = Gst.parse_launch(f"filesrc location={path} ! {codec}parse ! {caps} ! appsink name=sink sync=false")
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    units, out_caps = [], None
    while True:
        sample = sink.emit("pull-sample")
        if sample is None:
            break
        buffer = sample.get_buffer()
        units.append((buffer.extract_dup(0, buffer.get_size()), not buffer.has_flags(Gst.BufferFlags.DELTA_UNIT)))
        out_caps = sample.get_caps()
    pipeline.set_state(Gst.State.NULL)
    if not units:
        raise SystemExit(f"no access units in {path}")
    return units, out_caps


class LoopingFactory(GstRtspServer.RTSPMediaFactory):
    def __init__(self, units, caps, codec, fps):
        super().__init__()
        self.units, self.caps, self.codec, self.fps = units, caps, codec, fps
        self.set_shared(True)

    def do_create_element(self, url):
        return Gst.parse_launch(
            f"( appsrc name=src is-live=true format=time ! {self.codec}parse ! "
            f"rtp{self.codec[:2]}{self.codec[2:]}pay name=pay0 pt=96 config-interval=-1 )"
        )

    def do_configure(self, media):
        appsrc = media.get_element().get_child_by_name("src")
        appsrc.set_property("caps", self.caps)
        state = {"n": 0}
        duration = Gst.SECOND // self.fps

        def need_data(src, _length):
            data, key = self.units[state["n"] % len(self.units)]
            buffer = Gst.Buffer.new_wrapped(data)
            buffer.pts = buffer.dts = state["n"] * duration
            buffer.duration = duration
            if not key:
                buffer.set_flags(Gst.BufferFlags.DELTA_UNIT)
            state["n"] += 1
            src.emit("push-buffer", buffer)

        appsrc.connect("need-data", need_data)


def main():
    args = argparse.ArgumentParser()
    args.add_argument("--port", type=int, required=True)
    args.add_argument("--fps", type=int, default=10)
    args.add_argument("--mount", action="append", default=[], help="name=path; codec from the suffix .h264/.h265")
    args.add_argument("--auth", help="user:password required on every mount (basic auth)")
    opts = args.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(opts.port))
    permissions = None
    if opts.auth:
        user, password = opts.auth.split(":", 1)
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", user)
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role(user, "media.factory.access", True)
        permissions.add_permission_for_role(user, "media.factory.construct", True)
    mounts = server.get_mount_points()
    for spec in opts.mount:
        name, path = spec.split("=", 1)
        codec = "h265" if path.endswith((".h265", ".hevc")) else "h264"
        units, caps = load_access_units(path, codec)
        factory = LoopingFactory(units, caps, codec, opts.fps)
        if permissions is not None:
            factory.set_permissions(permissions)
        mounts.add_factory(f"/{name}", factory)
    if server.attach(None) == 0:
        raise SystemExit(f"cannot listen on port {opts.port}")
    print(f"READY {opts.port}", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    sys.exit(main())
