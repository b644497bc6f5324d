"""How many approved images each uploader has: the all-time leaderboard's counter.

Kept in step by every write that makes an image approved or takes it out of approved
(insert, status change, delete, expiry's delete, bulk load), in the same transaction,
so the leaderboard reads a handful of rows instead of counting every approved image.
The SQL is the same on both backends (`?` placeholders, ON CONFLICT upserts)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any, Protocol


class _Tx(Protocol):
    async def execute(self, sql: str, params: Iterable[Any] = ()) -> Any: ...

    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> Any: ...


_ADD = (
    "ON CONFLICT (uploader_id) DO UPDATE "
    "SET approved = uploader_counts.approved + excluded.approved"
)


async def count_approved(tx: _Tx, seq: int, delta: int) -> None:
    """Add `delta` (+1 approved, -1 no longer) to the count of image `seq`'s uploader."""
    # CAST: PostgreSQL would take an untyped parameter in a SELECT list for text.
    await tx.execute(
        "INSERT INTO uploader_counts (uploader_id, approved) "
        "SELECT uploader_id, CAST(? AS INTEGER) FROM images "
        f"WHERE seq = ? AND uploader_id IS NOT NULL {_ADD}",
        (delta, seq),
    )


async def count_approved_many(tx: _Tx, uploads: Counter[str]) -> None:
    """Add each uploader's newly approved images (a bulk load's) to their counts."""
    await tx.executemany(
        f"INSERT INTO uploader_counts (uploader_id, approved) VALUES (?, ?) {_ADD}",
        sorted(uploads.items()),
    )


# Counted again from the images (a migrated or repaired store).
RECOUNT = (
    "DELETE FROM uploader_counts",
    "INSERT INTO uploader_counts (uploader_id, approved) SELECT uploader_id, COUNT(*) "
    "FROM images WHERE status = 'approved' AND uploader_id IS NOT NULL GROUP BY uploader_id",
)

# The top of the ranking, `exclude` left out (its `?`s are formatted in).
TOP = (
    "SELECT uploader_id, approved FROM uploader_counts WHERE approved > 0{not_in} "
    "ORDER BY approved DESC, uploader_id LIMIT ?"
)
