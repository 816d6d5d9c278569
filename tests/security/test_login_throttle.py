"""Hole 10 of issue 13: sign-in. A guesser could try 60 passwords in 11 s and then get in with
the right one; an unknown username answered in 2 ms and a known one in 190 ms; 60 concurrent
bad sign-ins held every thread of the API. Each test is the guesser's attack."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from argon2 import extract_parameters
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from api.app import create_app
from api.passwords import hashing_of
from api.services import Services, build_services
from registry.users import ApiToken, User, dummy_hash
from tests.conftest import PASSWORD, Tree, make_settings
from tests.security.servers import api_server

WRONG = "not the password at all"


def _try(client: TestClient | httpx.Client, username: str, password: str) -> httpx.Response:
    return client.post("/api/v1/auth/token", json={"username": username, "password": password})


def _tokens(services: Services) -> int:
    with services.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(ApiToken)) or 0)


def _refused_for_a_while(response: httpx.Response) -> int:
    assert response.status_code == 429, response.text
    assert "access_token" not in response.text
    wait = int(response.headers["Retry-After"])
    assert wait >= 1 and response.json()["retry_after"] == wait
    return wait


def test_sixty_concurrent_guesses_lock_the_account_and_cost_few_hashes(services: Services, tree: Tree,
                                                                      login) -> None:  # type: ignore[no-untyped-def]
    """A guesser fires 60 wrong passwords at once at a township operator, then the right one."""
    login("operator", tree.town_a, "zhang")
    free = services.settings.security.login_free_failures
    tokens = _tokens(services)
    with api_server(services) as base, httpx.Client(base_url=base, timeout=60) as http:
        with ThreadPoolExecutor(60) as pool:
            answers = list(pool.map(lambda n: _try(http, "zhang", f"{WRONG} {n}").status_code, range(60)))
        assert set(answers) <= {401, 429} and answers.count(401) <= free + 2, answers
        wait = _refused_for_a_while(_try(http, "zhang", PASSWORD))  # the right password, too soon
        assert wait >= 60  # every refused guess made the wait longer
        assert _refused_for_a_while(_try(http, "ZHANG", PASSWORD))  # the name in another case is the same name
    assert _tokens(services) == tokens  # no token was issued


def test_guesses_one_after_another_are_slowed_then_refused(client: TestClient, services: Services, tree: Tree,
                                                           login) -> None:  # type: ignore[no-untyped-def]
    login("operator", tree.town_a, "zhang")
    free = services.settings.security.login_free_failures
    hashing = hashing_of(client.app)
    before = hashing.verifications
    answers = [_try(client, "zhang", f"{WRONG} {n}").status_code for n in range(60)]
    assert answers[:free + 1] == [401] * (free + 1)  # the last of them starts the delays (1 s, 2 s, 4 s...)
    # one more may come after a 1 s wait on a slow machine (an Argon2 hash under load); never many
    assert answers.count(401) <= free + 3 and set(answers[-40:]) == {429}, answers
    assert hashing.verifications - before == answers.count(401)  # a refused try costs no Argon2 hash
    _refused_for_a_while(_try(client, "zhang", PASSWORD))


def test_the_lock_holds_in_every_api_process(services: Services, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    """Two API processes share the throttle through Redis: spreading guesses over them gains nothing."""
    login("operator", tree.town_a, "zhang")
    free = services.settings.security.login_free_failures
    with TestClient(create_app(services)) as one, TestClient(create_app(services)) as two:
        answers = [_try(one if n % 2 else two, "zhang", f"{WRONG} {n}").status_code for n in range(free + 10)]
        assert answers[:free + 1] == [401] * (free + 1) and set(answers[-5:]) == {429}, answers
        _refused_for_a_while(_try(one, "zhang", PASSWORD))
        _refused_for_a_while(_try(two, "zhang", PASSWORD))


def test_a_guesser_spraying_many_usernames_from_one_address_is_refused(client: TestClient, services: Services,
                                                                       tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    login("operator", tree.town_a, "zhang")
    limit = services.settings.security.login_address_free_failures
    answers = [_try(client, f"user{n}", WRONG).status_code for n in range(limit + 10)]
    assert answers[:limit + 1] == [401] * (limit + 1)  # each username had one try: the address's count stops them
    assert answers.count(401) <= limit + 3 and set(answers[-5:]) == {429}, answers
    _refused_for_a_while(_try(client, "zhang", PASSWORD))  # from that address, even the right one waits


def test_a_right_password_clears_the_users_count(client: TestClient, services: Services, tree: Tree,
                                                 login) -> None:  # type: ignore[no-untyped-def]
    """A person who mistypes a few times and then gets it right starts afresh (no slow creep to a lock)."""
    login("operator", tree.town_a, "zhang")
    free = services.settings.security.login_free_failures
    for _ in range(3):
        assert [_try(client, "zhang", WRONG).status_code for _ in range(free - 1)] == [401] * (free - 1)
        assert _try(client, "zhang", PASSWORD).status_code == 200


def test_an_admin_resetting_the_password_lifts_the_lock(client: TestClient, services: Services, tree: Tree,
                                                        login) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county, "chief")
    login("operator", tree.town_a, "zhang")
    for n in range(20):
        _try(client, "zhang", f"{WRONG} {n}")
    _refused_for_a_while(_try(client, "zhang", PASSWORD))
    with services.sessions() as session:
        zhang_id = session.scalar(select(User.id).where(User.username == "zhang"))
    new = "river lantern seventeen"
    assert client.patch(f"/api/v1/users/{zhang_id}", headers=admin, json={"password": new}).status_code == 200
    assert _try(client, "zhang", new).status_code == 200


@pytest.fixture
def services_without_redis(database_url: str, tmp_path: Path, services: Services) -> Iterator[Services]:
    """The same (emptied) database, and no Redis at all."""
    svc = build_services(make_settings(database_url, None, tmp_path / "no-redis"))
    assert svc.redis is None
    yield svc
    svc.close()


def test_without_redis_the_lock_still_holds(services_without_redis: Services, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    login("operator", tree.town_a, "zhang")
    with TestClient(create_app(services_without_redis)) as client:
        answers = [_try(client, "zhang", f"{WRONG} {n}").status_code for n in range(30)]
        assert 429 in answers
        _refused_for_a_while(_try(client, "zhang", PASSWORD))


# -- telling users apart by time -------------------------------------------------------------
def test_unknown_disabled_and_known_users_take_the_same_argon2_path(client: TestClient, services: Services,
                                                                   tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    """The guesser compares answers for `zhang` (exists), `ghost` (does not) and `retired`
    (disabled, right password): same status, same body, one Argon2 verification each, with the
    same parameters, so the time tells nothing."""
    login("operator", tree.town_a, "zhang")
    login("operator", tree.town_a, "retired")
    with services.sessions() as session:
        session.execute(update(User).where(User.username == "retired").values(active=False))
        session.commit()
        real_hash = session.scalar(select(User.password_hash).where(User.username == "zhang"))
    assert real_hash is not None
    assert extract_parameters(dummy_hash()) == extract_parameters(real_hash)
    hashing = hashing_of(client.app)
    answers = []
    for username, password in (("zhang", WRONG), ("ghost", WRONG), ("retired", PASSWORD), ("ghost", PASSWORD)):
        before = hashing.verifications
        response = _try(client, username, password)
        assert hashing.verifications - before == 1, username
        answers.append((response.status_code, response.json()))
    assert all(answer == answers[0] for answer in answers), answers
    assert answers[0][0] == 401


def test_a_flood_of_sign_ins_hashes_at_most_the_configured_number_at_once(services: Services, tree: Tree,
                                                                        login) -> None:  # type: ignore[no-untyped-def]
    """Each Argon2 hash takes 64 MiB and a core for ~0.2 s: 60 at once took 1.3 GB and every
    thread of the API. Sign-ins of 15 different users at once: never more than
    `login_hash_concurrency` hashes run together."""
    for n in range(15):
        login("operator", tree.town_a, f"op{n}")
    limit = services.settings.security.login_hash_concurrency
    app = create_app(services)
    with api_server(services, app) as base, httpx.Client(base_url=base, timeout=60) as http:
        with ThreadPoolExecutor(15) as pool:
            answers = list(pool.map(lambda n: _try(http, f"op{n}", PASSWORD).status_code, range(15)))
    assert answers == [200] * 15
    hashing = hashing_of(app)
    assert hashing.verifications == 15 and 1 <= hashing.peak <= limit


def test_a_guesser_on_the_same_host_cannot_pass_for_many_addresses(tmp_path: Path) -> None:
    """uvicorn believes `X-Forwarded-For` from 127.0.0.1 by default, so anyone with a shell on
    the API's host could give each guess another "client address" and never meet the per-address
    count. `lookout serve` believes it only from `security.trusted_proxies` (none by default)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import free_port

    root = Path(__file__).parents[2]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKOUT_") and k != "FORWARDED_ALLOW_IPS"}
    env["LOOKOUT_DATA_DIR"] = str(tmp_path / "data")
    process = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--workers", "0", "--no-alert-engine"],
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if http.get("/healthz").status_code == 200:  # 503 while serve starts
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
            limit = 20  # security.login_address_free_failures, the default
            answers = [http.post("/api/v1/auth/token", json={"username": f"user{n}", "password": WRONG},
                                 headers={"X-Forwarded-For": f"198.51.100.{n}"}).status_code
                       for n in range(limit + 6)]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    assert answers[:limit] == [401] * limit
    assert set(answers[-3:]) == {429}, answers


def test_a_guesser_cannot_pass_for_many_ipv6_addresses_of_one_network() -> None:
    """An IPv6 host holds a whole /64 and may take any address of it: counted per /128, every
    guess would come from a new "client"."""
    from api.login_throttle import LoginThrottle
    from config.security import SecuritySettings

    security = SecuritySettings()
    throttle = LoginThrottle(None, security)
    waits = [throttle.admit(f"user{n}", f"2001:db8:5:7::{n:x}") for n in range(security.login_address_free_failures + 5)]
    assert waits[:security.login_address_free_failures] == [0] * security.login_address_free_failures
    assert all(wait > 0 for wait in waits[-3:]), waits
    assert throttle.admit("someone", "2001:db8:5:8::1") == 0  # the next /64 is another client
