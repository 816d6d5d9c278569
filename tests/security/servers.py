"""The API alone on a real port (uvicorn in a thread of the test), and a console's two live
feeds on it, for the security tests that need real HTTP: concurrent sign-ins, WebSockets,
uvicorn's own log lines."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from fastapi import FastAPI

from api.app import create_app
from api.services import Services
from tests.conftest import free_port, wait_for


@contextmanager
def api_server(services: Services, app: FastAPI | None = None) -> Iterator[str]:
    """`app` (default `create_app(services)`) served by uvicorn as `lookout serve` does (no log
    config of its own); the base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app or create_app(services), host="127.0.0.1", port=port, log_config=None,
                                           access_log=False, timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


class Feeds:
    """One SSE and one WebSocket listener with `token`, recording how each ended."""

    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base, token
        self.sse_status: int | None = None
        self.sse_lines: list[str] = []
        self.sse_ended = threading.Event()
        self.ws_open = threading.Event()
        self.ws_messages: list[str] = []
        self.ws_code: int | None = None
        self.ws_ended = threading.Event()

    def start(self) -> Feeds:
        threading.Thread(target=self._sse, daemon=True).start()
        threading.Thread(target=self._ws, daemon=True).start()
        wait_for(lambda: self.sse_status is not None and (self.ws_open.is_set() or self.ws_ended.is_set()), 10)
        return self

    def _sse(self) -> None:
        try:
            with httpx.stream("GET", f"{self.base}/api/v1/alerts/stream",
                              headers={"Authorization": f"Bearer {self.token}"},
                              timeout=httpx.Timeout(5, read=120)) as response:
                self.sse_status = response.status_code
                for line in response.iter_lines():
                    self.sse_lines.append(line)
        except httpx.HTTPError as exc:
            self.sse_lines.append(f"error {exc!r}")
        finally:
            self.sse_ended.set()

    def _ws(self) -> None:
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect

        url = self.base.replace("http://", "ws://") + f"/api/v1/alerts/ws?access_token={self.token}"
        try:
            with connect(url) as socket_:
                self.ws_open.set()
                while True:
                    self.ws_messages.append(str(socket_.recv(timeout=120)))
        except ConnectionClosed as exc:
            self.ws_code = exc.rcvd.code if exc.rcvd is not None else None
        finally:
            self.ws_ended.set()

    def ended(self) -> bool:
        return self.sse_ended.is_set() and self.ws_ended.is_set()


class FakeRtspCamera:
    """A camera's (or an attacker's) RTSP port: records every request (`requests`, and every
    byte in `raw`), answers 401 with the challenges given (Digest, as many cameras ask, unless
    told otherwise), and 404 once a request is authorised, so that no media is needed."""

    def __init__(self, challenges: list[str] | None = None) -> None:
        self.challenges = challenges if challenges is not None else ['Digest realm="camera", nonce="0a1b2c"']
        self.requests: list[str] = []
        self.raw = b""
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def url(self, path: str = "live") -> str:
        return f"rtsp://127.0.0.1:{self.port}/{path}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        buffer = b""
        conn.settimeout(5)
        with conn:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                self.raw += chunk
                buffer += chunk
                while b"\r\n\r\n" in buffer:
                    head, buffer = buffer.split(b"\r\n\r\n", 1)
                    request = head.decode("latin-1")
                    self.requests.append(request)
                    cseq = next((line.split(":", 1)[1].strip() for line in request.split("\r\n")
                                 if line.lower().startswith("cseq:")), "0")
                    if "\nauthorization:" in request.lower():
                        reply = f"RTSP/1.0 404 Not Found\r\nCSeq: {cseq}\r\n\r\n"
                    else:
                        lines = "".join(f"WWW-Authenticate: {c}\r\n" for c in self.challenges)
                        reply = f"RTSP/1.0 401 Unauthorized\r\nCSeq: {cseq}\r\n{lines}\r\n"
                    conn.sendall(reply.encode())

    def authorizations(self) -> list[str]:
        return [line.split(":", 1)[1].strip() for request in self.requests for line in request.split("\r\n")
                if line.lower().startswith("authorization:")]

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
