"""Bulk CSV import of 100,000 cameras, against the naive way (one ORM write + commit per row).

Checks, in the same run, that every bad row (1 %) is reported by its line number, that every
good row is stored, and that the GBK twin of the file imports exactly the same registry.
Run: `make bench` or `.venv/bin/python bench/import_cameras.py [--rows N] [--postgres URL]`.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

from cryptography.fernet import Fernet
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.services import Services, build_services  # noqa: E402
from bench.camera_csv import create_units, make_register  # noqa: E402
from config.settings import Settings  # noqa: E402
from registry.camera_spec import CameraSpec  # noqa: E402
from registry.cameras import Camera  # noqa: E402
from registry.csv_import import CameraImporter  # noqa: E402
from registry.migrate import upgrade  # noqa: E402

OUT = Path(__file__).with_name("out")
KEY = Fernet.generate_key().decode()


def fresh(url: str, folder: Path) -> Services:
    services = build_services(Settings(database_url=url, data_dir=folder, secret_key=KEY))
    upgrade(services.engine)
    with services.sessions() as session:
        create_units(session)
    return services


def sqlite_url(folder: Path, name: str) -> str:
    return f"sqlite:///{folder / name}.db"


def registry_dump(services: Services) -> list[tuple]:
    with services.sessions() as session:
        return [
            (c.name, c.network, c.unit_id, c.owner, c.latitude, c.longitude, c.address, c.main_stream_url,
             c.sub_stream_url, c.device_id, c.enabled, tuple(c.tags), c.has_credentials)
            for c in session.scalars(select(Camera).order_by(Camera.name))
        ]


def timed_import(services: Services, data: bytes) -> tuple[float, object]:
    with services.sessions() as session:
        start = time.perf_counter()
        report = CameraImporter(services.registry, session, None, "bench", errors_shown=10**7).run(data)
        session.commit()
        return time.perf_counter() - start, report


def naive(services: Services, text: str, limit: int) -> float:
    """One validated ORM insert and one commit per row: what a first version would do."""
    import csv
    import io

    from registry.units import Unit

    reader = csv.DictReader(io.StringIO(text))
    with services.sessions() as session:
        units = {u.code: u.id for u in session.scalars(select(Unit))}
        county = session.scalar(select(Unit.path).where(Unit.parent_id.is_(None)))
        start = time.perf_counter()
        done = 0
        for row in reader:
            if done >= limit:
                break
            try:
                spec = CameraSpec(
                    name=row["name"], network=row["network"], unit_id=units[row["unit_code"]], owner=row["owner"] or None,
                    latitude=float(row["latitude"]), longitude=float(row["longitude"]), address=row["address"],
                    main_stream_url=row["main_stream_url"], sub_stream_url=row["sub_stream_url"] or None,
                    device_id=row["device_id"] or None, username=row["username"] or None,
                    password=row["password"] or None, tags=[t for t in row["tags"].split(";") if t],
                    enabled=row["enabled"] == "true",
                )
                services.registry.create(session, spec, county, "bench")
                session.commit()
            except Exception:
                session.rollback()
            done += 1
        return (time.perf_counter() - start) / done


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--rows", type=int, default=100_000)
    args.add_argument("--naive-rows", type=int, default=2_000)
    args.add_argument("--postgres", help="also run on this PostgreSQL URL (a scratch database: it is wiped)")
    opts = args.parse_args()
    register = make_register(opts.rows)
    utf8, gbk = register.text.encode("utf-8"), register.text.encode("gbk")
    results: dict[str, object] = {"rows": opts.rows, "bad_rows": len(register.expected_bad_lines),
                                  "machine": f"{platform.node()} {platform.processor() or platform.machine()}"}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        a = fresh(sqlite_url(folder, "utf8"), folder)
        seconds, report = timed_import(a, utf8)
        reported = [e.line for e in report.errors]  # type: ignore[attr-defined]
        with a.sessions() as session:
            stored = session.scalar(select(func.count()).select_from(Camera))
        results["sqlite_utf8_seconds"] = round(seconds, 2)
        results["rows_per_second"] = round(opts.rows / seconds)
        results["bad_rows_reported_by_line"] = reported == register.expected_bad_lines
        results["good_rows_stored"] = stored == opts.rows - len(register.expected_bad_lines)
        b = fresh(sqlite_url(folder, "gbk"), folder)
        seconds_gbk, report_gbk = timed_import(b, gbk)
        results["sqlite_gbk_seconds"] = round(seconds_gbk, 2)
        results["gbk_encoding_detected"] = report_gbk.encoding  # type: ignore[attr-defined]
        results["gbk_equals_utf8"] = registry_dump(a) == registry_dump(b) and \
            [e.line for e in report_gbk.errors] == reported  # type: ignore[attr-defined]
        c = fresh(sqlite_url(folder, "naive"), folder)
        per_row = naive(c, register.text, opts.naive_rows)
        results["naive_rows_per_second"] = round(1 / per_row)
        results["naive_projected_seconds"] = round(per_row * opts.rows, 1)
        results["speedup_vs_naive"] = round(per_row * opts.rows / seconds, 1)
        seconds_again, again = timed_import(a, utf8)
        results["reimport_unchanged_seconds"] = round(seconds_again, 2)
        results["reimport_unchanged_rows"] = again.unchanged  # type: ignore[attr-defined]
        for s in (a, b, c):
            s.close()
        if opts.postgres:
            from sqlalchemy import text

            from config.database import Base

            pg = build_services(Settings(database_url=opts.postgres, data_dir=folder, secret_key=KEY))
            with pg.engine.begin() as conn:
                for table in reversed(Base.metadata.sorted_tables):
                    conn.execute(text(f'DROP TABLE IF EXISTS "{table.name}" CASCADE'))
                conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
            pg.close()
            pg = fresh(opts.postgres, folder)
            seconds_pg, report_pg = timed_import(pg, utf8)
            results["postgres_utf8_seconds"] = round(seconds_pg, 2)
            results["postgres_bad_rows_reported_by_line"] = [e.line for e in report_pg.errors] == register.expected_bad_lines  # type: ignore[attr-defined]
            pg.close()
    OUT.mkdir(exist_ok=True)
    (OUT / "import_cameras.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(json.dumps(results, indent=2, ensure_ascii=False))
    ok = results["bad_rows_reported_by_line"] and results["good_rows_stored"] and results["gbk_equals_utf8"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
