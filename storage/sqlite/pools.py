"""The dense pools random draws pick from: one per filter value, kept in step with approvals."""

from __future__ import annotations

from collections.abc import Iterable

from storage.sqlite.connection import SQLiteBase, _rowid, _Transaction


class PoolsMixin(SQLiteBase):
    """Pool membership and sizes."""

    @staticmethod
    async def _pool_names(tx: _Transaction, seq: int) -> list[str]:
        row = await tx.one("SELECT rating, artist_rid FROM images WHERE seq = ?", (seq,))
        rating, artist_rid = row
        names = ["all", f"rating:{rating}"]
        if artist_rid is not None:
            names.append(f"artist:{artist_rid}")
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
        return {name: (pool, size) for name, pool, size in rows}

    async def pool_size(self, name: str) -> int:
        """How many approved images a pool (`all`, `rating:sfw`, `tag:<rid>`...) holds."""
        row = await self._one("SELECT size FROM pools WHERE name = ?", (name,))
        return row[0] if row else 0
