"""API tokens (hashed at rest) and token requests (core.contracts.TokenRepo)."""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime

from core.errors import Conflict
from core.models import Token, TokenRequest, User, new_id
from storage.queries import SharedQueries
from storage.rows import ts
from storage.sqlite.connection import SQLiteBase
from storage.sqlite.rows import _REQUEST_COLUMNS, _TOKEN_COLUMNS


class TokensMixin(SQLiteBase, SharedQueries):
    """Tokens and the requests for them: the writes (the reads are SharedQueries')."""

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
