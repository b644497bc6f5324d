"""Signing in to the web gallery: one-time sign-in links and server-side sessions.

- A sign-in link (from Discord's `/gallery`) carries a random secret; only its SHA-256
  is stored, in the key-value store, with the member and whether they are an owner. It
  is valid `SIGN_IN_TTL` (10 minutes) and usable once: redeeming it deletes the entry
  in one statement that only one redeemer can win (`kv_release` with the value read).
- "Log in with Discord" (OAuth2): the `state` sent to Discord is random and stored
  (hashed) with the hash of the browser's pre-login CSRF token; the callback is accepted
  once, from the same browser, within `SIGN_IN_TTL`.
- An owner of a deployment without Discord signs in with an `admin` token instead;
  such a session remembers the token and ends as soon as the token is revoked.
- A session is a random id kept by the browser in a cookie; the store keeps only its
  SHA-256, with the member, the owner flag, the session's CSRF token and its expiry
  (`SESSION_TTL`). Signing out deletes it.

Nothing here knows about HTTP: the gallery (web/) sets and reads the cookie."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

from core.contracts import KeyValue
from core.errors import Forbidden, NotFound, Unauthorized
from core.models import User
from core.tokens import SCOPE_ADMIN, TokenService

SIGN_IN_TTL = timedelta(minutes=10)
SESSION_TTL = timedelta(days=7)
_LINK_PREFIX = "web:sign-in:"
_SESSION_PREFIX = "web:session:"
_OAUTH_PREFIX = "web:oauth-state:"
# 32 random bytes, URL-safe base64: 43 characters. Anything else is not ours.
_SECRET_LENGTH = 43


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _well_formed(secret: str | None) -> bool:
    return (
        secret is not None
        and len(secret) == _SECRET_LENGTH
        and secret.isascii()
        and all(c.isalnum() or c in "-_" for c in secret)
    )


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in browser: who, whether they are an owner, the CSRF token its forms
    carry, the admin token it was opened with (if any), and when it ends (unix time)."""

    user: User
    owner: bool
    csrf: str
    expires_at: float
    token_id: str | None = None

    def to_json(self) -> str:
        """The stored form of the session."""
        return json.dumps(
            {
                "id": self.user.id,
                "name": self.user.name,
                "owner": self.owner,
                "csrf": self.csrf,
                "expires_at": self.expires_at,
                "token_id": self.token_id,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Session:
        """A session from its stored form."""
        data = json.loads(text)
        return cls(
            user=User(str(data["id"]), str(data["name"])),
            owner=bool(data["owner"]),
            csrf=str(data["csrf"]),
            expires_at=float(data["expires_at"]),
            token_id=data.get("token_id"),
        )

    def csrf_ok(self, presented: str | None) -> bool:
        """Whether a form carried this session's CSRF token."""
        return presented is not None and hmac.compare_digest(presented.encode(), self.csrf.encode())


class SessionService:
    """Sign-in links, admin-token sign-in, and sessions, over the key-value store."""

    def __init__(self, kv: KeyValue, tokens: TokenService) -> None:
        self.kv = kv
        self.tokens = tokens

    # ---- sign-in links ---------------------------------------------------------------

    async def issue_link(
        self, user: User, *, owner: bool, ttl: timedelta = SIGN_IN_TTL, now: float | None = None
    ) -> str:
        """A new one-time sign-in secret for `user` (only its hash is stored)."""
        now = time.time() if now is None else now
        secret = secrets.token_urlsafe(32)
        value = json.dumps(
            {
                "id": user.id,
                "name": user.name,
                "owner": owner,
                "expires_at": now + ttl.total_seconds(),
            }
        )
        await self.kv.kv_set(_LINK_PREFIX + _digest(secret), value, expires_in=ttl)
        return secret

    async def redeem_link(
        self, secret: str | None, now: float | None = None
    ) -> tuple[str, Session]:
        """Use a sign-in secret once and open a session: (session id, session).
        Unauthorized when it is malformed, unknown, expired or already used."""
        refused = Unauthorized(
            "This sign-in link has expired or was already used; ask /gallery for a new one.",
            reason="invalid",
        )
        if not _well_formed(secret):
            raise refused
        assert secret is not None
        key = _LINK_PREFIX + _digest(secret)
        value = await self.kv.kv_get(key)
        # Deleting exactly the value read succeeds for one redeemer only.
        if value is None or not await self.kv.kv_release(key, value):
            raise refused
        data = json.loads(value)
        if float(data["expires_at"]) <= (time.time() if now is None else now):
            raise refused
        user = User(str(data["id"]), str(data["name"]))
        return await self.open(user, owner=bool(data["owner"]), now=now)

    # ---- Discord OAuth2 ----------------------------------------------------------------

    async def begin_oauth(
        self,
        binding: str,
        next_path: str,
        *,
        ttl: timedelta = SIGN_IN_TTL,
        now: float | None = None,
    ) -> str:
        """A new OAuth2 `state` for the browser whose pre-login CSRF token is `binding`,
        remembering where to go once signed in (only hashes of both are stored)."""
        now = time.time() if now is None else now
        state = secrets.token_urlsafe(32)
        value = json.dumps(
            {
                "binding": _digest(binding),
                "next": next_path,
                "expires_at": now + ttl.total_seconds(),
            }
        )
        await self.kv.kv_set(_OAUTH_PREFIX + _digest(state), value, expires_in=ttl)
        return state

    async def finish_oauth(self, state: str | None, binding: str, now: float | None = None) -> str:
        """Use a `state` once; the path to go back to. Forbidden when it is malformed,
        unknown, expired, already used, or was made for another browser."""
        refused = Forbidden(
            "This Discord sign-in was not started here, has expired or was already used; "
            "start again from the sign-in page.",
            reason="state",
        )
        if not _well_formed(state):
            raise refused
        assert state is not None
        key = _OAUTH_PREFIX + _digest(state)
        value = await self.kv.kv_get(key)
        if value is None or not await self.kv.kv_release(key, value):
            raise refused
        data = json.loads(value)
        if float(data["expires_at"]) <= (time.time() if now is None else now):
            raise refused
        if not hmac.compare_digest(str(data["binding"]), _digest(binding)):
            raise refused
        return str(data["next"])

    # ---- admin tokens ----------------------------------------------------------------

    async def sign_in_with_token(
        self, secret: str | None, now: float | None = None
    ) -> tuple[str, Session]:
        """Open an owner's session with an `admin` token: Unauthorized for a wrong
        token, Forbidden for one without `admin`."""
        token = await self.tokens.verify(secret)
        if SCOPE_ADMIN not in token.scopes:
            raise Forbidden(
                "Only an admin token signs in here; members sign in with /gallery on Discord.",
                scope=SCOPE_ADMIN,
            )
        user = User(token.owner_id, token.owner_name)
        return await self.open(user, owner=True, token_id=token.id, now=now)

    # ---- sessions --------------------------------------------------------------------

    async def open(
        self,
        user: User,
        *,
        owner: bool,
        token_id: str | None = None,
        ttl: timedelta = SESSION_TTL,
        now: float | None = None,
    ) -> tuple[str, Session]:
        """A new session for `user`: (session id for the cookie, session)."""
        now = time.time() if now is None else now
        session_id = secrets.token_urlsafe(32)
        session = Session(
            user=user,
            owner=owner,
            csrf=secrets.token_urlsafe(32),
            expires_at=now + ttl.total_seconds(),
            token_id=token_id,
        )
        await self.kv.kv_set(
            _SESSION_PREFIX + _digest(session_id), session.to_json(), expires_in=ttl
        )
        return session_id, session

    async def get(self, session_id: str | None, now: float | None = None) -> Session | None:
        """The live session for a cookie's id; None when absent, expired, or opened
        with an admin token that is no longer active."""
        if not _well_formed(session_id):
            return None
        assert session_id is not None
        value = await self.kv.kv_get(_SESSION_PREFIX + _digest(session_id))
        if value is None:
            return None
        session = Session.from_json(value)
        if session.expires_at <= (time.time() if now is None else now):
            return None
        if session.token_id is not None:
            try:
                token = await self.tokens.find(session.token_id)
            except NotFound:
                return None
            if SCOPE_ADMIN not in token.scopes or token.revoked_at is not None:
                return None
            if token.expires_at is not None and token.expires_at.timestamp() <= time.time():
                return None
        return session

    async def end(self, session_id: str | None) -> None:
        """Sign out: forget the session (nothing happens for an unknown id)."""
        if not _well_formed(session_id):
            return
        assert session_id is not None
        key = _SESSION_PREFIX + _digest(session_id)
        value = await self.kv.kv_get(key)
        if value is not None:
            await self.kv.kv_release(key, value)
