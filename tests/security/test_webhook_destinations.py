"""Hole 6 of issue 13 (and hole 12 for subscriptions): webhooks must not reach the service's own
machine, link-local or multicast addresses, nor echo what a receiver answers.

The attacker is an operator: they may create webhook subscriptions for their own unit, and
read their deliveries (`last_error` included). Pointed at 127.0.0.1:<port> (in any spelling),
a webhook would let them talk to Redis, the database or the API from inside, and `last_error`
holding the answer would make the deliverer a port scanner. Each test is that attempt, with
real listeners on this machine that count every connection they get.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from alerts.delivery import Deliverer, Delivery, fan_out_in
from alerts.destinations import DestinationRefused, Destinations, checked_client, failure_reason
from alerts.subscriptions import Subscription
from api.services import Services
from config.security import SecuritySettings
from tests.alerting import Receiver, drain, one_fire
from tests.conftest import Tree

BANNER = b"SSH-2.0-OpenSSH_9.6 SECRET-BANNER redis_version:7.2.4\r\n\r\n"
ERROR_PAGE = (b"HTTP/1.1 500 SECRET-PHRASE\r\nContent-Type: text/plain\r\nContent-Length: 33\r\n"
              b"Connection: close\r\n\r\nSECRET-BODY redis_version:7.2.4\r\n\r\n")


class Listener:
    """A TCP server on `host` that counts connections and answers each with `reply` (raw
    bytes) after reading the request, or with nothing."""

    def __init__(self, host: str = "127.0.0.1", reply: bytes = b"", port: int = 0) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        self.connections = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                    if self.reply:
                        conn.sendall(self.reply)
                except OSError:
                    pass

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.sock.close()


@contextmanager
def listening(*args: object, **kwargs: object) -> Iterator[Listener]:
    listener = Listener(*args, **kwargs)  # type: ignore[arg-type]
    try:
        yield listener
    finally:
        listener.close()


def _secure(services: Services, **fields: object) -> None:
    security = SecuritySettings.model_validate(fields)
    services.settings = services.settings.model_copy(update={"security": security})


def _deliver(services: Services) -> list[Delivery]:
    """Queue the feed for every subscription and make one round of tries; the deliveries."""
    deliverer = Deliverer(services.sessions, services.redis, services.alert_policy, services.registry.cipher,
                          security=services.settings.security)
    try:
        while fan_out_in(services.sessions, services.alert_policy):
            pass
        deliverer.send_due()
    finally:
        deliverer.close()
    with services.sessions() as session:
        return list(session.query(Delivery).order_by(Delivery.subscription_id))


def _hook(client: TestClient, headers: dict[str, str], url: str, name: str = "desk") -> httpx.Response:
    return client.post("/api/v1/subscriptions", headers=headers, json={"name": name, "channel": "webhook", "url": url})


def _resolvable_forms(port: int) -> list[str]:
    """This machine, spelled so that the resolver here reads each as 127.0.0.1 or 0.0.0.0."""
    return [f"http://127.0.0.1:{port}/hook", f"http://localhost:{port}/", f"http://0.0.0.0:{port}/",
            f"http://0:{port}/", f"http://127.1:{port}/", f"http://2130706433:{port}/", f"http://0x7f.1:{port}/",
            f"http://[::ffff:127.0.0.1]:{port}/", f"http://[::ffff:7f00:1]:{port}/", f"http://[::127.0.0.1]:{port}/",
            f"http://127.0.0.2:{port}/", f"https://127.0.0.1:{port}/"]


def _loopback_forms(port: int) -> list[str]:
    return [f"http://127.0.0.1:{port}/hook", f"http://localhost:{port}/", f"http://LOCALHOST.:{port}/",
            f"http://api.localhost:{port}/", f"http://[::1]:{port}/", f"http://0.0.0.0:{port}/",
            f"http://0:{port}/", f"http://127.1:{port}/", f"http://2130706433:{port}/", f"http://0x7f.1:{port}/",
            f"http://0177.0.0.1:{port}/", f"http://[::ffff:127.0.0.1]:{port}/", f"http://[::ffff:7f00:1]:{port}/",
            f"http://[::127.0.0.1]:{port}/", f"http://127.0.0.2:{port}/", f"https://127.0.0.1:{port}/"]


OTHER_REFUSED = ["http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/", "http://224.0.0.1/",
                 "http://[ff02::1]/", "http://255.255.255.255/", "http://[::]/", "http://[::ffff:169.254.169.254]/"]


def test_operator_cannot_subscribe_a_webhook_to_this_machine(  # type: ignore[no-untyped-def]
        client: TestClient, services: Services, tree: Tree, login) -> None:
    operator = login("operator", tree.village_a1, "a-op")
    with listening() as listener:
        for url in _loopback_forms(listener.port) + OTHER_REFUSED:
            refused = _hook(client, operator, url)
            assert refused.status_code == 422, (url, refused.status_code, refused.text)
            assert refused.json()["field"] == "url", refused.text
        assert client.get("/api/v1/subscriptions", headers=operator).json() == []
        ok = _hook(client, operator, "http://10.1.2.3:8080/hook")  # a county receiver on a private network
        assert ok.status_code == 201, ok.text
        sub = ok.json()
        for url in (f"http://127.0.0.1:{listener.port}/", f"http://[::ffff:127.0.0.1]:{listener.port}/",
                    "http://169.254.169.254/"):
            moved = client.patch(f"/api/v1/subscriptions/{sub['id']}", json={"url": url}, headers=operator)
            assert moved.status_code == 422 and moved.json()["field"] == "url", (url, moved.text)
        assert client.get(f"/api/v1/subscriptions/{sub['id']}", headers=operator).json()["url"] == sub["url"]
        assert listener.connections == 0


def test_a_stored_webhook_that_reaches_this_machine_is_refused_when_sent(  # type: ignore[no-untyped-def]
        client: TestClient, services: Services, tree: Tree, login) -> None:
    """Subscriptions whose host was fine when written but is this machine now: rows kept from
    before this check, or a name whose DNS record was changed to 127.0.0.1 (`localhost` stands
    for it here: a name the resolver answers with loopback). Nothing may connect."""
    operator = login("operator", tree.village_a1, "a-op")
    admin = login("admin", tree.county)
    with listening() as listener, listening("127.0.0.2", port=listener.port) as second:
        urls = _resolvable_forms(listener.port)
        ids = []
        for i, url in enumerate(urls):
            created = _hook(client, operator, f"http://receiver-{i}.invalid/hook", f"desk {i}")
            assert created.status_code == 201, created.text
            ids.append(created.json()["id"])
        with services.sessions() as session:
            for sub_id, url in zip(ids, urls):
                session.execute(update(Subscription).where(Subscription.id == sub_id).values(url=url))
            session.commit()
        _, engine, _ = one_fire(client, services, admin, tree.village_a1)
        deliveries = _deliver(services)
        assert len(deliveries) == len(urls)
        for delivery, url in zip(deliveries, urls):
            assert delivery.state == "pending" and delivery.attempts == 1
            assert delivery.last_error is not None and delivery.last_error.startswith("destination "), \
                (url, delivery.last_error)
            assert "is not allowed" in delivery.last_error
        assert listener.connections == 0 and second.connections == 0
        shown = client.get(f"/api/v1/subscriptions/{ids[0]}/deliveries", headers=operator).json()
        assert shown[0]["last_error"] == "destination 127.0.0.1 is not allowed (loopback)"
        drain(engine)


def test_a_receivers_answer_never_shows_in_last_error(  # type: ignore[no-untyped-def]
        client: TestClient, services: Services, tree: Tree, login) -> None:
    """Even where the operator opened this machine to webhooks (a local relay), an error
    page, a non-HTTP banner or a redirect comes back as a status or a short reason only,
    and a redirect is not followed."""
    _secure(services, webhook_allow_networks=["127.0.0.1/32"])
    operator = login("operator", tree.village_a1, "a-op")
    admin = login("admin", tree.county)
    with listening("127.0.0.2") as target, \
            listening(reply=ERROR_PAGE) as failing, listening(reply=BANNER) as ssh, \
            listening(reply=(f"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.2:{target.port}/x\r\n"
                             "Content-Length: 11\r\nConnection: close\r\n\r\nSECRET-MOVE").encode()) as redirect:
        for i, listener in enumerate((failing, ssh, redirect)):
            made = _hook(client, operator, f"http://127.0.0.1:{listener.port}/hook", f"relay {i}")
            assert made.status_code == 201, made.text
        _, engine, _ = one_fire(client, services, admin, tree.village_a1)
        errors = [d.last_error for d in _deliver(services)]
        assert errors == ["HTTP 500 Internal Server Error",
                          "RemoteProtocolError: the receiver did not answer in HTTP",
                          "HTTP 307 Temporary Redirect (redirects are not followed)"], errors
        assert failing.connections == ssh.connections == redirect.connections == 1
        assert target.connections == 0
        for sub in client.get("/api/v1/subscriptions", headers=operator).json():
            shown = client.get(f"/api/v1/subscriptions/{sub['id']}/deliveries", headers=operator).text
            assert "SECRET" not in shown and "redis_version" not in shown and "SSH" not in shown
        drain(engine)


def test_deny_and_allow_networks_narrow_where_webhooks_go(  # type: ignore[no-untyped-def]
        client: TestClient, services: Services, tree: Tree, login) -> None:
    operator = login("operator", tree.village_a1, "a-op")
    _secure(services, webhook_deny_networks=["10.20.0.0/16"])
    assert _hook(client, operator, "http://10.20.1.5/hook").json()["field"] == "url"
    assert _hook(client, operator, "http://[::ffff:10.20.1.5]/hook").status_code == 422
    assert _hook(client, operator, "http://10.30.1.5/hook").status_code == 201
    _secure(services, webhook_allow_networks=["10.30.0.0/16"])
    assert _hook(client, operator, "http://192.168.1.5/hook").status_code == 422
    assert _hook(client, operator, "http://10.30.1.6/hook").status_code == 201
    assert _hook(client, operator, "http://0.0.0.0/hook").status_code == 422


def test_deny_list_is_applied_at_send_time_and_allowed_receivers_get_their_webhooks(  # type: ignore[no-untyped-def]
        client: TestClient, services: Services, tree: Tree, login) -> None:
    """Loopback opened on purpose (a relay on this machine), 127.0.0.2 denied: the denied
    listener sees no connection; the allowed receivers get the signed body, by address and by
    name (the Host header is the URL's, though the connection goes to the checked address)."""
    _secure(services, webhook_allow_networks=["127.0.0.0/8", "::1/128"], webhook_deny_networks=["127.0.0.2/32"])
    operator = login("operator", tree.village_a1, "a-op")
    admin = login("admin", tree.county)
    receiver = Receiver().start()
    try:
        with listening("127.0.0.2", port=receiver.port) as denied:
            assert _hook(client, operator, f"http://127.0.0.2:{receiver.port}/hook").status_code == 422
            by_address = _hook(client, operator, receiver.url, "by address").json()
            by_name = _hook(client, operator, f"http://localhost:{receiver.port}/hook", "by name").json()
            stale = _hook(client, operator, "http://stale.invalid/hook", "stale").json()
            with services.sessions() as session:  # a row from before the deny list was set
                session.execute(update(Subscription).where(Subscription.id == stale["id"])
                                .values(url=f"http://127.0.0.2:{receiver.port}/hook"))
                session.commit()
            _, engine, _ = one_fire(client, services, admin, tree.village_a1)
            states = {d.subscription_id: (d.state, d.last_error) for d in _deliver(services)}
            assert states[by_address["id"]] == ("delivered", None)
            assert states[by_name["id"]] == ("delivered", None)
            assert states[stale["id"]] == (
                "pending", "destination 127.0.0.2 is not allowed (webhook_deny_networks)")
            assert denied.connections == 0
            hosts = sorted(headers["host"] for headers, _ in receiver.received)
            assert hosts == sorted([f"127.0.0.1:{receiver.port}", f"localhost:{receiver.port}"])
            assert all("x-lookout-signature" in headers for headers, _ in receiver.received)
            drain(engine)
    finally:
        receiver.stop()


@pytest.mark.parametrize("name", ["desk\r\nX-Injected: 1", "desk\nsecond line", "bell\x07", "esc\x1b[31m"])
def test_subscription_names_with_line_breaks_or_control_characters_are_refused(  # type: ignore[no-untyped-def]
        client: TestClient, services: Services, tree: Tree, login, name: str) -> None:
    """Hole 12: a subscription name is one line of text (it is shown in the console and
    written to the audit log)."""
    operator = login("operator", tree.village_a1, "a-op")
    refused = _hook(client, operator, "http://10.1.2.3/hook", name)
    assert refused.status_code == 422, refused.text
    assert [e["field"] for e in refused.json()["errors"]] == ["body.name"]
    sub = _hook(client, operator, "http://10.1.2.3/hook").json()
    changed = client.patch(f"/api/v1/subscriptions/{sub['id']}", json={"name": name}, headers=operator)
    assert changed.status_code == 422 and [e["field"] for e in changed.json()["errors"]] == ["body.name"]
    assert [s["name"] for s in client.get("/api/v1/subscriptions", headers=operator).json()] == ["desk"]


@pytest.mark.parametrize(("field", "value"), [("url", "http://10.1.2.3/a\r\nX-Injected: 1"),
                                              ("url", "http://10.1.2.3/\tb"), ("kinds", ["fla\r\nme"]),
                                              ("topic_prefix", "lookout/a\nb")])
def test_subscription_urls_kinds_and_topics_with_control_characters_are_refused(  # type: ignore[no-untyped-def]
        client: TestClient, services: Services, tree: Tree, login, field: str, value: object) -> None:
    operator = login("operator", tree.village_a1, "a-op")
    body: dict[str, object] = {"name": "desk", "channel": "webhook", "url": "http://10.1.2.3/hook", field: value}
    if field == "topic_prefix":
        body = {"name": "desk", "channel": "mqtt", "topic_prefix": value}
    refused = client.post("/api/v1/subscriptions", headers=operator, json=body)
    assert refused.status_code == 422, refused.text
    assert any(e["field"].startswith(f"body.{field}") for e in refused.json()["errors"]), refused.text
    assert client.get("/api/v1/subscriptions", headers=operator).json() == []


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for the name `localhost` only (no IP address in it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_the_checked_connection_keeps_tls_name_checks_and_sni(tmp_path: Path) -> None:
    """The deliverer connects to the address it checked, yet TLS is still about the URL's name:
    the receiver is asked for `localhost` (SNI) and its certificate is verified for that name;
    the same receiver by address fails verification rather than being trusted."""
    cert_file, key_file = _certificate(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_file, key_file)
    asked: list[str | None] = []

    def note_name(sock: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
        asked.append(name)

    server_context.sni_callback = note_name  # type: ignore[assignment]
    receiver = Receiver().start()
    assert receiver.server is not None
    receiver.server.socket = server_context.wrap_socket(receiver.server.socket, server_side=True)
    client_context = ssl.create_default_context(cafile=str(cert_file))
    destinations = Destinations(allow=(ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")))
    try:
        with checked_client(destinations, httpx.Timeout(5.0), verify=client_context) as http:
            answer = http.post(f"https://localhost:{receiver.port}/hook", content=b"{}")
            assert answer.status_code == 204
            assert asked == ["localhost"] and receiver.received[0][0]["host"] == f"localhost:{receiver.port}"
            with pytest.raises(httpx.ConnectError) as failed:
                http.post(f"https://127.0.0.1:{receiver.port}/hook", content=b"{}")
            assert failure_reason(failed.value).startswith("ConnectError: TLS certificate not accepted ("), \
                failure_reason(failed.value)
        with checked_client(Destinations(), httpx.Timeout(5.0), verify=client_context) as http, \
                pytest.raises(DestinationRefused, match="loopback"):
            http.post(f"https://localhost:{receiver.port}/hook", content=b"{}")
        assert len(receiver.received) == 1
    finally:
        receiver.stop()
