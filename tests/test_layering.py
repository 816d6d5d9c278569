"""The arrows between the packages hold (DESIGN.md, "Layout"): dependencies point one way.

    api       → every package below
    ingest    → registry, detectors, models      never api or alerts   (the worker)
    alerts    → registry, detectors              never api or ingest   (the alert engine)
    registry  → detectors (its types)            never a process
    models    → nothing else
    detectors → nothing of the project, not even config, and no I/O
    and every package but detectors may use config, which uses nothing of the project.

Read statically (ast), so that a forbidden import fails here even when no test runs its code:
every `import` of every module, at any depth. Function-local imports and the ones under
`if TYPE_CHECKING:` count too: a type-only import against the arrows is still a coupling (the
type's home is in the wrong package). The registry's Alembic scripts (registry/migrations) are
the registry's code like any other: its env.py imports no table, the scripts create them all.
Each break is reported as `file:line imports NAME: rule`. A second set of tests loads each
process's code in a fresh interpreter and looks at what it holds, which also catches what
comes in transitively (tests/test_api_imports.py does so for the API: no PyAV, OpenCV or ONNX
Runtime through the worker's modules it may import).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("api", "alerts", "ingest", "registry", "detectors", "config", "models", "tests", "bench")

MAY_USE: dict[str, frozenset[str]] = {  # the project's packages each one may import, besides itself
    "detectors": frozenset(),
    "config": frozenset(),
    "models": frozenset({"config"}),
    "registry": frozenset({"config", "detectors"}),
    "ingest": frozenset({"config", "detectors", "registry", "models"}),
    "alerts": frozenset({"config", "detectors", "registry"}),
    "api": frozenset({"config", "detectors", "registry", "models", "ingest", "alerts"}),
}
RULES = {
    "detectors": "detectors is pure computation and imports nothing of the project",
    "config": "config is the bottom layer and imports nothing of the project",
    "models": "models (manifests, export) uses only config",
    "registry": "the registry uses only config and detectors (its types), never a process: ingest, alerts, api",
    "ingest": "the worker uses registry, detectors, models and config, never api or alerts",
    "alerts": "the alert engine uses registry, detectors and config, never api, ingest or models",
    "api": "api may use every package of the service, but not tests or bench",
}
ONLY_IN = {  # third-party modules that belong to one package: the HTTP framework, the video decoder
    "fastapi": "api", "starlette": "api", "uvicorn": "api",
    "av": "ingest",
}
DETECTORS_IO = ("redis", "sqlalchemy", "psycopg", "av", "onnxruntime", "requests", "httpx", "socket",
                "subprocess", "pathlib", "os", "shutil", "tempfile", "urllib", "http")


def modules(package: str) -> list[Path]:
    """Every Python file of a package, the Alembic scripts under registry/migrations included;
    not models/cache (the export tools' downloaded environment, never committed)."""
    skip = ROOT / "models" / "cache"
    return sorted(p for p in (ROOT / package).rglob("*.py")
                  if "__pycache__" not in p.parts and skip not in p.parents)


def imports(path: Path) -> Iterator[tuple[int, str]]:
    return imports_in(path.read_text(encoding="utf-8"), path.relative_to(ROOT).parent.parts, str(path))


def imports_in(code: str, package: tuple[str, ...], filename: str = "<code>") -> Iterator[tuple[int, str]]:
    """(line, dotted name) of each import in the code of a module of `package`, relative ones
    resolved, plus `importlib.import_module("...")` / `__import__("...")` of a literal name."""
    for node in ast.walk(ast.parse(code, filename)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            targets = [node.module] if node.module else [alias.name for alias in node.names]  # from . import x
            for target in targets:
                yield node.lineno, ".".join(part for part in (base, target) if part)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                yield node.lineno, node.args[0].value


def violations(package: str) -> list[str]:
    found = []
    for path in modules(package):
        where = path.relative_to(ROOT)
        for line, name in imports(path):
            top = name.split(".")[0]
            if top in PROJECT and top != package and top not in MAY_USE[package]:
                found.append(f"{where}:{line} imports {name}: {RULES[package]}")
            elif top in ONLY_IN and ONLY_IN[top] != package:
                found.append(f"{where}:{line} imports {name}: {top} belongs to {ONLY_IN[top]}/ only")
            elif package == "detectors" and top in DETECTORS_IO:
                found.append(f"{where}:{line} imports {name}: detectors does no I/O")
    return found


@pytest.mark.parametrize("package", sorted(MAY_USE))
def test_imports_follow_the_arrows(package: str) -> None:
    assert modules(package), f"{package}/ has no modules: is the layout in MAY_USE still the code's?"
    found = violations(package)
    if found:
        pytest.fail("imports against the arrows (DESIGN.md, Layout):\n" + "\n".join(found), pytrace=False)


def test_every_package_of_the_service_has_a_rule() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert packages == set(MAY_USE), "a new top-level package needs its arrows in MAY_USE"


def test_detectors_open_no_files() -> None:
    opening = [f"{p.relative_to(ROOT)}: open(" for p in modules("detectors") if "open(" in p.read_text()]
    assert opening == [], "detectors does no I/O: it gets arrays, not files"


def test_the_checker_sees_imports_at_any_depth() -> None:
    """Function-local, type-only, relative and by-name imports are all read."""
    code = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from alerts.model import Alert\n"
        "def run():\n    import api.app\n    from . import cameras\n    from .. import ingest\n"
        "    importlib.import_module('ingest.worker')\n"
    )
    assert sorted(imports_in(code, ("registry",))) == [
        (1, "typing"), (3, "alerts.model"), (5, "api.app"), (6, "registry.cameras"), (7, "ingest"), (8, "ingest.worker")]


MIGRATE = (  # what every process does first, and what loads registry/migrations/env.py
    "import tempfile\nfrom config.database import make_engine\nfrom registry.migrate import upgrade\n"
    "with tempfile.TemporaryDirectory() as folder:\n"
    "    engine = make_engine(f'sqlite:///{folder}/lookout.db')\n    upgrade(engine)\n    engine.dispose()\n"
)
HTTP = {"api", "fastapi", "starlette", "uvicorn"}
PROCESSES = {  # where each process's code starts, what it must never load, and why (the API: test_api_imports.py)
    "the worker": (["ingest/main.py"], HTTP | {"alerts"}, "the worker never loads the HTTP layer or the alert engine"),
    "the alert engine": (["alerts/main.py"], HTTP | {"ingest", "av", "onnxruntime"},
                         "the alert engine never loads the HTTP layer or the worker"),
    "the registry": ([p.relative_to(ROOT).as_posix() for p in modules("registry") if "migrations" not in p.parts],
                     HTTP | {"ingest", "alerts", "av", "onnxruntime"}, "the registry loads no process and no video"),
}


def loading(entries: list[str]) -> str:
    """A script that imports the entry modules and every module of the project they import
    anywhere (a process body imports lazily, inside its function), then migrates a fresh
    database as every process does first."""
    names = {entry.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for entry in entries}
    for entry in entries:
        names |= {name for _, name in imports(ROOT / entry) if name.split(".")[0] in PROJECT}
    return "".join(f"import {name}\n" for name in sorted(names)) + MIGRATE


@pytest.mark.parametrize("process", sorted(PROCESSES))
def test_a_process_loads_nothing_above_it(process: str) -> None:
    """At run time, through every transitive import: a fresh interpreter loads the process's
    code and lists the top-level packages it then holds."""
    entries, never, rule = PROCESSES[process]
    listing = "import sys\nprint(' '.join(sorted({name.split('.')[0] for name in sys.modules})))"
    done = subprocess.run([sys.executable, "-c", loading(entries) + listing], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    if loaded & never:
        pytest.fail(f"{process} loads {sorted(loaded & never)}: {rule}", pytrace=False)
