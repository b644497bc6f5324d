"""Moving a collection from one store to another: SQLite <-> PostgreSQL for the rows,
files <-> S3 for the bytes, in any combination (`bot.py migrate`).

The models are synapse's `synapse_port_db` (tables copied in primary-key batches from
a live source, resumable) and pict-rs's `migrate-store` (every object copied and
checked). The rules:
- the source is only read: nothing is ever written to or deleted from it, and it may
  keep serving meanwhile (SQLite readers never block its writer; PostgreSQL reads run
  in read-only snapshots);
- images go in seq batches, each with its tags, characters, likes and seen rows. A
  batch's objects are copied and verified first (the image's sha256 as read back from
  the target, the thumbnail's size), then its rows commit in one transaction: a row on
  the target always has its bytes, as on a live server;
- an interrupted run continues where it stopped: images after the target's highest
  seq; objects already present are hashed and kept when they match. A marker in the
  target's kv (`MARKER`) tells such a target from one that holds another collection,
  which is refused without `force`;
- derived structures are not copied but rebuilt on the target: the pools (dense
  numberings the random draws use), the uploaders' counts, the changes counter, kept renderings (the
  server's backfill renders them again) and images.rev with them. PostgreSQL's
  identity sequences are set past the copied ids, and the outbox's past every seq a
  consumer has seen.
Writes made to the source while it is copied reach the target only as new rows
(images, tags, tokens...) and removed images: for an exact copy of a busy collection,
stop its writers before the last run."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from core.contracts import BlobNotFound, BlobStore, image_key, thumbnail_key
from core.errors import GazouError
from core.models import Filters, SearchQuery
from storage import Storage, open_storage
from storage.postgres.repo import PostgresRepo
from storage.postgres.repo import _numbered as numbered
from storage.sqlite import SQLiteRepo
from storage.uploader_counts import RECOUNT

# The target's kv key saying which source a copy under way comes from.
MARKER = "gazou:migrate:source"
# Images per batch (a batch's objects are copied concurrently, then its rows commit).
BATCH = 200
# Objects copied at once.
CONCURRENCY = 8
# Search totals past this are lower bounds (both repos' TOTAL_CAP).
SEARCH_TOTAL_CAP = 10_000


@dataclass(frozen=True, slots=True)
class _Table:
    name: str
    key: str  # the column batches are ordered and resumed by
    conflict: tuple[str, ...] = ()  # the primary key (ON CONFLICT); default: (key,)
    derived: frozenset[str] = frozenset()  # columns rebuilt on the target, not copied

    @property
    def pk(self) -> tuple[str, ...]:
        return self.conflict or (self.key,)


# Copied whole on every run (small, and they change): upserted by primary key.
CATALOGUE = (
    _Table("tags", "rid"),
    _Table("artists", "rid"),
    _Table("characters", "rid"),
    _Table("albums", "rid"),
)
SMALL = (
    _Table("tokens", "id"),  # secret_sha256 is the hash: the secrets were never stored
    _Table("token_requests", "id"),
    _Table("kv", "key"),
    _Table("outbox", "seq"),
    _Table("outbox_cursors", "consumer"),
    _Table("reports", "id"),
)
IMAGES = _Table("images", "seq", derived=frozenset({"rev"}))
# Rows that belong to one image, copied in the transaction of its batch.
WITH_IMAGES = (
    _Table("image_tags", "seq", ("tag_rid", "seq")),
    _Table("image_characters", "seq", ("character_rid", "seq")),
    _Table("likes", "seq", ("seq", "user_id", "kind")),
    _Table("seen", "seq", ("user_id", "filter_key", "seq")),
)
# Emptied by --force, children first.
CLEAR_ORDER = (
    "seen",
    "likes",
    "image_tags",
    "image_characters",
    "pool_slots",
    "pools",
    "uploader_counts",
    "images",
    "tags",
    "artists",
    "characters",
    "albums",
    "token_requests",
    "tokens",
    "kv",
    "outbox",
    "outbox_cursors",
    "reports",
)
# Tables rebuilt on the target (or of no use there), never copied.
REBUILT = (
    "pools",
    "pool_slots",
    "uploader_counts",
    "changes",
    "rendered",
    "schema_version",
    "sqlite_sequence",
)
COUNTED = (*CATALOGUE, IMAGES, *WITH_IMAGES, *SMALL)
# Identity columns whose PostgreSQL sequence must pass the copied ids.
IDENTITIES = (
    ("tags", "rid"),
    ("artists", "rid"),
    ("characters", "rid"),
    ("albums", "rid"),
    ("images", "seq"),
    ("reports", "id"),
)

# The approved members of every pool, as both repos name their pools.
_POOL_MEMBERS = """
    SELECT 'all' AS name, seq FROM images WHERE status = 'approved'
    UNION ALL SELECT 'rating:' || rating, seq FROM images WHERE status = 'approved'
    UNION ALL SELECT 'artist:' || artist_rid, seq FROM images
        WHERE status = 'approved' AND artist_rid IS NOT NULL
    UNION ALL SELECT 'tag:' || t.tag_rid, t.seq FROM image_tags t
        JOIN images i ON i.seq = t.seq WHERE i.status = 'approved'
    UNION ALL SELECT 'character:' || c.character_rid, c.seq FROM image_characters c
        JOIN images i ON i.seq = c.seq WHERE i.status = 'approved'
"""


class MigrationError(GazouError):
    """A copy that cannot go on (a bad object, a schema mismatch); says what to do."""

    status = 500
    code = "migration_failed"


class TargetNotEmpty(MigrationError):
    """The target holds another collection (refused without --force)."""

    code = "target_not_empty"


class Interrupted(Exception):
    """Raised by the test hook `stop_after` once that many images' objects are copied."""


@dataclass
class MigrationReport:
    """What a run did, for the summary."""

    resumed: bool = False
    rows: dict[str, int] = field(default_factory=dict)
    objects_copied: int = 0
    objects_present: int = 0
    bytes_copied: int = 0
    missing_in_source: list[str] = field(default_factory=list)
    removed_from_target: int = 0
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # table: (source, target)
    serve_problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def mismatched(self) -> list[str]:
        """Tables whose row counts differ between source and target."""
        return [t for t, (s, d) in self.counts.items() if s != d]


class _Side:
    """One store's rows, through SQL both backends understand (`?` placeholders)."""

    def __init__(self, storage: Storage) -> None:
        repo = storage.repo
        if not isinstance(repo, SQLiteRepo | PostgresRepo):
            raise MigrationError(f"cannot migrate a {type(repo).__name__}")
        self.repo = repo
        self.sqlite = repo if isinstance(repo, SQLiteRepo) else None
        self.pg = repo if isinstance(repo, PostgresRepo) else None
        self.blobs = storage.blobs
        self._types: dict[str, dict[str, str]] = {}

    async def columns(self, table: str) -> dict[str, str]:
        """Column name -> declared type (lower case), in table order."""
        if table not in self._types:
            if self.sqlite is not None:
                rows = await self.read([(f"PRAGMA table_info({table})", ())])
                self._types[table] = {r[1]: str(r[2]).lower() for r in rows[0]}
            else:
                rows = await self.read(
                    [
                        (
                            "SELECT column_name, data_type FROM information_schema.columns "
                            "WHERE table_schema = current_schema() AND table_name = ? "
                            "ORDER BY ordinal_position",
                            (table,),
                        )
                    ]
                )
                self._types[table] = {r[0]: str(r[1]).lower() for r in rows[0]}
        return self._types[table]

    async def read(
        self, queries: Sequence[tuple[str, Sequence[Any]]]
    ) -> list[list[tuple[Any, ...]]]:
        """Run read queries in one snapshot (one consistent state of a live store)."""
        if self.sqlite is not None:
            conn = self.sqlite.reader
            await conn.execute("BEGIN")
            try:
                return [
                    [tuple(r) for r in await conn.execute_fetchall(sql, tuple(params))]
                    for sql, params in queries
                ]
            finally:
                await conn.execute("COMMIT")
        assert self.pg is not None
        async with self.pg.pool.acquire() as conn:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                return [
                    [tuple(r) for r in await conn.fetch(numbered(sql), *params)]
                    for sql, params in queries
                ]

    async def value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = (await self.read([(sql, params)]))[0]
        return rows[0][0] if rows else None

    def write(self) -> Any:
        """One write transaction on the target (both repos' `transaction()`)."""
        return self.repo.transaction()

    def insert_sql(self, table: _Table, cols: Sequence[str], *, upsert: bool) -> str:
        """An INSERT of `cols` that skips (or, upserting, updates) rows already there."""
        marks = ",".join("?" * len(cols))
        # PostgreSQL's outbox.seq is GENERATED ALWAYS: a copied seq must override it.
        override = " OVERRIDING SYSTEM VALUE" if self.pg and table.name == "outbox" else ""
        rest = [c for c in cols if c not in table.pk]
        action = (
            "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in rest)
            if upsert and rest
            else "DO NOTHING"
        )
        return (
            f"INSERT INTO {table.name} ({', '.join(cols)}){override} VALUES ({marks}) "
            f"ON CONFLICT ({', '.join(table.pk)}) {action}"
        )

    async def converter(
        self, table: str, cols: Sequence[str]
    ) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
        """How a source row becomes this side's values: SQLite keeps booleans as 0/1,
        PostgreSQL wants True/False (the other way sqlite3 adapts them itself)."""
        types = await self.columns(table)
        flags = [types.get(c) == "boolean" for c in cols] if self.pg else []
        if not any(flags):
            return lambda row: row
        return lambda row: tuple(
            (None if v is None else bool(v)) if f else v for v, f in zip(row, flags, strict=True)
        )


async def _copied_columns(source: _Side, target: _Side, table: _Table) -> list[str]:
    """The columns to copy: every source column but the derived ones; a column the
    target lacks would be lost, so it stops the run (run the same gazou version)."""
    src, dst = await source.columns(table.name), await target.columns(table.name)
    if not src:
        return []  # a table this source does not have (an older schema)
    cols = [c for c in src if c not in table.derived]
    lacking = [c for c in cols if c not in dst]
    if not dst or lacking:
        raise MigrationError(
            f"the target has no {table.name}"
            + (f".{', '.join(lacking)}" if dst else "")
            + ": migrate between stores of the same gazou version"
        )
    return cols


async def _count(side: _Side, table: str) -> int:
    return int(await side.value(f"SELECT COUNT(*) FROM {table}"))


async def _holds_anything(side: _Side) -> bool:
    for table in COUNTED:
        if await side.value(f"SELECT 1 FROM {table.name} LIMIT 1") is not None:
            return True
    return False


async def _copy_table(
    source: _Side, target: _Side, table: _Table, report: MigrationReport, *, after: Any = None
) -> Any:
    """Copy `table` in key order (rows past `after` only, if given), upserting; returns
    the last key copied."""
    cols = await _copied_columns(source, target, table)
    if not cols:
        return after
    convert = await target.converter(table.name, cols)
    sql = target.insert_sql(table, cols, upsert=True)
    key_at = cols.index(table.key)
    last = after
    while True:
        where, params = (f"WHERE {table.key} > ? ", (last,)) if last is not None else ("", ())
        (rows,) = await source.read(
            [
                (
                    f"SELECT {', '.join(cols)} FROM {table.name} {where}"
                    f"ORDER BY {table.key} LIMIT {BATCH * 5}",
                    params,
                )
            ]
        )
        if not rows:
            return last
        async with target.write() as tx:
            await tx.executemany(sql, [convert(r) for r in rows])
        report.rows[table.name] = report.rows.get(table.name, 0) + len(rows)
        last = rows[-1][key_at]


class _Blobs:
    """Copies objects between the two blob stores and checks each copy."""

    def __init__(self, source: BlobStore, target: BlobStore, report: MigrationReport) -> None:
        self.source, self.target, self.report = source, target, report
        self.gate = asyncio.Semaphore(CONCURRENCY)

    @staticmethod
    async def _read(store: BlobStore, key: str) -> bytes | None:
        """Every byte of `key`, streamed in chunks; None when it holds nothing."""
        parts: list[bytes] = []
        stream = store.read(key)
        try:
            async for chunk in stream:
                parts.append(chunk)
        except BlobNotFound:
            return None
        finally:
            await stream.aclose()
        return b"".join(parts)

    async def copy(self, key: str, check: Callable[[bytes], bool], what: str) -> None:
        """Copy `key` unless the target already holds bytes that pass `check`, then read
        the copy back and check it; MigrationError naming `what` on a bad object."""
        async with self.gate:
            # Present (an interrupted run wrote it before its row): kept if it checks.
            present = await self._read(self.target, key) if await self.target.exists(key) else None
            if present is not None and check(present):
                self.report.objects_present += 1
                return
            data = await self._read(self.source, key)
            if data is None:
                self.report.missing_in_source.append(key)
                return
            if not check(data):
                raise MigrationError(
                    f"{what}: the source's {key} does not match its row (corrupt object); "
                    "nothing of its batch was committed"
                )
            await self.target.put(key, data)
            copied = await self._read(self.target, key)
            if copied is None or not check(copied):
                raise MigrationError(f"{what}: the target's copy of {key} does not match its row")
            self.report.objects_copied += 1
            self.report.bytes_copied += len(data)


def _sha256_is(expected: str) -> Callable[[bytes], bool]:
    return lambda data: hashlib.sha256(data).hexdigest() == expected


def _size_is(expected: int) -> Callable[[bytes], bool]:
    return lambda data: len(data) == expected


async def _copy_images(
    source: _Side,
    target: _Side,
    report: MigrationReport,
    *,
    progress: Callable[[int], None],
    stop_after: int | None,
    batch: int,
) -> None:
    """Every image after the target's highest seq, batch by batch: objects first, then
    the batch's rows (with their tags, characters, likes, seen) in one transaction."""
    cols = await _copied_columns(source, target, IMAGES)
    at = {c: n for n, c in enumerate(cols)}
    convert = await target.converter("images", cols)
    insert = target.insert_sql(IMAGES, cols, upsert=False)
    children = []  # (table, columns, converter, insert)
    for table in WITH_IMAGES:
        if child_cols := await _copied_columns(source, target, table):
            converter = await target.converter(table.name, child_cols)
            sql = target.insert_sql(table, child_cols, upsert=False)
            children.append((table, child_cols, converter, sql))
    catalogue_last = {
        t.name: await target.value(f"SELECT MAX({t.key}) FROM {t.name}") for t in CATALOGUE
    }
    blobs = _Blobs(source.blobs, target.blobs, report)
    last = int(await target.value("SELECT COALESCE(MAX(seq), 0) FROM images"))
    # The batch's highest seq, so its images and their rows come from one snapshot.
    high_sql = (
        f"(SELECT MAX(seq) FROM (SELECT seq FROM images WHERE seq > ? ORDER BY seq "
        f"LIMIT {batch}) b)"
    )
    done = 0
    while True:
        rows, *dependents = await source.read(
            [
                (
                    f"SELECT {', '.join(cols)} FROM images WHERE seq > ? ORDER BY seq "
                    f"LIMIT {batch}",
                    (last,),
                ),
                *(
                    (
                        f"SELECT {', '.join(c)} FROM {t.name} WHERE seq > ? AND seq <= {high_sql}",
                        (last, last),
                    )
                    for t, c, _, _ in children
                ),
            ]
        )
        if not rows:
            return
        # Tags, artists... created on the live source since they were copied.
        for table in CATALOGUE:
            catalogue_last[table.name] = await _copy_table(
                source, target, table, report, after=catalogue_last[table.name]
            )
        jobs = []
        for row in rows:
            if row[at["status"]] == "rejected":
                continue  # a rejected image's files were removed; its row stays
            image_id, sha256 = row[at["id"]], row[at["sha256"]]
            thumb_size = row[at["thumbnail_size"]]
            jobs.append(
                blobs.copy(
                    image_key(image_id, row[at["extension"]]),
                    _sha256_is(sha256),
                    f"image {image_id}",
                )
            )
            jobs.append(
                blobs.copy(
                    thumbnail_key(image_id),
                    _size_is(thumb_size),
                    f"image {image_id} (its thumbnail)",
                )
            )
        if stop_after is not None and done + len(rows) > stop_after:
            # The test hook: this batch's objects copied in part, none of its rows.
            cut = 2 * max(0, stop_after - done)
            for job in jobs[cut:]:
                job.close()
            await asyncio.gather(*jobs[:cut])
            raise Interrupted
        await asyncio.gather(*jobs)
        async with target.write() as tx:
            await tx.executemany(insert, [convert(r) for r in rows])
            for (table, _, child_convert, sql), found in zip(children, dependents, strict=True):
                await tx.executemany(sql, [child_convert(r) for r in found])
                report.rows[table.name] = report.rows.get(table.name, 0) + len(found)
        report.rows["images"] = report.rows.get("images", 0) + len(rows)
        done += len(rows)
        last = rows[-1][at["seq"]]
        progress(len(rows))


async def _remove_gone(source: _Side, target: _Side, report: MigrationReport) -> None:
    """Images deleted from the source after an earlier run copied them leave the target
    too (rows; their objects are left to the target's orphan check)."""
    (src,) = await source.read([("SELECT seq FROM images", ())])
    (dst,) = await target.read([("SELECT seq FROM images", ())])
    gone = sorted({r[0] for r in dst} - {r[0] for r in src})
    for start in range(0, len(gone), BATCH):
        chunk = gone[start : start + BATCH]
        async with target.write() as tx:
            await tx.executemany("DELETE FROM images WHERE seq = ?", [(s,) for s in chunk])
    report.removed_from_target = len(gone)


async def _rebuild_derived(source: _Side, target: _Side) -> None:
    """Pools and uploaders' counts from the copied rows; PostgreSQL's sequences and the
    outbox's past the copied ids."""
    async with target.write() as tx:
        await tx.execute("DELETE FROM pool_slots")
        await tx.execute("DELETE FROM pools")
        await tx.execute(
            f"INSERT INTO pools (name, size) SELECT name, COUNT(*) FROM ({_POOL_MEMBERS}) m "
            "GROUP BY name"
        )
        await tx.execute(
            "INSERT INTO pool_slots (pool, slot, seq) SELECT p.pool, "
            f"ROW_NUMBER() OVER (PARTITION BY m.name ORDER BY m.seq) - 1, m.seq "
            f"FROM ({_POOL_MEMBERS}) m JOIN pools p ON p.name = m.name"
        )
        for statement in RECOUNT:
            await tx.execute(statement)
    # Entries the consumers have passed must never be handed out again, even if the
    # source pruned them: the next seq passes the source's, the copied and the cursors'.
    high = max(
        await _outbox_high_water(source),
        int(await target.value("SELECT COALESCE(MAX(seq), 0) FROM outbox")),
        int(await target.value("SELECT COALESCE(MAX(seq), 0) FROM outbox_cursors")),
    )
    async with target.write() as tx:
        if target.pg is not None:
            for name, column in IDENTITIES:
                await tx.execute(
                    f"SELECT setval(pg_get_serial_sequence('{name}', '{column}'), "
                    f"GREATEST(COALESCE(MAX({column}), 0), 1), MAX({column}) IS NOT NULL) "
                    f"FROM {name}"
                )
            if high:
                await tx.execute(
                    "SELECT setval(pg_get_serial_sequence('outbox', 'seq'), ?)", (high,)
                )
        elif high:
            await tx.execute("DELETE FROM sqlite_sequence WHERE name = 'outbox'")
            await tx.execute(
                "INSERT INTO sqlite_sequence (name, seq) VALUES ('outbox', ?)", (high,)
            )


async def _outbox_high_water(side: _Side) -> int:
    """The last outbox seq the side ever handed out (pruned entries included)."""
    if side.pg is not None:
        sequence = await side.value("SELECT pg_get_serial_sequence('outbox', 'seq')")
        return int(
            await side.value(
                f"SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {sequence}"
            )
        )
    try:
        value = await side.value("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'")
    except sqlite3.OperationalError:
        value = None  # no AUTOINCREMENT table has been written yet
    return int(value or 0)


@dataclass(frozen=True, slots=True)
class Place:
    """A whole store as the settings name one: rows in PostgreSQL (`database_url`) or
    SQLite under `data_dir`, bytes in S3 (`blob_url`) or files under `data_dir`."""

    data_dir: Path
    database_url: str | None = None
    blob_url: str | None = None
    blob_access_key: str | None = field(default=None, repr=False)
    blob_secret_key: str | None = field(default=None, repr=False)

    def name(self) -> str:
        """Where it is, without credentials (the marker's value and messages)."""
        if self.database_url:
            parts = urlsplit(self.database_url)
            rows = f"postgresql://{parts.hostname}:{parts.port or 5432}{parts.path}"
        else:
            rows = f"sqlite:{(self.data_dir / 'gazou.sqlite3').resolve()}"
        blobs = self.blob_url.split("?")[0] if self.blob_url else f"files:{self.data_dir.resolve()}"
        return f"{rows} + {blobs}"

    def rows(self) -> str:
        """Where the rows are: the database URL or the SQLite file."""
        return self.database_url or str((self.data_dir / "gazou.sqlite3").resolve())

    def open(self) -> AbstractAsyncContextManager[Storage]:
        """The store, opened (and migrated) as a server opens it."""
        return open_storage(
            self.data_dir,
            database_url=self.database_url,
            blob_url=self.blob_url,
            blob_access_key=self.blob_access_key,
            blob_secret_key=self.blob_secret_key,
        )


async def run_migration(
    source: Place,
    target: Place,
    *,
    force: bool = False,
    progress: Callable[[int], None] = lambda n: None,
    total: Callable[[int], None] = lambda n: None,
    stop_after: int | None = None,
    batch: int = BATCH,
) -> MigrationReport:
    """Open both stores, copy the source into the target (`migrate`), then open the
    target again as a server would and check that it answers random and search. The
    signing secret kept under the source's DATA_DIR goes along (signed links stay
    valid) when the target has a data dir without one."""
    if source.rows() == target.rows():
        raise TargetNotEmpty("the target's database is the source's: name another one")
    async with source.open() as source_storage, target.open() as target_storage:
        report = await migrate(
            source_storage,
            target_storage,
            source_name=source.name(),
            force=force,
            progress=progress,
            total=total,
            stop_after=stop_after,
            batch=batch,
        )
    secret, kept = source.data_dir / "signing_secret", target.data_dir / "signing_secret"
    if secret.is_file() and not kept.exists():
        target.data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(secret, kept)
        kept.chmod(0o600)
    async with target.open() as opened:
        report.serve_problems = await check_serves(opened)
    return report


async def migrate(
    source_storage: Storage,
    target_storage: Storage,
    *,
    source_name: str,
    force: bool = False,
    progress: Callable[[int], None] = lambda n: None,
    total: Callable[[int], None] = lambda n: None,
    stop_after: int | None = None,
    batch: int = BATCH,
) -> MigrationReport:
    """Copy every row and object of the source store into the target, resumably, and
    check the result (see the module's docstring). TargetNotEmpty when the target holds
    something else and `force` is not given; with `force` its rows are emptied first
    (never the source's). `total` is told how many images remain to copy, `progress`
    each batch copied."""
    started = time.monotonic()
    source, target = _Side(source_storage), _Side(target_storage)
    report = MigrationReport()
    marked = await target.value("SELECT value FROM kv WHERE key = ?", (MARKER,))
    if marked == source_name and not force:
        report.resumed = True
    elif await _holds_anything(target):
        if not force:
            what = f"a copy from {marked}" if marked else "a collection"
            raise TargetNotEmpty(
                f"the target already holds {what}: refusing to write into it "
                "(--force empties the target's rows first)"
            )
        async with target.write() as tx:
            for name in CLEAR_ORDER:
                await tx.execute(f"DELETE FROM {name}")
    async with target.write() as tx:
        await tx.execute(
            "INSERT INTO kv (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (MARKER, source_name),
        )
    for table in CATALOGUE:
        await _copy_table(source, target, table, report)
    remaining = await source.value(
        "SELECT COUNT(*) FROM images WHERE seq > ?",
        (int(await target.value("SELECT COALESCE(MAX(seq), 0) FROM images")),),
    )
    total(int(remaining))
    await _copy_images(
        source, target, report, progress=progress, stop_after=stop_after, batch=batch
    )
    await _remove_gone(source, target, report)
    for table in SMALL:
        await _copy_table(source, target, table, report)
    await _rebuild_derived(source, target)
    for table in COUNTED:
        if not await source.columns(table.name):
            continue
        src, dst = await _count(source, table.name), await _count(target, table.name)
        if table.name == "kv":
            dst -= 1  # the marker
        report.counts[table.name] = (src, dst)
    if not report.mismatched():
        async with target.write() as tx:
            await tx.execute("DELETE FROM kv WHERE key = ?", (MARKER,))
    report.seconds = time.monotonic() - started
    return report


async def check_serves(storage: Storage) -> list[str]:
    """What is wrong with a store's random draws and search, as a server would ask
    them (empty: they answer as its approved images say they should)."""
    approved = await storage.repo.pool_size("all")
    problems = []
    drawn = await storage.repo.random_images(Filters(), 5)
    if len(drawn) != min(5, approved):
        problems.append(f"random drew {len(drawn)} of {approved} approved image(s)")
    page = await storage.repo.search(SearchQuery(limit=5))
    if page.total != approved and not (page.total >= SEARCH_TOTAL_CAP <= approved):
        problems.append(f"search counted {page.total} of {approved} approved image(s)")
    if len(page.images) != min(5, approved):
        problems.append(f"search listed {len(page.images)} of {approved} approved image(s)")
    return problems
