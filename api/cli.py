"""The `lookout` command: serve, worker, migrate, unit add, user add, import, models, eval, audit."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import secrets
import signal
import sys
from datetime import timedelta
from pathlib import Path

from config.errors import LookoutError
from config.logging import setup_logging
from config.settings import Settings, load_settings

log = logging.getLogger("lookout.cli")


def _services(settings: Settings, redis_url: str | None = None):  # type: ignore[no-untyped-def]
    from api.migrate import upgrade
    from api.services import build_services

    services = build_services(settings, redis_url)
    upgrade(services.engine)
    return services


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import threading

    import uvicorn

    from api.app import create_app
    from config.processes import Children
    from config.redis_server import EmbeddedRedis

    # uvicorn shuts down gracefully on SIGTERM and then re-raises it; exit normally instead,
    # so that the `finally` below stops the embedded Redis.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    host = args.host or settings.host
    port = args.port or settings.port
    embedded = None
    redis_url = settings.redis_url
    if redis_url is None:
        embedded = EmbeddedRedis(settings.data_dir / "redis")
        redis_url = embedded.start()
    children = Children({**os.environ, "LOOKOUT_REDIS_URL": redis_url,
                         "LOOKOUT_DATA_DIR": str(settings.data_dir.resolve()),
                         "LOOKOUT_DATABASE_URL": settings.resolved_database_url})
    try:
        services = _services(settings, redis_url)
        count = (os.cpu_count() or 1) if args.workers is None else args.workers
        for _ in range(count):  # one machine runs everything: the API, a worker per core, the alert engine
            children.start(["worker"])
        if not args.no_alert_engine:
            children.start(["alert-engine"])
        threading.Thread(target=children.watch, name="children", daemon=True).start()
        if args.demo:
            from api import demo

            with services.sessions() as session:
                county = demo.seed(session, services.registry)
                token = demo.demo_admin_token(session, county, timedelta(hours=settings.token_ttl_hours))
                session.commit()
            print(f"Lookout demo at http://{host}:{port}  (API docs: http://{host}:{port}/docs)", flush=True)
            print(f"Admin token (Authorization: Bearer ...): {token}", flush=True)
        app = create_app(services)
        log.info("serving", extra={"host": host, "port": port, "database": services.engine.url.get_backend_name()})
        uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)
        services.close()
    finally:
        children.stop()
        if embedded is not None:
            embedded.stop()
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from config.processes import limit_malloc_arenas

    limit_malloc_arenas()  # before any reader thread starts
    from api.migrate import upgrade
    from api.services import secret_key
    from config.database import make_engine, make_session_factory
    from config.redis_server import connect
    from ingest.camera_runner import CameraRunner, StreamSettings
    from ingest.credentials import CredentialCipher
    from ingest.detection import load_stage
    from ingest.worker import IngestWorker, new_worker_id

    url = _redis_url(settings, "lookout worker")
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    client = connect(url)
    worker_id = new_worker_id()
    runner = CameraRunner(sessions, CredentialCipher(secret_key(settings)), client, StreamSettings(
        size=(settings.analysis_width, settings.analysis_height), interval=settings.analysis_interval_seconds,
        read_timeout=settings.stream_read_timeout_seconds, open_timeout=settings.stream_read_timeout_seconds,
        segment_dir=settings.segment_dir or settings.data_dir / "segments", segment_seconds=settings.segment_seconds,
        segment_max_age=settings.segment_max_age_hours * 3600, segment_max_bytes=int(settings.segment_max_gb * 2**30),
        figures_interval=settings.stream_figures_seconds),
        worker_id=worker_id, detection=load_stage(settings.model_cache_dir, settings.detectors,
                                                  settings.snapshot_dir or settings.data_dir / "snapshots",
                                                  precision=settings.model_precision))
    worker = IngestWorker(sessions, client, worker_id, ttl=settings.worker_ttl_seconds, step_seconds=settings.worker_step_seconds,
                          on_assign=runner.assign, on_release=runner.release, on_change=runner.restart,
                          tick=runner.tick)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop_event.set())
    worker.run()
    runner.stop()
    engine.dispose()
    return 0


def cmd_alert_engine(args: argparse.Namespace, settings: Settings) -> int:
    import threading

    from api.alerting.delivery import Deliverer
    from api.alerting.engine import AlertEngine
    from api.alerting.policy import AlertPolicy
    from api.migrate import upgrade
    from api.services import secret_key
    from config.database import make_engine, make_session_factory
    from config.redis_server import connect
    from ingest.credentials import CredentialCipher

    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    client = connect(_redis_url(settings, "lookout alert-engine"))
    policy = AlertPolicy(settings.alerts)
    alerts = AlertEngine(sessions, client, policy)
    alerts.ensure_group()
    deliverer = Deliverer(sessions, client, policy, CredentialCipher(secret_key(settings)))
    delivering = threading.Thread(target=deliverer.run, name="delivery", daemon=True)
    delivering.start()

    def stop(*_: object) -> None:
        alerts.stop_event.set()
        deliverer.stop_event.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    alerts.run()
    delivering.join(15)
    deliverer.close()
    client.close()
    engine.dispose()
    return 0


def _redis_url(settings: Settings, command: str) -> str:
    """The Redis of the deployment: the configured URL, else the embedded server of `lookout
    serve` with the same data_dir."""
    if settings.redis_url is not None:
        return settings.redis_url
    embedded = (settings.data_dir / "redis" / "redis.sock").resolve()
    if not embedded.exists():
        raise LookoutError(
            f"{command} needs the Redis the API uses: set LOOKOUT_REDIS_URL, or start "
            "`lookout serve` with the same data_dir first", field="redis_url")
    return f"unix://{embedded}"


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    _services(settings).close()
    print("database schema is up to date")
    return 0


def cmd_unit_add(args: argparse.Namespace, settings: Settings) -> int:
    from ingest import audit
    from ingest.units import create_unit, unit_by_code

    services = _services(settings)
    with services.sessions() as session:
        parent_id = None
        if args.parent:
            parent = unit_by_code(session, args.parent)
            if parent is None:
                raise LookoutError(f"no unit with code {args.parent}", field="parent")
            parent_id = parent.id
        unit = create_unit(session, name=args.name, code=args.code, parent_id=parent_id, scope=None)
        audit.record(session, "cli", "unit.create", "unit", unit.id, unit.id, None, unit.snapshot())
        session.commit()
        print(f"unit {unit.id} {unit.code} {unit.name}")
    services.close()
    return 0


def cmd_user_add(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import select

    from api.auth import Role, User, hash_password, issue_token
    from ingest import audit
    from ingest.units import unit_by_code

    services = _services(settings)
    password = args.password
    generated = False
    if password is None:
        if sys.stdin.isatty():
            password = getpass.getpass(f"password for {args.username}: ")
        else:
            password, generated = secrets.token_urlsafe(12), True
    if len(password) < 8:
        raise LookoutError("password must be at least 8 characters", field="password")
    with services.sessions() as session:
        unit = unit_by_code(session, args.unit)
        if unit is None:
            raise LookoutError(f"no unit with code {args.unit}; create it with `lookout unit add`", field="unit")
        if session.scalar(select(User.id).where(User.username == args.username)) is not None:
            raise LookoutError(f"username {args.username} is taken", field="username")
        user = User(username=args.username, role=Role(args.role).value, unit_id=unit.id,
                    display_name=args.display_name, password_hash=hash_password(password))
        session.add(user)
        session.flush()
        audit.record(session, "cli", "user.create", "user", user.id, unit.id, None, user.snapshot())
        token, _ = issue_token(session, user, timedelta(hours=settings.token_ttl_hours), "cli")
        session.commit()
    services.close()
    print(f"user {args.username} ({args.role}) at unit {args.unit}")
    if generated:
        print(f"password: {password}")
    print(f"token: {token}")
    return 0


def cmd_models_build(args: argparse.Namespace, settings: Settings) -> int:
    from models.build import build
    from models.manifest import manifests

    for name, path in build(settings.model_cache_dir, manifests(), force=args.force).items():
        print(f"{name}: {path}")
    return 0


def cmd_eval_fire(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from detectors.evaluation import evaluate
    from ingest.fire_eval import class_names, fire_chain, load_labelled, maxima_of, read_images

    labelled = load_labelled(args.dir, class_names(args.dir, args.classes))
    stage = fire_chain(settings.model_cache_dir, precision=args.precision or settings.model_precision)
    raw, checked = maxima_of(read_images(labelled.images), stage, args.min_area)
    maxima = raw if args.no_verify else checked
    result = evaluate(labelled.truth, maxima, (args.flame_threshold, args.smoke_threshold))
    if args.json:
        print(json.dumps(result))
        return 0

    def shown(value: float | None, form: str = ".3f") -> str:
        return "n/a" if value is None else format(value, form)

    print(f"{result['images']} images: {result['positives']} with fire or smoke, {result['negatives']} without")
    print(f"alarm (fire or smoke): recall {shown(result['recall'])}, precision {shown(result['precision'])}, "  # type: ignore[arg-type]
          f"false alarms on {shown(result['false_alarm_rate'], '.1%')} of negative images")  # type: ignore[arg-type]
    for kind, figures in result["classes"].items():  # type: ignore[attr-defined]
        print(f"  {kind:<6} ≥ {result['thresholds'][kind]:.2f}: recall {shown(figures['recall'])}, "  # type: ignore[index]
              f"precision {shown(figures['precision'])} ({figures['positives']} images)")
    return 0


def cmd_audit_verify(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.audit import verify_chain

    services = _services(settings)
    with services.sessions() as session:
        report = verify_chain(session)
    services.close()
    if report.intact:
        print(f"audit log intact: {report.rows} rows, last row {report.head_id}, head hash {report.head_hash}")
        return 0
    print(f"audit log broken at row {report.bad_row}: {report.reason} ({report.rows} rows verified before it)")
    return 1


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from ingest.csv_import import CameraImporter

    services = _services(settings)
    data = Path(args.file).read_bytes()
    bars: dict[str, tqdm] = {}

    def progress(phase: str, done: int, total: int) -> None:
        bar = bars.get(phase)
        if bar is None:
            bar = bars[phase] = tqdm(total=total, desc=phase, unit="row", file=sys.stderr)
        bar.update(done - bar.n)

    with services.sessions() as session:
        report = CameraImporter(services.registry, session, None, f"cli:{args.actor}", progress).run(
            data, dry_run=args.dry_run
        )
        if not args.dry_run:
            session.commit()
    for bar in bars.values():
        bar.close()
    if not args.dry_run and (report.created or report.updated):
        services.registry.feed.publish("bulk")
    services.close()
    for error in report.errors:
        print(f"line {error.line}: {error.message}")
    verb = "would create" if args.dry_run else "created"
    print(
        f"{report.rows} rows ({report.encoding}): {verb} {report.created}, updated {report.updated}, "
        f"unchanged {report.unchanged}, {len(report.errors)} bad rows"
    )
    return 1 if report.errors else 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="lookout", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API (with an embedded Redis unless LOOKOUT_REDIS_URL is set)")
    serve.add_argument("--demo", action="store_true", help="seed a demo county and print an admin token")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, help="ingest worker processes to run beside the API (default: one per core)")
    serve.add_argument("--no-alert-engine", action="store_true",
                       help="do not start an alert engine beside the API (run `lookout alert-engine` elsewhere)")
    serve.set_defaults(run=cmd_serve)
    sub.add_parser("alert-engine", help="turn events into alerts, escalate overdue ones (several may run)"
                   ).set_defaults(run=cmd_alert_engine)
    sub.add_parser("worker", help="run an ingest worker: takes its share of the cameras through Redis leases"
                   ).set_defaults(run=cmd_worker)
    sub.add_parser("migrate", help="bring the database schema up to date").set_defaults(run=cmd_migrate)
    unit = sub.add_parser("unit", help="manage units").add_subparsers(dest="action", required=True)
    unit_add = unit.add_parser("add", help="add a unit (a root when --parent is not given)")
    unit_add.add_argument("name")
    unit_add.add_argument("code", help="12-digit administrative code")
    unit_add.add_argument("--parent", help="code of the parent unit")
    unit_add.set_defaults(run=cmd_unit_add)
    user = sub.add_parser("user", help="manage users").add_subparsers(dest="action", required=True)
    user_add = user.add_parser("add", help="add a user and print a bearer token")
    user_add.add_argument("username")
    user_add.add_argument("--role", required=True, choices=["admin", "operator", "safety_official", "technician", "investigator"])
    user_add.add_argument("--unit", required=True, help="code of the user's unit")
    user_add.add_argument("--password", help="default: asked for, or generated and printed when not a terminal")
    user_add.add_argument("--display-name")
    user_add.set_defaults(run=cmd_user_add)
    models = sub.add_parser("models", help="the detection models").add_subparsers(dest="action", required=True)
    models_build = models.add_parser("build", help="export every model of models/ to ONNX once, checking hashes")
    models_build.add_argument("--force", action="store_true", help="export again even when the cache is valid")
    models_build.set_defaults(run=cmd_models_build)
    evaluate = sub.add_parser("eval", help="measure detection quality").add_subparsers(dest="action", required=True)
    fire = evaluate.add_parser("fire", help="the fire/smoke chain on a folder with images/ and YOLO labels/")
    fire.add_argument("dir", type=Path)
    fire.add_argument("--json", action="store_true", help="print one JSON object")
    fire.add_argument("--classes", help="the labels' class names by id, e.g. fire,smoke (default: DIR/data.yaml)")
    from detectors.rules import CameraRules

    defaults = CameraRules()
    fire.add_argument("--flame-threshold", type=float, default=defaults.thresholds["flame"])
    fire.add_argument("--smoke-threshold", type=float, default=defaults.thresholds["smoke"])
    fire.add_argument("--min-area", type=float, default=defaults.min_box_area, help="share of the picture")
    fire.add_argument("--no-verify", action="store_true", help="score the fire model's boxes without the verifier")
    fire.add_argument("--precision", choices=("int8", "fp32"), help="the models' precision (default: the settings')")
    fire.set_defaults(run=cmd_eval_fire)
    audit = sub.add_parser("audit", help="the audit log").add_subparsers(dest="action", required=True)
    audit.add_parser("verify", help="recompute the hash chain; exit 1 naming the first edited or deleted row"
                     ).set_defaults(run=cmd_audit_verify)
    imp = sub.add_parser("import", help="import cameras from a CSV file (UTF-8 or GBK)")
    imp.add_argument("file")
    imp.add_argument("--dry-run", action="store_true", help="validate and report, write nothing")
    imp.add_argument("--actor", default=getpass.getuser(), help="name recorded in the audit log")
    imp.set_defaults(run=cmd_import)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = load_settings()
        setup_logging(settings.log_level, settings.log_format)
        return int(args.run(args, settings))
    except LookoutError as exc:
        print(f"lookout: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
