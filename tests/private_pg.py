"""A private PostgreSQL cluster that a test may stop and start at will: the machine's shared
server serves every other test, so the fault tests never stop that one."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from tests.conftest import free_port


def postgres_bin() -> Path:
    """The newest installed PostgreSQL's bin folder (Debian's layout)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: [int(x) for x in Path(p).parent.parent.name.split(".") if x.isdigit()])
    if not found:
        raise RuntimeError("PostgreSQL's server binaries are needed (Debian package postgresql)")
    return Path(found[-1]).parent


class PrivatePostgres:
    """initdb once into a temporary folder, then `start()` / `stop()` on the same port with the
    same data, as often as a test likes. Runs as the `postgres` user when started by root (the
    server refuses root); trust auth on 127.0.0.1 only."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="lookout-pg-"))
        self.data = self.folder / "data"
        self.bin = postgres_bin()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.folder, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of its `postgres` database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd="/")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "log"), "-w", "-o",
                  f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast`: open connections are cut, as a crash or restart cuts them)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def answers(self) -> bool:
        try:
            with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def remove(self) -> None:
        """Stop it if it runs, and delete its files."""
        if (self.data / "postmaster.pid").exists():
            try:
                self.stop("immediate")
            except subprocess.CalledProcessError:
                pass
        shutil.rmtree(self.folder, ignore_errors=True)
