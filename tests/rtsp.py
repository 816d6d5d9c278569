"""Starts tests/rtsp_server.py (GStreamer, system Python) as a subprocess on a chosen port."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from config.processes import die_with_parent

SYSTEM_PYTHON = "/usr/bin/python3"  # python3-gi lives there, not in the venv
SCRIPT = Path(__file__).with_name("rtsp_server.py")


class RtspServer:
    def __init__(self, port: int, mounts: dict[str, Path], auth: str | None = None) -> None:
        self.port = port
        self.mounts = mounts
        self.auth = auth  # "user:password" required on every mount
        self.process: subprocess.Popen[str] | None = None

    def url(self, mount: str) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{mount}"

    def start(self) -> RtspServer:
        args = [SYSTEM_PYTHON, str(SCRIPT), "--port", str(self.port)]
        for name, path in self.mounts.items():
            args += ["--mount", f"{name}={path}"]
        if self.auth:
            args += ["--auth", self.auth]
        # dies with the test process, even when that one crashes
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        preexec_fn=die_with_parent)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("READY"):
            self.process.kill()
            raise RuntimeError(f"RTSP server did not start: {line} {self.process.stderr.read() if self.process.stderr else ''}")
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait()

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
