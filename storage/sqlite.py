"""The metadata repo on SQLite (aiosqlite): WAL, foreign keys, forward migrations.

One connection writes (serialised by a lock, each change in one transaction);
another reads, so reads never queue behind a write under WAL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random as _random
import sqlite3
import string
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import aiosqlite

from core.errors import (
    Conflict,
    DuplicateImage,
    GazouError,
    InvalidInput,
    StorageFull,
    StorageUnavailable,
)
from core.events import IMAGE_DECIDED, IMAGE_PENDING
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
    SearchPage,
    SearchQuery,
    Sort,
    Stats,
    Status,
    Tag,
    Token,
    TokenRequest,
    User,
    new_id,
)
from storage.rows import (
    IMAGE_COLUMNS,
    image_values,
    like_pattern,
    quarters,
    rid_list,
    ts,
    unsigned64,
)
from storage.schema import MIGRATIONS

log = logging.getLogger(__name__)

# Totals past this are reported as "at least" so a count never walks a huge set.
TOTAL_CAP = 10_000
# Rows a draw may look at through rejection before falling back to an exact scan.
DRAW_ROUNDS = 4
# Keys resolved per query (two bound variables each, well under SQLite's limit).
RIDS_CHUNK = 400
# What COLLATE NOCASE folds: ASCII letters only.
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_SECRET_RNG = _random.SystemRandom()
# WAL with NORMAL: a commit is atomic and survives a crash of the process, but the
# last commits before a power cut may be lost (the WAL is synced only at
# checkpoints). Durable transactions switch to FULL for their commit (one fsync).
_SYNCHRONOUS = "NORMAL"


# Enum lookups by value cost microseconds each on the hot read path; a dict doesn't.
_RATING = {r.value: r for r in Rating}
_STATUS = {s.value: s for s in Status}


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


def _dt(value: float | None) -> datetime | None:
    return None if value is None else _at(value)


def _at(value: float) -> datetime:
    """A NOT NULL timestamp column as an aware datetime."""
    return datetime.fromtimestamp(value, UTC)


def _rowid(cur: aiosqlite.Cursor) -> int:
    """The rowid of the row the INSERT just run on `cur` added."""
    assert cur.lastrowid is not None, "no row was inserted"
    return cur.lastrowid


_IMAGE_COLUMNS = """
    i.seq, i.id, i.sha256, i.md5, i.phash, i.mimetype, i.extension, i.size, i.width,
    i.height, i.aspect_ratio, i.orientation, i.dominant_color, i.animated,
    i.thumbnail_size, i.rating, i.status, i.title, i.description, i.source_name,
    i.source_url, i.original_filename, i.uploader_id, i.uploader_name, i.approver_id,
    i.approver_name, i.likes, i.favorites, i.created_at, i.expires_at,
    i.near_duplicate_of, i.artist_rid,
    al.id, al.name, al.owner_id, al.created_at,
    (SELECT group_concat(tag_rid) FROM image_tags WHERE seq = i.seq),
    (SELECT group_concat(character_rid) FROM image_characters WHERE seq = i.seq)
"""
_IMAGE_FROM = """
    FROM images i
    LEFT JOIN albums al ON al.rid = i.album_rid
"""
# SQLite's NOCASE collation folds ASCII letters only: sort names the way it does.
_NOCASE = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
# Tags, artists and characters kept by the read cache before it starts over.
CATALOGUE_CAP = 50_000
# How much of the database file the read connection maps into memory (see `open`).
READ_MMAP_BYTES = 256 * 1024 * 1024
# How often (seconds) the read cache looks for changes made by another process.
EXTERNAL_CHANGES_EVERY = 1.0


def _tag(row: Sequence[Any]) -> Tag:
    return Tag(
        id=row[0],
        name=row[1],
        description=row[2],
        nsfw=bool(row[3]),
        created_at=_at(row[4]),
        images=row[5] or 0,
    )


def _artist(row: Sequence[Any]) -> Artist:
    return Artist(id=row[0], name=row[1], url=row[2], created_at=_at(row[3]), images=row[4] or 0)


def _character(row: Sequence[Any]) -> Character:
    return Character(
        id=row[0],
        name=row[1],
        description=row[2],
        source=row[3],
        gender=row[4],
        ages=tuple(json.loads(row[5])),
        birth_date=row[6],
        nationality=row[7],
        occupations=tuple(json.loads(row[8])),
        created_at=_at(row[9]),
        images=row[10] or 0,
    )


_TAG_COLUMNS = (
    "t.id, t.name, t.description, t.nsfw, t.created_at, "
    "(SELECT size FROM pools WHERE name = 'tag:' || t.rid)"
)
_ARTIST_COLUMNS = (
    "a.id, a.name, a.url, a.created_at, (SELECT size FROM pools WHERE name = 'artist:' || a.rid)"
)
_CHARACTER_COLUMNS = (
    "c.id, c.name, c.description, c.source, c.gender, c.ages, c.birth_date, c.nationality, "
    "c.occupations, c.created_at, (SELECT size FROM pools WHERE name = 'character:' || c.rid)"
)
# What hydrating an image reads of its tags, artist and characters, by table.
_MEMBERS: dict[str, tuple[str, str, Callable[[Sequence[Any]], Any]]] = {
    "tags": ("t", _TAG_COLUMNS, _tag),
    "artists": ("a", _ARTIST_COLUMNS, _artist),
    "characters": ("c", _CHARACTER_COLUMNS, _character),
}
_TOKEN_COLUMNS = (
    "id, owner_id, owner_name, purpose, scopes, issued_by, created_at, expires_at, "
    "revoked_at, last_used_at"
)
_REQUEST_COLUMNS = (
    "id, requester_id, requester_name, purpose, status, decided_by, created_at, "
    "decided_at, token_id"
)


def _token(row: Sequence[Any]) -> Token:
    return Token(
        id=row[0],
        owner_id=row[1],
        owner_name=row[2],
        purpose=row[3],
        scopes=tuple(s for s in row[4].split(" ") if s),
        issued_by=row[5],
        created_at=_at(row[6]),
        expires_at=_dt(row[7]),
        revoked_at=_dt(row[8]),
        last_used_at=_dt(row[9]),
    )


def _request(row: Sequence[Any]) -> TokenRequest:
    return TokenRequest(
        id=row[0],
        requester_id=row[1],
        requester_name=row[2],
        purpose=row[3],
        status=row[4],
        decided_by=row[5],
        created_at=_at(row[6]),
        decided_at=_dt(row[7]),
        token_id=row[8],
    )


_FILE_COLUMNS = (
    "id, extension, sha256, mimetype, size, thumbnail_size, status, uploader_id, expires_at"
)


def _image_file(row: Sequence[Any]) -> ImageFile:
    return ImageFile(
        id=row[0],
        extension=row[1],
        sha256=row[2],
        mimetype=row[3],
        size=row[4],
        thumbnail_size=row[5],
        status=_STATUS[row[6]],
        uploader_id=row[7],
        expires_at=_dt(row[8]),
    )


@dataclass(frozen=True, slots=True)
class _Plan:
    """How a random draw finds its matches: the pools whose union holds them all (by
    name, with every pool's id and size), the SQL conditions that narrow the union to
    exactly the matches, and the share of the union expected to pass them."""

    pools: list[str]
    sizes: dict[str, tuple[int, int]]
    where: list[str]
    params: list[Any]
    passing: float


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
        if len(self.objects[kind]) + len(objects) > CATALOGUE_CAP:
            self.objects[kind] = {}
        if len(self.sets[kind]) + len(sets) > CATALOGUE_CAP:
            self.sets[kind] = {None: ()}
        self.objects[kind].update(objects)
        self.sets[kind].update(sets)


class SQLiteRepo:
    """All metadata: images, tags, artists, characters, albums, tokens, requests."""

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

    async def __aenter__(self) -> SQLiteRepo:
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

    async def unknown_tags(self, names: Iterable[str]) -> list[str]:
        """Which of `names` name no tag."""
        names = list(names)
        rids = await self._rids("tags", names)
        return [n for n, r in zip(names, rids, strict=True) if r is None]

    # ---- pools -----------------------------------------------------------------

    @staticmethod
    async def _pool_names(tx: _Transaction, seq: int) -> list[str]:
        row = await tx.one("SELECT rating, artist_rid FROM images WHERE seq = ?", (seq,))
        names = ["all", f"rating:{row[0]}"]
        if row[1] is not None:
            names.append(f"artist:{row[1]}")
        for (rid,) in await tx.all("SELECT tag_rid FROM image_tags WHERE seq = ?", (seq,)):
            names.append(f"tag:{rid}")
        for (rid,) in await tx.all(
            "SELECT character_rid FROM image_characters WHERE seq = ?", (seq,)
        ):
            names.append(f"character:{rid}")
        return names

    async def _pool_add(self, tx: _Transaction, seq: int) -> None:
        for name in await self._pool_names(tx, seq):
            row = await tx.one("SELECT pool, size FROM pools WHERE name = ?", (name,))
            if row is None:
                cur = await tx.execute("INSERT INTO pools (name, size) VALUES (?, 0)", (name,))
                pool, size = _rowid(cur), 0
            else:
                pool, size = row
            await tx.execute(
                "INSERT INTO pool_slots (pool, slot, seq) VALUES (?, ?, ?)", (pool, size, seq)
            )
            await tx.execute("UPDATE pools SET size = ? WHERE pool = ?", (size + 1, pool))

    @staticmethod
    async def _pool_remove(tx: _Transaction, seq: int) -> None:
        members = await tx.all(
            "SELECT s.pool, s.slot, p.size FROM pool_slots s JOIN pools p ON p.pool = s.pool "
            "WHERE s.seq = ?",
            (seq,),
        )
        for pool, slot, size in members:
            last = size - 1
            if slot != last:
                (last_seq,) = await tx.one(
                    "SELECT seq FROM pool_slots WHERE pool = ? AND slot = ?", (pool, last)
                )
                await tx.execute("DELETE FROM pool_slots WHERE pool = ? AND slot = ?", (pool, last))
                await tx.execute(
                    "UPDATE pool_slots SET seq = ? WHERE pool = ? AND slot = ?",
                    (last_seq, pool, slot),
                )
            else:
                await tx.execute("DELETE FROM pool_slots WHERE pool = ? AND slot = ?", (pool, slot))
            await tx.execute("UPDATE pools SET size = ? WHERE pool = ?", (last, pool))

    async def _pool_sizes(self, names: Iterable[str]) -> dict[str, tuple[int, int]]:
        names = list(names)
        if not names:
            return {}
        marks = ",".join("?" * len(names))
        rows = await self._all(f"SELECT name, pool, size FROM pools WHERE name IN ({marks})", names)
        return {r[0]: (r[1], r[2]) for r in rows}

    async def pool_size(self, name: str) -> int:
        """How many approved images a pool (`all`, `rating:sfw`, `tag:<rid>`...) holds."""
        row = await self._one("SELECT size FROM pools WHERE name = ?", (name,))
        return row[0] if row else 0

    # ---- images: writes --------------------------------------------------------

    async def insert_image(self, new: NewImage) -> Image:
        """Insert an image with its tags, artist and characters in one transaction;
        raises DuplicateImage (with the stored id) when its sha256 is already stored.
        Durable: this commit is what acknowledges an upload."""
        try:
            await self._insert_image(new)
        except sqlite3.IntegrityError:
            # Two uploads of the same bytes raced; the other one won.
            existing = await self.id_by_sha256(new.sha256)
            if existing is None:
                raise
            raise DuplicateImage(existing) from None
        image = await self.get_image(new.id)
        assert image is not None
        return image

    async def _insert_image(self, new: NewImage) -> None:
        async with self.transaction(durable=True) as tx:
            artist_rid = None
            if new.artist:
                artist_rid = await self._get_or_create(tx, "artists", new.artist)
            album_rid = None
            if new.album_id:
                row = await tx.one("SELECT rid FROM albums WHERE id = ?", (new.album_id,))
                if row is None:
                    raise InvalidInput("Unknown album", field="album_id")
                album_rid = row[0]
            marks = ",".join("?" * len(IMAGE_COLUMNS))
            cur = await tx.execute(
                f"INSERT INTO images ({', '.join(IMAGE_COLUMNS)}) VALUES ({marks})",
                image_values(new, artist_rid, album_rid),
            )
            seq = _rowid(cur)
            for name in dict.fromkeys(new.tags):
                rid = await self._get_or_create(tx, "tags", name)
                await tx.execute(
                    "INSERT OR IGNORE INTO image_tags (tag_rid, seq) VALUES (?, ?)", (rid, seq)
                )
            for name in dict.fromkeys(new.characters):
                rid = await self._get_or_create(tx, "characters", name)
                await tx.execute(
                    "INSERT OR IGNORE INTO image_characters (character_rid, seq) VALUES (?, ?)",
                    (rid, seq),
                )
            if new.status is Status.APPROVED:
                await self._pool_add(tx, seq)
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
        # A reject lets the image's files go right after this commit: it must not be
        # undone by a power cut, or the row would come back without them.
        async with self.transaction(durable=status is Status.REJECTED) as tx:
            row = await tx.one("SELECT seq, status FROM images WHERE id = ?", (image_id,))
            if row is None:
                return None
            seq, old = row
            if only_from is not None and _STATUS[old] not in only_from:
                return _STATUS[old]
            await tx.execute(
                "UPDATE images SET status = ?, approver_id = ?, approver_name = ?, "
                "rev = rev + 1 WHERE seq = ?",
                (
                    status.value,
                    approver.id if approver else None,
                    approver.name if approver else None,
                    seq,
                ),
            )
            if old == Status.APPROVED and status is not Status.APPROVED:
                await self._pool_remove(tx, seq)
            elif old != Status.APPROVED and status is Status.APPROVED:
                await self._pool_add(tx, seq)
            if old != status and status in (Status.APPROVED, Status.REJECTED):
                by = [approver.id, approver.name] if approver else None
                payload = {"approved": status is Status.APPROVED, "by": by}
                await self._announce(tx, IMAGE_DECIDED, image_id, payload)
        return _STATUS[old]

    @staticmethod
    async def _announce(
        tx: _Transaction, kind: str, image_id: str, payload: dict[str, Any]
    ) -> None:
        """Append an outbox entry inside the transaction that makes the change."""
        await tx.execute(
            "INSERT INTO outbox (kind, image_id, payload, created_at) VALUES (?, ?, ?, ?)",
            (kind, image_id, json.dumps(payload), time.time()),
        )

    async def delete_image(self, image_id: str) -> Image | None:
        """Delete an image row (and its memberships); returns what was deleted.
        Durable: its files are removed next, and the row must not come back without
        them after a power cut."""
        image = await self.get_image(image_id)
        if image is None:
            return None
        async with self.transaction(durable=True) as tx:
            row = await tx.one("SELECT seq FROM images WHERE id = ?", (image_id,))
            if row is None:
                return None
            await self._pool_remove(tx, row[0])
            await tx.execute("DELETE FROM images WHERE seq = ?", row)
        return image

    async def bulk_load(self, rows: Iterable[NewImage], *, chunk: int = 20_000) -> int:
        """Insert many image rows (no files) in one transaction, fast: for benchmarks and
        large imports. Keeps every invariant `insert_image` keeps (tags, artists and
        characters created by name, approved rows appended to their pools' dense slots);
        `album_id` must name an existing album; `near_duplicate_of` is taken as given.
        Pending rows are not announced in the outbox (the bot's start-up backlog finds
        them). Raises sqlite3.IntegrityError (and stores nothing) on a duplicate id or sha256.
        Returns how many rows were inserted."""
        async with self.transaction() as tx:
            loaded = await self._bulk_load(tx, rows, chunk)
        # One huge transaction leaves the WAL as big as the data, and every read then
        # consults it: fold it into the database now, as a long-running server would have.
        assert self._write is not None
        async with self._lock:
            await self._write.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return loaded

    async def _bulk_load(self, tx: _Transaction, rows: Iterable[NewImage], chunk: int) -> int:
        rids: dict[str, dict[str, int]] = {"tags": {}, "artists": {}, "characters": {}}
        albums: dict[str, int] = {}
        pools: dict[str, list[int]] = {}  # name -> [pool id, size]
        for name, pool, size in await tx.all("SELECT name, pool, size FROM pools"):
            pools[name] = [pool, size]
        (next_seq,) = await tx.one("SELECT COALESCE(MAX(seq), 0) + 1 FROM images")
        loaded = 0

        async def rid_of(table: str, name: str) -> int:
            # Keyed by the exact name: names differing only in case resolve to one row
            # through the column's NOCASE collation, and memberships are deduplicated.
            known = rids[table]
            if name not in known:
                known[name] = await self._get_or_create(tx, table, name)
            return known[name]

        async def album_of(album_id: str) -> int:
            if album_id not in albums:
                row = await tx.one("SELECT rid FROM albums WHERE id = ?", (album_id,))
                if row is None:
                    raise InvalidInput("Unknown album", field="album_id")
                albums[album_id] = row[0]
            return albums[album_id]

        batch: list[NewImage] = []
        iterator = iter(rows)
        while True:
            batch.clear()
            for new in iterator:
                batch.append(new)
                if len(batch) >= chunk:
                    break
            if not batch:
                break
            image_rows, tag_rows, character_rows, slot_rows = [], [], [], []
            for new in batch:
                seq, next_seq = next_seq, next_seq + 1
                artist_rid = await rid_of("artists", new.artist) if new.artist else None
                album_rid = await album_of(new.album_id) if new.album_id else None
                image_rows.append((seq, *image_values(new, artist_rid, album_rid)))
                members = ["all", f"rating:{new.rating.value}"]
                if artist_rid is not None:
                    members.append(f"artist:{artist_rid}")
                for tag_rid in dict.fromkeys([await rid_of("tags", t) for t in new.tags]):
                    tag_rows.append((tag_rid, seq))
                    members.append(f"tag:{tag_rid}")
                for char_rid in dict.fromkeys(
                    [await rid_of("characters", c) for c in new.characters]
                ):
                    character_rows.append((char_rid, seq))
                    members.append(f"character:{char_rid}")
                if new.status is Status.APPROVED:
                    for name in members:
                        entry = pools.get(name)
                        if entry is None:
                            cur = await tx.execute(
                                "INSERT INTO pools (name, size) VALUES (?, 0)", (name,)
                            )
                            entry = pools[name] = [_rowid(cur), 0]
                        slot_rows.append((entry[0], entry[1], seq))
                        entry[1] += 1
            await tx.executemany(
                f"INSERT INTO images (seq, {', '.join(IMAGE_COLUMNS)}) "
                f"VALUES (?, {','.join('?' * len(IMAGE_COLUMNS))})",
                image_rows,
            )
            await tx.executemany("INSERT INTO image_tags (tag_rid, seq) VALUES (?, ?)", tag_rows)
            await tx.executemany(
                "INSERT INTO image_characters (character_rid, seq) VALUES (?, ?)", character_rows
            )
            await tx.executemany(
                "INSERT INTO pool_slots (pool, slot, seq) VALUES (?, ?, ?)", slot_rows
            )
            loaded += len(batch)
        await tx.executemany(
            "UPDATE pools SET size = ? WHERE pool = ?",
            [(size, pool) for pool, size in pools.values()],
        )
        return loaded

    async def set_like(self, image_id: str, user_id: str, kind: str, on: bool) -> int | None:
        """Like/unlike (or favourite); returns the new count, None if no such image."""
        column = {"like": "likes", "favorite": "favorites"}[kind]
        async with self.transaction() as tx:
            row = await tx.one("SELECT seq FROM images WHERE id = ?", (image_id,))
            if row is None:
                return None
            seq = row[0]
            if on:
                cur = await tx.execute(
                    "INSERT OR IGNORE INTO likes (seq, user_id, kind, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    (seq, user_id, kind, time.time()),
                )
                delta = cur.rowcount
            else:
                cur = await tx.execute(
                    "DELETE FROM likes WHERE seq = ? AND user_id = ? AND kind = ?",
                    (seq, user_id, kind),
                )
                delta = -cur.rowcount
            if delta:
                await tx.execute(
                    f"UPDATE images SET {column} = {column} + ?, rev = rev + 1 WHERE seq = ?",
                    (delta, seq),
                )
            (count,) = await tx.one(f"SELECT {column} FROM images WHERE seq = ?", (seq,))
        return count

    async def has_liked(self, image_id: str, user_id: str, kind: str = "like") -> bool:
        """Whether `user_id` has liked (or favourited) the image."""
        row = await self._one(
            "SELECT 1 FROM likes l JOIN images i ON i.seq = l.seq "
            "WHERE i.id = ? AND l.user_id = ? AND l.kind = ?",
            (image_id, user_id, kind),
        )
        return row is not None

    # ---- images: reads ---------------------------------------------------------

    async def _hydrate(self, rows: Sequence[Sequence[Any]]) -> list[Image]:
        """Images from rows of _IMAGE_COLUMNS; their tags, characters and artist come
        from the read cache (one query for whatever it lacks)."""
        if not rows:
            return []
        artists = await self._members("artists", [r[31] for r in rows])
        tags = await self._members("tags", [r[36] for r in rows])
        characters = await self._members("characters", [r[37] for r in rows])
        out = []
        for r, artist, tag_set, character_set in zip(rows, artists, tags, characters, strict=True):
            out.append(
                Image(
                    id=r[1],
                    sha256=r[2],
                    md5=r[3],
                    phash=unsigned64(r[4]),
                    mimetype=r[5],
                    extension=r[6],
                    size=r[7],
                    width=r[8],
                    height=r[9],
                    aspect_ratio=r[10],
                    orientation=r[11],
                    dominant_color=r[12],
                    animated=bool(r[13]),
                    thumbnail_size=r[14],
                    rating=_RATING[r[15]],
                    status=_STATUS[r[16]],
                    title=r[17],
                    description=r[18],
                    source_name=r[19],
                    source_url=r[20],
                    original_filename=r[21],
                    uploader=User(r[22], r[23] or "") if r[22] is not None else None,
                    approver=User(r[24], r[25] or "") if r[24] is not None else None,
                    likes=r[26],
                    favorites=r[27],
                    created_at=_at(r[28]),
                    expires_at=_dt(r[29]),
                    near_duplicate_of=r[30],
                    artist=artist[0] if artist else None,
                    album=Album(r[32], r[33], r[34], _at(r[35])) if r[32] is not None else None,
                    tags=tag_set,
                    characters=character_set,
                )
            )
        return out

    async def _members(self, kind: str, keys: Sequence[str | int | None]) -> list[tuple[Any, ...]]:
        """For each key (a rid, or a comma-separated list of rids from group_concat, or
        None for none), the tags, artists or characters it names, sorted by name as
        SQLite's NOCASE sorts. Served from the read cache; what it lacks is read in one
        query and kept unless a write committed meanwhile."""
        cache = await self._fresh_cache()
        generation = cache.generation
        sets = cache.sets[kind]
        out = [sets.get(key) for key in keys]
        missing = {key for key, found in zip(keys, out, strict=True) if found is None}
        if not missing:
            return cast(list[tuple[Any, ...]], out)  # every key was found
        known = cache.objects[kind]
        rid_lists = {key: rid_list(key) for key in missing if key is not None}
        unknown = {rid for rids in rid_lists.values() for rid in rids if rid not in known}
        fetched: dict[int, Any] = {}
        if unknown:
            alias, columns, build = _MEMBERS[kind]
            marks = ",".join("?" * len(unknown))
            for row in await self._all(
                f"SELECT {alias}.rid, {columns} FROM {kind} {alias} WHERE {alias}.rid IN ({marks})",
                unknown,
            ):
                fetched[row[0]] = build(row[1:])
        built: dict[str | int | None, tuple[Any, ...]] = {None: ()}
        for key, rids in rid_lists.items():
            # A member deleted since the image row was read is left out.
            found = [m for m in (known.get(rid) or fetched.get(rid) for rid in rids) if m]
            found.sort(key=lambda member: member.name.translate(_NOCASE))
            built[key] = tuple(found)
        if generation == cache.generation:
            cache.keep(kind, fetched, built)
        return [
            found if found is not None else built[key] for key, found in zip(keys, out, strict=True)
        ]

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

    async def _images_by_seq(self, seqs: Sequence[int]) -> list[Image]:
        """Images for `seqs`, in that order (those gone left out)."""
        if not seqs:
            return []
        marks = ",".join("?" * len(seqs))
        rows = await self._all(
            f"SELECT {_IMAGE_COLUMNS} {_IMAGE_FROM} WHERE i.seq IN ({marks})", seqs
        )
        by_seq = {r[0]: r for r in rows}
        return await self._hydrate([by_seq[s] for s in seqs if s in by_seq])

    async def get_image(self, image_id: str) -> Image | None:
        """One image by id, whatever its status."""
        rows = await self._all(f"SELECT {_IMAGE_COLUMNS} {_IMAGE_FROM} WHERE i.id = ?", (image_id,))
        images = await self._hydrate(rows)
        return images[0] if images else None

    async def id_by_sha256(self, sha256: str) -> str | None:
        """The id of the image with these exact bytes, if stored."""
        row = await self._one("SELECT id FROM images WHERE sha256 = ?", (sha256,))
        return row[0] if row else None

    async def near_duplicate(self, phash: int, max_distance: int) -> str | None:
        """The closest non-rejected image within `max_distance` bits (<= 3, the
        distance the quarter index guarantees to find), or None."""
        q = quarters(phash)
        rows = await self._all(
            "SELECT id, phash FROM images WHERE status != 'rejected' AND "
            "(ph0 = ? OR ph1 = ? OR ph2 = ? OR ph3 = ?)",
            q,
        )
        best: tuple[int, str] | None = None
        for image_id, other in rows:
            distance = (phash ^ unsigned64(other)).bit_count()
            if distance <= max_distance and (best is None or distance < best[0]):
                best = (distance, image_id)
        return best[1] if best else None

    async def files_with_prefix(self, prefix: str) -> list[tuple[str, str]]:
        """(id, extension) of every image whose id starts with `prefix` and that has
        files (a rejected image's are removed)."""
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        return [
            (r[0], r[1])
            for r in await self._all(
                "SELECT id, extension FROM images WHERE id >= ? AND id < ? "
                "AND status != 'rejected'",
                (prefix, upper),
            )
        ]

    async def expired_ids(self, now: datetime, limit: int = 500) -> list[str]:
        """Ids of images whose expires_at has passed."""
        rows = await self._all(
            "SELECT id FROM images WHERE expires_at IS NOT NULL AND expires_at <= ? LIMIT ?",
            (now.timestamp(), limit),
        )
        return [r[0] for r in rows]

    # ---- random ----------------------------------------------------------------

    async def _filter_plan(self, filters: Filters) -> _Plan | None:
        """Pools whose union holds every match, the SQL conditions (on alias i) that
        narrow it to exactly the matches, and how many drawn candidates are expected to
        pass them; None if nothing can match."""
        # Each condition: (sql, params, pools that imply it or None, pools estimating
        # how many pass it, whether those pools hold the ones that fail instead).
        conditions: list[tuple[str, list[Any], list[str] | None, list[str], bool]] = []
        # Included and excluded tags are looked up together, in one query.
        rids = await self._rids("tags", [*filters.tags, *filters.exclude_tags])
        include_rids, exclude_rids = rids[: len(filters.tags)], rids[len(filters.tags) :]
        for rid in include_rids:
            if rid is None:
                return None
            conditions.append(
                (
                    "EXISTS (SELECT 1 FROM image_tags WHERE tag_rid = ? AND seq = i.seq)",
                    [rid],
                    [f"tag:{rid}"],
                    [f"tag:{rid}"],
                    False,
                )
            )
        for rid in exclude_rids:
            if rid is not None:
                conditions.append(
                    (
                        "NOT EXISTS (SELECT 1 FROM image_tags WHERE tag_rid = ? AND seq = i.seq)",
                        [rid],
                        None,
                        [f"tag:{rid}"],
                        True,
                    )
                )
        if filters.artist:
            (rid,) = await self._rids("artists", [filters.artist])
            if rid is None:
                return None
            conditions.append(
                ("i.artist_rid = ?", [rid], [f"artist:{rid}"], [f"artist:{rid}"], False)
            )
        if filters.character:
            (rid,) = await self._rids("characters", [filters.character])
            if rid is None:
                return None
            pool = f"character:{rid}"
            conditions.append(
                (
                    "EXISTS (SELECT 1 FROM image_characters WHERE "
                    "character_rid = ? AND seq = i.seq)",
                    [rid],
                    [pool],
                    [pool],
                    False,
                )
            )
        ratings = sorted(filters.ratings)
        if ratings and len(ratings) < len(Rating):
            pools = [f"rating:{r}" for r in ratings]
            conditions.append(
                (
                    f"i.rating IN ({','.join('?' * len(ratings))})",
                    list(ratings),
                    pools,
                    pools,
                    False,
                )
            )
        sizes = await self._pool_sizes({n for c in conditions for n in c[3]} | {"all"})

        def size(names: list[str]) -> int:
            return sum(sizes.get(n, (0, 0))[1] for n in names)

        groups = [c[2] for c in conditions if c[2] is not None]
        best = min([*groups, ["all"]], key=size)
        # The chosen pools imply their own condition; only the others are checked, and
        # a candidate passes them about as often as an image of the whole collection
        # does (conditions taken as independent).
        where: list[str] = []
        params: list[Any] = []
        passing = 1.0
        everything = max(size(["all"]), 1)
        for sql, values, implied_by, estimate, negated in conditions:
            if implied_by is not best:
                where.append(sql)
                params.extend(values)
                share = min(size(estimate) / everything, 1.0)
                passing *= 1.0 - share if negated else share
        return _Plan(best, sizes, where, params, passing)

    async def random_files(self, filters: Filters, count: int) -> list[ImageFile]:
        """Up to `count` distinct approved images drawn uniformly from those matching
        `filters`, as ImageFile: `random_images` without loading their metadata."""
        plan = await self._filter_plan(filters)
        if plan is None or count <= 0:
            return []
        seqs = await self._draw(plan, count)
        if not seqs:
            return []
        marks = ",".join("?" * len(seqs))
        rows = await self._all(
            f"SELECT seq, {_FILE_COLUMNS} FROM images WHERE seq IN ({marks})", seqs
        )
        by_seq = {r[0]: _image_file(r[1:]) for r in rows}
        return [by_seq[s] for s in seqs if s in by_seq]

    async def random_renditions(
        self, filters: Filters, count: int, dialect: str, *, members: bool = False
    ) -> list[Rendition]:
        """`random_images` as kept renderings (core/contracts.py): one query for the
        drawn images' revs and current bodies, one more hydrating those without one."""
        plan = await self._filter_plan(filters)
        if plan is None or count <= 0:
            return []
        seqs = await self._draw(plan, count)
        if not seqs:
            return []
        marks = ",".join("?" * len(seqs))
        extra = ", r.artist_rid, r.tag_rids, r.character_rids" if members else ""
        rows = await self._all(
            f"SELECT i.seq, i.id, i.rev, r.body{extra} FROM images i LEFT JOIN rendered r "
            f"ON r.seq = i.seq AND r.dialect = ? AND r.rev = i.rev WHERE i.seq IN ({marks})",
            [dialect, *seqs],
        )
        by_seq = {r[0]: r for r in rows}
        found = [by_seq[s] for s in seqs if s in by_seq]
        kept = [r for r in found if r[3] is not None]
        artists: list[tuple[Any, ...]] = []
        tags: list[tuple[Any, ...]] = []
        characters: list[tuple[Any, ...]] = []
        if members and kept:
            artists = await self._members("artists", [r[4] for r in kept])
            tags = await self._members("tags", [r[5] for r in kept])
            characters = await self._members("characters", [r[6] for r in kept])
        out: dict[int, Rendition] = {}
        for n, r in enumerate(kept):
            if members:
                out[r[0]] = Rendition(
                    r[1],
                    r[2],
                    r[3],
                    None,
                    artists[n][0] if artists[n] else None,
                    tags[n],
                    characters[n],
                )
            else:
                out[r[0]] = Rendition(r[1], r[2], r[3])
        missing = [r[0] for r in found if r[3] is None]
        if missing:
            # The rev comes with the row it describes, in one statement.
            marks = ",".join("?" * len(missing))
            rows = await self._all(
                f"SELECT {_IMAGE_COLUMNS}, i.rev {_IMAGE_FROM} WHERE i.seq IN ({marks})", missing
            )
            for row, image in zip(rows, await self._hydrate(rows), strict=True):
                out[row[0]] = Rendition(
                    image.id, row[-1], None, image, image.artist, image.tags, image.characters
                )
        return [out[s] for s in seqs if s in out]

    async def unrendered(
        self, dialect: str, after: int, limit: int
    ) -> tuple[list[Rendition], int | None]:
        """Approved images without a current `dialect` rendering, in store order (a
        backfill): a chunk from cursor `after`, and the cursor of the next (None: done)."""
        rows = await self._all(
            f"SELECT {_IMAGE_COLUMNS}, i.rev {_IMAGE_FROM} WHERE i.status = 'approved' "
            "AND i.seq > ? AND NOT EXISTS (SELECT 1 FROM rendered r WHERE r.seq = i.seq "
            "AND r.dialect = ? AND r.rev = i.rev) ORDER BY i.seq LIMIT ?",
            (after, dialect, limit),
        )
        found = [
            Rendition(image.id, row[-1], None, image, image.artist, image.tags, image.characters)
            for row, image in zip(rows, await self._hydrate(rows), strict=True)
        ]
        return found, rows[-1][0] if len(rows) == limit else None

    async def put_renditions(self, dialect: str, bodies: Iterable[tuple[str, int, bytes]]) -> int:
        """Keep renderings made from each image's state at `rev`, where it still has it."""
        rows = [(dialect, body, image_id, rev) for image_id, rev, body in bodies]
        if not rows:
            return 0
        async with self.transaction(touches_images=False) as tx:
            # The member rids as `_IMAGE_COLUMNS` lists them (the read cache's keys).
            cur = await tx.conn.executemany(
                "INSERT OR REPLACE INTO rendered (seq, dialect, rev, body, artist_rid, "
                "tag_rids, character_rids) SELECT i.seq, ?, i.rev, ?, i.artist_rid, "
                "(SELECT group_concat(tag_rid) FROM image_tags WHERE seq = i.seq), "
                "(SELECT group_concat(character_rid) FROM image_characters WHERE seq = i.seq) "
                "FROM images i WHERE i.id = ? AND i.rev = ?",
                rows,
            )
            return max(cur.rowcount, 0)

    async def get_file(self, image_id: str) -> ImageFile | None:
        """What serving an image's bytes needs, by id, whatever its status."""
        row = await self._one(f"SELECT {_FILE_COLUMNS} FROM images WHERE id = ?", (image_id,))
        return _image_file(row) if row else None

    async def random_images(
        self, filters: Filters, count: int, seen_by: str | None = None
    ) -> list[Image]:
        """Up to `count` distinct approved images drawn uniformly from those matching
        `filters`. With `seen_by`, images that member has been shown under the same
        filters are skipped until none is left, then the cycle starts again."""
        plan = await self._filter_plan(filters)
        if plan is None or count <= 0:
            return []
        seen_key = filters.key()
        if seen_by is not None:
            # How many of the matches the member has seen is unknown: the draw learns it
            # from its first round.
            plan = replace(
                plan,
                where=[
                    *plan.where,
                    "NOT EXISTS (SELECT 1 FROM seen WHERE user_id = ? "
                    "AND filter_key = ? AND seq = i.seq)",
                ],
                params=[*plan.params, seen_by, seen_key],
            )
        seqs = await self._draw(plan, count)
        if seen_by is not None:
            if len(seqs) < count:
                # The cycle ends within this page: start a new one that begins with the
                # images drawn so far (so the rest of the page can't repeat them), and
                # fill the page from it.
                async with self.transaction(touches_images=False) as tx:
                    await tx.execute(
                        "DELETE FROM seen WHERE user_id = ? AND filter_key = ?",
                        (seen_by, seen_key),
                    )
                    await self._mark_seen(tx, seen_by, seen_key, seqs)
                seqs += await self._draw(plan, count - len(seqs))
            if seqs:
                async with self.transaction(touches_images=False) as tx:
                    await self._mark_seen(tx, seen_by, seen_key, seqs)
        return await self._images_by_seq(seqs)

    @staticmethod
    async def _mark_seen(tx: _Transaction, user_id: str, key: str, seqs: list[int]) -> None:
        await tx.executemany(
            "INSERT OR IGNORE INTO seen (user_id, filter_key, seq) VALUES (?, ?, ?)",
            [(user_id, key, s) for s in seqs],
        )

    async def _draw(self, plan: _Plan, count: int) -> list[int]:
        sizes = plan.sizes
        pools = [sizes[n] for n in plan.pools if sizes.get(n, (0, 0))[1] > 0]
        total = sum(size for _, size in pools)
        if total == 0:
            return []
        chosen: list[int] = []
        chosen_set: set[int] = set()
        tried: set[tuple[int, int]] = set()
        passing = plan.passing
        for _ in range(DRAW_ROUNDS):
            need = count - len(chosen)
            untried = total - len(tried)
            if need <= 0 or untried <= 0:
                break
            want = need
            if plan.where:
                # Over-draw by the share expected to pass, so one round usually suffices.
                want = int(need / max(passing, 0.01) * 1.25) + 8
            picks = self._pick_slots(pools, total, min(untried, want), tried)
            tried.update(picks)
            seqs = await self._accept(picks, plan.where, plan.params)
            # The next round, if any, trusts the share that passed this one.
            passing = len(seqs) / len(picks)
            for s in seqs:
                if s not in chosen_set and len(chosen) < count:
                    chosen_set.add(s)
                    chosen.append(s)
            if not plan.where and len(tried) >= total:
                break
        if len(chosen) < count and len(tried) < total:
            # Few matches among many candidates: rejection is slow, scan exactly.
            rest = await self._scan(plan.pools, plan.where, plan.params, exclude=chosen_set)
            self._rng.shuffle(rest)
            # Keep the draw uniform: a rejected-pass survivor and a scanned one are alike.
            chosen.extend(rest[: count - len(chosen)])
        return chosen[:count]

    def _pick_slots(
        self, pools: list[tuple[int, int]], total: int, want: int, tried: set[tuple[int, int]]
    ) -> list[tuple[int, int]]:
        """`want` distinct (pool, slot) pairs not in `tried`, uniform over the union."""
        picks: list[tuple[int, int]] = []
        seen = set(tried)
        while len(picks) < want:
            k = self._rng.randrange(total)
            for pool, size in pools:
                if k < size:
                    pair = (pool, k)
                    break
                k -= size
            if pair not in seen:
                seen.add(pair)
                picks.append(pair)
        return picks

    async def _accept(
        self, picks: list[tuple[int, int]], where: list[str], params: list[Any]
    ) -> list[int]:
        """The seqs at `picks` that satisfy `where`, in pick order."""
        if not picks:
            return []
        values = ",".join("(?, ?, ?)" for _ in picks)
        flat = [x for n, (pool, slot) in enumerate(picks) for x in (n, pool, slot)]
        cond = "".join(f" AND {w}" for w in where)
        rows = await self._all(
            f"WITH p(n, pool, slot) AS (VALUES {values}) "
            f"SELECT s.seq FROM p JOIN pool_slots s ON s.pool = p.pool AND s.slot = p.slot "
            f"JOIN images i ON i.seq = s.seq WHERE 1{cond} ORDER BY p.n",
            [*flat, *params],
        )
        return [r[0] for r in rows]

    async def _scan(
        self, pool_names: list[str], where: list[str], params: list[Any], exclude: set[int]
    ) -> list[int]:
        marks = ",".join("?" * len(pool_names))
        cond = "".join(f" AND {w}" for w in where)
        rows = await self._all(
            f"SELECT s.seq FROM pools p JOIN pool_slots s ON s.pool = p.pool "
            f"JOIN images i ON i.seq = s.seq WHERE p.name IN ({marks}){cond}",
            [*pool_names, *params],
        )
        return [r[0] for r in rows if r[0] not in exclude]

    # ---- search ----------------------------------------------------------------

    async def search(self, query: SearchQuery, *, count_total: bool = True) -> SearchPage:
        """Filter, sort and page images with indexed queries; totals past TOTAL_CAP
        are lower bounds."""
        if query.image_id is not None:
            image = await self.get_image(query.image_id)
            found = [image] if image and image.status in query.statuses else []
            return SearchPage(found, len(found), True, query.skip, query.limit)
        where = [f"i.status IN ({','.join('?' * len(query.statuses))})"]
        params: list[Any] = sorted(s.value for s in query.statuses)
        # Each constraint names the pool that holds exactly its matches, or None; a
        # query of approved images with at most one pooled constraint has an O(1) total.
        constraints: list[str | None] = []
        drive: tuple[int, int] | None = None  # (tag rid, pool size) to drive the scan from
        # Included and excluded tags are looked up together, in one query.
        rids = await self._rids("tags", [*query.tags, *query.exclude_tags])
        tag_rids = [r for r in rids[: len(query.tags)] if r is not None]
        exclude_rids = rids[len(query.tags) :]
        if len(tag_rids) < len(query.tags):  # an unknown tag matches nothing
            return SearchPage([], 0, True, query.skip, query.limit)
        sizes = await self._pool_sizes([f"tag:{r}" for r in tag_rids])
        for tag_rid in tag_rids:
            size = sizes.get(f"tag:{tag_rid}", (0, 0))[1]
            if drive is None or size < drive[1]:
                drive = (tag_rid, size)
            constraints.append(f"tag:{tag_rid}")
        for tag_rid in tag_rids:
            if drive and tag_rid != drive[0]:
                where.append(
                    "EXISTS (SELECT 1 FROM image_tags x WHERE x.tag_rid = ? AND x.seq = i.seq)"
                )
                params.append(tag_rid)
        for rid in exclude_rids:
            if rid is not None:
                where.append(
                    "NOT EXISTS (SELECT 1 FROM image_tags x WHERE x.tag_rid = ? AND x.seq = i.seq)"
                )
                params.append(rid)
                constraints.append(None)
        ratings = sorted(query.ratings)
        if ratings and len(ratings) < len(Rating):
            where.append(f"i.rating IN ({','.join('?' * len(ratings))})")
            params.extend(ratings)
            constraints.append(f"rating:{ratings[0]}" if len(ratings) == 1 else None)
        if query.artist_id:
            (rid,) = await self._rids("artists", [query.artist_id])
            if rid is None:
                return SearchPage([], 0, True, query.skip, query.limit)
            where.append("i.artist_rid = ?")
            params.append(rid)
            constraints.append(f"artist:{rid}")
        if query.artist:
            where.append("i.artist_rid IN (SELECT rid FROM artists WHERE name LIKE ? ESCAPE '\\')")
            params.append(like_pattern(query.artist))
            constraints.append(None)
        if query.character:
            (rid,) = await self._rids("characters", [query.character])
            if rid is None:
                return SearchPage([], 0, True, query.skip, query.limit)
            where.append(
                "EXISTS (SELECT 1 FROM image_characters x WHERE x.character_rid = ? "
                "AND x.seq = i.seq)"
            )
            params.append(rid)
            constraints.append(f"character:{rid}")
        for sql, value in (
            (
                "(i.uploader_id = ? OR i.uploader_name = ? COLLATE NOCASE)",
                [query.uploader, query.uploader] if query.uploader else None,
            ),
            (
                "i.album_rid = (SELECT rid FROM albums WHERE id = ?)",
                [query.album_id] if query.album_id else None,
            ),
            (
                "i.created_at < ?",
                [query.posted_before.timestamp()] if query.posted_before else None,
            ),
            ("i.created_at > ?", [query.posted_after.timestamp()] if query.posted_after else None),
        ):
            if value is not None:
                where.append(sql)
                params.extend(value)
                constraints.append(None)
        pool_exact: str | None = None
        if query.statuses == {Status.APPROVED} and len(constraints) <= 1:
            pool_exact = constraints[0] if constraints else "all"

        if drive is not None:
            source = "image_tags d JOIN images i ON i.seq = d.seq"
            where.insert(0, "d.tag_rid = ?")
            params.insert(0, drive[0])
            seq_col = "d.seq"
        else:
            source = "images i"
            seq_col = "i.seq"
        order = {
            Sort.NEWEST: f"{seq_col} DESC",
            Sort.OLDEST: f"{seq_col} ASC",
            Sort.LIKES: f"i.likes DESC, {seq_col} DESC",
            Sort.RELEVANCE: f"(i.likes + i.favorites) DESC, {seq_col} DESC",
        }[query.sort]
        cond = " AND ".join(where)
        rows = await self._all(
            f"SELECT {seq_col} FROM {source} WHERE {cond} ORDER BY {order} LIMIT ? OFFSET ?",
            [*params, query.limit, query.skip],
        )
        images = await self._images_by_seq([r[0] for r in rows])
        total, exact = query.skip + len(images), len(images) < query.limit
        # An empty page past the end says only that the total is at most `skip`: count it
        # even when not asked to (the OFFSET just walked those rows; it is no dearer).
        past_the_end = query.skip > 0 and not images
        if past_the_end or (count_total and len(images) == query.limit):
            if pool_exact is not None:
                total, exact = await self.pool_size(pool_exact), True
            else:
                (total,) = await self._one(
                    f"SELECT COUNT(*) FROM (SELECT 1 FROM {source} WHERE {cond} LIMIT ?)",
                    [*params, TOTAL_CAP + 1],
                )
                exact = total <= TOTAL_CAP
                total = min(total, TOTAL_CAP)
        return SearchPage(images, total, exact, query.skip, query.limit)

    # ---- tags, artists, characters, albums --------------------------------------

    async def _named_list(
        self, table: str, alias: str, columns: str, pattern: str | None, offset: int, limit: int
    ) -> tuple[list[sqlite3.Row], int]:
        where, params = "", []
        if pattern is not None:
            where, params = f"WHERE {alias}.name LIKE ?", [pattern]
        rows = await self._all(
            f"SELECT {columns} FROM {table} {alias} {where} ORDER BY {alias}.name LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        (total,) = await self._one(f"SELECT COUNT(*) FROM {table} {alias} {where}", params)
        return rows, total

    async def list_tags(
        self, pattern: str | None = None, offset: int = 0, limit: int = 25
    ) -> tuple[list[Tag], int]:
        """Tags whose name is LIKE `pattern` (None = all), by name, with the total."""
        rows, total = await self._named_list("tags", "t", _TAG_COLUMNS, pattern, offset, limit)
        return [_tag(r) for r in rows], total

    async def list_artists(
        self, pattern: str | None = None, offset: int = 0, limit: int = 25
    ) -> tuple[list[Artist], int]:
        """Artists whose name is LIKE `pattern`, by name, with the total."""
        rows, total = await self._named_list(
            "artists", "a", _ARTIST_COLUMNS, pattern, offset, limit
        )
        return [_artist(r) for r in rows], total

    async def list_characters(
        self, pattern: str | None = None, offset: int = 0, limit: int = 25
    ) -> tuple[list[Character], int]:
        """Characters whose name is LIKE `pattern`, by name, with the total."""
        rows, total = await self._named_list(
            "characters", "c", _CHARACTER_COLUMNS, pattern, offset, limit
        )
        return [_character(r) for r in rows], total

    async def get_tag(self, key: str) -> Tag | None:
        """A tag by id or name."""
        row = await self._one(
            f"SELECT {_TAG_COLUMNS} FROM tags t WHERE t.id = ? OR t.name = ?", (key, key)
        )
        return _tag(row) if row else None

    async def get_artist(self, key: str) -> Artist | None:
        """An artist by id or name."""
        row = await self._one(
            f"SELECT {_ARTIST_COLUMNS} FROM artists a WHERE a.id = ? OR a.name = ?", (key, key)
        )
        return _artist(row) if row else None

    async def get_character(self, key: str) -> Character | None:
        """A character by id or name."""
        row = await self._one(
            f"SELECT {_CHARACTER_COLUMNS} FROM characters c WHERE c.id = ? OR c.name = ?",
            (key, key),
        )
        return _character(row) if row else None

    async def upsert_tag(self, name: str, description: str = "", nsfw: bool = False) -> Tag:
        """Create a tag, or update its description and nsfw flag."""
        async with self.transaction() as tx:
            rid = await self._get_or_create(tx, "tags", name)
            await tx.execute(
                "UPDATE tags SET description = ?, nsfw = ? WHERE rid = ?",
                (description, int(nsfw), rid),
            )
        tag = await self.get_tag(name)
        assert tag is not None
        return tag

    async def upsert_artist(self, name: str, url: str | None = None) -> Artist:
        """Create an artist, or update their URL."""
        async with self.transaction() as tx:
            rid = await self._get_or_create(tx, "artists", name)
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
            rid = await self._get_or_create(tx, "characters", name)
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
        return Album(album_id, name, owner_id, _at(now))

    async def get_album(self, album_id: str) -> Album | None:
        """An album by id."""
        row = await self._one(
            "SELECT id, name, owner_id, created_at FROM albums WHERE id = ?", (album_id,)
        )
        return Album(row[0], row[1], row[2], _at(row[3])) if row else None

    # ---- stats -----------------------------------------------------------------

    async def stats(self) -> Stats:
        """Counts over approved images (ratings from the pools, O(1) each)."""
        sizes = {
            r[0]: r[1]
            for r in await self._all(
                "SELECT name, size FROM pools WHERE name = 'all' OR name LIKE 'rating:%'"
            )
        }
        by_rating = {r.value: sizes.get(f"rating:{r.value}", 0) for r in Rating}
        by_orientation = {o: 0 for o in ("landscape", "portrait", "square")}
        for o, n in await self._all(
            "SELECT orientation, COUNT(*) FROM images WHERE status = 'approved' "
            "GROUP BY orientation"
        ):
            by_orientation[o] = n
        by_resolution: dict[str, int] = {}
        for label, n in await self._all(
            """SELECT CASE WHEN width * height >= 3840 * 2160 THEN '4k'
                      WHEN width * height >= 1920 * 1080 THEN '1080p'
                      WHEN width * height >= 1280 * 720 THEN '720p'
                      ELSE 'sd' END AS r, COUNT(*)
               FROM images WHERE status = 'approved' GROUP BY r"""
        ):
            by_resolution[label] = n
        (pending,) = await self._one("SELECT COUNT(*) FROM images WHERE status = 'pending'")
        (artists,) = await self._one("SELECT COUNT(*) FROM artists")
        (characters,) = await self._one("SELECT COUNT(*) FROM characters")
        (categories,) = await self._one("SELECT COUNT(*) FROM tags")
        return Stats(
            images=sizes.get("all", 0),
            by_rating=by_rating,
            by_orientation=by_orientation,
            by_resolution=by_resolution,
            pending=pending,
            artists=artists,
            characters=characters,
            categories=categories,
        )

    # ---- tokens ----------------------------------------------------------------

    async def insert_token(self, token: Token, secret_sha256: bytes) -> None:
        """Store a token by the hash of its secret."""
        async with self.transaction(touches_images=False) as tx:
            await tx.execute(
                f"INSERT INTO tokens ({_TOKEN_COLUMNS}, secret_sha256) "
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

    async def token_by_hash(self, secret_sha256: bytes) -> tuple[Token, bytes] | None:
        """The token whose secret hashes to `secret_sha256`, with the stored hash."""
        row = await self._one(
            f"SELECT {_TOKEN_COLUMNS}, secret_sha256 FROM tokens WHERE secret_sha256 = ?",
            (secret_sha256,),
        )
        return (_token(row), row[10]) if row else None

    async def get_token(self, token_id: str) -> Token | None:
        """A token by id."""
        row = await self._one(f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE id = ?", (token_id,))
        return _token(row) if row else None

    async def touch_token(self, token_id: str, when: datetime) -> None:
        """Record a use."""
        async with self.transaction(touches_images=False) as tx:
            await tx.execute(
                "UPDATE tokens SET last_used_at = ? WHERE id = ?", (when.timestamp(), token_id)
            )

    async def revoke_token(self, token_id: str, when: datetime) -> bool:
        """Revoke; False if unknown or already revoked."""
        async with self.transaction(touches_images=False) as tx:
            cur = await tx.execute(
                "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (when.timestamp(), token_id),
            )
        return cur.rowcount == 1

    async def list_tokens(self, owner_id: str | None = None) -> list[Token]:
        """Every token (or one owner's), newest first."""
        if owner_id is None:
            rows = await self._all(f"SELECT {_TOKEN_COLUMNS} FROM tokens ORDER BY created_at DESC")
        else:
            rows = await self._all(
                f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE owner_id = ? ORDER BY created_at DESC",
                (owner_id,),
            )
        return [_token(r) for r in rows]

    # ---- token requests ----------------------------------------------------------

    async def create_token_request(self, requester: User, purpose: str) -> TokenRequest:
        """File a request; Conflict if the member already has one pending."""
        request_id, now = new_id(), time.time()
        try:
            async with self.transaction(touches_images=False) as tx:
                await tx.execute(
                    f"INSERT INTO token_requests ({_REQUEST_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, 'pending', NULL, ?, NULL, NULL)",
                    (request_id, requester.id, requester.name, purpose, now),
                )
        except sqlite3.IntegrityError:
            raise Conflict("You already have a token request waiting for an owner.") from None
        request = await self.get_token_request(request_id)
        assert request is not None
        return request

    async def get_token_request(self, request_id: str) -> TokenRequest | None:
        """A request by id."""
        row = await self._one(
            f"SELECT {_REQUEST_COLUMNS} FROM token_requests WHERE id = ?", (request_id,)
        )
        return _request(row) if row else None

    async def decide_token_request(
        self, request_id: str, status: str, decided_by: str, token_id: str | None
    ) -> bool:
        """Approve or deny a pending request; False if it was no longer pending."""
        async with self.transaction(touches_images=False) as tx:
            cur = await tx.execute(
                "UPDATE token_requests SET status = ?, decided_by = ?, decided_at = ?, "
                "token_id = ? WHERE id = ? AND status = 'pending'",
                (status, decided_by, time.time(), token_id, request_id),
            )
        return cur.rowcount == 1

    async def list_token_requests(self, status: str | None = "pending") -> list[TokenRequest]:
        """Requests (pending by default), oldest first."""
        if status is None:
            rows = await self._all(
                f"SELECT {_REQUEST_COLUMNS} FROM token_requests ORDER BY created_at"
            )
        else:
            rows = await self._all(
                f"SELECT {_REQUEST_COLUMNS} FROM token_requests WHERE status = ? "
                "ORDER BY created_at",
                (status,),
            )
        return [_request(r) for r in rows]

    # ---- key/value ---------------------------------------------------------------

    async def kv_get(self, key: str) -> str | None:
        """A small persisted value; None when absent or expired."""
        row = await self._one(
            "SELECT value FROM kv WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)",
            (key, time.time()),
        )
        return row[0] if row else None

    async def kv_set(self, key: str, value: str, *, expires_in: timedelta | None = None) -> None:
        """Persist a small value, for good or for `expires_in` (then `kv_get` no longer
        sees it and `kv_purge_expired` deletes it)."""
        expires_at = time.time() + expires_in.total_seconds() if expires_in else None
        async with self.transaction(touches_images=False) as tx:
            await tx.execute(
                "INSERT INTO kv (key, value, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value, "
                "expires_at = excluded.expires_at",
                (key, value, expires_at),
            )

    async def kv_purge_expired(self, now: datetime | None = None) -> int:
        """Delete the values whose expiry has passed; returns how many."""
        when = (now or datetime.now(UTC)).timestamp()
        async with self.transaction(touches_images=False) as tx:
            cursor = await tx.execute(
                "DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?", (when,)
            )
            return cursor.rowcount

    async def kv_claim(self, key: str, holder: str, ttl: timedelta) -> bool:
        """Hold `key` for `holder` for `ttl`: taken when absent, expired or already
        `holder`'s (then renewed); False, and nothing changed, while another holds it."""
        now = time.time()
        async with self.transaction(touches_images=False) as tx:
            # One statement in one transaction: two processes claiming at once cannot
            # both win (BEGIN IMMEDIATE serialises them on the file).
            cursor = await tx.execute(
                "INSERT INTO kv (key, value, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value, "
                "expires_at = excluded.expires_at "
                "WHERE kv.value = excluded.value "
                "OR (kv.expires_at IS NOT NULL AND kv.expires_at <= ?)",
                (key, holder, now + ttl.total_seconds(), now),
            )
            return cursor.rowcount == 1

    async def kv_release(self, key: str, holder: str) -> bool:
        """Let go of `key` if `holder` holds it (so a successor need not wait for the
        expiry); False if someone else does or nobody."""
        async with self.transaction(touches_images=False) as tx:
            cursor = await tx.execute("DELETE FROM kv WHERE key = ? AND value = ?", (key, holder))
            return cursor.rowcount == 1

    # ---- outbox ------------------------------------------------------------------

    async def outbox_after(self, seq: int, limit: int = 100) -> list[OutboxEntry]:
        """Up to `limit` outbox entries after `seq`, oldest first (one primary-key range
        read: cheap when there are none)."""
        rows = await self._all(
            "SELECT seq, kind, image_id, payload, created_at FROM outbox WHERE seq > ? "
            "ORDER BY seq LIMIT ?",
            (seq, limit),
        )
        return [
            OutboxEntry(r[0], r[1], r[2], json.loads(r[3]), datetime.fromtimestamp(r[4], UTC))
            for r in rows
        ]

    async def outbox_cursor(self, consumer: str) -> int:
        """The last seq `consumer` acknowledged (0 if none)."""
        row = await self._one("SELECT seq FROM outbox_cursors WHERE consumer = ?", (consumer,))
        return row[0] if row else 0

    async def outbox_ack(self, consumer: str, seq: int) -> None:
        """Record that `consumer` handled every entry up to `seq`; never moves back."""
        async with self.transaction(touches_images=False) as tx:
            await tx.execute(
                "INSERT INTO outbox_cursors (consumer, seq, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(consumer) DO UPDATE SET seq = max(seq, excluded.seq), "
                "updated_at = excluded.updated_at",
                (consumer, seq, time.time()),
            )

    async def outbox_prune(self, handled_before: datetime, unhandled_before: datetime) -> int:
        """Delete entries older than `handled_before` that every consumer acknowledged,
        and every entry older than `unhandled_before`; returns how many."""
        async with self.transaction(touches_images=False) as tx:
            cursor = await tx.execute(
                "DELETE FROM outbox WHERE (created_at < ? AND "
                "seq <= (SELECT min(seq) FROM outbox_cursors)) OR created_at < ?",
                (handled_before.timestamp(), unhandled_before.timestamp()),
            )
            return cursor.rowcount

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
