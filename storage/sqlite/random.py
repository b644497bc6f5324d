"""Random draws, exactly uniform over the dense pools, and the renderings kept for them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from core.models import Filters, ImageFile, Rendition
from storage.draws import PoolDraws
from storage.sqlite.hydrate import HydrateMixin
from storage.sqlite.members import MembersMixin
from storage.sqlite.pools import PoolsMixin
from storage.sqlite.rows import _FILE_COLUMNS, _IMAGE_COLUMNS, _IMAGE_FROM, _SEQ, _image_file


class RandomMixin(PoolsMixin, HydrateMixin, MembersMixin, PoolDraws):
    """random_files and the renditions over the draw planner of storage/draws.py
    (random_images), and the pool queries it asks of a backend. PoolDraws comes last:
    its stubs must not shadow what the SQLite mixins define."""

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
        by_seq = {seq: _image_file(file) for seq, *file in rows}
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
        # Each row: seq, id, rev, body (None: none kept for this rev), then with
        # `members` the member keys kept with the body (artist_rid, tag_rids, character_rids).
        by_seq = {seq: (seq, image_id, rev, body, keys) for seq, image_id, rev, body, *keys in rows}
        found = [by_seq[s] for s in seqs if s in by_seq]
        kept = [r for r in found if r[3] is not None]  # those with a body
        artists: list[tuple[Any, ...]] = []
        tags: list[tuple[Any, ...]] = []
        characters: list[tuple[Any, ...]] = []
        if members and kept:
            artists = await self._members("artists", [keys[0] for *_, keys in kept])
            tags = await self._members("tags", [keys[1] for *_, keys in kept])
            characters = await self._members("characters", [keys[2] for *_, keys in kept])
        out: dict[int, Rendition] = {}
        for n, (seq, image_id, rev, body, _keys) in enumerate(kept):
            if members:
                artist = artists[n][0] if artists[n] else None
                out[seq] = Rendition(image_id, rev, body, None, artist, tags[n], characters[n])
            else:
                out[seq] = Rendition(image_id, rev, body)
        missing = [seq for seq, _id, _rev, body, _keys in found if body is None]
        if missing:
            # The rev comes with the row it describes, in one statement.
            marks = ",".join("?" * len(missing))
            rows = await self._all(
                f"SELECT {_IMAGE_COLUMNS}, i.rev {_IMAGE_FROM} WHERE i.seq IN ({marks})", missing
            )
            for row, image in zip(rows, await self._hydrate(rows), strict=True):
                out[row[_SEQ]] = Rendition(
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
        return found, rows[-1][_SEQ] if len(rows) == limit else None

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

    async def _accept(
        self,
        picks: list[tuple[int, int]],
        where: list[str],
        params: list[Any],
        rows: dict[int, Any] | None = None,
        need: int = 0,
    ) -> list[int]:
        """The seqs at `picks` that satisfy `where`, in pick order. `rows` stays empty:
        reading the images by a second query costs no round trip in process."""
        if not picks:
            return []
        values = ",".join("(?, ?, ?)" for _ in picks)
        flat = [x for n, (pool, slot) in enumerate(picks) for x in (n, pool, slot)]
        cond = "".join(f" AND {w}" for w in where)
        found = await self._all(
            f"WITH p(n, pool, slot) AS (VALUES {values}) "
            f"SELECT s.seq FROM p JOIN pool_slots s ON s.pool = p.pool AND s.slot = p.slot "
            f"JOIN images i ON i.seq = s.seq WHERE 1{cond} ORDER BY p.n",
            [*flat, *params],
        )
        return [r[0] for r in found]

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
