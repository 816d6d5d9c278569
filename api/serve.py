"""`lookout serve`: the API, a worker per core and the alert engine on one machine, with an
embedded Redis unless one is configured; the children and the embedded Redis are supervised
(`config.processes.Children`): one that dies is started again."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from datetime import timedelta
from typing import TYPE_CHECKING

from api.services import open_services, secure_stored_credentials
from config.settings import Settings

if TYPE_CHECKING:
    import uvicorn

    from api.app import StartingApp
    from api.services import Services
    from config.processes import Children

log = logging.getLogger("lookout.serve")


def serve(args: argparse.Namespace, settings: Settings) -> int:
    """The API, a worker per core and the alert engine, with an embedded Redis unless one is
    configured. The port answers from the first moment: 503 naming what serve waits for (the
    database, Redis) until they answer, then the real app (`api.app.StartingApp`)."""
    import uvicorn

    from api.app import StartingApp
    from config.processes import Children
    from config.redis_server import EmbeddedRedis

    # uvicorn shuts down gracefully on SIGTERM and SIGINT and then raises the signal again; exit
    # normally instead, so that the `finally` below stops the children and the embedded Redis.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    host = args.host or settings.host
    port = args.port or settings.port
    embedded = None
    redis_url = settings.redis_url
    if redis_url is None:
        embedded = EmbeddedRedis(settings.data_dir / "redis")
        redis_url = embedded.start()
    from ingest.media_paths import worker_media_env

    demo_media = []
    if args.demo:
        from api import demo

        demo_media = demo.media_dirs()  # the demo cameras play its clips as `file:` streams
    children = Children({**os.environ, "LOOKOUT_REDIS_URL": redis_url,
                         "LOOKOUT_DATA_DIR": str(settings.data_dir.resolve()),
                         "LOOKOUT_DATABASE_URL": settings.resolved_database_url,
                         **worker_media_env(settings, demo_media)})
    if embedded is not None:
        children.supervise(embedded)  # `kill -9` of it: started again with its AOF, everyone reconnects
    states = {"database": "not checked yet", "redis": "not checked yet"}
    starting = StartingApp(states)
    proxies = settings.security.trusted_proxies  # only they may say who the client is (X-Forwarded-For)
    # an open alert feed (SSE, WebSocket) never ends by itself: without a limit, a console left
    # open would keep serve from stopping
    server = uvicorn.Server(uvicorn.Config(starting, host=host, port=port, log_config=None, access_log=False,
                                           proxy_headers=bool(proxies), forwarded_allow_ips=",".join(proxies) or None,
                                           timeout_graceful_shutdown=5))
    stop = threading.Event()
    start = _ServeStart(args, settings, redis_url, children, starting, states, stop, server)
    starter = threading.Thread(target=start.run, name="serve-start", daemon=True)
    try:
        children.watching()
        starter.start()
        server.run()
    finally:
        stop.set()
        if starter.is_alive():
            starter.join(10)  # it may be opening the services right now: close them below, not leak them
        children.stop()
        if embedded is not None:
            embedded.stop()
        if start.services is not None:
            start.services.close()
    if start.failure is not None:
        raise start.failure
    return 0


class _ServeStart:
    """Serve's start behind the answering port, in its own thread: wait for the database,
    migrate, start the children, wait for Redis, seed the demo, hand the real app over. A
    failure stops the server and is raised again by `serve`."""

    def __init__(self, args: argparse.Namespace, settings: Settings, redis_url: str, children: Children,
                 starting: StartingApp, states: dict[str, str], stop: threading.Event, server: uvicorn.Server) -> None:
        self.args, self.settings, self.redis_url, self.children = args, settings, redis_url, children
        self.starting, self.states, self.stop, self.server = starting, states, stop, server
        self.services: Services | None = None
        self.failure: BaseException | None = None

    def run(self) -> None:
        from sqlalchemy.exc import DBAPIError

        from config.dependencies import describe
        from config.errors import Unavailable

        try:
            self._run()
        except DBAPIError as exc:  # gone again after the wait (securing credentials, the demo): one line
            self.failure = Unavailable(f"the database went away during start: {describe(exc)}")
            self.server.should_exit = True
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which raises it
            self.failure = exc
            self.server.should_exit = True

    def _run(self) -> None:
        from sqlalchemy.exc import DBAPIError

        from api.app import create_app
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
        if self.starting.hand_over(create_app(services), self.stop):
            log.info("serving", extra={"host": host, "port": port,
                                       "database": services.engine.url.get_backend_name()})
