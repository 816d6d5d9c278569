"""Latency of `GET /api/v1/cameras` with 100,000 cameras registered, over real HTTP.

The registry is filled through the CSV importer, statuses are spread (90 % online, 7 %
offline, 3 % degraded), and `lookout serve` runs as its own process. A mix of filters
(network, unit subtree, status, tag, text, bounding box, combinations, deep cursor pages,
a township operator's scope) is requested one after the other; p50/p95/p99 per kind and
overall. Beside it, in the same run: cursor paging against the naive OFFSET paging for
pages deep into a filtered list. Run: `make bench` or `.venv/bin/python bench/list_cameras.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import select, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.camera_csv import make_register  # noqa: E402
from bench.import_cameras import KEY, fresh  # noqa: E402
from registry.camera_store import CameraFilter  # noqa: E402
from registry.cameras import Camera  # noqa: E402
from registry.csv_import import CameraImporter  # noqa: E402
from registry.units import Unit  # noqa: E402
from registry.users import Role, User, hash_password, issue_token  # noqa: E402

OUT = Path(__file__).with_name("out")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def prepare(url: str, folder: Path, rows: int) -> tuple[dict[str, str], dict[str, int]]:
    services = fresh(url, folder)
    with services.sessions() as session:
        CameraImporter(services.registry, session, None, "bench").run(make_register(rows, bad_every=0).text.encode())
        session.execute(text(
            "UPDATE cameras SET status = CASE WHEN id % 100 < 7 THEN 'offline' "
            "WHEN id % 100 < 10 THEN 'degraded' ELSE 'online' END"))
        county = session.scalar(select(Unit).where(Unit.parent_id.is_(None)))
        township = session.scalar(select(Unit).where(Unit.code == "330199003000"))
        village = session.scalar(select(Unit).where(Unit.code == "330199007004"))
        tokens = {}
        for name, unit, role in (("admin", county, Role.admin), ("operator", township, Role.operator)):
            user = User(username=name, role=role.value, unit_id=unit.id, password_hash=hash_password("benchmark!"))
            session.add(user)
            session.flush()
            tokens[name] = issue_token(session, user, timedelta(hours=2))[0]
        session.commit()
        ids = {"county": county.id, "township": township.id, "village": village.id}
        offset_vs_cursor = naive_offset(services, county.path)
    services.close()
    return tokens, {**ids, "offset_vs_cursor": offset_vs_cursor}  # type: ignore[dict-item]


def naive_offset(services, scope: str) -> dict[str, dict[str, float]]:  # type: ignore[no-untyped-def]
    """Page N of `network=huiyan`: LIMIT/OFFSET (naive) against our id cursor, in ms."""
    flt = CameraFilter(networks=["huiyan"])
    out = {}
    with services.sessions() as session:
        ids = list(session.scalars(
            services.registry._filtered(select(Camera.id), scope, flt, session).order_by(Camera.id)))
        for page in (10, 200, 1000):
            offset = page * 50
            timings = {"offset": [], "cursor": []}
            for _ in range(15):
                start = time.perf_counter()
                list(session.scalars(services.registry._filtered(select(Camera), scope, flt, session)
                                     .order_by(Camera.id).offset(offset).limit(50)))
                timings["offset"].append(time.perf_counter() - start)
                start = time.perf_counter()
                services.registry.list(session, scope, flt, after_id=ids[offset - 1], limit=50)
                timings["cursor"].append(time.perf_counter() - start)
                session.expunge_all()
            med = {k: statistics.median(v) * 1000 for k, v in timings.items()}
            out[f"page_{page}"] = {"offset_ms": round(med["offset"], 2), "cursor_ms": round(med["cursor"], 2),
                                   "offset_over_cursor": round(med["offset"] / med["cursor"], 1)}
    return out


def queries(ids: dict[str, int]) -> list[tuple[str, str, dict[str, object]]]:
    return [
        ("all, first page", "admin", {}),
        ("network", "admin", {"network": "huiyan"}),
        ("unit subtree (township)", "admin", {"unit": ids["township"]}),
        ("unit (village)", "admin", {"unit": ids["village"]}),
        ("status", "admin", {"status": "offline"}),
        ("tag", "admin", {"tag": "危化品"}),
        ("text", "admin", {"q": "点位0421"}),
        ("bbox", "admin", {"bbox": "120.0,30.1,120.1,30.2"}),
        ("network+status+unit", "admin", {"network": "tianwang", "status": "offline", "unit": ids["township"]}),
        ("tag+network", "admin", {"tag": "学校", "network": "xueliang"}),
        ("operator scope", "operator", {}),
        ("operator scope + status", "operator", {"status": "degraded"}),
        ("network + total", "admin", {"network": "huiyan", "with_total": "true"}),
    ]


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--rows", type=int, default=100_000)
    args.add_argument("--requests", type=int, default=2_600)
    args.add_argument("--database-url", help="default: a fresh SQLite file")
    opts = args.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url = opts.database_url or f"sqlite:///{folder / 'list.db'}"
        t0 = time.perf_counter()
        tokens, ids = prepare(url, folder, opts.rows)
        print(f"registry of {opts.rows} cameras ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        port = 18000 + os.getpid() % 1000
        env = {**os.environ, "LOOKOUT_DATABASE_URL": url, "LOOKOUT_SECRET_KEY": KEY, "LOOKOUT_DATA_DIR": str(folder),
               "LOOKOUT_PORT": str(port)}
        env.pop("LOOKOUT_REDIS_URL", None)
        # no workers: the generated cameras point at 10.x addresses that must never be contacted
        server = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--workers", "0"], cwd=ROOT, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, timeout=10) as client:
                for _ in range(300):
                    try:
                        if client.get("/healthz").status_code == 200:  # 503 while serve starts
                            break
                    except httpx.TransportError:
                        pass
                    time.sleep(0.1)
                mix = queries(ids)
                headers = {name: {"Authorization": f"Bearer {tok}"} for name, tok in tokens.items()}
                for label, who, params in mix * 5:  # warm up
                    client.get("/api/v1/cameras", params=params, headers=headers[who]).raise_for_status()
                per_kind: dict[str, list[float]] = {label: [] for label, _, _ in mix}
                cursors: dict[str, str | None] = {}
                for i in range(opts.requests):
                    label, who, params = mix[i % len(mix)]
                    if i % (len(mix) * 4) >= len(mix) * 3 and cursors.get(label):  # every 4th round: a deeper page
                        params = {**params, "cursor": cursors[label]}
                    start = time.perf_counter()
                    response = client.get("/api/v1/cameras", params=params, headers=headers[who])
                    per_kind[label].append(time.perf_counter() - start)
                    response.raise_for_status()
                    cursors[label] = response.json()["next_cursor"]
        finally:
            server.terminate()
            server.wait(20)
    every = [v for values in per_kind.values() for v in values]
    ms = lambda v: round(v * 1000, 2)  # noqa: E731
    results = {
        "cameras": opts.rows,
        "requests": len(every),
        "database": url.split(":", 1)[0],
        "overall": {"p50_ms": ms(percentile(every, 0.5)), "p95_ms": ms(percentile(every, 0.95)),
                    "p99_ms": ms(percentile(every, 0.99)), "max_ms": ms(max(every))},
        "per_query": {label: {"p50_ms": ms(percentile(v, 0.5)), "p99_ms": ms(percentile(v, 0.99))}
                      for label, v in per_kind.items()},
        "offset_vs_cursor": ids["offset_vs_cursor"],
    }
    OUT.mkdir(exist_ok=True)
    (OUT / f"list_cameras_{results['database']}.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(json.dumps(results, indent=2, ensure_ascii=False))
    return 0 if results["overall"]["p99_ms"] < 50 else 1


if __name__ == "__main__":
    sys.exit(main())
