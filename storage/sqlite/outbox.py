"""The event outbox other processes consume (core.contracts.Outbox)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from core.models import OutboxEntry
from storage.sqlite.connection import SQLiteBase


class OutboxMixin(SQLiteBase):
    """Reading, acknowledging and pruning outbox entries."""

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
            OutboxEntry(seq, kind, image_id, json.loads(payload), datetime.fromtimestamp(at, UTC))
            for seq, kind, image_id, payload, at in rows
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
