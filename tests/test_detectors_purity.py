"""`detectors/` is pure computation: it imports nothing that does I/O or knows the service."""

from __future__ import annotations

import ast
from pathlib import Path

DETECTORS = Path(__file__).resolve().parents[1] / "detectors"
FORBIDDEN = ("ingest", "api", "config", "models", "redis", "sqlalchemy", "psycopg", "av", "onnxruntime", "requests",
             "httpx", "socket", "subprocess", "pathlib", "os")


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_detectors_import_nothing_that_does_io_or_knows_the_service() -> None:
    files = sorted(DETECTORS.glob("*.py"))
    assert len(files) >= 6
    offending = {p.name: sorted(imported(p) & set(FORBIDDEN)) for p in files}
    assert {name: bad for name, bad in offending.items() if bad} == {}
    for path in files:
        assert "open(" not in path.read_text(), path.name
