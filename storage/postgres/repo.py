"""The metadata repo on PostgreSQL (asyncpg, one connection pool).

The same tables, pools and promises as the SQLite repo (storage/sqlite/), for
several gazou processes on several machines sharing one database:
- writes that may touch images (ingest, moderation, likes, catalogue) take one
  transaction-scoped advisory lock, so they run one at a time across every process,
  as SQLite's single writer does: pools stay dense and names unique without retries;
- every such write bumps the `changes` counter, which each process polls at most once
  a second to drop its read cache (another process's writes show within a second);
- reads go to any pooled connection and never wait for a write.

SQL is written with `?` placeholders (as in the SQLite repo) and numbered for
PostgreSQL by `_numbered`."""

from __future__ import annotations

import asyncio
import json
import logging
import random as _random
import re
import string
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from core.errors import (
    Conflict,
    DuplicateImage,
    GazouError,
    InvalidInput,
    StorageFull,
    StorageUnavailable,
)
from core.events import IMAGE_DECIDED, IMAGE_PENDING, IMAGE_REPORTED
from core.models import (
    Album,
    Artist,
    Character,
    Filters,
    Image,
    ImageFile,
    NewImage,
    OutboxEntry,
    Rating,
    Rendition,
    Report,
    Stats,
    Status,
    Tag,
    Token,
    TokenRequest,
    User,
    new_id,
)
from storage.postgres.schema import MIGRATIONS
from storage.queries import SharedQueries
from storage.rows import (
    ARTIST_COLUMNS,
    CHARACTER_COLUMNS,
    FILE_COLUMNS,
    IMAGE_COLUMNS,
    IMAGE_FROM,
    MEMBERS,
    REQUEST_COLUMNS,
    STATUS,
    TAG_COLUMNS,
    TOKEN_COLUMNS,
    artist_of,
    at,
    character_of,
    image_columns,
    image_file_of,
    image_of,
    image_values,
    quarters,
    rid_list,
    tag_of,
    ts,
    unsigned64,
)
from storage.uploader_counts import count_approved, count_approved_many

log = logging.getLogger(__name__)

# Totals past this are reported as "at least" so a count never walks a huge set.
TOTAL_CAP = 10_000
# Tags, artists and characters kept by the read cache before it starts over.
CATALOGUE_CAP = 50_000
# How often (seconds) the read cache looks for changes made by another process.
EXTERNAL_CHANGES_EVERY = 1.0
# Advisory lock keys (any two constants gazou owns): one for writes that touch
# images, one for migrations.
WRITE_LOCK = 0x6761_7A6F_0001
MIGRATE_LOCK = 0x6761_7A6F_0002
# Connections per process; writes serialise on WRITE_LOCK, so more would only wait.
POOL_MIN, POOL_MAX = 1, 10
# What NOCASE (and PostgreSQL's lower() in the "C" collation) folds: ASCII letters.
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_KINDS = ("tags", "artists", "characters")


@lru_cache(maxsize=2048)
def _numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$1, $2, ...` (no `?` appears otherwise)."""
    counter = iter(range(1, 10_000))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


def _fold(name: str) -> str:
    return name.translate(_ASCII_LOWER)


def _rowcount(status: str) -> int:
    """The row count of a command status such as `DELETE 3` or `INSERT 0 1`."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _storage_error(error: BaseException) -> GazouError | None:
    """The domain error for a server or connection failure, else None: a full disk is
    507; a server that is gone, read-only, starting or out of connections is 503."""
    if isinstance(error, asyncpg.DiskFullError):
        return StorageFull("The database is full: nothing was stored")
    if isinstance(
        error,
        (
            asyncpg.ReadOnlySQLTransactionError,
            asyncpg.CannotConnectNowError,
            asyncpg.TooManyConnectionsError,
            asyncpg.AdminShutdownError,
            asyncpg.CrashShutdownError,
            asyncpg.ConnectionDoesNotExistError,
            asyncpg.PostgresConnectionError,
            asyncpg.InsufficientResourcesError,
            ConnectionError,
            TimeoutError,
        ),
    ):
        return StorageUnavailable("The database cannot be reached: try again later")
    return None


# An image read as PostgreSQL writes it: its rid lists joined by string_agg.
_IMAGE_COLUMNS = image_columns("string_agg({}::text, ',')")
_IMAGE_FROM = IMAGE_FROM


class _ReadCache:
    """Tags, artists and characters by rid, and the sorted member tuples of rid lists,
    as hydrated images share them. All forgotten after every committed write that may
    touch images, and when the `changes` counter shows another process wrote."""

    def __init__(self) -> None:
        self.generation = 0
        self.counter: int | None = None
        self.checked_at = float("-inf")
        self.objects: dict[str, dict[int, Any]] = {}
        self.sets: dict[str, dict[str | int | None, tuple[Any, ...]]] = {}
        # Names and ids resolved to rids (None: unknown), and pools' (id, size) (None:
        # no such pool): a draw then needs no query but the one that reads its rows.
        self.rids: dict[tuple[str, str], int | None] = {}
        self.pools: dict[str, tuple[int, int] | None] = {}
        self.clear()

    def clear(self) -> None:
        self.generation += 1
        for kind in _KINDS:
            self.objects[kind] = {}
            self.sets[kind] = {None: ()}
        self.rids = {}
        self.pools = {}

    def keep(
        self, kind: str, objects: dict[int, Any], sets: dict[str | int | None, tuple[Any, ...]]
    ) -> None:
        if len(self.objects[kind]) + len(objects) > CATALOGUE_CAP:
            self.objects[kind] = {}
        if len(self.sets[kind]) + len(sets) > CATALOGUE_CAP:
            self.sets[kind] = {None: ()}
        self.objects[kind].update(objects)
        self.sets[kind].update(sets)


class _Transaction:
    """One transaction on a pooled connection. A write that may touch images first
    takes WRITE_LOCK (held until COMMIT) and bumps the `changes` counter before it
    commits. A non-durable one commits without waiting for the WAL flush, as the
    SQLite repo's NORMAL synchronous mode does."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        on_commit: Callable[[], None] | None,
        *,
        durable: bool,
    ) -> None:
        self.pool = pool
        self.on_commit = on_commit  # None: a write that leaves images alone
        self.durable = durable
        self.conn: asyncpg.Connection | None = None

    async def __aenter__(self) -> _Transaction:
        try:
            self.conn = await self.pool.acquire()
        except Exception as exc:
            if (mapped := _storage_error(exc)) is not None:
                raise mapped from exc
            raise
        # One round trip: BEGIN with the transaction's settings and lock.
        begin = ["BEGIN"]
        if not self.durable:
            begin.append("SET LOCAL synchronous_commit = off")
        if self.on_commit is not None:
            begin.append(f"SELECT pg_advisory_xact_lock({WRITE_LOCK})")
        try:
            await self.conn.execute(";".join(begin))
        except BaseException as exc:
            await self._finish(commit=False)
            if (mapped := _storage_error(exc)) is not None:
                raise mapped from exc
            raise
        return self

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            try:
                await self._finish(commit=True)
            except Exception as error:
                if (mapped := _storage_error(error)) is not None:
                    log.error("cannot write the database: %s", error)
                    raise mapped from error
                raise
            if self.on_commit is not None:
                self.on_commit()
            return
        await self._finish(commit=False)
        if (mapped := _storage_error(exc)) is not None:
            log.error("cannot write the database: %s", exc)
            raise mapped from exc

    async def _finish(self, *, commit: bool) -> None:
        """COMMIT (bumping the changes counter first, in the same round trip) or
        ROLLBACK, then give the connection back to the pool."""
        conn = self.conn
        if conn is None:
            return
        self.conn = None
        try:
            if commit:
                bump = "UPDATE changes SET counter = counter + 1 WHERE what = 'images';"
                try:
                    await conn.execute(f"{bump if self.on_commit else ''}COMMIT")
                except BaseException:
                    await self._rollback(conn)
                    raise
            else:
                await self._rollback(conn)
        finally:
            await asyncio.shield(self.pool.release(conn))

    @staticmethod
    async def _rollback(conn: asyncpg.Connection) -> None:
        if conn.is_closed() or not conn.is_in_transaction():
            return
        try:
            await asyncio.shield(conn.execute("ROLLBACK"))
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            pass  # the connection is broken: the pool closes it

    @property
    def _conn(self) -> asyncpg.Connection:
        assert self.conn is not None, "transaction is over"
        return self.conn

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> str:
        """Run one statement; its command status (e.g. `UPDATE 1`)."""
        return await self._conn.execute(_numbered(sql), *params)

    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        await self._conn.executemany(_numbered(sql), [tuple(r) for r in rows])

    async def all(self, sql: str, params: Iterable[Any] = ()) -> list[asyncpg.Record]:
        return await self._conn.fetch(_numbered(sql), *params)

    async def one(self, sql: str, params: Iterable[Any] = ()) -> asyncpg.Record | None:
        return await self._conn.fetchrow(_numbered(sql), *params)

    async def value(self, sql: str, params: Iterable[Any] = ()) -> Any:
        return await self._conn.fetchval(_numbered(sql), *params)

    async def copy(
        self, table: str, columns: Sequence[str], records: list[tuple[Any, ...]]
    ) -> None:
        """COPY `records` into `table`: the fast path of bulk loads."""
        if records:
            await self._conn.copy_records_to_table(table, columns=list(columns), records=records)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset of a released connection: nothing to do, since gazou leaves
    no session state behind (its locks and settings are transaction-scoped), which
    saves asyncpg's default reset query, a round trip on every release. An open
    transaction is still rolled back by asyncpg before this runs."""


class PostgresRepo(SharedQueries):
    """All metadata in one PostgreSQL database, shared by any number of processes."""

    # A single draw passing 80% of candidates checks 3 rather than 9 (a second round,
    # one more round trip, then comes about once in 125 draws). bench/store.py, random
    # tag+exclude at 1M vs 1k images: 1.78x with 8, 1.19x with 2 (at 1M each candidate's
    # probes miss the CPU caches).
    OVERDRAW_SLACK = 2

    def __init__(self, url: str, *, min_size: int = POOL_MIN, max_size: int = POOL_MAX) -> None:
        self.url = url
        self._sizes = (min_size, max_size)
        self._pool: asyncpg.Pool | None = None
        self._rng = _random.Random()
        self._cache = _ReadCache()

    # ---- lifecycle -------------------------------------------------------------

    async def open(self) -> None:
        """Connect the pool and migrate the schema forward (one process at a time)."""
        try:
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=self._sizes[0],
                max_size=self._sizes[1],
                reset=_keep_session,
            )
        except (OSError, asyncpg.PostgresError) as exc:
            raise StorageUnavailable(f"Cannot connect to the database: {exc}") from exc
        try:
            await self._migrate()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close the pool (idempotent)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def __aenter__(self) -> PostgresRepo:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def schema_version(self) -> int:
        """How many migrations have run."""
        return await self.pool.fetchval("SELECT version FROM gazou_schema")

    async def _migrate(self) -> None:
        async with self.pool.acquire() as conn:
            # Two processes starting at once: the second waits, then finds nothing to do.
            await conn.execute(f"SELECT pg_advisory_lock({MIGRATE_LOCK})")
            try:
                version = None
                if await conn.fetchval("SELECT to_regclass('gazou_schema') IS NOT NULL"):
                    version = await conn.fetchval("SELECT version FROM gazou_schema")
                if version == len(MIGRATIONS):
                    return  # up to date: nothing written (the server may be read-only)
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS gazou_schema (version INTEGER NOT NULL)"
                )
                version = await conn.fetchval("SELECT version FROM gazou_schema")
                if version is None:
                    await conn.execute("INSERT INTO gazou_schema (version) VALUES (0)")
                    version = 0
                if version > len(MIGRATIONS):
                    raise RuntimeError(
                        f"the database has schema version {version}, newer than this gazou "
                        f"({len(MIGRATIONS)}); upgrade gazou"
                    )
                for number in range(version, len(MIGRATIONS)):
                    async with conn.transaction():
                        await conn.execute(MIGRATIONS[number])
                        await conn.execute("UPDATE gazou_schema SET version = $1", number + 1)
            finally:
                await conn.execute(f"SELECT pg_advisory_unlock({MIGRATE_LOCK})")

    # ---- small helpers ---------------------------------------------------------

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "repo is not open"
        return self._pool

    async def _all(self, sql: str, params: Iterable[Any] = ()) -> list[asyncpg.Record]:
        try:
            return await self.pool.fetch(_numbered(sql), *params)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if (mapped := _storage_error(exc)) is not None:
                raise mapped from exc
            raise

    async def _one(self, sql: str, params: Iterable[Any] = ()) -> asyncpg.Record | None:
        rows = await self._all(sql, params)
        return rows[0] if rows else None

    async def _value(self, sql: str, params: Iterable[Any] = ()) -> Any:
        row = await self._one(sql, params)
        return row[0] if row else None

    def _one_of(self, column: str, values: list[Any], sql_type: str) -> tuple[str, list[Any]]:
        """`column` is one of `values`: `= ANY` of one bound array (one plan whatever
        the count, and faster than an IN list in search's capped count)."""
        return f"{column} = ANY(?::{sql_type}[])", [list(values)]

    def _total_cap(self) -> int:
        """TOTAL_CAP as this module has it now (tests lower it)."""
        return TOTAL_CAP

    def transaction(self, *, touches_images: bool = True, durable: bool = False) -> _Transaction:
        """`async with repo.transaction() as tx:` one atomic write. Unless it says it
        leaves images alone (tokens, requests, kv, what a member has seen), it runs
        alone among such writes of every process and its commit drops the read cache.
        A durable one waits for the WAL flush before returning."""
        return _Transaction(
            self.pool, self._cache.clear if touches_images else None, durable=durable
        )

    # ---- names -> ids ----------------------------------------------------------

    @staticmethod
    async def _get_or_create(tx: _Transaction, table: str, names: Iterable[str]) -> dict[str, int]:
        """Row ids of `names` (folded) in `table`, creating the missing ones; names
        differing only in ASCII case are one row, named by the first."""
        names = list(dict.fromkeys(names))
        if not names:
            return {}
        folded = [_fold(n) for n in names]
        await tx.execute(
            f"INSERT INTO {table} (id, name, created_at) "
            "SELECT n.id, n.name, ?::float8 FROM unnest(?::text[], ?::text[]) WITH ORDINALITY "
            "AS n(id, name, k) ORDER BY n.k ON CONFLICT ((lower(name))) DO NOTHING",
            (time.time(), [new_id() for _ in names], names),
        )
        rows = await tx.all(
            f"SELECT rid, lower(name) AS folded FROM {table} WHERE lower(name) = ANY(?::text[])",
            (folded,),
        )
        return {r["folded"]: r["rid"] for r in rows}

    async def _rids(self, table: str, keys: Iterable[str]) -> list[int | None]:
        """Resolve ids or names (case-insensitive) to row ids; None for unknown ones.
        Kept by the read cache (so dropped by any write that may touch images)."""
        keys = list(keys)
        if not keys:
            return []
        cache = await self._fresh_cache()
        generation, known = cache.generation, cache.rids
        distinct = [k for k in dict.fromkeys(keys) if (table, k) not in known]
        if distinct:
            folded = [_fold(k) for k in distinct]
            by_id: dict[str, int] = {}
            by_name: dict[str, int] = {}
            for r in await self._all(
                f"SELECT rid, id, lower(name) AS folded FROM {table} "
                "WHERE id = ANY(?::text[]) OR lower(name) = ANY(?::text[])",
                (distinct, folded),
            ):
                by_id[r["id"]] = r["rid"]
                by_name[r["folded"]] = r["rid"]
            found = {k: by_id.get(k, by_name.get(_fold(k))) for k in distinct}
            if generation == cache.generation and len(known) + len(found) <= CATALOGUE_CAP:
                known.update(((table, k), rid) for k, rid in found.items())
            return [found[k] if k in found else known[(table, k)] for k in keys]
        return [known[(table, k)] for k in keys]

    async def unknown_tags(self, names: Iterable[str]) -> list[str]:
        """Which of `names` name no tag."""
        names = list(names)
        rids = await self._rids("tags", names)
        return [n for n, r in zip(names, rids, strict=True) if r is None]

    # ---- pools -----------------------------------------------------------------

    @staticmethod
    async def _pool_names(tx: _Transaction, seq: int) -> list[str]:
        row = await tx.one(
            "SELECT i.rating, i.artist_rid, "
            "ARRAY(SELECT tag_rid FROM image_tags WHERE seq = i.seq) AS tags, "
            "ARRAY(SELECT character_rid FROM image_characters WHERE seq = i.seq) AS chars "
            "FROM images i WHERE i.seq = ?",
            (seq,),
        )
        assert row is not None
        names = ["all", f"rating:{row['rating']}"]
        if row["artist_rid"] is not None:
            names.append(f"artist:{row['artist_rid']}")
        names += [f"tag:{rid}" for rid in row["tags"]]
        names += [f"character:{rid}" for rid in row["chars"]]
        return names

    async def _pool_add(self, tx: _Transaction, seq: int) -> None:
        """Append the image to the end of each of its pools (creating new pools)."""
        names = await self._pool_names(tx, seq)
        await tx.execute(
            "INSERT INTO pools (name, size) SELECT unnest(?::text[]), 0 "
            "ON CONFLICT (name) DO NOTHING",
            (names,),
        )
        await tx.execute(
            "WITH grown AS (UPDATE pools SET size = size + 1 WHERE name = ANY(?::text[]) "
            "RETURNING pool, size - 1 AS slot) "
            "INSERT INTO pool_slots (pool, slot, seq) SELECT pool, slot, ?::int FROM grown",
            (names, seq),
        )

    @staticmethod
    async def _pool_remove(tx: _Transaction, seq: int) -> None:
        """Take the image out of its pools, moving each pool's last member into the
        freed slot so the numbering stays dense."""
        members = await tx.all(
            "SELECT s.pool, s.slot, p.size - 1 AS last FROM pool_slots s "
            "JOIN pools p ON p.pool = s.pool WHERE s.seq = ?",
            (seq,),
        )
        if not members:
            return
        pools = [m["pool"] for m in members]
        moved = {
            r["pool"]: r["seq"]
            for r in await tx.all(
                "DELETE FROM pool_slots s USING unnest(?::int[], ?::int[]) AS x(pool, slot) "
                "WHERE s.pool = x.pool AND s.slot = x.slot RETURNING s.pool, s.seq",
                (pools, [m["last"] for m in members]),
            )
        }
        fill = [(m["pool"], m["slot"], moved[m["pool"]]) for m in members if m["slot"] != m["last"]]
        if fill:
            await tx.execute(
                "UPDATE pool_slots s SET seq = x.moved "
                "FROM unnest(?::int[], ?::int[], ?::int[]) AS x(pool, slot, moved) "
                "WHERE s.pool = x.pool AND s.slot = x.slot",
                ([f[0] for f in fill], [f[1] for f in fill], [f[2] for f in fill]),
            )
        await tx.execute("UPDATE pools SET size = size - 1 WHERE pool = ANY(?::int[])", (pools,))

    async def _pool_sizes(self, names: Iterable[str]) -> dict[str, tuple[int, int]]:
        """(pool id, size) of the pools named (those that exist), through the read
        cache: this process's writes drop it at once, others' within a second."""
        names = list(names)
        if not names:
            return {}
        cache = await self._fresh_cache()
        generation, known = cache.generation, cache.pools
        missing = [n for n in names if n not in known]
        if missing:
            rows = await self._all(
                "SELECT name, pool, size FROM pools WHERE name = ANY(?::text[])", (missing,)
            )
            found: dict[str, tuple[int, int] | None] = dict.fromkeys(missing)
            found.update((r["name"], (r["pool"], r["size"])) for r in rows)
            if generation == cache.generation and len(known) + len(found) <= CATALOGUE_CAP:
                known.update(found)
        else:
            found = {}
        out = {}
        for name in names:
            entry = found[name] if name in found else known[name]
            if entry is not None:
                out[name] = entry
        return out

    async def pool_size(self, name: str) -> int:
        """How many approved images a pool (`all`, `rating:sfw`, `tag:<rid>`...) holds."""
        return await self._value("SELECT size FROM pools WHERE name = ?", (name,)) or 0

    async def pool_problems(self) -> list[str]:
        """Pools that do not number exactly their approved members 0..size-1."""
        problems = []
        for r in await self._all(
            "SELECT p.name, p.size, COUNT(s.slot) AS n, MIN(s.slot) AS low, MAX(s.slot) AS high "
            "FROM pools p LEFT JOIN pool_slots s ON s.pool = p.pool GROUP BY p.pool"
        ):
            if r["n"] != r["size"] or (r["size"] and (r["low"] != 0 or r["high"] != r["size"] - 1)):
                problems.append(f"{r['name']}: size {r['size']}, {r['n']} slots")
        for r in await self._all(
            """WITH wanted AS (
                   SELECT 'all' AS name, seq FROM images WHERE status = 'approved'
                   UNION ALL SELECT 'rating:' || rating, seq FROM images
                       WHERE status = 'approved'
                   UNION ALL SELECT 'artist:' || artist_rid, seq FROM images
                       WHERE status = 'approved' AND artist_rid IS NOT NULL
                   UNION ALL SELECT 'tag:' || t.tag_rid, t.seq FROM image_tags t
                       JOIN images i ON i.seq = t.seq WHERE i.status = 'approved'
                   UNION ALL SELECT 'character:' || c.character_rid, c.seq
                       FROM image_characters c JOIN images i ON i.seq = c.seq
                       WHERE i.status = 'approved'),
               held AS (SELECT p.name, s.seq FROM pool_slots s JOIN pools p ON p.pool = s.pool)
               (SELECT 'extra' AS what, name, seq FROM (SELECT * FROM held EXCEPT ALL
                   SELECT * FROM wanted) x)
               UNION ALL
               (SELECT 'missing', name, seq FROM (SELECT * FROM wanted EXCEPT ALL
                   SELECT * FROM held) y)
               ORDER BY 2, 3"""
        ):
            problems.append(f"{r['name']} {r['what']} seq {r['seq']}")
        return problems

    # ---- images: writes --------------------------------------------------------

    async def insert_image(self, new: NewImage, *, announce: bool = True) -> Image:
        """Insert an image with its tags, artist and characters in one transaction;
        raises DuplicateImage (with the stored id) when its sha256 is already stored.
        Announces a pending image, and with `announce` an approved one, in the outbox.
        Durable: this commit is what acknowledges an upload."""
        try:
            await self._insert_image(new, announce=announce)
        except asyncpg.UniqueViolationError:
            # Two uploads of the same bytes raced; the other one won.
            existing = await self.id_by_sha256(new.sha256)
            if existing is None:
                raise
            raise DuplicateImage(existing) from None
        image = await self.get_image(new.id)
        assert image is not None
        return image

    async def _insert_image(self, new: NewImage, *, announce: bool) -> None:
        async with self.transaction(durable=True) as tx:
            # Writes of images run one at a time (WRITE_LOCK): known bytes are found here.
            existing = await tx.value("SELECT id FROM images WHERE sha256 = ?", (new.sha256,))
            if existing is not None:
                raise DuplicateImage(existing)
            artist_rid = None
            if new.artist:
                artist_rid = (await self._get_or_create(tx, "artists", [new.artist]))[
                    _fold(new.artist)
                ]
            album_rid = None
            if new.album_id:
                album_rid = await tx.value("SELECT rid FROM albums WHERE id = ?", (new.album_id,))
                if album_rid is None:
                    raise InvalidInput("Unknown album", field="album_id")
            marks = ",".join("?" * len(IMAGE_COLUMNS))
            seq = await tx.value(
                f"INSERT INTO images ({', '.join(IMAGE_COLUMNS)}) VALUES ({marks}) RETURNING seq",
                image_values(new, artist_rid, album_rid),
            )
            for table, link, column, names in (
                ("tags", "image_tags", "tag_rid", new.tags),
                ("characters", "image_characters", "character_rid", new.characters),
            ):
                rids = await self._get_or_create(tx, table, names)
                if rids:
                    await tx.execute(
                        f"INSERT INTO {link} ({column}, seq) "
                        "SELECT DISTINCT unnest(?::int[]), ?::int ON CONFLICT DO NOTHING",
                        (list(rids.values()), seq),
                    )
            if new.status is Status.APPROVED:
                await self._pool_add(tx, seq)
                await count_approved(tx, seq, +1)
                if announce:
                    # Approved at upload (an owner's, an admin token's): announced as a
                    # decision by its approver, like an approval after review.
                    by = [new.approver.id, new.approver.name] if new.approver else None
                    await self._announce(tx, IMAGE_DECIDED, new.id, {"approved": True, "by": by})
            elif new.status is Status.PENDING:
                await self._announce(tx, IMAGE_PENDING, new.id, {})

    async def set_status(
        self,
        image_id: str,
        status: Status,
        approver: User | None,
        *,
        only_from: frozenset[Status] | None = None,
    ) -> Status | None:
        """Move an image to `status`, keeping the pools in step, only if its status is
        in `only_from` (when given: checked in the same transaction); returns the status
        it had, None if no such image."""
        async with self.transaction(durable=status is Status.REJECTED) as tx:
            row = await tx.one("SELECT seq, status FROM images WHERE id = ?", (image_id,))
            if row is None:
                return None
            seq, old = row["seq"], STATUS[row["status"]]
            if only_from is not None and old not in only_from:
                return old
            await tx.execute(
                "UPDATE images SET status = ?, approver_id = ?, approver_name = ? WHERE seq = ?",
                (
                    status.value,
                    approver.id if approver else None,
                    approver.name if approver else None,
                    seq,
                ),
            )
            if old is Status.APPROVED and status is not Status.APPROVED:
                await self._pool_remove(tx, seq)
                await count_approved(tx, seq, -1)
            elif old is not Status.APPROVED and status is Status.APPROVED:
                await self._pool_add(tx, seq)
                await count_approved(tx, seq, +1)
            if old != status and status in (Status.APPROVED, Status.REJECTED):
                by = [approver.id, approver.name] if approver else None
                payload = {"approved": status is Status.APPROVED, "by": by}
                await self._announce(tx, IMAGE_DECIDED, image_id, payload)
        return old

    @staticmethod
    async def _announce(
        tx: _Transaction, kind: str, image_id: str, payload: dict[str, Any]
    ) -> None:
        """Append an outbox entry inside the transaction that makes the change. Every
        such transaction holds the image write lock, so entries commit in seq order
        (a consumer's cursor never skips one that commits later with a lower seq)."""
        await tx.execute(
            "INSERT INTO outbox (kind, image_id, payload, created_at) VALUES (?, ?, ?, ?)",
            (kind, image_id, json.dumps(payload), time.time()),
        )

    async def delete_image(self, image_id: str) -> Image | None:
        """Delete an image row (and its memberships); returns what was deleted, None
        if unknown, or if another process deleted it first (one sweeper wins)."""
        image = await self.get_image(image_id)
        if image is None:
            return None
        async with self.transaction(durable=True) as tx:
            row = await tx.one("SELECT seq, status FROM images WHERE id = ?", (image_id,))
            if row is None:
                return None
            seq = row["seq"]
            await self._pool_remove(tx, seq)
            if row["status"] == Status.APPROVED.value:
                await count_approved(tx, seq, -1)
            await tx.execute("DELETE FROM images WHERE seq = ?", (seq,))
        return image

    async def bulk_load(self, rows: Iterable[NewImage], *, chunk: int = 50_000) -> int:
        """Insert many image rows (no files) in one transaction with COPY: for
        benchmarks and large imports. Keeps every invariant `insert_image` keeps;
        `album_id` must name an existing album. Raises asyncpg's UniqueViolationError
        (and stores nothing) on a duplicate id or sha256. Returns how many rows."""
        async with self.transaction() as tx:
            rebuild: list[str] = []
            if await tx.value("SELECT NOT EXISTS (SELECT 1 FROM images)"):
                # Into an empty store, building the secondary indexes and checking the
                # foreign keys once at the end is several times faster than row by row.
                # DDL is transactional: if the load fails, all is back as it was.
                rebuild = await self._drop_secondary_indexes(tx)
            loaded = await self._bulk_load(tx, rows, chunk)
            if rebuild:
                await tx.execute("SET LOCAL maintenance_work_mem = '256MB'")
            for definition in rebuild:
                await tx.execute(definition)
        async with self.pool.acquire() as conn:
            # What autovacuum gives a long-running server: fresh planner statistics, and
            # the visibility map, without which every index-only scan (and the
            # planner's look at an index's ends) reads the table's pages too.
            await conn.execute("VACUUM (ANALYZE) images, image_tags, image_characters, pool_slots")
            await conn.execute("ANALYZE")
        return loaded

    @staticmethod
    async def _drop_secondary_indexes(tx: _Transaction) -> list[str]:
        """Drop the foreign keys of the image tables and their indexes that back no
        constraint; the statements that create them again (indexes first)."""
        tables = ["images", "image_tags", "image_characters", "pool_slots"]
        indexes = await tx.all(
            "SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def "
            "FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid "
            "WHERE t.relname = ANY(?::text[]) "
            "AND t.relnamespace = current_schema()::regnamespace "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
            (tables,),
        )
        # Checking each row's references costs more than the rows themselves; checked
        # once at the end (ADD CONSTRAINT validates the whole table with one join).
        keys = await tx.all(
            "SELECT c.conrelid::regclass::text AS tab, c.conname AS name, "
            "pg_get_constraintdef(c.oid) AS def FROM pg_constraint c "
            "JOIN pg_class t ON t.oid = c.conrelid WHERE c.contype = 'f' "
            "AND t.relname = ANY(?::text[]) AND t.relnamespace = current_schema()::regnamespace",
            (tables,),
        )
        for r in keys:
            await tx.execute(f'ALTER TABLE {r["tab"]} DROP CONSTRAINT "{r["name"]}"')
        for r in indexes:
            await tx.execute(f"DROP INDEX {r['name']}")
        return [r["def"] for r in indexes] + [
            f'ALTER TABLE {r["tab"]} ADD CONSTRAINT "{r["name"]}" {r["def"]}' for r in keys
        ]

    async def _bulk_load(self, tx: _Transaction, rows: Iterable[NewImage], chunk: int) -> int:
        rids: dict[str, dict[str, int]] = {kind: {} for kind in _KINDS}
        albums: dict[str, int] = {}
        pools: dict[str, list[int]] = {
            r["name"]: [r["pool"], r["size"]] for r in await tx.all("SELECT * FROM pools")
        }
        next_seq = await tx.value("SELECT COALESCE(MAX(seq), 0) + 1 FROM images")
        loaded = 0
        uploads: Counter[str] = Counter()  # approved images per uploader
        iterator = iter(rows)
        while True:
            batch = [new for _, new in zip(range(chunk), iterator, strict=False)]
            if not batch:
                break
            # Catalogue names of the batch, created or looked up in one go per kind.
            for kind, names in (
                ("artists", {n.artist for n in batch if n.artist}),
                ("tags", {t for n in batch for t in n.tags}),
                ("characters", {c for n in batch for c in n.characters}),
            ):
                missing = [name for name in names if name not in rids[kind]]
                found = await self._get_or_create(tx, kind, missing)
                for name in missing:
                    rids[kind][name] = found[_fold(name)]
            image_rows, tag_rows, character_rows, slot_rows = [], [], [], []
            for new in batch:
                seq, next_seq = next_seq, next_seq + 1
                artist_rid = rids["artists"][new.artist] if new.artist else None
                album_rid = None
                if new.album_id:
                    if new.album_id not in albums:
                        rid = await tx.value("SELECT rid FROM albums WHERE id = ?", (new.album_id,))
                        if rid is None:
                            raise InvalidInput("Unknown album", field="album_id")
                        albums[new.album_id] = rid
                    album_rid = albums[new.album_id]
                image_rows.append((seq, *image_values(new, artist_rid, album_rid)))
                members = ["all", f"rating:{new.rating.value}"]
                if artist_rid is not None:
                    members.append(f"artist:{artist_rid}")
                for tag_rid in dict.fromkeys(rids["tags"][t] for t in new.tags):
                    tag_rows.append((tag_rid, seq))
                    members.append(f"tag:{tag_rid}")
                for char_rid in dict.fromkeys(rids["characters"][c] for c in new.characters):
                    character_rows.append((char_rid, seq))
                    members.append(f"character:{char_rid}")
                if new.status is Status.APPROVED:
                    if new.uploader is not None:
                        uploads[new.uploader.id] += 1
                    for name in members:
                        entry = pools.get(name)
                        if entry is None:
                            pool = await tx.value(
                                "INSERT INTO pools (name, size) VALUES (?, 0) RETURNING pool",
                                (name,),
                            )
                            entry = pools[name] = [pool, 0]
                        slot_rows.append((entry[0], entry[1], seq))
                        entry[1] += 1
            await tx.copy("images", ("seq", *IMAGE_COLUMNS), image_rows)
            await tx.copy("image_tags", ("tag_rid", "seq"), tag_rows)
            await tx.copy("image_characters", ("character_rid", "seq"), character_rows)
            await tx.copy("pool_slots", ("pool", "slot", "seq"), slot_rows)
            loaded += len(batch)
        if pools:
            await tx.execute(
                "UPDATE pools p SET size = x.size FROM unnest(?::int[], ?::int[]) AS x(pool, size) "
                "WHERE p.pool = x.pool AND p.size <> x.size",
                ([e[0] for e in pools.values()], [e[1] for e in pools.values()]),
            )
        await count_approved_many(tx, uploads)
        # Seqs were given explicitly: move the identity past them.
        await tx.execute(
            "SELECT setval(pg_get_serial_sequence('images', 'seq'), "
            "(SELECT COALESCE(MAX(seq), 0) + 1 FROM images), false)"
        )
        return loaded

    async def set_like(self, image_id: str, user_id: str, kind: str, on: bool) -> int | None:
        """Like/unlike (or favourite); returns the new count, None if no such image."""
        column = {"like": "likes", "favorite": "favorites"}[kind]
        async with self.transaction() as tx:
            seq = await tx.value("SELECT seq FROM images WHERE id = ?", (image_id,))
            if seq is None:
                return None
            if on:
                delta = _rowcount(
                    await tx.execute(
                        "INSERT INTO likes (seq, user_id, kind, created_at) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT DO NOTHING",
                        (seq, user_id, kind, time.time()),
                    )
                )
            else:
                delta = -_rowcount(
                    await tx.execute(
                        "DELETE FROM likes WHERE seq = ? AND user_id = ? AND kind = ?",
                        (seq, user_id, kind),
                    )
                )
            return await tx.value(
                f"UPDATE images SET {column} = {column} + ? WHERE seq = ? RETURNING {column}",
                (delta, seq),
            )

    async def has_liked(self, image_id: str, user_id: str, kind: str = "like") -> bool:
        """Whether `user_id` has liked (or favourited) the image."""
        row = await self._one(
            "SELECT 1 FROM likes l JOIN images i ON i.seq = l.seq "
            "WHERE i.id = ? AND l.user_id = ? AND l.kind = ?",
            (image_id, user_id, kind),
        )
        return row is not None

    # ---- images: reads ---------------------------------------------------------

    async def _hydrate(self, rows: Sequence[asyncpg.Record]) -> list[Image]:
        """Images from rows of _IMAGE_COLUMNS; their tags, characters and artist come
        from the read cache (one query for whatever it lacks)."""
        if not rows:
            return []
        artists = await self._members("artists", [r["artist_rid"] for r in rows])
        tags = await self._members("tags", [r["tag_rids"] for r in rows])
        characters = await self._members("characters", [r["character_rids"] for r in rows])
        return [
            image_of(r, artist, tag_set, character_set)
            for r, artist, tag_set, character_set in zip(
                rows, artists, tags, characters, strict=True
            )
        ]

    async def _members(self, kind: str, keys: Sequence[str | int | None]) -> list[tuple[Any, ...]]:
        """For each key (a rid, a comma-separated list of rids, or None), the members it
        names, sorted by name as NOCASE sorts; from the read cache, the rest in one
        query, kept unless a write committed meanwhile."""
        cache = await self._fresh_cache()
        generation = cache.generation
        sets = cache.sets[kind]
        out = [sets.get(key) for key in keys]
        missing = {key for key, found in zip(keys, out, strict=True) if found is None}
        if not missing:
            return out  # type: ignore[return-value]
        known = cache.objects[kind]
        rid_lists = {key: rid_list(key) for key in missing if key is not None}
        unknown = {rid for rids in rid_lists.values() for rid in rids if rid not in known}
        fetched: dict[int, Any] = {}
        if unknown:
            alias, columns, build = MEMBERS[kind]
            for rid, *fields in await self._all(
                f"SELECT {alias}.rid AS rid, {columns} FROM {kind} {alias} "
                f"WHERE {alias}.rid = ANY(?::int[])",
                (list(unknown),),
            ):
                fetched[rid] = build(fields)
        built: dict[str | int | None, tuple[Any, ...]] = {None: ()}
        for key, rids in rid_lists.items():
            found = [m for m in (known.get(rid) or fetched.get(rid) for rid in rids) if m]
            found.sort(key=lambda member: _fold(member.name))
            built[key] = tuple(found)
        if generation == cache.generation:
            cache.keep(kind, fetched, built)
        return [
            found if found is not None else built[key] for key, found in zip(keys, out, strict=True)
        ]

    async def _fresh_cache(self) -> _ReadCache:
        """The read cache, first dropped if any process changed images: its own
        writes drop it at once, others' are noticed within EXTERNAL_CHANGES_EVERY."""
        cache = self._cache
        now = time.monotonic()
        if now - cache.checked_at >= EXTERNAL_CHANGES_EVERY:
            cache.checked_at = now
            counter = await self._value("SELECT counter FROM changes WHERE what = 'images'")
            if counter != cache.counter:
                if cache.counter is not None:
                    cache.clear()
                cache.counter = counter
        return cache

    async def _images_by_seq(
        self, seqs: Sequence[int], rows: dict[int, Any] | None = None
    ) -> list[Image]:
        """Images for `seqs`, in that order (those gone left out); rows already read
        (by a draw) are in `rows`."""
        if not seqs:
            return []
        by_seq = dict(rows or {})
        if missing := [s for s in seqs if s not in by_seq]:
            for r in await self._all(
                f"SELECT {_IMAGE_COLUMNS} {_IMAGE_FROM} WHERE i.seq = ANY(?::int[])", (missing,)
            ):
                by_seq[r["seq"]] = r
        return await self._hydrate([by_seq[s] for s in seqs if s in by_seq])

    async def get_image(self, image_id: str) -> Image | None:
        """One image by id, whatever its status."""
        rows = await self._all(f"SELECT {_IMAGE_COLUMNS} {_IMAGE_FROM} WHERE i.id = ?", (image_id,))
        images = await self._hydrate(rows)
        return images[0] if images else None

    async def get_file(self, image_id: str) -> ImageFile | None:
        """What serving an image's bytes needs, by id, whatever its status."""
        row = await self._one(f"SELECT {FILE_COLUMNS} FROM images WHERE id = ?", (image_id,))
        return image_file_of(row) if row else None

    async def id_by_sha256(self, sha256: str) -> str | None:
        """The id of the image with these exact bytes, if stored."""
        return await self._value("SELECT id FROM images WHERE sha256 = ?", (sha256,))

    async def near_duplicate(self, phash: int, max_distance: int) -> str | None:
        """The closest non-rejected image within `max_distance` bits (<= 3, the
        distance the quarter index guarantees to find), or None."""
        rows = await self._all(
            "SELECT id, phash FROM images WHERE status <> 'rejected' AND "
            "(ph0 = ? OR ph1 = ? OR ph2 = ? OR ph3 = ?)",
            quarters(phash),
        )
        best: tuple[int, str] | None = None
        for r in rows:
            distance = (phash ^ unsigned64(r["phash"])).bit_count()
            if distance <= max_distance and (best is None or distance < best[0]):
                best = (distance, r["id"])
        return best[1] if best else None

    async def files_with_prefix(self, prefix: str) -> list[tuple[str, str]]:
        """(id, extension) of every image whose id starts with `prefix` and that has
        files (a rejected image's are removed)."""
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        return [
            (r["id"], r["extension"])
            for r in await self._all(
                "SELECT id, extension FROM images WHERE id >= ? AND id < ? "
                "AND status <> 'rejected'",
                (prefix, upper),
            )
        ]

    async def expired_ids(self, now: datetime, limit: int = 500) -> list[str]:
        """Ids of images whose expires_at has passed."""
        rows = await self._all(
            "SELECT id FROM images WHERE expires_at IS NOT NULL AND expires_at <= ? LIMIT ?",
            (now.timestamp(), limit),
        )
        return [r["id"] for r in rows]

    # ---- random (the planner is storage/draws.py) --------------------------------

    async def random_files(self, filters: Filters, count: int) -> list[ImageFile]:
        """Up to `count` distinct approved images drawn uniformly from those matching
        `filters`, as ImageFile: `random_images` without loading their metadata."""
        plan = await self._filter_plan(filters)
        if plan is None or count <= 0:
            return []
        seqs = await self._draw(plan, count)
        if not seqs:
            return []
        rows = await self._all(
            f"SELECT {FILE_COLUMNS}, seq FROM images WHERE seq = ANY(?::int[])", (seqs,)
        )
        by_seq = {r["seq"]: image_file_of(r) for r in rows}
        return [by_seq[s] for s in seqs if s in by_seq]

    @staticmethod
    async def _mark_seen(tx: _Transaction, user_id: str, key: str, seqs: list[int]) -> None:
        await tx.execute(
            "INSERT INTO seen (user_id, filter_key, seq) SELECT ?, ?, unnest(?::int[]) "
            "ON CONFLICT DO NOTHING",
            (user_id, key, seqs),
        )

    async def _accept(
        self,
        picks: list[tuple[int, int]],
        where: list[str],
        params: list[Any],
        rows: dict[int, Any] | None = None,
        need: int = 0,
    ) -> list[int]:
        """The seqs at `picks` that satisfy `where`, in pick order. With `rows`, the
        whole rows of the first `need` accepted images are read by the same query and
        kept there (a draw is then one round trip); an over-drawn rest is not read."""
        if not picks:
            return []
        cond = "".join(f" AND {w}" for w in where)
        accepted = (
            "FROM unnest(?::int[], ?::int[]) WITH ORDINALITY AS p(pool, slot, n) "
            "JOIN pool_slots s ON s.pool = p.pool AND s.slot = p.slot "
            f"JOIN images i ON i.seq = s.seq WHERE TRUE{cond}"
        )
        flat = [[p for p, _ in picks], [s for _, s in picks], *params]
        if rows is None:
            found = await self._all(f"SELECT s.seq AS drawn {accepted} ORDER BY p.n", flat)
            return [r["drawn"] for r in found]
        found = await self._all(
            f"WITH a AS (SELECT s.seq, p.n, row_number() OVER (ORDER BY p.n) AS rank "
            f"{accepted}) "
            f"SELECT x.*, a.seq AS drawn FROM a LEFT JOIN LATERAL (SELECT {_IMAGE_COLUMNS} "
            f"{_IMAGE_FROM} WHERE i.seq = a.seq AND a.rank <= ?) AS x ON TRUE ORDER BY a.n",
            [*flat, need],
        )
        rows.update((r["drawn"], r) for r in found if r["seq"] is not None)
        return [r["drawn"] for r in found]

    async def _scan(
        self, pool_names: list[str], where: list[str], params: list[Any], exclude: set[int]
    ) -> list[int]:
        cond = "".join(f" AND {w}" for w in where)
        rows = await self._all(
            "SELECT s.seq FROM pools p JOIN pool_slots s ON s.pool = p.pool "
            f"JOIN images i ON i.seq = s.seq WHERE p.name = ANY(?::text[]){cond}",
            (pool_names, *params),
        )
        return [r[0] for r in rows if r[0] not in exclude]

    # ---- kept renderings: not on this backend yet ----------------------------------
    # The contract lets a backend keep none: every draw then comes back with its image
    # to be rendered per request (the same answers as SQLite's, at the cost the SQLite
    # backend had before it kept them). Keeping them here needs images.rev and a
    # rendered table like SQLite's migration 5.

    async def random_renditions(
        self, filters: Filters, count: int, dialect: str, *, members: bool = False
    ) -> list[Rendition]:
        """`random_images` as Renditions with no kept body (this backend keeps none)."""
        images = await self.random_images(filters, count)
        if not members:
            return [Rendition(image.id, 0, None, image) for image in images]
        return [
            Rendition(image.id, 0, None, image, image.artist, image.tags, image.characters)
            for image in images
        ]

    async def unrendered(
        self, dialect: str, after: int, limit: int
    ) -> tuple[list[Rendition], int | None]:
        """Nothing to backfill: this backend keeps no renderings."""
        return [], None

    async def put_renditions(self, dialect: str, bodies: Iterable[tuple[str, int, bytes]]) -> int:
        """Keeps nothing (this backend keeps no renderings); 0."""
        return 0

    # ---- tags, artists, characters, albums --------------------------------------

    async def _named_list(
        self, table: str, alias: str, columns: str, pattern: str | None, offset: int, limit: int
    ) -> tuple[list[asyncpg.Record], int]:
        # SQLite's LIKE: ASCII case-insensitive, with no escape character.
        where, params = "", []
        if pattern is not None:
            where, params = f"WHERE lower({alias}.name) LIKE ? ESCAPE ''", [_fold(pattern)]
        rows = await self._all(
            f"SELECT {columns} FROM {table} {alias} {where} "
            f"ORDER BY lower({alias}.name) LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        total = await self._value(f"SELECT COUNT(*) FROM {table} {alias} {where}", params)
        return rows, total

    async def list_tags(
        self, pattern: str | None = None, offset: int = 0, limit: int = 25
    ) -> tuple[list[Tag], int]:
        """Tags whose name is LIKE `pattern` (None = all), by name, with the total."""
        rows, total = await self._named_list("tags", "t", TAG_COLUMNS, pattern, offset, limit)
        return [tag_of(r) for r in rows], total

    async def list_artists(
        self, pattern: str | None = None, offset: int = 0, limit: int = 25
    ) -> tuple[list[Artist], int]:
        """Artists whose name is LIKE `pattern`, by name, with the total."""
        rows, total = await self._named_list("artists", "a", ARTIST_COLUMNS, pattern, offset, limit)
        return [artist_of(r) for r in rows], total

    async def list_characters(
        self, pattern: str | None = None, offset: int = 0, limit: int = 25
    ) -> tuple[list[Character], int]:
        """Characters whose name is LIKE `pattern`, by name, with the total."""
        rows, total = await self._named_list(
            "characters", "c", CHARACTER_COLUMNS, pattern, offset, limit
        )
        return [character_of(r) for r in rows], total

    async def _get_named(self, table: str, alias: str, columns: str, key: str) -> Any:
        return await self._one(
            f"SELECT {columns} FROM {table} {alias} "
            f"WHERE {alias}.id = ? OR lower({alias}.name) = ? LIMIT 1",
            (key, _fold(key)),
        )

    async def get_tag(self, key: str) -> Tag | None:
        """A tag by id or name."""
        row = await self._get_named("tags", "t", TAG_COLUMNS, key)
        return tag_of(row) if row else None

    async def get_artist(self, key: str) -> Artist | None:
        """An artist by id or name."""
        row = await self._get_named("artists", "a", ARTIST_COLUMNS, key)
        return artist_of(row) if row else None

    async def get_character(self, key: str) -> Character | None:
        """A character by id or name."""
        row = await self._get_named("characters", "c", CHARACTER_COLUMNS, key)
        return character_of(row) if row else None

    async def upsert_tag(self, name: str, description: str = "", nsfw: bool = False) -> Tag:
        """Create a tag, or update its description and nsfw flag."""
        async with self.transaction() as tx:
            rid = (await self._get_or_create(tx, "tags", [name]))[_fold(name)]
            await tx.execute(
                "UPDATE tags SET description = ?, nsfw = ? WHERE rid = ?", (description, nsfw, rid)
            )
        tag = await self.get_tag(name)
        assert tag is not None
        return tag

    async def upsert_artist(self, name: str, url: str | None = None) -> Artist:
        """Create an artist, or update their URL."""
        async with self.transaction() as tx:
            rid = (await self._get_or_create(tx, "artists", [name]))[_fold(name)]
            await tx.execute("UPDATE artists SET url = ? WHERE rid = ?", (url, rid))
        artist = await self.get_artist(name)
        assert artist is not None
        return artist

    async def upsert_character(self, name: str, **fields: Any) -> Character:
        """Create a character, or update the given descriptive fields."""
        allowed = {
            "description",
            "source",
            "gender",
            "ages",
            "birth_date",
            "nationality",
            "occupations",
        }
        unknown = set(fields) - allowed
        if unknown:
            raise InvalidInput(f"Unknown character fields: {', '.join(sorted(unknown))}")
        async with self.transaction() as tx:
            rid = (await self._get_or_create(tx, "characters", [name]))[_fold(name)]
            for key, value in fields.items():
                if key in ("ages", "occupations"):
                    value = json.dumps(list(value))
                await tx.execute(f"UPDATE characters SET {key} = ? WHERE rid = ?", (value, rid))
        character = await self.get_character(name)
        assert character is not None
        return character

    async def create_album(self, name: str, owner_id: str | None) -> Album:
        """A new album."""
        album_id, now = new_id(), time.time()
        async with self.transaction() as tx:
            await tx.execute(
                "INSERT INTO albums (id, name, owner_id, created_at) VALUES (?, ?, ?, ?)",
                (album_id, name, owner_id, now),
            )
        return Album(album_id, name, owner_id, at(now))

    async def get_album(self, album_id: str) -> Album | None:
        """An album by id."""
        row = await self._one(
            "SELECT id, name, owner_id, created_at FROM albums WHERE id = ?", (album_id,)
        )
        return Album(row[0], row[1], row[2], at(row[3])) if row else None

    # ---- stats -----------------------------------------------------------------

    async def stats(self) -> Stats:
        """Counts over approved images (ratings from the pools, O(1) each)."""
        sizes = {
            r["name"]: r["size"]
            for r in await self._all(
                "SELECT name, size FROM pools WHERE name = 'all' OR name LIKE 'rating:%'"
            )
        }
        by_rating = {r.value: sizes.get(f"rating:{r.value}", 0) for r in Rating}
        by_orientation = {o: 0 for o in ("landscape", "portrait", "square")}
        for r in await self._all(
            "SELECT orientation, COUNT(*) AS n FROM images WHERE status = 'approved' "
            "GROUP BY orientation"
        ):
            by_orientation[r["orientation"]] = r["n"]
        by_resolution: dict[str, int] = {}
        for r in await self._all(
            """SELECT CASE WHEN width::bigint * height >= 3840 * 2160 THEN '4k'
                      WHEN width::bigint * height >= 1920 * 1080 THEN '1080p'
                      WHEN width::bigint * height >= 1280 * 720 THEN '720p'
                      ELSE 'sd' END AS r, COUNT(*) AS n
               FROM images WHERE status = 'approved' GROUP BY 1"""
        ):
            by_resolution[r["r"]] = r["n"]
        counts = await self._one(
            "SELECT (SELECT COUNT(*) FROM images WHERE status = 'pending') AS pending, "
            "(SELECT COUNT(*) FROM artists) AS artists, "
            "(SELECT COUNT(*) FROM characters) AS characters, "
            "(SELECT COUNT(*) FROM tags) AS categories"
        )
        assert counts is not None
        return Stats(
            images=sizes.get("all", 0),
            by_rating=by_rating,
            by_orientation=by_orientation,
            by_resolution=by_resolution,
            pending=counts["pending"],
            artists=counts["artists"],
            characters=counts["characters"],
            categories=counts["categories"],
        )

    # ---- tokens ----------------------------------------------------------------

    async def insert_token(self, token: Token, secret_sha256: bytes) -> None:
        """Store a token by the hash of its secret (never the secret itself)."""
        async with self.transaction(touches_images=False, durable=True) as tx:
            await tx.execute(
                f"INSERT INTO tokens ({TOKEN_COLUMNS}, secret_sha256) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    token.id,
                    token.owner_id,
                    token.owner_name,
                    token.purpose,
                    " ".join(token.scopes),
                    token.issued_by,
                    ts(token.created_at),
                    ts(token.expires_at),
                    None,
                    None,
                    secret_sha256,
                ),
            )

    async def touch_token(self, token_id: str, when: datetime) -> None:
        """Record a use."""
        async with self.transaction(touches_images=False) as tx:
            await tx.execute(
                "UPDATE tokens SET last_used_at = ? WHERE id = ?", (when.timestamp(), token_id)
            )

    async def revoke_token(self, token_id: str, when: datetime) -> bool:
        """Revoke; False if unknown or already revoked."""
        async with self.transaction(touches_images=False, durable=True) as tx:
            status = await tx.execute(
                "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (when.timestamp(), token_id),
            )
        return _rowcount(status) == 1

    # ---- token requests ----------------------------------------------------------

    async def create_token_request(self, requester: User, purpose: str) -> TokenRequest:
        """File a request; Conflict if the member already has one pending."""
        request_id, now = new_id(), time.time()
        try:
            async with self.transaction(touches_images=False) as tx:
                await tx.execute(
                    f"INSERT INTO token_requests ({REQUEST_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, 'pending', NULL, ?, NULL, NULL)",
                    (request_id, requester.id, requester.name, purpose, now),
                )
        except asyncpg.UniqueViolationError:
            raise Conflict("You already have a token request waiting for an owner.") from None
        request = await self.get_token_request(request_id)
        assert request is not None
        return request

    async def decide_token_request(
        self, request_id: str, status: str, decided_by: str, token_id: str | None
    ) -> bool:
        """Approve or deny a pending request; False if it was no longer pending."""
        async with self.transaction(touches_images=False) as tx:
            done = await tx.execute(
                "UPDATE token_requests SET status = ?, decided_by = ?, decided_at = ?, "
                "token_id = ? WHERE id = ? AND status = 'pending'",
                (status, decided_by, time.time(), token_id, request_id),
            )
        return _rowcount(done) == 1

    # ---- key/value ---------------------------------------------------------------

    async def kv_get(self, key: str) -> str | None:
        """A small persisted value; None when absent or expired."""
        return await self._value(
            "SELECT value FROM kv WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)",
            (key, time.time()),
        )

    async def kv_set(self, key: str, value: str, *, expires_in: timedelta | None = None) -> None:
        """Persist a small value, for good or for `expires_in`."""
        expires_at = time.time() + expires_in.total_seconds() if expires_in else None
        async with self.transaction(touches_images=False) as tx:
            await tx.execute(
                "INSERT INTO kv (key, value, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "expires_at = excluded.expires_at",
                (key, value, expires_at),
            )

    async def kv_purge_expired(self, now: datetime | None = None) -> int:
        """Delete the values whose expiry has passed; returns how many. Processes
        purging at once each delete distinct rows (locked rows are skipped)."""
        when = (now or datetime.now(UTC)).timestamp()
        async with self.transaction(touches_images=False) as tx:
            status = await tx.execute(
                "DELETE FROM kv WHERE key IN (SELECT key FROM kv WHERE expires_at IS NOT NULL "
                "AND expires_at <= ? FOR UPDATE SKIP LOCKED)",
                (when,),
            )
        return _rowcount(status)

    async def kv_claim(self, key: str, holder: str, ttl: timedelta) -> bool:
        """Hold `key` for `holder` for `ttl`: taken when absent, expired or already
        `holder`'s (then renewed); False, and nothing changed, while another holds it."""
        now = time.time()
        async with self.transaction(touches_images=False) as tx:
            # One statement: two processes claiming at once cannot both win (the
            # conflicting insert waits for the other's row lock, then re-checks).
            status = await tx.execute(
                "INSERT INTO kv (key, value, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "expires_at = excluded.expires_at "
                "WHERE kv.value = excluded.value "
                "OR (kv.expires_at IS NOT NULL AND kv.expires_at <= ?)",
                (key, holder, now + ttl.total_seconds(), now),
            )
        return _rowcount(status) == 1

    async def kv_release(self, key: str, holder: str) -> bool:
        """Let go of `key` if `holder` holds it; False if someone else does or nobody."""
        async with self.transaction(touches_images=False) as tx:
            status = await tx.execute("DELETE FROM kv WHERE key = ? AND value = ?", (key, holder))
        return _rowcount(status) == 1

    # ---- outbox ------------------------------------------------------------------

    async def outbox_after(self, seq: int, limit: int = 100) -> list[OutboxEntry]:
        """Up to `limit` outbox entries after `seq`, oldest first."""
        rows = await self._all(
            "SELECT seq, kind, image_id, payload, created_at FROM outbox WHERE seq > ? "
            "ORDER BY seq LIMIT ?",
            (seq, limit),
        )
        return [
            OutboxEntry(
                r["seq"],
                r["kind"],
                r["image_id"],
                json.loads(r["payload"]),
                datetime.fromtimestamp(r["created_at"], UTC),
            )
            for r in rows
        ]

    async def outbox_cursor(self, consumer: str) -> int:
        """The last seq `consumer` acknowledged (0 if none)."""
        seq = await self._value("SELECT seq FROM outbox_cursors WHERE consumer = ?", (consumer,))
        return int(seq) if seq is not None else 0

    async def outbox_ack(self, consumer: str, seq: int) -> None:
        """Record that `consumer` handled every entry up to `seq`; never moves back."""
        async with self.transaction(touches_images=False) as tx:
            await tx.execute(
                "INSERT INTO outbox_cursors (consumer, seq, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (consumer) DO UPDATE SET "
                "seq = GREATEST(outbox_cursors.seq, excluded.seq), "
                "updated_at = excluded.updated_at",
                (consumer, seq, time.time()),
            )

    async def outbox_prune(self, handled_before: datetime, unhandled_before: datetime) -> int:
        """Delete entries older than `handled_before` that every consumer acknowledged,
        and every entry older than `unhandled_before`; returns how many."""
        async with self.transaction(touches_images=False) as tx:
            status = await tx.execute(
                "DELETE FROM outbox WHERE (created_at < ? AND "
                "seq <= (SELECT min(seq) FROM outbox_cursors)) OR created_at < ?",
                (handled_before.timestamp(), unhandled_before.timestamp()),
            )
        return _rowcount(status)

    async def integrity_check(self) -> list[str]:
        """Pools that are not dense and exact, and rows whose references dangle;
        empty when healthy (PostgreSQL enforces its own storage's integrity)."""
        problems = await self.pool_problems()
        for table, column, parent in (
            ("pool_slots", "seq", "images"),
            ("pool_slots", "pool", "pools"),
        ):
            key = "pool" if parent == "pools" else "seq"
            orphans = await self._value(
                f"SELECT COUNT(*) FROM {table} c WHERE NOT EXISTS "
                f"(SELECT 1 FROM {parent} p WHERE p.{key} = c.{column})"
            )
            if orphans:
                problems.append(f"{orphans} {table} row(s) with no {parent} row")
        return problems

    # ---- reports ---------------------------------------------------------------

    async def set_rating(self, image_id: str, rating: Rating) -> Rating | None:
        """Change an image's rating (moving an approved image between rating pools);
        the rating it had, None if no such image."""
        async with self.transaction() as tx:
            row = await tx.one("SELECT seq, status, rating FROM images WHERE id = ?", (image_id,))
            if row is None:
                return None
            seq, old = row["seq"], row["rating"]
            if old == rating.value:
                return Rating(old)
            # Pools are named by rating: leave them under the old one, join the new one.
            approved = row["status"] == Status.APPROVED.value
            if approved:
                await self._pool_remove(tx, seq)
            await tx.execute("UPDATE images SET rating = ? WHERE seq = ?", (rating.value, seq))
            if approved:
                await self._pool_add(tx, seq)
        return Rating(old)

    async def add_report(
        self, image_id: str, reporter: User, reason: str, text: str
    ) -> Report | None:
        """File a report with its outbox entry in one transaction; None if this member
        already reported this image."""
        # An image write's transaction (it holds WRITE_LOCK): outbox entries must commit
        # in seq order, which only that lock guarantees across processes.
        async with self.transaction() as tx:
            report_id = await tx.value(
                "INSERT INTO reports (image_id, reporter_id, reporter_name, reason, text, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (image_id, reporter_id) DO NOTHING RETURNING id",
                (image_id, reporter.id, reporter.name, reason, text, time.time()),
            )
            if report_id is None:
                return None
            await self._announce(tx, IMAGE_REPORTED, image_id, {"report": report_id})
        return await self.get_report(report_id)

    async def resolve_reports(self, image_id: str, action: str, by: User) -> int:
        """Mark the image's open reports handled with `action`; how many were open."""
        async with self.transaction(touches_images=False) as tx:
            status = await tx.execute(
                "UPDATE reports SET action = ?, handled_by_id = ?, handled_by_name = ?, "
                "handled_at = ? WHERE image_id = ? AND action IS NULL",
                (action, by.id, by.name, time.time(), image_id),
            )
        return _rowcount(status)
