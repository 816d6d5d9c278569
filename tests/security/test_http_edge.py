"""Attacks at the HTTP edge (issue 13, holes 8, 14, 15, 18 and 20): oversized and anonymous
bodies, evidence files, security headers, Host headers, the docs and metrics pages, probes of
web servers that are not ONVIF devices, and out-of-range dates.

The body-size attacks talk to a real uvicorn server over a raw socket, because what they prove
is *when* the server answers: a refusal that comes while the client has sent only a small part
of the body it declared shows that the server did not read (nor store) the rest.
"""

from __future__ import annotations

import http.server
import os
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from alerts.model import Alert
from api.app import create_app
from api.services import Services
from config.security import SecuritySettings
from registry.cameras import Camera
from tests.alerting import one_fire
from tests.conftest import Tree, free_port, wait_for

MiB = 2**20


# -- a real server, and raw requests whose bodies are sent while the answer is awaited --------
@contextmanager
def serving(services: Services) -> Iterator[int]:
    """The API on a real port (uvicorn in this process, as `lookout serve` runs it); the port."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(services), host="127.0.0.1", port=port, log_config=None,
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 10)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(3)
        server.force_exit = True  # an SSE answer notices its client left only at its next keep-alive
        thread.join(10)


@dataclass
class Exchange:
    status: int
    headers: dict[str, str]
    body: bytes
    sent_when_answered: int  # body bytes the client had handed to the socket when the answer came
    declared: int


def temp_files_of_this_process() -> dict[int, int]:
    """Open files of this process (the server runs in it) in the temporary folder: fd → size.
    Starlette spools uploads there (as unlinked files, so they are only seen through /proc)."""
    found = {}
    root = tempfile.gettempdir()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(root):
                found[int(fd)] = os.stat(f"/proc/self/fd/{fd}").st_size
        except OSError:
            continue
    return found


class TempWatch:
    """Samples the sizes of temporary files opened during a request: the largest one seen."""

    def __init__(self) -> None:
        self.before = set(temp_files_of_this_process())
        self.largest = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            for fd, size in temp_files_of_this_process().items():
                if fd not in self.before:
                    self.largest = max(self.largest, size)
            time.sleep(0.005)

    def finish(self) -> int:
        self.stop.set()
        self.thread.join(5)
        return self.largest


def raw_request(port: int, method: str, path: str, headers: dict[str, str], declared: int,
                piece: bytes = b"x" * 65536, prefix: bytes = b"", chunked: bool = False) -> Exchange:
    """Send a request that declares (or, chunked, streams) `declared` body bytes, pumping them in
    one thread while another waits for the answer; stop sending as soon as it comes."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {declared}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    sent = [0]
    answered = threading.Event()

    def pump() -> None:
        first = prefix
        try:
            while sent[0] < declared and not answered.is_set():
                data = first or piece[:declared - sent[0]]
                first = b""
                sock.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n" if chunked else data)
                sent[0] += len(data)
            if chunked and not answered.is_set():
                sock.sendall(b"0\r\n\r\n")
        except OSError:  # the server closed the connection after answering: expected
            pass

    pumping = threading.Thread(target=pump, daemon=True)
    pumping.start()
    buffer = b""
    try:
        while b"\r\n\r\n" not in buffer:
            data = sock.recv(65536)
            if not data:
                break
            buffer += data
    except OSError:
        pass
    at = sent[0]
    answered.set()
    head, _, rest = buffer.partition(b"\r\n\r\n")
    assert head, "the server closed the connection without an answer"
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    found = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
    length = int(found.get("content-length", "0"))
    try:
        while len(rest) < length:
            data = sock.recv(65536)
            if not data:
                break
            rest += data
    except OSError:
        pass
    sock.close()
    pumping.join(30)
    return Exchange(int(status_line.split()[1]), found, rest, at, declared)


def multipart_prefix(boundary: str, field: str, filename: str) -> bytes:
    return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()


# -- hole 8: request sizes, and bodies of anonymous callers -----------------------------------
def test_anonymous_150_mb_json_body_is_refused_before_it_is_read(services: Services, tree: Tree) -> None:
    with serving(services) as port:
        answer = raw_request(port, "POST", "/api/v1/cameras", {"Content-Type": "application/json"},
                             declared=150 * MiB, prefix=b'{"name": "' )
    assert answer.status == 401, answer
    assert answer.sent_when_answered < 32 * MiB, (
        f"the server read {answer.sent_when_answered / MiB:.0f} MiB of an anonymous body before answering")
    with services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Camera)) == 0


def test_anonymous_300_mb_upload_is_refused_before_anything_is_stored(services: Services, tree: Tree) -> None:
    boundary = "lookoutboundary7"
    watch = TempWatch()
    with serving(services) as port:
        answer = raw_request(port, "POST", "/api/v1/cameras/import",
                             {"Content-Type": f"multipart/form-data; boundary={boundary}"},
                             declared=300 * MiB, prefix=multipart_prefix(boundary, "file", "cams.csv"))
    largest = watch.finish()
    assert answer.status == 401, answer
    assert answer.sent_when_answered < 32 * MiB, (
        f"the server took {answer.sent_when_answered / MiB:.0f} MiB of an anonymous upload before answering")
    assert largest == 0, f"an anonymous upload was spooled to a {largest / MiB:.1f} MiB temporary file"


def test_a_forged_token_does_not_buy_a_body_read(services: Services, tree: Tree) -> None:
    with serving(services) as port:
        forged = raw_request(port, "POST", "/api/v1/units", {"Content-Type": "application/json",
                                                              "Authorization": "Bearer lk_forged-token"},
                             declared=100 * MiB)
    assert forged.status == 401 and forged.sent_when_answered < 32 * MiB, forged
    assert b"invalid bearer token" in forged.body


def test_signed_in_technician_json_over_the_limit_is_413_naming_it(services: Services, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    technician = login("technician", tree.village_a1)
    with serving(services) as port:
        declared = raw_request(port, "POST", "/api/v1/cameras", {"Content-Type": "application/json", **technician},
                               declared=150 * MiB, prefix=b'{"name": "')
        streamed = raw_request(port, "POST", "/api/v1/cameras", {"Content-Type": "application/json", **technician},
                               declared=150 * MiB, prefix=b'{"name": "', chunked=True)
    for answer in (declared, streamed):
        assert answer.status == 413, answer
        assert b"1048576 bytes" in answer.body and b"max_json_bytes" in answer.body, answer.body
        assert answer.sent_when_answered < 32 * MiB, f"{answer.sent_when_answered / MiB:.0f} MiB read first"
    with services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Camera)) == 0


def test_signed_in_technician_upload_over_the_limit_is_413_and_not_stored(services: Services, tree: Tree,
                                                                          login) -> None:  # type: ignore[no-untyped-def]
    services.settings.security = SecuritySettings(max_upload_bytes=2 * MiB)
    technician = login("technician", tree.village_a1)
    boundary = "lookoutboundary9"
    prefix = multipart_prefix(boundary, "file", "cams.csv") + b"name,network,unit_code\n"
    watch = TempWatch()
    with serving(services) as port:
        answer = raw_request(port, "POST", "/api/v1/cameras/import",
                             {"Content-Type": f"multipart/form-data; boundary={boundary}", **technician},
                             declared=64 * MiB, prefix=prefix, chunked=True)
    largest = watch.finish()
    assert answer.status == 413, answer
    assert b"2097152 bytes" in answer.body and b"max_upload_bytes" in answer.body, answer.body
    assert answer.sent_when_answered < 32 * MiB, f"{answer.sent_when_answered / MiB:.0f} MiB read first"
    assert largest <= 2 * MiB, f"a {largest / MiB:.1f} MiB temporary file was written for a 2 MiB limit"
    with services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Camera)) == 0


def test_a_multipart_body_to_a_json_route_gets_the_json_limit(services: Services, tree: Tree,
                                                             login) -> None:  # type: ignore[no-untyped-def]
    """FastAPI reads a JSON route's body into memory whatever its content type says, so a body
    labelled `multipart/form-data` must not buy the upload limit (512 MiB) on such a route."""
    investigator = login("investigator", tree.village_a1)
    boundary = "lookoutboundary7"
    with serving(services) as port:
        answer = raw_request(port, "POST", "/api/v1/subscriptions",
                             {"Content-Type": f"multipart/form-data; boundary={boundary}", **investigator},
                             declared=150 * MiB, prefix=multipart_prefix(boundary, "file", "x.bin"), chunked=True)
    assert answer.status == 413 and b"max_json_bytes" in answer.body, answer
    assert answer.sent_when_answered < 32 * MiB, f"{answer.sent_when_answered / MiB:.0f} MiB read first"


def test_a_viewer_cannot_make_the_import_read_a_file_it_will_refuse(services: Services, tree: Tree,
                                                                    login) -> None:  # type: ignore[no-untyped-def]
    """The import's 403 for a role that may not import came after its 512 MiB body was read."""
    investigator = login("investigator", tree.village_a1)
    boundary = "lookoutboundary8"
    prefix = multipart_prefix(boundary, "file", "cams.csv") + b"name,network,unit_code\n"
    watch = TempWatch()
    with serving(services) as port:
        answer = raw_request(port, "POST", "/api/v1/cameras/import",
                             {"Content-Type": f"multipart/form-data; boundary={boundary}", **investigator},
                             declared=300 * MiB, prefix=prefix)
    largest = watch.finish()
    assert answer.status == 403, answer
    assert answer.sent_when_answered < 32 * MiB, f"{answer.sent_when_answered / MiB:.0f} MiB read first"
    assert largest == 0, f"a {largest / MiB:.1f} MiB temporary file was written for a refused upload"


def test_sign_in_needs_no_token_but_its_body_is_capped(client: TestClient, services: Services, tree: Tree,
                                                       login) -> None:  # type: ignore[no-untyped-def]
    login("operator", tree.county, "zhou")
    ok = client.post("/api/v1/auth/token", json={"username": "zhou", "password": "correct horse battery"})
    assert ok.status_code == 200, ok.text
    huge = client.post("/api/v1/auth/token", content=b'{"username": "' + b"z" * (2 * MiB) + b'"}',
                       headers={"Content-Type": "application/json"})
    assert huge.status_code == 413 and "max_json_bytes" in huge.json()["detail"], huge.text


def test_the_live_feed_still_streams_through_the_edge(services: Services, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    """The guards are plain ASGI: the SSE answer flows as it is written (its first line comes
    while the stream stays open) and the WebSocket feed still opens."""
    import httpx
    from websockets.sync.client import connect

    operator = login("operator", tree.village_a1)
    with serving(services) as port:
        with httpx.stream("GET", f"http://127.0.0.1:{port}/api/v1/alerts/stream", headers=operator,
                          timeout=httpx.Timeout(10, read=10)) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["x-content-type-options"] == "nosniff"
            first = next(response.iter_lines())
            assert first == "retry: 2000", first
        token = operator["Authorization"].split()[1]
        with connect(f"ws://127.0.0.1:{port}/api/v1/alerts/ws?access_token={token}") as feed:
            with pytest.raises(TimeoutError):  # open and quiet: no close, no error
                feed.recv(timeout=0.5)


# -- hole 14: evidence files ------------------------------------------------------------------
def _closed_alert(client: TestClient, services: Services, tree: Tree, login) -> tuple[str, dict[str, str]]:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county)
    operator = login("operator", tree.village_a1)
    one_fire(client, services, admin, tree.village_a1)
    [alert] = client.get("/api/v1/alerts", headers=operator).json()["items"]
    url = f"/api/v1/alerts/{alert['id']}"
    assert client.post(f"{url}/false_alarm", json={"reason": "炊烟"}, headers=operator).status_code == 200
    return url, operator


def test_operator_evidence_on_a_closed_alert_is_409_and_nothing_is_stored(
        client: TestClient, services: Services, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    url, operator = _closed_alert(client, services, tree, login)
    refused = client.post(f"{url}/resolve", data={"feedback": "done"},
                          files={"evidence": ("x.jpg", b"\xff\xd8" + b"j" * 50_000, "image/jpeg")}, headers=operator)
    assert refused.status_code == 409 and refused.json()["state"] == "false_alarm", refused.text
    stored = [p for p in (services.settings.data_dir / "evidence").rglob("*") if p.is_file()]
    assert stored == [], f"a refused resolve left {stored} on disk"


def test_operator_html_and_svg_evidence_come_back_inert(client: TestClient, services: Services, tree: Tree,
                                                         login) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county)
    operator = login("operator", tree.village_a1)
    one_fire(client, services, admin, tree.village_a1)
    [alert] = client.get("/api/v1/alerts", headers=operator).json()["items"]
    url = f"/api/v1/alerts/{alert['id']}"
    page = b"<html><script>fetch('/api/v1/users/me').then(r=>r.text()).then(alert)</script></html>"
    done = client.post(f"{url}/resolve", data={"feedback": "see the page"},
                       files={"evidence": ("report.html", page, "text/html")}, headers=operator)
    assert done.status_code == 200, done.text
    served = client.get(f"{url}/evidence", headers=admin)
    assert served.status_code == 200 and served.content == page
    kind = served.headers["content-type"]
    assert "html" not in kind and "svg" not in kind and "xml" not in kind, kind
    assert served.headers["x-content-type-options"] == "nosniff"
    assert served.headers["content-security-policy"].startswith("default-src 'none'")
    assert served.headers["content-disposition"].startswith("attachment"), served.headers
    # an SVG (script inside) on a second alert, served the same way
    client.post(f"{url}/reopen", json={"reason": "again"}, headers=operator)
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    assert client.post(f"{url}/resolve", data={"feedback": "svg"}, files={"evidence": ("x.svg", svg, "image/svg+xml")},
                       headers=operator).status_code == 200
    served = client.get(f"{url}/evidence", headers=admin)
    assert "svg" not in served.headers["content-type"] and "html" not in served.headers["content-type"]
    assert served.headers["content-disposition"].startswith("attachment")
    # files are the service user's alone
    root = services.settings.data_dir / "evidence"
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path} is {oct(mode)}"


def test_operator_feedback_with_control_characters_is_422(client: TestClient, services: Services, tree: Tree,
                                                         login) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county)
    operator = login("operator", tree.village_a1)
    one_fire(client, services, admin, tree.village_a1)
    [alert] = client.get("/api/v1/alerts", headers=operator).json()["items"]
    url = f"/api/v1/alerts/{alert['id']}"
    for bad in ("done\x1b[2J", "done\x00", "ok\x07bell", "a\x7f"):
        answer = client.post(f"{url}/resolve", data={"feedback": bad}, headers=operator)
        assert answer.status_code == 422 and "feedback" in answer.text, (bad, answer.text)
    assert client.get(url, headers=operator).json()["state"] == "new"
    fine = client.post(f"{url}/resolve", data={"feedback": "第一行\r\n第二行\tok"}, headers=operator)
    assert fine.status_code == 200, fine.text


# -- hole 15: headers and exposure ------------------------------------------------------------
def test_every_response_carries_security_headers(client: TestClient, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county)
    answers = {
        "api": client.get("/api/v1/units", headers=admin),
        "401": client.get("/api/v1/units"),
        "404": client.get("/api/v1/nowhere"),
        "422": client.get("/api/v1/alerts", params={"limit": 0}, headers=admin),
        "health": client.get("/healthz"),
        "metrics": client.get("/metrics"),
        "openapi": client.get("/openapi.json"),
        "docs": client.get("/docs"),
    }
    for name, answer in answers.items():
        headers = answer.headers
        assert headers.get("x-content-type-options") == "nosniff", (name, dict(headers))
        assert headers.get("x-frame-options") == "DENY", (name, dict(headers))
        assert headers.get("referrer-policy") == "no-referrer", (name, dict(headers))
        policy = headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in policy, (name, policy)
        assert "default-src 'none'" in policy or "default-src 'self'" in policy, (name, policy)
        if name != "docs":
            assert headers.get("cache-control") == "no-store", (name, dict(headers))
    assert "'unsafe-eval'" not in answers["docs"].headers["content-security-policy"]


def test_a_forged_host_header_gets_no_redirect_to_that_host(client: TestClient, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county)
    locations = []
    for path in ("/api/v1/cameras/", "/api/v1/units/"):
        answer = client.get(path, headers={**admin, "Host": "evil.example"}, follow_redirects=False)
        locations.append((path, answer.status_code, answer.headers.get("location")))
    for path, status, location in locations:
        if location is not None:
            parts = urlsplit(location)
            assert not parts.netloc and not parts.scheme and not location.startswith("//"), (path, status, location)


def test_a_double_slash_path_is_no_open_redirect(services: Services, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county)
    with serving(services) as port, socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"GET //evil.example/api/v1/units/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                     f"Authorization: {admin['Authorization']}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while data := sock.recv(65536):
            answer += data
    head = answer.partition(b"\r\n\r\n")[0].decode("latin-1")
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "location":
            value = value.strip()
            assert not urlsplit(value).netloc and not value.startswith("//"), head


def test_hosts_outside_allowed_hosts_are_refused(services: Services, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    services.settings.security = SecuritySettings(allowed_hosts=["lookout.county.local", "testserver"])
    admin = login("admin", tree.county)
    with TestClient(create_app(services)) as client:
        assert client.get("/api/v1/units", headers=admin).status_code == 200
        forged = client.get("/api/v1/units", headers={**admin, "Host": "evil.example"})
        assert forged.status_code == 400 and "units" not in forged.text, forged.text


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        for key in ("src", "href"):
            if found.get(key):
                self.urls.append(found[key] or "")
        self._in_script = tag == "script" and not found.get("src")

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False


def test_docs_load_only_assets_the_service_serves(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assets = _Assets()
    assets.feed(page.text)
    assert assets.urls, page.text
    for url in assets.urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, f"/docs loads {url} from outside the service"
        served = client.get(url)
        assert served.status_code == 200 and len(served.content) > 100, url
    scripts = [u for u in assets.urls if u.endswith(".js")]
    assert any("swagger-ui-bundle" in u for u in scripts), scripts
    assert assets.inline_scripts == 0, "an inline script needs 'unsafe-inline' in the docs' CSP"
    assert client.get("/redoc").status_code == 404  # ReDoc would load from a CDN


def test_metrics_need_the_scrape_token_when_one_is_set(services: Services, tree: Tree) -> None:
    services.settings.security = SecuritySettings(metrics_token="scrape-7f3a-secret")
    with TestClient(create_app(services)) as client:
        nobody = client.get("/metrics")
        wrong = client.get("/metrics", headers={"Authorization": "Bearer scrape-7f3a-secreT"})
        right = client.get("/metrics", headers={"Authorization": "Bearer scrape-7f3a-secret"})
    for answer in (nobody, wrong):
        assert answer.status_code == 401 and "lookout_" not in answer.text, answer.text
        assert answer.headers.get("www-authenticate") == "Bearer"
    assert right.status_code == 200 and "lookout_cameras" in right.text


# -- hole 18: an ONVIF probe of a web server that is not ONVIF --------------------------------
class _NotOnvif(http.server.BaseHTTPRequestHandler):
    answers = {
        "/json404": (404, "application/json", b'{"detail":"Not Found"}'),
        "/html404": (404, "text/html", b"<html><body>no such page</body></html>"),
        "/json405": (405, "application/json", b'{"detail":"Method Not Allowed"}'),
        "/soap-empty": (200, "application/soap+xml",
                        b'<?xml version="1.0"?><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"/>'),
    }

    def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status, kind, body = self.answers[self.server.mode]  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_technician_probe_of_a_web_server_that_is_not_onvif_is_502(services: Services, tree: Tree, login,
                                                                    caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    technician = login("technician", tree.county)
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotOnvif)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        with serving(services) as api_port, TestClient(create_app(services)) as client:
            own = client.post("/api/v1/cameras/probe", json={"host": "127.0.0.1", "port": api_port,
                                                             "timeout_seconds": 5}, headers=technician)
            assert own.status_code == 502, f"probing the service's own port: {own.status_code} {own.text}"
            assert "not an ONVIF device" in own.json()["detail"] and own.json()["port"] == api_port
            for mode in _NotOnvif.answers:
                web.mode = mode  # type: ignore[attr-defined]
                answer = client.post("/api/v1/cameras/probe", json={"host": "127.0.0.1", "port": web.server_port,
                                                                     "timeout_seconds": 5}, headers=technician)
                assert answer.status_code == 502, (mode, answer.status_code, answer.text)
                assert "not an ONVIF device" in answer.json()["detail"], (mode, answer.text)
    finally:
        web.shutdown()
        web.server_close()
    assert not [r for r in caplog.records if r.exc_info and r.levelname == "ERROR"], "a traceback was logged"


@pytest.mark.parametrize("banner", [b"SSH-2.0-OpenSSH_9.6p1 SECRET-BANNER\r\n",
                                    b"-ERR SECRET-BANNER unknown command\r\n",
                                    b"HTTP/1.1 200 OK\r\nServer: SECRET-BANNER\r\nContent-Length: 5\r\n\r\nhello"])
def test_technician_cannot_read_a_services_banner_through_the_probe(client: TestClient, tree: Tree, login,
                                                                    banner: bytes) -> None:  # type: ignore[no-untyped-def]
    """The probe's 502 quoted the error text of the HTTP client, which holds the first bytes the
    far end sent: pointed at any port of the LAN, it read SSH, Redis or mail banners."""
    technician = login("technician", tree.county)
    server = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(banner)
                conn.settimeout(1)
                try:
                    conn.recv(65536)
                except OSError:
                    pass

    threading.Thread(target=answer, daemon=True).start()
    try:
        probed = client.post("/api/v1/cameras/probe", json={"host": "127.0.0.1", "port": server.getsockname()[1],
                                                            "timeout_seconds": 5}, headers=technician)
    finally:
        server.close()
    assert probed.status_code in (502, 504), probed.text
    assert "SECRET-BANNER" not in probed.text and "SSH-2.0" not in probed.text, probed.text


# -- hole 20: dates out of range --------------------------------------------------------------
BAD_DATES = ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01T00:30:00+01:00",
             "9999-12-31T23:00:00-23:59", "1999-12-31T23:59:59Z", "2101-01-01T00:00:00Z", "1e308", "-62135596800")


def test_admin_out_of_range_dates_are_422_naming_the_field(client: TestClient, services: Services, tree: Tree,
                                                          login) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county)
    routes = {"/api/v1/stats": ("since", "until"), "/api/v1/alerts": ("since", "until", "updated_since"),
              "/api/v1/audit": ("since", "until")}
    for path, names in routes.items():
        for name in names:
            for value in BAD_DATES:
                answer = client.get(path, params={name: value}, headers=admin)
                assert answer.status_code == 422, (path, name, value, answer.status_code, answer.text[:300])
                assert f"query.{name}" in answer.text, (path, name, value, answer.text[:300])
    # the edges of the range, naive times (read as UTC) and offsets still work
    for value in ("2000-01-01T00:00:00Z", "2100-12-31T23:59:59Z", "2099-12-31T23:59:59+08:00",
                  "2024-05-01T12:00:00"):
        for path in routes:
            answer = client.get(path, params={"until": value}, headers=admin)
            assert answer.status_code == 200, (path, value, answer.text[:300])
    answer = client.get("/api/v1/stats", params={"since": "2024-05-01T00:00:00+08:00",
                                                 "until": "2024-05-01T00:00:00+09:00"}, headers=admin)
    assert answer.status_code == 422 and answer.json()["field"] == "since"
    with services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Alert)) == 0
