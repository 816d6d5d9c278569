"""The `lookout` command: serve, worker, migrate, unit add, user add, import, models, eval, audit."""

# Argument parsing, and the short commands that run here. The three processes have their entry
# functions beside their code: `api.serve.serve`, `ingest.main.run_worker`, `alerts.main.run_alert_engine`.

from __future__ import annotations

import os
import signal
import sys

if __name__ == "__main__" or os.path.basename(sys.argv[0]) == "lookout":
    # run as the program (not imported by a test): Ctrl-C before a command has set up its own
    # stopping (the imports take a moment) ends the process quietly, as the default action
    # does, instead of with a KeyboardInterrupt traceback
    signal.signal(signal.SIGINT, signal.SIG_DFL)

import argparse
import getpass
import secrets
from datetime import timedelta
from pathlib import Path

from config.errors import LookoutError
from config.logging import setup_logging
from config.settings import Settings, load_settings

PROG = "lookout"


def _services(settings: Settings, redis_url: str | None = None):  # type: ignore[no-untyped-def]
    from api.services import open_services

    return open_services(settings, redis_url)


def _secure_stored_credentials(services) -> None:  # type: ignore[no-untyped-def]
    from api.services import secure_stored_credentials

    secure_stored_credentials(services)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from api.serve import serve

    return serve(args, settings)


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.main import run_worker

    return run_worker(settings)


def cmd_alert_engine(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.main import run_alert_engine

    return run_alert_engine(settings)


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    services = _services(settings)
    _secure_stored_credentials(services)
    services.close()
    print("database schema is up to date")
    return 0


def cmd_unit_add(args: argparse.Namespace, settings: Settings) -> int:
    from registry import audit
    from registry.units import create_unit, unit_by_code

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
    import re

    from api.passwords import password_problem
    from api.schemas.users import USERNAME_PATTERN
    from registry import audit
    from registry.units import unit_by_code
    from registry.users import Role, User, hash_password, issue_token, username_taken

    if not re.fullmatch(USERNAME_PATTERN, args.username) or len(args.username) > 64:
        raise LookoutError("username: 1 to 64 of A-Z a-z 0-9 _ . @ -", field="username")
    services = _services(settings)
    password = args.password
    generated = False
    if password is None:
        if sys.stdin.isatty():
            password = getpass.getpass(f"password for {args.username}: ")
        else:
            password, generated = secrets.token_urlsafe(12), True
    problem = password_problem(password, args.username, settings.security.password_min_length)
    if problem is not None:  # the same policy as the API's
        raise LookoutError(problem, field="password")
    with services.sessions() as session:
        unit = unit_by_code(session, args.unit)
        if unit is None:
            raise LookoutError(f"no unit with code {args.unit}; create it with `lookout unit add`", field="unit")
        if username_taken(session, args.username):
            raise LookoutError(f"username {args.username} is taken (names are the same in any case)",
                               field="username")
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

    import numpy as np

    from detectors.evaluation import evaluate
    from ingest.fire_eval import class_names, clip_frames, fire_chain, load_labelled, maxima_of, read_images

    if args.frame_step < 1:
        raise LookoutError("--frame-step must be at least 1", field="frame_step")
    labelled = load_labelled(args.dir, class_names(args.dir, args.classes))
    stage = fire_chain(settings.model_cache_dir, precision=args.precision or settings.worker.model_precision)
    raw, checked = maxima_of(read_images(labelled.images), stage, args.min_area)
    truth = labelled.truth
    if args.clean is not None:  # every frame of clean footage: a negative sample
        size = (settings.worker.analysis_width, settings.worker.analysis_height)
        clean_raw, clean_checked = maxima_of(clip_frames(args.clean, size, args.frame_step), stage, args.min_area)
        raw, checked = np.concatenate([raw, clean_raw]), np.concatenate([checked, clean_checked])
        truth = np.concatenate([truth, np.zeros((len(clean_raw), truth.shape[1]), bool)])
    maxima = raw if args.no_verify else checked
    result = evaluate(truth, maxima, (args.flame_threshold, args.smoke_threshold))
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


def cmd_eval_crowd(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from ingest.crowd_eval import count_pictures, figures, load_counts
    from ingest.detection import load_stage

    counted_set = load_counts(args.dir)
    section = settings.worker
    names = ["fire_smoke", "crowd_people", "crowd_density"]
    stage = load_stage(settings.model_cache_dir, names, None, threads=args.threads or os.cpu_count() or 1,
                       precision=args.precision or section.model_precision)
    assert stage is not None
    counted = count_pictures(stage, counted_set.files)
    result = figures(counted_set.counts, counted)
    if args.json:
        print(json.dumps({**result, "pictures": [{"file": f.name, "true": int(t), "counted": int(c)} for f, t, c in
                                                 zip(counted_set.files, counted_set.counts, counted)]}))
        return 0
    rows = [("all", result["overall"]), *result["bands"].items()]  # type: ignore[attr-defined]
    print(f"{'people':>8} {'pictures':>8} {'true':>7} {'counted':>8} {'MAE':>7} {'MAE %':>6} {'rel. err':>8}")
    for name, row in rows:
        if not row["pictures"]:
            print(f"{name:>8} {0:>8}")
            continue
        print(f"{name:>8} {row['pictures']:>8} {row['mean_true']:>7.1f} {row['mean_counted']:>8.1f} {row['mae']:>7.1f} "
              f"{row['mae_percent']:>5.1f}% {row['mean_relative_error']:>8.2f}")
    return 0


def cmd_eval_video(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from detectors.rules import CameraRules
    from ingest.video_eval import (
        Playing,
        clips_in_folder,
        load_eval_stage,
        persistence_of,
        read_manifest,
        run,
        stage_rules,
        text_report,
    )
    from ingest.video_sweep import Grid

    if args.manifest is not None:
        clips = read_manifest(args.manifest, args.dir, args.split)
    elif args.dir is not None:
        if args.split is not None:
            raise LookoutError("--split needs --manifest", field="split")
        clips = clips_in_folder(args.dir)
    else:
        raise LookoutError("give DIR (with positives/ and negatives/) or --manifest CSV", field="dir")
    for name in ("span", "negative_span", "positive_span", "interval"):
        value = getattr(args, name)
        if value is not None and not (0 < value < 1e7 or (name == "positive_span" and value == 0)):
            raise LookoutError(f"--{name.replace('_', '-')} must be positive seconds", field=name)
    if not (0 < args.flame_threshold <= 1 and 0 < args.smoke_threshold <= 1):
        raise LookoutError("thresholds are scores in (0, 1]", field="threshold")
    worker = settings.worker
    defaults = CameraRules()
    rules = CameraRules(thresholds={**defaults.thresholds, "flame": args.flame_threshold,
                                    "smoke": args.smoke_threshold}, persistence=persistence_of(args.persistence))
    grid = None
    if args.sweep:
        try:
            grid = Grid(tuple(float(v) for v in args.sweep_flame.split(",")),
                        tuple(float(v) for v in args.sweep_smoke.split(",")),
                        tuple(persistence_of(v) for v in args.sweep_persistence.split(",")))
        except ValueError as exc:
            raise LookoutError(f"sweep grid: {exc}", field="sweep") from None
    playing = Playing(interval=args.interval or worker.analysis_interval_seconds,
                      size=(worker.analysis_width, worker.analysis_height), span=args.span,
                      negative_span=args.negative_span, positive_span=args.positive_span or None)
    stage = load_eval_stage(settings.model_cache_dir, list(worker.detectors), stage_rules(rules, grid),
                            threads=args.threads or os.cpu_count() or 1,
                            precision=args.precision or worker.model_precision)
    report = run(clips, stage, playing, rules, grid)
    print(json.dumps(report) if args.json else text_report(report))
    return 0


def cmd_audit_verify(args: argparse.Namespace, settings: Settings) -> int:
    from registry.audit import verify_chain
    from registry.audit_checkpoints import CheckpointFile

    store = CheckpointFile.from_settings(settings, create_key=False)
    checkpoints, problems = store.read()  # each problem: a line forged, damaged, or not checkable
    services = _services(settings)
    with services.sessions() as session:
        report = verify_chain(session, anchors=[c.anchor() for c in checkpoints])
    services.close()
    for problem in problems:
        print(problem)
    if not report.intact:
        print(f"audit log broken at row {report.bad_row}: {report.reason} ({report.rows} rows verified before it)")
        return 1
    held = (f"{len(checkpoints)} checkpoints hold, the latest of row {checkpoints[-1].last_id} ({checkpoints[-1].at})"
            if checkpoints else f"no checkpoints in {store.path} (`lookout audit checkpoint`)")
    print(f"audit log intact: {report.rows} rows, last row {report.head_id}, head hash {report.head_hash}; {held}")
    return 1 if problems else 0


def cmd_audit_checkpoint(args: argparse.Namespace, settings: Settings) -> int:
    from registry.audit_checkpoints import Checkpointer

    services = _services(settings)
    try:
        written = Checkpointer.from_settings(settings, services.sessions).step()
    finally:
        services.close()
    if written is None:
        print("the audit log is empty: nothing to checkpoint")
        return 0
    print(f"checkpoint of row {written.last_id} (hash {written.last_hash}) appended to {written.path}")
    return 0


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    """Import a CSV file anywhere in the registry (the local operator's scope is everything),
    streamed from disk in batches like the API's import; every bad row is printed."""
    from tqdm import tqdm

    from registry.camera_imports import problems
    from registry.csv_import import CameraImporter

    services = _services(settings)
    bars: dict[str, tqdm] = {}

    def progress(phase: str, done: int, total: int) -> None:
        bar = bars.get(phase)
        if bar is None:
            bar = bars[phase] = tqdm(total=total, desc=phase, unit="row", file=sys.stderr)
        bar.update(done - bar.n)

    security = settings.security
    with open(args.file, "rb") as source, services.sessions() as session:
        report = CameraImporter(services.registry, session, None, f"cli:{args.actor}", progress,
                                max_rows=security.import_max_rows, errors_shown=0,
                                keep_days=security.import_keep_days).run(source, dry_run=args.dry_run)
        for bar in bars.values():
            bar.close()
        after = 0
        while page := problems(session, report.import_id or 0, after, 5000):
            for row in page:
                print(f"line {row.line}: {row.message}" if row.kind == "error" else f"line {row.line} ({row.kind}): {row.message}")
            after = page[-1].line
    services.close()
    verb = "would create" if args.dry_run else "created"
    print(
        f"{report.rows} rows ({report.encoding}): {verb} {report.created}, updated {report.updated}, "
        f"unchanged {report.unchanged}, {report.errors_total} bad rows"
        + (f", credentials dropped on {report.credentials_dropped}" if report.credentials_dropped else "")
    )
    return 1 if report.errors_total else 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog=PROG, description=__doc__)
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
    fire.add_argument("--clean", type=Path, help="a folder of video clips without fire or smoke: each frame is one "
                      "more negative sample, scaled to the analysis size as a camera's")
    fire.add_argument("--frame-step", type=int, default=1, help="with --clean: every N-th frame (default 1: all)")
    fire.add_argument("--precision", choices=("int8", "fp32"), help="the models' precision (default: the settings')")
    fire.set_defaults(run=cmd_eval_fire)
    crowd = evaluate.add_parser("crowd", help="people counting on a folder with images/ and counts.csv "
                                "(file,count), through the worker's own counter over a whole-picture zone")
    crowd.add_argument("dir", type=Path)
    crowd.add_argument("--json", action="store_true", help="print one JSON object, with every picture's count")
    crowd.add_argument("--precision", choices=("int8", "fp32"), help="the models' precision (default: the settings')")
    crowd.add_argument("--threads", type=int, help="ONNX Runtime threads (default: all cores)")
    crowd.set_defaults(run=cmd_eval_crowd)
    video = evaluate.add_parser("video", help="event level: clips played as cameras through the worker's own chain "
                                "on a simulated clock (recall, time to alarm, false events per camera-hour)")
    video.add_argument("dir", type=Path, nargs="?",
                       help="a folder with positives/ and negatives/ of video files; with --manifest, where its "
                       "files are (default: the manifest's folder)")
    video.add_argument("--manifest", type=Path, help="a CSV with the columns file,class[,fire_visible_s][,split] "
                       "(class positive or negative; fire_visible_s: when the fire becomes visible, default 0)")
    video.add_argument("--split", help="only the manifest's rows of this split")
    video.add_argument("--span", type=float, help="camera-seconds each clip plays, looped from a new place each "
                       "pass when shorter (default: --positive-span, --negative-span)")
    video.add_argument("--negative-span", type=float, default=600.0, help="camera-seconds of each negative (default 600)")
    video.add_argument("--positive-span", type=float, default=60.0,
                       help="camera-seconds of each positive, looped or cut to it (default 60; 0: once through)")
    video.add_argument("--interval", type=float, help="seconds between samples (default: the worker's setting)")
    video.add_argument("--flame-threshold", type=float, default=defaults.thresholds["flame"])
    video.add_argument("--smoke-threshold", type=float, default=defaults.thresholds["smoke"])
    video.add_argument("--persistence", default="{}/{}".format(*defaults.persistence), help="K/N: K of the last N samples")
    video.add_argument("--sweep", action="store_true", help="also the frontier over the grid below")
    video.add_argument("--sweep-flame", default="0.05,0.1,0.15,0.2,0.25,0.3,0.4", help="flame thresholds of the sweep")
    video.add_argument("--sweep-smoke", default="0.3,0.4,0.5,0.6,0.7,0.8", help="smoke thresholds of the sweep")
    video.add_argument("--sweep-persistence", default="1/1,2/3,2/5,3/5,4/6,5/8", help="K/N pairs of the sweep")
    video.add_argument("--json", action="store_true", help="print one JSON object")
    video.add_argument("--precision", choices=("int8", "fp32"), help="the models' precision (default: the settings')")
    video.add_argument("--threads", type=int, help="ONNX Runtime threads (default: all cores)")
    video.set_defaults(run=cmd_eval_video)
    audit = sub.add_parser("audit", help="the audit log").add_subparsers(dest="action", required=True)
    audit.add_parser("verify", help="recompute the hash chain and check it against the signed checkpoints; "
                     "exit 1 naming the first edited or deleted row, or the checkpoint that fails"
                     ).set_defaults(run=cmd_audit_verify)
    audit.add_parser("checkpoint", help="sign the chain's head and append it to the checkpoint file now "
                     "(the alert engine also does it every security.audit_checkpoint_seconds)"
                     ).set_defaults(run=cmd_audit_checkpoint)
    imp = sub.add_parser("import", help="import cameras from a CSV file (UTF-8 or GBK)")
    imp.add_argument("file")
    imp.add_argument("--dry-run", action="store_true", help="validate and report, write nothing")
    imp.add_argument("--actor", default=getpass.getuser(), help="name recorded in the audit log")
    imp.set_defaults(run=cmd_import)
    return top


def main(argv: list[str] | None = None) -> int:
    from config.private_files import PRIVATE_UMASK, service_roots, tighten

    args = parser().parse_args(argv)
    # What the service writes is its user's alone (config/private_files.py): the umask covers
    # this process and every child it starts (redis-server, workers, the alert engine).
    previous_umask = os.umask(PRIVATE_UMASK)
    if args.command in ("models", "eval"):  # the model cache is no service data: it may be shared
        os.umask(previous_umask)
    try:
        settings = load_settings()
        setup_logging(settings.log_level, settings.log_format)
        if args.command in ("serve", "worker", "alert-engine"):
            tighten(service_roots(settings))  # what an older install left readable
        return int(args.run(args, settings))
    except LookoutError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    finally:
        os.umask(previous_umask)  # for a caller that runs a command in its own process (tests)


if __name__ == "__main__":
    sys.exit(main())
