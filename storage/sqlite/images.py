"""Images: ingest, status changes, deletes, bulk loads, reads by id, stats."""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from core.errors import DuplicateImage, InvalidInput
from core.events import IMAGE_DECIDED, IMAGE_PENDING
from core.models import Image, ImageFile, NewImage, Rating, Stats, Status, User
from storage.rows import IMAGE_COLUMNS, image_values, quarters, unsigned64
from storage.sqlite.connection import _rowid, _Transaction
from storage.sqlite.hydrate import HydrateMixin
from storage.sqlite.pools import PoolsMixin
from storage.sqlite.rows import _FILE_COLUMNS, _IMAGE_COLUMNS, _IMAGE_FROM, _STATUS, _image_file
from storage.uploader_counts import count_approved, count_approved_many


class ImagesMixin(PoolsMixin, HydrateMixin):
    """The image rows (core.contracts.ImageRepo, but random and search)."""

    async def insert_image(self, new: NewImage, *, announce: bool = True) -> Image:
        """Insert an image with its tags, artist and characters in one transaction;
        raises DuplicateImage (with the stored id) when its sha256 is already stored.
        Announces a pending image, and with `announce` an approved one, in the outbox.
        Durable: this commit is what acknowledges an upload."""
        try:
            await self._insert_image(new, announce=announce)
        except sqlite3.IntegrityError:
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
                await count_approved(tx, seq, -1)
            elif old != Status.APPROVED and status is Status.APPROVED:
                await self._pool_add(tx, seq)
                await count_approved(tx, seq, +1)
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
            row = await tx.one("SELECT seq, status FROM images WHERE id = ?", (image_id,))
            if row is None:
                return None
            seq, status = row
            await self._pool_remove(tx, seq)
            if status == Status.APPROVED:
                await count_approved(tx, seq, -1)
            await tx.execute("DELETE FROM images WHERE seq = ?", (seq,))
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
        uploads: Counter[str] = Counter()  # approved images per uploader

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
                    if new.uploader is not None:
                        uploads[new.uploader.id] += 1
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
        await count_approved_many(tx, uploads)
        return loaded

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
            (image_id, extension)
            for image_id, extension in await self._all(
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

    async def get_file(self, image_id: str) -> ImageFile | None:
        """What serving an image's bytes needs, by id, whatever its status."""
        row = await self._one(f"SELECT {_FILE_COLUMNS} FROM images WHERE id = ?", (image_id,))
        return _image_file(row) if row else None

    # ---- stats -----------------------------------------------------------------

    async def stats(self) -> Stats:
        """Counts over approved images (ratings from the pools, O(1) each)."""
        sizes = {
            name: size
            for name, size in await self._all(
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
