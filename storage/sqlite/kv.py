"""Small keyed values with optional expiry, and leases (core.contracts.KeyValue)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from storage.sqlite.connection import SQLiteBase


class KeyValueMixin(SQLiteBase):
    """kv_get, kv_set, kv_claim..."""

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
