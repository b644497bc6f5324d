"""What the store remembers per member: likes and favourites, and the images each has seen."""

from __future__ import annotations

import time

from storage.sqlite.connection import SQLiteBase, _Transaction


class MembersMixin(SQLiteBase):
    """Likes (core.contracts.MemberMemory) and the no-repeat memory of draws."""

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

    @staticmethod
    async def _mark_seen(tx: _Transaction, user_id: str, key: str, seqs: list[int]) -> None:
        await tx.executemany(
            "INSERT OR IGNORE INTO seen (user_id, filter_key, seq) VALUES (?, ?, ?)",
            [(user_id, key, s) for s in seqs],
        )
