"""The SQLite connections: open, pragmas, forward migrations, transactions under the
write lock, and the read cache."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random as _random
import sqlite3
import string
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Self

import aiosqlite

from core.errors import GazouError, StorageFull, StorageUnavailable
from core.models import new_id
from storage import sqlite as _limits
from storage.schema import MIGRATIONS
from storage.sqlite.rows import _MEMBERS

log = logging.getLogger(__name__)

# Keys resolved per query (two bound variables each, well under SQLite's limit).
RIDS_CHUNK = 400
# What COLLATE NOCASE folds: ASCII letters only.
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
# WAL with NORMAL: a commit is atomic and survives a crash of the process, but the
# last commits before a power cut may be lost (the WAL is synced only at
# checkpoints). Durable transactions switch to FULL for their commit (one fsync).
_SYNCHRONOUS = "NORMAL"
# How much of the database file the read connection maps into memory (see `open`).
READ_MMAP_BYTES = 256 * 1024 * 1024
# How often (seconds) the read cache looks for changes made by another process.
EXTERNAL_CHANGES_EVERY = 1.0


def _write_error(error: BaseException | None) -> GazouError | None:
    """The domain error for a write SQLite refused because of the disk, else None:
    SQLITE_FULL is 507, a read-only or unopenable database 503."""
    if not isinstance(error, sqlite3.OperationalError):
        return None
    code = getattr(error, "sqlite_errorcode", 0) & 0xFF  # the primary result code
    if code == sqlite3.SQLITE_FULL:
        return StorageFull("The database is full: nothing was stored")
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR):
        return StorageUnavailable("The database cannot be written: nothing was stored")
    return None


def _rowid(cur: aiosqlite.Cursor) -> int:
    """The rowid of the row the INSERT just run on `cur` added."""
    assert cur.lastrowid is not None, "no row was inserted"
    return cur.lastrowid


class _ReadCache:
    """Tags, artists and characters by rid, and the sorted member tuples of rid lists,
    as hydrated images share them. All forgotten after every committed write that may
    touch images (their tags' image counts change with approvals)."""

    def __init__(self) -> None:
        self.generation = 0
        # The `changes` counter as last read, and when (see SQLiteRepo._fresh_cache).
        self.counter: int | None = None
        self.checked_at = float("-inf")
        self.objects: dict[str, dict[int, Any]] = {}
        self.sets: dict[str, dict[str | int | None, tuple[Any, ...]]] = {}
        self.clear()

    def clear(self) -> None:
        self.generation += 1
        for kind in _MEMBERS:
            self.objects[kind] = {}
            self.sets[kind] = {None: ()}

    def keep(
        self, kind: str, objects: dict[int, Any], sets: dict[str | int | None, tuple[Any, ...]]
    ) -> None:
        # Past the cap, start over (rather than track use): a collection with more
        # distinct tag combinations than that still keeps its tags themselves.
        if len(self.objects[kind]) + len(objects) > _limits.CATALOGUE_CAP:
            self.objects[kind] = {}
        if len(self.sets[kind]) + len(sets) > _limits.CATALOGUE_CAP:
            self.sets[kind] = {None: ()}
        self.objects[kind].update(objects)
        self.sets[kind].update(sets)


class SQLiteBase:
    """The connections, the write lock, the read cache and the helpers every part of
    SQLiteRepo uses: each contract's mixin derives from this."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._write: aiosqlite.Connection | None = None
        self._read: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._rng = _random.Random()
        self._cache = _ReadCache()

    # ---- lifecycle -------------------------------------------------------------

    async def open(self) -> None:
        """Open both connections and migrate the schema forward."""
        await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)
        self._write = await self._connect()
        try:
            await self._migrate()
        except BaseException:
            # A refused or failed migration must not leave the connection's thread behind.
            await self.close()
            raise
        self._read = await self._connect()
        # Reads map the file rather than copy each page out of the OS cache: random draws
        # touch pages all over it (a 256-image draw: 2.4 -> 1.1 ms of CPU, 190 MB store).
        # File-backed, so the kernel may drop those pages like any cached file's.
        await self._read.execute(f"PRAGMA mmap_size = {READ_MMAP_BYTES}")

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute(f"PRAGMA synchronous = {_SYNCHRONOUS}")
        await conn.execute("PRAGMA foreign_keys = ON")
        await conn.execute("PRAGMA busy_timeout = 5000")
        await conn.execute("PRAGMA cache_size = -32000")
        return conn

    async def close(self) -> None:
        """Close both connections (idempotent)."""
        for conn in (self._read, self._write):
            if conn is not None:
                await conn.close()
        self._read = self._write = None

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def schema_version(self) -> int:
        """How many migrations have run."""
        return (await self._one("PRAGMA user_version"))[0]

    async def _migrate(self) -> None:
        conn = self._write
        assert conn is not None
        row = await (await conn.execute("PRAGMA user_version")).fetchone()
        assert row is not None  # PRAGMA user_version always answers one row
        version = row[0]
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"{self.path} has schema version {version}, newer than this gazou "
                f"({len(MIGRATIONS)}); upgrade gazou"
            )
        for number in range(version, len(MIGRATIONS)):
            # executescript commits; run each migration and its version bump atomically.
            script = f"BEGIN;\n{MIGRATIONS[number]}\nPRAGMA user_version = {number + 1};\nCOMMIT;"
            try:
                await conn.executescript(script)
            except sqlite3.Error:
                await conn.execute("ROLLBACK") if conn.in_transaction else None
                raise

    # ---- small helpers ---------------------------------------------------------

    @property
    def reader(self) -> aiosqlite.Connection:
        assert self._read is not None, "repo is not open"
        return self._read

    async def _all(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        return list(await self.reader.execute_fetchall(sql, tuple(params)))

    async def _one(self, sql: str, params: Iterable[Any] = ()) -> Any:
        rows = await self._all(sql, params)
        return rows[0] if rows else None

    def transaction(self, *, touches_images: bool = True, durable: bool = False) -> _Transaction:
        """`async with repo.transaction() as tx:` one atomic write. Unless it says it
        leaves images alone (tokens, requests, kv, what a member has seen), its commit
        drops everything reads keep. A durable one survives a power cut once it has
        committed: for commits that acknowledge an upload or let its files go."""
        assert self._write is not None, "repo is not open"
        return _Transaction(
            self._write,
            self._lock,
            self._cache.clear if touches_images else None,
            durable=durable,
        )

    # ---- names -> ids ----------------------------------------------------------

    @staticmethod
    async def _get_or_create(tx: _Transaction, table: str, name: str) -> int:
        row = await tx.one(f"SELECT rid FROM {table} WHERE name = ?", (name,))
        if row:
            return row[0]
        cur = await tx.execute(
            f"INSERT INTO {table} (id, name, created_at) VALUES (?, ?, ?)",
            (new_id(), name, time.time()),
        )
        return _rowid(cur)

    async def _rids(self, table: str, keys: Iterable[str]) -> list[int | None]:
        """Resolve ids or names (case-insensitive) to row ids; None for unknown ones.
        One query per RIDS_CHUNK distinct keys, however many are asked for."""
        keys = list(keys)
        by_id: dict[str, int] = {}
        by_name: dict[str, int] = {}
        distinct = list(dict.fromkeys(keys))
        for start in range(0, len(distinct), RIDS_CHUNK):
            chunk = distinct[start : start + RIDS_CHUNK]
            marks = ",".join("?" * len(chunk))
            for rid, row_id, name in await self._all(
                f"SELECT rid, id, name FROM {table} WHERE id IN ({marks}) OR name IN ({marks})",
                [*chunk, *chunk],
            ):
                by_id[row_id] = rid
                by_name[name.translate(_ASCII_LOWER)] = rid
        return [by_id.get(k, by_name.get(k.translate(_ASCII_LOWER))) for k in keys]

    async def _fresh_cache(self) -> _ReadCache:
        """The read cache, first dropped if another process changed images: its own
        writes drop it at once, others' are noticed within EXTERNAL_CHANGES_EVERY."""
        cache = self._cache
        now = time.monotonic()
        if now - cache.checked_at >= EXTERNAL_CHANGES_EVERY:
            cache.checked_at = now
            (counter,) = await self._one("SELECT counter FROM changes WHERE what = 'images'")
            if counter != cache.counter:
                if cache.counter is not None:
                    cache.clear()
                cache.counter = counter
        return cache

    async def integrity_check(self) -> list[str]:
        """SQLite's own integrity and foreign-key checks; empty when healthy."""
        problems = [r[0] for r in await self._all("PRAGMA integrity_check") if r[0] != "ok"]
        problems += [str(tuple(r)) for r in await self._all("PRAGMA foreign_key_check")]
        return problems


class _Transaction:
    """One BEGIN IMMEDIATE ... COMMIT on the write connection, serialised by a lock.
    A durable one commits with `synchronous = FULL` (see `SQLiteRepo.transaction`)."""

    def __init__(
        self,
        conn: aiosqlite.Connection,
        lock: asyncio.Lock,
        on_commit: Callable[[], None] | None,
        *,
        durable: bool = False,
    ) -> None:
        self.conn = conn
        self.lock = lock
        self.on_commit = on_commit  # None: a write that leaves images alone
        self.durable = durable

    async def __aenter__(self) -> _Transaction:
        await self.lock.acquire()
        try:
            if self.durable:
                # Only outside a transaction does SQLite take this; it costs no I/O.
                await self.conn.execute("PRAGMA synchronous = FULL")
            await self.conn.execute("BEGIN IMMEDIATE")
        except BaseException as exc:
            # A cancelled await does not stop the worker thread: BEGIN may still run and
            # leave the shared connection inside a transaction, failing every later one.
            # The worker runs calls in order, so a ROLLBACK queued now comes after it.
            try:
                await asyncio.shield(self.conn.execute("ROLLBACK"))
            except (sqlite3.Error, asyncio.CancelledError):
                pass  # no transaction was open (BEGIN failed) or we are cancelled again
            finally:
                try:
                    await self._restore_synchronous()
                finally:
                    self.lock.release()
            if (mapped := _write_error(exc)) is not None:
                log.error("cannot write the database: %s", exc)
                raise mapped from exc
            raise
        return self

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        try:
            if exc_type is None:
                try:
                    if self.on_commit is not None:
                        await self.conn.execute(
                            "UPDATE changes SET counter = counter + 1 WHERE what = 'images'"
                        )
                    await self.conn.execute("COMMIT")
                except BaseException as error:
                    # Nothing of it may stay: the shared connection must not be left
                    # inside the transaction (every later write would fail with it). A
                    # failed COMMIT (disk full) may leave it open.
                    with contextlib.suppress(sqlite3.Error):
                        await asyncio.shield(self._rollback())
                    if (mapped := _write_error(error)) is not None:
                        log.error("cannot write the database: %s", error)
                        raise mapped from error
                    raise
                if self.on_commit is not None:
                    self.on_commit()
            else:
                await self._rollback()
                if (mapped := _write_error(exc)) is not None:
                    log.error("cannot write the database: %s", exc)
                    raise mapped from exc
        finally:
            try:
                await self._restore_synchronous()
            finally:
                self.lock.release()

    async def _restore_synchronous(self) -> None:
        if not self.durable:
            return
        # Queued after the COMMIT or ROLLBACK on the connection's one thread, so it
        # runs outside the transaction even when this await is cancelled.
        with contextlib.suppress(sqlite3.Error):
            await asyncio.shield(self.conn.execute(f"PRAGMA synchronous = {_SYNCHRONOUS}"))

    async def _rollback(self) -> None:
        # SQLite may already have rolled back on its own (SQLITE_FULL, SQLITE_IOERR).
        if self.conn.in_transaction:
            await self.conn.execute("ROLLBACK")

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Cursor:
        return await self.conn.execute(sql, tuple(params))

    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        await self.conn.executemany(sql, rows)

    async def all(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        return list(await self.conn.execute_fetchall(sql, tuple(params)))

    async def one(self, sql: str, params: Iterable[Any] = ()) -> Any:
        rows = await self.all(sql, params)
        return rows[0] if rows else None
