"""Hole 11 of issue 13: uvicorn wrote `?access_token=lk_...` of every WebSocket into the log, so
anyone who reads the logs (a log shipper, an operator of the log server) could act as that
person. The attack: read the log after a console opened its feed, and find the token."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator

import httpx
import pytest

from api.services import Services
from config.logging import setup_logging
from tests.conftest import PASSWORD, Tree, wait_for
from tests.security.servers import Feeds, api_server


@pytest.fixture
def lookout_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """Lookout's own logging (as `lookout serve` sets it up), its stderr caught in a buffer;
    pytest's handlers and levels come back afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    loggers = {name: (lg.handlers[:], lg.propagate, lg.disabled)
               for name in ("uvicorn", "uvicorn.error", "uvicorn.access") for lg in [logging.getLogger(name)]}
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    setup_logging("INFO", "json")
    yield buffer
    root.handlers[:], level = saved
    root.setLevel(level)
    for name, (handlers, propagate, disabled) in loggers.items():
        lg = logging.getLogger(name)
        lg.handlers[:], lg.propagate, lg.disabled = handlers, propagate, disabled


def _pieces(token: str, size: int = 8) -> list[str]:
    """Every run of `size` characters of the token's secret part: no part of it may show."""
    secret = token.removeprefix("lk_")
    return [secret[i:i + size] for i in range(len(secret) - size + 1)]


def test_no_part_of_a_websocket_token_reaches_the_log(services: Services, tree: Tree, login,  # type: ignore[no-untyped-def]
                                                      lookout_log: io.StringIO) -> None:
    login("operator", tree.town_a, "zhang")
    forged = "lk_" + "Q7x" * 15  # a wrong token is logged on the refusal line: it may be someone's
    with api_server(services) as base, httpx.Client(base_url=base, timeout=30) as http:
        token = http.post("/api/v1/auth/token", json={"username": "zhang", "password": PASSWORD}).json()["access_token"]
        feeds = Feeds(base, token).start()
        assert feeds.ws_open.is_set()
        refused = Feeds(base, forged).start()
        wait_for(refused.ended, 5)
        sse = http.get("/api/v1/alerts/stream", params={"access_token": forged})
        assert sse.status_code == 401
        logging.getLogger("lookout.test").info("token_seen", extra={"token": token, "url": f"/x?access_token={token}",
                                                                     "nested": {"auth": f"Bearer {token}"}})
        logging.getLogger("lookout.test").info("header %s", f"Authorization: Bearer {forged}")
    log = lookout_log.getvalue()
    assert '"WebSocket /api/v1/alerts/ws?access_token=' in log  # the lines are there...
    assert "token_seen" in log and "Authorization: Bearer" in log
    for secret in (token, forged):
        leaked = [piece for piece in _pieces(secret) if piece in log]
        assert not leaked, f"token pieces in the log: {leaked[:3]}"  # ...without any part of a token
