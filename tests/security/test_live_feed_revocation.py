"""Hole 4 of issue 13: the live feed (SSE and WebSocket) checked the token only when it opened,
so a person disabled, signed out or given a new password kept hearing every alert of their
unit. Each test opens both feeds over real HTTP as that person, then the event that must end
them happens; both must end within a few seconds (WebSocket close code 4401, SSE response
over), and the same token must not open them again."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update

from api.services import Services
from config.database import utcnow
from registry.users import ApiToken, User, token_digest
from tests.alerting import add_camera, drain, engine_for, inject
from tests.conftest import PASSWORD, Tree, wait_for
from tests.security.servers import Feeds, api_server

NEW_PASSWORD = "amber kettle on the 9th floor"
ENDS_WITHIN = 10.0  # seconds; the hub re-checks every listener's token every 2 s


def _sign_in(http: httpx.Client, username: str, password: str = PASSWORD) -> str:
    response = http.post("/api/v1/auth/token", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def _user_id(services: Services, username: str) -> int:
    with services.sessions() as session:
        found = session.scalar(select(User.id).where(User.username == username))
    assert found is not None
    return found


def _disable(http: httpx.Client, services: Services, admin: dict[str, str], victim: str) -> None:
    assert http.patch(f"/api/v1/users/{_user_id(services, 'zhang')}", headers=admin,
                      json={"active": False}).status_code == 200


def _admin_resets_password(http: httpx.Client, services: Services, admin: dict[str, str], victim: str) -> None:
    assert http.patch(f"/api/v1/users/{_user_id(services, 'zhang')}", headers=admin,
                      json={"password": NEW_PASSWORD}).status_code == 200


def _changes_own_password_elsewhere(http: httpx.Client, services: Services, admin: dict[str, str],
                                    victim: str) -> None:
    phone = _sign_in(http, "zhang")
    assert http.post("/api/v1/users/me/password", headers={"Authorization": f"Bearer {phone}"},
                     json={"old_password": PASSWORD, "new_password": NEW_PASSWORD}).status_code == 204


def _token_expires(http: httpx.Client, services: Services, admin: dict[str, str], victim: str) -> None:
    with services.sessions() as session:
        session.execute(update(ApiToken).where(ApiToken.token_hash == token_digest(victim))
                        .values(expires_at=utcnow() + timedelta(seconds=1)))
        session.commit()


def _logs_out(http: httpx.Client, services: Services, admin: dict[str, str], victim: str) -> None:
    assert http.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {victim}"}).status_code == 204


Trigger = Callable[[httpx.Client, Services, dict[str, str], str], None]


@pytest.mark.parametrize("trigger", [_disable, _admin_resets_password, _changes_own_password_elsewhere,
                                     _token_expires, _logs_out],
                         ids=["disabled", "password-reset-by-admin", "own-password-changed", "token-expired",
                              "logged-out"])
def test_the_live_feed_of_a_revoked_token_ends(services: Services, tree: Tree, login,  # type: ignore[no-untyped-def]
                                               trigger: Trigger) -> None:
    admin = login("admin", tree.county, "chief")
    login("operator", tree.town_a, "zhang")
    with api_server(services) as base, httpx.Client(base_url=base, timeout=30) as http:
        token = _sign_in(http, "zhang")
        feeds = Feeds(base, token).start()
        assert feeds.sse_status == 200 and feeds.ws_open.is_set() and not feeds.ended()
        trigger(http, services, admin, token)
        wait_for(feeds.ended, ENDS_WITHIN)
        assert feeds.ws_code == 4401
        assert "event: revoked" in feeds.sse_lines
        again = Feeds(base, token).start()  # and the same token cannot open them again
        wait_for(again.ended, 5)
        assert again.sse_status == 401 and again.ws_code == 4401


def test_the_live_feed_of_someone_moved_to_another_unit_ends(services: Services, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    """An operator moved from the county desk to a village keeps their token, but their open feed
    was filtered for the county: it ends (4403) so that it reopens with the village's scope."""
    admin = login("admin", tree.county, "chief")
    login("operator", tree.county, "zhang")
    with api_server(services) as base, httpx.Client(base_url=base, timeout=30) as http:
        token = _sign_in(http, "zhang")
        feeds = Feeds(base, token).start()
        assert http.patch(f"/api/v1/users/{_user_id(services, 'zhang')}", headers=admin,
                          json={"unit_id": tree.village_a1.id}).status_code == 200
        wait_for(feeds.ended, ENDS_WITHIN)
        assert feeds.ws_code == 4403
        again = Feeds(base, token).start()
        assert again.sse_status == 200 and again.ws_open.is_set() and not again.ended()


def test_a_listener_whose_token_stays_valid_is_left_alone(services: Services, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    """Disabling one operator ends only their feeds, not a colleague's of the same unit, who
    goes on hearing the unit's alerts on both channels."""
    admin = login("admin", tree.county, "chief")
    login("operator", tree.town_a, "zhang")
    login("operator", tree.town_a, "li")
    with api_server(services) as base, httpx.Client(base_url=base, timeout=30) as http:
        zhang = Feeds(base, _sign_in(http, "zhang")).start()
        li = Feeds(base, _sign_in(http, "li")).start()
        _disable(http, services, admin, "")
        wait_for(zhang.ended, ENDS_WITHIN)
        threading.Event().wait(3)  # more than one re-check after zhang's feeds ended
        assert not li.ended()
        gate = add_camera(http, admin, tree.town_a, "gate")  # type: ignore[arg-type]
        inject(services, gate)
        drain(engine_for(services))
        wait_for(lambda: li.ws_messages and any(line.startswith("data: ") for line in li.sse_lines), 10)
        assert json.loads(li.ws_messages[0])["alert"]["camera_id"] == gate
        assert not zhang.ws_messages and "event: alert" not in zhang.sse_lines
