"""`lookout serve`: the API, a worker per core and the alert engine on one machine, with an
embedded Redis unless one is configured; the children and the embedded Redis are supervised
(`config.processes.Children`): one that dies is started again.

Ctrl-C or SIGTERM stops them in order, within 10 s: the children at once (SIGTERM, SIGKILL
after a bound) while the API finishes its requests, then the embedded Redis, which everyone
else talked to, last. Each runs in its own process group, so that the terminal's Ctrl-C
reaches serve alone; one line per process says it stopped (`child_stopped`,
`embedded_redis_stopped`, `serve_stopped`). Should serve itself be killed, each child and the
Redis get SIGTERM from the parent-death signal (`config.processes.die_with_parent`)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
from datetime import timedelta
from types import FrameType
from typing import TYPE_CHECKING

from config.settings import Settings

if TYPE_CHECKING:
    import uvicorn

    from api.app import StartingApp
    from api.feed_hub import FeedHub
    from api.services import Services
    from config.processes import Children

log = logging.getLogger("lookout.serve")


def serve(args: argparse.Namespace, settings: Settings) -> int:
    """The API, a worker per core and the alert engine, with an embedded Redis unless one is
    configured. The port answers from the first moment: 503 naming what serve waits for (the
    database, Redis) until they answer, then the real app (`api.app.StartingApp`)."""
    stop = threading.Event()  # serve is stopping: its start (`_ServeStart`) gives up
    stopping = _Stopping(stop)
    for sig in (signal.SIGTERM, signal.SIGINT):  # first thing: a Ctrl-C from now on is no KeyboardInterrupt
        signal.signal(sig, stopping.signalled)
    import uvicorn

    from api.app import StartingApp
    from config.processes import Children
    from config.redis_server import EmbeddedRedis

    host = args.host or settings.host
    port = args.port or settings.port
    embedded = None
    redis_url = settings.redis_url
    if redis_url is None:
        embedded = EmbeddedRedis(settings.data_dir / "redis")
        redis_url = embedded.url  # started below, where a Ctrl-C stops it again
    from ingest.media_paths import worker_media_env

    demo_media = []
    if args.demo:
        from api import demo

        demo_media = demo.media_dirs()  # the demo cameras play its clips as `file:` streams
    children = Children({**os.environ, "LOOKOUT_REDIS_URL": redis_url,
                         "LOOKOUT_DATA_DIR": str(settings.data_dir.resolve()),
                         "LOOKOUT_DATABASE_URL": settings.resolved_database_url,
                         **worker_media_env(settings, demo_media)}, stop_seconds=CHILDREN_STOP_SECONDS)
    if embedded is not None:
        children.supervise(embedded)  # `kill -9` of it: started again with its AOF, everyone reconnects
    stopping.children = children
    states = {"database": "not checked yet", "redis": "not checked yet"}
    starting = StartingApp(states)
    proxies = settings.security.trusted_proxies  # only they may say who the client is (X-Forwarded-For)
    # an open alert feed (SSE, WebSocket) never ends by itself: without a limit, a console left
    # open would keep serve from stopping
    server = uvicorn.Server(uvicorn.Config(starting, host=host, port=port, log_config=None, access_log=False,
                                           proxy_headers=bool(proxies), forwarded_allow_ips=",".join(proxies) or None,
                                           timeout_graceful_shutdown=5))
    # uvicorn's own handler raises the signal again once it has shut down, which would end serve
    # before its children; `server.run` installs this one instead
    server.handle_exit = stopping.signalled  # type: ignore[method-assign]
    start = _ServeStart(args, settings, redis_url, children, starting, states, stopping, server)
    starter = threading.Thread(target=start.run, name="serve-start", daemon=True)
    try:
        if embedded is not None:
            embedded.start()
        children.watching()
        starter.start()
        stopping.server = server  # from now on a signal ends `server.run` instead of raising
        server.run()
    finally:
        stopping.finishing = True
        began = stopping.since or time.monotonic()  # the signal's time, or now when the start failed
        stop.set()
        if starter.is_alive():
            starter.join(5)  # it may be opening the services right now: close them below, not leak them
        children.stop()  # first: they talk to the embedded Redis
        if start.services is not None:
            start.services.close()  # the API's Redis client, before its server goes
        if embedded is not None:
            embedded.stop()  # last
        log.info("serve_stopped", extra={"seconds": round(time.monotonic() - began, 2)})
    if start.failure is not None:
        raise start.failure
    return 0


CHILDREN_STOP_SECONDS = 8.0  # after the signal, a child still running gets SIGKILL: serve ends within 10 s


class _Stopping:
    """What SIGINT and SIGTERM do to serve. The first: SIGTERM to every child at once (they stop
    while the API finishes its requests), then end `server.run`, or, before it runs (the
    embedded Redis loading a large AOF), raise SystemExit into the start so that `serve`'s
    `finally` stops what is up. A second: stop waiting for the children (SIGKILL now) and, on
    SIGINT, for the API's open requests. Never a KeyboardInterrupt.

    A handler runs in the main thread between two of its bytecodes: it takes no lock that the
    main thread may hold at that moment (once `serve` is in its `finally`, it only sets flags)."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.children: Children | None = None
        self.server: uvicorn.Server | None = None
        self.feed_hub: FeedHub | None = None  # its open feeds end at once: the API need not wait for them
        self.since: float | None = None  # monotonic time of the first signal
        self.finishing = False  # `serve` is in its `finally`: stopping whether signalled or not

    def signalled(self, sig: int, frame: FrameType | None) -> None:
        if self.since is not None or self.finishing:
            if self.children is not None:
                self.children.hurry()
            if self.server is not None and sig == signal.SIGINT:
                self.server.force_exit = True
            return
        self.since = time.monotonic()
        self.stop.set()
        if self.feed_hub is not None:
            self.feed_hub.closing()
        if self.children is not None:
            self.children.terminate()
        if self.server is None:
            raise SystemExit(0)
        self.server.should_exit = True


class _ServeStart:
    """Serve's start behind the answering port, in its own thread: wait for the database,
    migrate, start the children, wait for Redis, seed the demo, hand the real app over. A
    failure stops the server and is raised again by `serve`."""

    def __init__(self, args: argparse.Namespace, settings: Settings, redis_url: str, children: Children,
                 starting: StartingApp, states: dict[str, str], stopping: _Stopping, server: uvicorn.Server) -> None:
        self.args, self.settings, self.redis_url, self.children = args, settings, redis_url, children
        self.starting, self.states, self.stopping, self.server = starting, states, stopping, server
        self.stop = stopping.stop
        self.services: Services | None = None
        self.failure: BaseException | None = None

    def run(self) -> None:
        from sqlalchemy.exc import DBAPIError

        from config.dependencies import describe
        from config.errors import Unavailable

        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which raises it
            if self.stop.is_set():  # serve stops: what failed is a start nobody waits for (its loop closed...)
                log.debug("serve_start_abandoned", extra={"error": str(exc)[:300]})
                return
            if isinstance(exc, DBAPIError):  # gone again after the wait (securing credentials, the demo): one line
                exc = Unavailable(f"the database went away during start: {describe(exc)}")
            self.failure = exc
            self.server.should_exit = True

    def _run(self) -> None:
        from sqlalchemy.exc import DBAPIError

        from api.app import create_app
        from api.services import open_services, secure_stored_credentials
        from config.database import make_engine
        from config.dependencies import describe, wait_for_database, wait_for_redis

        settings, args, interval = self.settings, self.args, self.settings.dependency_retry_seconds
        while self.services is None:
            probe = make_engine(settings.resolved_database_url)
            try:
                if not wait_for_database(probe, self.stop, interval, command="serve", states=self.states):
                    return
            finally:
                probe.dispose()
            try:
                self.services = open_services(settings, self.redis_url)
            except DBAPIError as exc:  # it went away again between the check and the migration
                log.warning("database_lost_during_start", extra={"error": describe(exc), "retry_in": interval})
                self.stop.wait(interval)
        services = self.services
        secure_stored_credentials(services)
        count = (os.cpu_count() or 1) if args.workers is None else args.workers
        for _ in range(count):  # one machine runs everything: the API, a worker per core, the alert engine
            self.children.start(["worker"])
        if not args.no_alert_engine:
            self.children.start(["alert-engine"])
        if not wait_for_redis(self.redis_url, self.stop, interval, command="serve", states=self.states):
            return
        host, port = self.server.config.host, self.server.config.port
        if args.demo:
            from api import demo

            with services.sessions() as session:
                county = demo.seed(session, services.registry)
                token = demo.demo_admin_token(session, county, timedelta(hours=settings.token_ttl_hours))
                session.commit()
            print(f"Lookout demo at http://{host}:{port}  (API docs: http://{host}:{port}/docs)", flush=True)
            print(f"Admin token (Authorization: Bearer ...): {token}", flush=True)
        app = create_app(services)
        self.stopping.feed_hub = app.state.feed_hub
        if not self.stop.is_set() and self.starting.hand_over(app, self.stop):
            log.info("serving", extra={"host": host, "port": port,
                                       "database": services.engine.url.get_backend_name()})
