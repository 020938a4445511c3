"""A throw-away PostgreSQL server for tests, and a database of its own for each user of it.

The server is Debian's ``postgresql`` package (``.ci/run`` installs it), started by
:class:`PostgresServer` in a temporary directory; the session shares one (the
:func:`postgres_url` fixture) and each store or hub takes a new database in it
(:func:`new_database`), so that no test sees another's rows.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.hubtest import free_port

__all__ = ["PostgresServer", "new_database", "postgres_url"]


class PostgresServer:
    """A throw-away PostgreSQL (Debian's ``postgresql`` package) on 127.0.0.1, stopped by PID.

    ``initdb`` into a temporary directory and ``postgres`` as a child process; as root both
    run as the ``postgres`` user (PostgreSQL refuses to run as root).
    """

    def __init__(self):
        self.bindir = self.find_bindir()
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @staticmethod
    def find_bindir() -> Path | None:
        candidates = sorted(
            Path("/usr/lib/postgresql").glob("*/bin"),
            key=lambda p: int(p.parent.name),
            reverse=True,
        )
        for path in candidates:
            if (path / "initdb").exists() and (path / "postgres").exists():
                return path
        return None

    @classmethod
    def available(cls) -> bool:
        return cls.find_bindir() is not None

    def _user(self) -> dict:
        return {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}

    def start(self, timeout: float = 60) -> str:
        import shutil
        import tempfile

        if self.bindir is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        self.dir = Path(tempfile.mkdtemp(prefix="hub-ext-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        data = self.dir / "data"
        subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(data), "-U", "hubext", "--auth=trust", "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True, timeout=120, **self._user(),
        )  # fmt: skip
        self._log = open(self.dir / "postgres.log", "wb")
        self.proc = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(self.dir),
             "-c", "listen_addresses=127.0.0.1"],
            stdout=self._log, stderr=subprocess.STDOUT, **self._user(),
        )  # fmt: skip
        url = f"postgresql+psycopg://hubext@127.0.0.1:{self.port}/postgres"
        from sqlalchemy import create_engine, text

        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {(self.dir / 'postgres.log').read_text()}")
            try:
                engine = create_engine(url, isolation_level="AUTOCOMMIT")
                with engine.connect() as conn:
                    conn.execute(text("CREATE DATABASE events"))
                engine.dispose()
                break
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.2)
        self.url = f"postgresql+psycopg://hubext@127.0.0.1:{self.port}/events"
        return self.url

    def stop(self) -> None:
        import shutil

        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)  # "fast" shutdown
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self.proc is not None:
            self._log.close()
            self.proc = None
        if getattr(self, "dir", None):
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url():
    if not PostgresServer.available():
        pytest.skip("PostgreSQL is not installed here (CI installs Debian's postgresql package)")
    server = PostgresServer()
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


def new_database(server_url: str, name: str) -> str:
    """Create a database named after ``name`` (made unique) in the server of ``server_url``
    and return its URL (the same user and driver)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    database = re.sub(r"[^a-z0-9_]", "_", name.lower())[:40] + "_" + secrets.token_hex(3)
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{database}"'))
    finally:
        admin.dispose()
    return make_url(server_url).set(database=database).render_as_string(hide_password=False)
