"""A real PostgreSQL 15 for the tests: one throwaway cluster per test run, in a
temporary folder, on a free loopback port, stopped by its pid at the end.

Durability is switched off (fsync, synchronous_commit, full_page_writes): a crash of
the test machine loses nothing that matters. Tests share one database, emptied before
each (`reset_database`, 0.5 ms, where CREATE DATABASE takes 350 ms); tests of
migrations make their own (`create_database`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

PG_BIN = Path(os.environ.get("GAZOU_PG_BIN", "/usr/lib/postgresql/15/bin"))
INSTALL = "apt-get install -y postgresql-15"
# Every wait below is bounded.
START_SECONDS = 60.0
STOP_SECONDS = 30.0


def available() -> bool:
    """Whether the PostgreSQL server binaries are installed."""
    return all((PG_BIN / name).exists() for name in ("initdb", "pg_ctl", "postgres"))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_postgres(args: list[str]) -> list[str]:
    # initdb refuses to run as root: run the server tools as the postgres user.
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@dataclass
class PostgresServer:
    """One running cluster; `url(db)` is a DATABASE_URL for one of its databases."""

    root: Path
    port: int
    settings: dict[str, str] = field(default_factory=dict)
    pid: int = 0
    _names: count[int] = field(default_factory=count)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def next_name(self) -> str:
        return f"test_{next(self._names)}"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def start(self) -> None:
        subprocess.run(
            _as_postgres(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=START_SECONDS,
        )
        options = " ".join(
            [
                f"-c port={self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.root}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
                "-c shared_buffers=64MB",
                *(f"-c {name}={value}" for name, value in self.settings.items()),
            ]
        )
        subprocess.run(
            _as_postgres(
                [
                    str(PG_BIN / "pg_ctl"),
                    "start",
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.root / "server.log"),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    str(int(START_SECONDS)),
                ]
            ),
            check=True,
            capture_output=True,
            timeout=START_SECONDS + 5,
        )
        self.pid = int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])

    def stop(self) -> None:
        """Fast shutdown by pid (SIGINT), then SIGKILL if it lingers."""
        if not self.pid:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGINT)
            deadline = time.monotonic() + STOP_SECONDS
            while time.monotonic() < deadline:
                os.kill(self.pid, 0)
                time.sleep(0.05)
            os.kill(self.pid, signal.SIGKILL)
        self.pid = 0

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join((self.root / "server.log").read_text().splitlines()[-lines:])
        except OSError:
            return ""


def start_server(**settings: str) -> PostgresServer:
    """A fresh cluster in a temporary folder owned by the postgres user; `settings`
    are server settings (e.g. shared_buffers="1GB")."""
    root = Path(tempfile.mkdtemp(prefix="gazou-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    server = PostgresServer(root, _free_port(), settings)
    try:
        server.start()
    except BaseException:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
        raise
    return server


def stop_server(server: PostgresServer) -> None:
    """Stop the cluster and remove its folder."""
    try:
        server.stop()
    finally:
        shutil.rmtree(server.root, ignore_errors=True)


TEST_DATABASE = "gazou_test"

# Empties every gazou table of the test database (the schema stays: its migrations run
# once per run) and restarts the row ids, as in a new store. Foreign keys are not
# checked meanwhile (session_replication_role), so the order does not matter.
_RESET = """
DO $$
DECLARE t text;
BEGIN
    SET LOCAL session_replication_role = replica;
    FOR t IN SELECT tablename FROM pg_tables
             WHERE schemaname = 'public' AND tablename <> 'gazou_schema' LOOP
        EXECUTE format('DELETE FROM %I', t);
    END LOOP;
    IF to_regclass('changes') IS NOT NULL THEN
        INSERT INTO changes (what, counter) VALUES ('images', 0);
    END IF;
    PERFORM setval(c.oid::regclass, 1, false)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'S' AND n.nspname = 'public';
END $$;
"""


async def reset_database(server: PostgresServer) -> None:
    """Create the test database on first use, otherwise empty it."""
    import asyncpg  # type: ignore[import-untyped]

    try:
        conn = await asyncpg.connect(server.url(TEST_DATABASE))
    except asyncpg.InvalidCatalogNameError:
        admin = await asyncpg.connect(server.url())
        try:
            await admin.execute(f"CREATE DATABASE {TEST_DATABASE}")
        finally:
            await admin.close()
        return
    try:
        await conn.execute(_RESET)
    finally:
        await conn.close()


async def create_database(server: PostgresServer) -> str:
    """A new empty database (slower than a reset: for tests of migrations)."""
    import asyncpg  # type: ignore[import-untyped]

    name = server.next_name()
    admin = await asyncpg.connect(server.url())
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    return server.url(name)
