"""An ONVIF camera for the tests: PyPI `ipycam`'s device, media and PTZ services and its
WS-Discovery responder, with the video served by the GStreamer RTSP test server.

Run it only inside a loopback-only network namespace (tests/netns.py): ipycam binds every
interface and multicasts Hello. ipycam 1.3.0 has three small bugs that this script patches
before it starts, so that what the tests see is what a conforming camera sends:

1. its SOAP envelope declares no `ptz`/`tptz` namespace although every PTZ reply uses those
   prefixes, so PTZ replies are not well-formed XML;
2. its WS-Discovery ProbeMatch is not wrapped in `ProbeMatches` as the specification requires;
3. its PTZ GetStatus reply leaves `{{pan_tilt_status}}`, `{{zoom_status}}` and `{{utc_time}}`
   unfilled.

Prints READY once the HTTP service and the discovery responder are listening.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time


def _patch(camera: object) -> None:
    onvif = camera.onvif  # type: ignore[attr-defined]
    templates: dict[str, str] = onvif._templates
    ptz_ns = 'xmlns:ptz="http://www.onvif.org/ver20/ptz/wsdl" xmlns:tptz="http://www.onvif.org/ver20/ptz/wsdl"'
    templates["envelope"] = templates["envelope"].replace(
        'xmlns:trt="http://www.onvif.org/ver10/media/wsdl"',
        'xmlns:trt="http://www.onvif.org/ver10/media/wsdl" ' + ptz_ns, 1)
    probe = templates["probe_match"]
    if "ProbeMatches" not in probe:
        probe = probe.replace("<d:ProbeMatch>", "<d:ProbeMatches><d:ProbeMatch>", 1)
        probe = probe.replace("</d:ProbeMatch>", "</d:ProbeMatch></d:ProbeMatches>", 1)
        templates["probe_match"] = probe

    def get_status(body: str) -> str:
        state = camera.ptz.get_status()  # type: ignore[attr-defined]
        moving = "MOVING" if state["moving"] else "IDLE"
        return onvif._wrap_envelope(onvif._render(
            "ptz_get_status", pan=state["pan"], tilt=state["tilt"], zoom=state["zoom"],
            pan_tilt_status=moving, zoom_status=moving,
            utc_time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))

    onvif.ptz_get_status = get_status


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True, help="ONVIF HTTP port")
    parser.add_argument("--rtsp-port", type=int, required=True, help="where the streams are served")
    parser.add_argument("--main", default="main", help="RTSP mount of the main stream")
    parser.add_argument("--sub", default="sub", help="RTSP mount of the sub stream")
    parser.add_argument("--user", default="")
    parser.add_argument("--password", default="")
    parser.add_argument("--name", default="Lookout Test Camera")
    parser.add_argument("--serial", default="LK-TEST-0001")
    parser.add_argument("--preset", action="append", default=[], help="token:name:pan:tilt:zoom")
    parser.add_argument("--workdir", required=True, help="ipycam writes its preset file here")
    args = parser.parse_args()
    os.chdir(args.workdir)

    from ipycam import CameraConfig, IPCamera
    from ipycam.camera import ReusableThreadingTCPServer
    from ipycam.discovery import WSDiscoveryServer
    from ipycam.http import IPCameraHTTPHandler

    config = CameraConfig(name=args.name, manufacturer="IPyCam", model="VirtualCam-1", serial_number=args.serial,
                          local_ip="127.0.0.1", onvif_port=args.port, rtsp_port=args.rtsp_port,
                          main_stream_name=args.main, sub_stream_name=args.sub, main_width=1280, main_height=720,
                          sub_width=320, sub_height=240, username=args.user, password=args.password)
    camera = IPCamera(config)
    _patch(camera)
    for preset in args.preset:
        token, name, pan, tilt, zoom = preset.split(":")
        camera.ptz.absolute_move(float(pan), float(tilt), float(zoom))
        camera.ptz.set_preset(token, name)
    camera.ptz.goto_home()

    IPCameraHTTPHandler.camera = camera
    http = ReusableThreadingTCPServer(("127.0.0.1", args.port), IPCameraHTTPHandler)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    discovery = WSDiscoveryServer(camera.onvif)
    discovery.start()
    print("READY", flush=True)

    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    stopped.wait()
    discovery.stop()
    http.shutdown()
    sys.exit(0)


if __name__ == "__main__":
    main()
