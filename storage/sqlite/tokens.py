"""API tokens (hashed at rest) and token requests (core.contracts.TokenRepo)."""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime

from core.errors import Conflict
from core.models import Token, TokenRequest, User, new_id
from storage.rows import ts
from storage.sqlite.connection import SQLiteBase
from storage.sqlite.rows import _REQUEST_COLUMNS, _TOKEN_COLUMNS, _request, _token


class TokensMixin(SQLiteBase):
    """Tokens and the requests for them."""

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
        return (_token(row), row[-1]) if row else None  # secret_sha256 follows

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
