"""Bulk CSV import: bad rows reported by line, good rows kept, GBK = UTF-8, upsert, dry run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.services import Services
from config.errors import InvalidInput
from registry.audit import AuditEntry
from registry.cameras import Camera
from registry.csv_file import template
from registry.csv_import import CameraImporter
from tests.conftest import SECRET, Tree

HEADER = "名称,网络,单位编码,经度,纬度,地址,主码流,国标编码,标签\n"
ROWS = [
    "东门广场1号,雪亮,330199001001,120.1,30.2,东门广场,rtsp://10.0.0.1/ch1,33010200001320000001,广场;学校\n",
    "西街2号,tianwang,330199001002,,,西街,,,\n",
    '"河口,桥头3号",huiyan,330199002001,121,31,"多行\n地址",,,\n',  # addresses are one line (issue 13)
    "坏网络,skynet,330199001001,,,,,,\n",                # bad network
    "无单位,xueliang,999999999999,,,,,,\n",            # unknown unit
    "坏坐标,xueliang,330199001001,120,95,,,,\n",        # latitude out of range
    "坏编码,xueliang,330199001001,,,,,123,\n",          # device id not 20 digits
    "坏地址,xueliang,330199001001,,,,ftp://x/y,,\n",    # bad URL scheme
    "东门广场1号,雪亮,330199001001,,,,,,\n",             # duplicate of line 2 (same unit and name)
    "太多列,xueliang,330199001001,,,,,,,extra\n",       # more cells than header
]
EXPECTED_BAD_LINES = [4, 6, 7, 8, 9, 10, 11, 12]  # the quoted multi-line cell makes row 4 span lines 4-5


def run_import(services: Services, data: bytes, dry_run: bool = False):  # type: ignore[no-untyped-def]
    with services.sessions() as session:
        report = CameraImporter(services.registry, session, None, "test").run(data, dry_run=dry_run)
        session.commit()
    return report


def count(services: Services) -> int:
    with services.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Camera)) or 0)


def test_bad_rows_reported_by_line_and_good_rows_stored(services: Services, tree: Tree) -> None:
    report = run_import(services, (HEADER + "".join(ROWS)).encode("utf-8"))
    assert report.rows == len(ROWS)
    assert report.created == 2
    assert [e.line for e in report.errors] == EXPECTED_BAD_LINES
    messages = {e.line: e.message for e in report.errors}
    assert "address" in messages[4] and "control characters" in messages[4]
    assert "network" in messages[6]
    assert "unit" in messages[7]
    assert "latitude" in messages[8]
    assert "device_id" in messages[9]
    assert "main_stream_url" in messages[10]
    assert "line 2" in messages[11]
    assert "more cells" in messages[12]
    with services.sessions() as session:
        cams = {c.name: c for c in session.scalars(select(Camera))}
    assert set(cams) == {"东门广场1号", "西街2号"}
    assert cams["东门广场1号"].network == "xueliang" and cams["东门广场1号"].tags == ["学校", "广场"]


def test_gbk_file_imports_the_same_as_its_utf8_twin(services: Services, tree: Tree) -> None:
    text = HEADER + "".join(ROWS)
    utf8 = run_import(services, text.encode("utf-8"), dry_run=True)
    bom = run_import(services, b"\xef\xbb\xbf" + text.encode("utf-8"), dry_run=True)
    gbk = run_import(services, text.encode("gbk"), dry_run=True)
    assert (utf8.encoding, bom.encoding, gbk.encoding) == ("utf-8", "utf-8-sig", "gbk")
    assert (utf8.created, utf8.errors) == (gbk.created, gbk.errors) == (bom.created, bom.errors)
    assert count(services) == 0  # dry runs wrote nothing
    run_import(services, text.encode("gbk"))
    with services.sessions() as session:
        from_gbk = sorted((c.name, c.address, c.tags) for c in session.scalars(select(Camera)))
    assert ("东门广场1号", "东门广场", ["学校", "广场"]) in from_gbk


def test_upsert_on_device_id_then_unit_and_name(services: Services, tree: Tree) -> None:
    first = "name,network,unit_code,device_id,owner,tags\na,xueliang,330199001001,11111111111111111111,o1,x\nb,xueliang,330199001001,,o1,y\n"
    assert run_import(services, first.encode()).created == 2
    second = (
        "name,network,unit_code,device_id,owner\n"
        "a-renamed,xueliang,330199001001,11111111111111111111,o2\n"   # same device id: renamed in place
        "b,xueliang,330199001001,,o2\n"                               # same unit+name: updated
        "c,xueliang,330199001001,,o1\n"                               # new
    )
    report = run_import(services, second.encode())
    assert (report.created, report.updated, report.unchanged, report.errors) == (1, 2, 0, [])
    with services.sessions() as session:
        cams = {c.name: c for c in session.scalars(select(Camera))}
    assert set(cams) == {"a-renamed", "b", "c"}
    assert cams["a-renamed"].owner == "o2" and cams["a-renamed"].tags == ["x"]  # no tags column: tags kept
    again = run_import(services, second.encode())
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)
    with services.sessions() as session:
        actions = [a for (a,) in session.execute(select(AuditEntry.action).order_by(AuditEntry.id))]
    assert actions.count("camera.import.create") == 3 and actions.count("camera.import.update") == 2


def test_header_problems_stop_before_writing(services: Services, tree: Tree) -> None:
    with pytest.raises(InvalidInput, match="lattitude"):
        run_import(services, "name,network,unit_code,lattitude\na,xueliang,330199001001,1\n".encode())
    with pytest.raises(InvalidInput, match="unit_code"):
        run_import(services, "name,network\na,xueliang\n".encode())
    with pytest.raises(InvalidInput, match="empty"):
        run_import(services, b"")
    assert count(services) == 0


def test_template_imports_cleanly(services: Services, tree: Tree) -> None:
    report = run_import(services, template().encode("utf-8"))
    assert (report.created, report.errors) == (1, [])


def test_api_import_dry_run_and_template(client: TestClient, services: Services, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    admin = login("technician", tree.county)
    tmpl = client.get("/api/v1/cameras/import/template", headers=admin)
    assert tmpl.status_code == 200 and tmpl.content.startswith(b"\xef\xbb\xbf")
    data = (HEADER + "".join(ROWS)).encode("gbk")
    dry = client.post("/api/v1/cameras/import", params={"dry_run": True}, files={"file": ("c.csv", data)}, headers=admin)
    assert dry.status_code == 200, dry.text
    assert dry.json()["dry_run"] is True and dry.json()["created"] == 2 and count(services) == 0
    real = client.post("/api/v1/cameras/import", files={"file": ("c.csv", data)}, headers=admin).json()
    assert real["encoding"] == "gbk" and real["created"] == 2
    assert [e["line"] for e in real["errors"]] == EXPECTED_BAD_LINES
    assert count(services) == 2
    bad = client.post("/api/v1/cameras/import", files={"file": ("c.csv", b"\xff\xfe\x00junk\x81")}, headers=admin)
    assert bad.status_code == 422


def test_cli_import_reports_lines_and_shows_progress(database_url: str, services: Services, tree: Tree,
                                                     tmp_path: Path) -> None:
    csv_file = tmp_path / "cams.csv"
    csv_file.write_bytes((HEADER + "".join(ROWS)).encode("gbk"))
    env = {"LOOKOUT_DATABASE_URL": database_url, "LOOKOUT_SECRET_KEY": SECRET, "LOOKOUT_DATA_DIR": str(tmp_path),
           "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "api.cli", "import", str(csv_file)], env=env,
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1])
    assert done.returncode == 1, done.stderr  # 1: some rows were bad
    for line in EXPECTED_BAD_LINES:
        assert f"line {line}:" in done.stdout
    assert "created 2" in done.stdout
    assert "validate" in done.stderr and "write" in done.stderr  # tqdm progress bars
    assert count(services) == 2
