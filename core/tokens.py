"""API tokens: issue (the secret is shown once), verify, revoke, scopes, requests."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from datetime import UTC, datetime, timedelta

from core.contracts import TokenRepo
from core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from core.models import IssuedToken, Token, TokenRequest, User, new_id

# NekosAPI clients check this format before sending a token.
SECRET_ALPHABET = string.digits + string.ascii_letters
SECRET_LENGTH = 100
_SECRET_RE = re.compile(r"[0-9a-zA-Z]{100}")
SCOPE_UPLOAD = "image:upload"
SCOPE_LIST = "image:list"
SCOPE_CUSTOM_EXPIRY = "image:custom-expiry"
SCOPE_ADMIN = "admin"
KNOWN_SCOPES = (SCOPE_UPLOAD, SCOPE_LIST, SCOPE_CUSTOM_EXPIRY, SCOPE_ADMIN)
# Writing last_used_at on every request would turn reads into writes; once a minute is enough.
_TOUCH_EVERY = timedelta(seconds=60)


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def parse_scopes(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Validate scopes (`a,b` or a list); `image:custom-expiry[:SECONDS]` takes a bound."""
    items = text.split(",") if isinstance(text, str) else list(text)
    scopes: list[str] = []
    for raw in items:
        scope = raw.strip()
        if not scope:
            continue
        if scope.startswith(SCOPE_CUSTOM_EXPIRY + ":"):
            seconds = scope.removeprefix(SCOPE_CUSTOM_EXPIRY + ":")
            if not seconds.isdigit() or int(seconds) <= 30:
                raise InvalidInput(f"Scope {scope!r}: the bound must be a number of seconds > 30")
        elif scope not in KNOWN_SCOPES:
            raise InvalidInput(
                f"Unknown scope {scope!r}; known: {', '.join(KNOWN_SCOPES)} "
                f"(and {SCOPE_CUSTOM_EXPIRY}:SECONDS)"
            )
        if scope not in scopes:
            scopes.append(scope)
    return tuple(scopes)


def has_scope(token: Token, scope: str) -> bool:
    """Whether `token` grants `scope` (admin grants everything)."""
    return SCOPE_ADMIN in token.scopes or scope in token.scopes


def custom_expiry_limit(token: Token | None) -> int | None:
    """The longest custom link expiry `token` may ask for, in seconds; None if it may
    not set one; 0 for no limit."""
    if token is None:
        return None
    if SCOPE_ADMIN in token.scopes or SCOPE_CUSTOM_EXPIRY in token.scopes:
        return 0
    limits = [
        int(s.rsplit(":", 1)[1]) for s in token.scopes if s.startswith(SCOPE_CUSTOM_EXPIRY + ":")
    ]
    return max(limits) if limits else None


class TokenService:
    """Issue, verify and revoke tokens; file and decide token requests."""

    def __init__(self, repo: TokenRepo, default_scopes: tuple[str, ...]) -> None:
        self.repo = repo
        self.default_scopes = default_scopes

    async def issue(
        self,
        owner: User,
        *,
        scopes: tuple[str, ...] | None = None,
        expires_in: timedelta | None = None,
        purpose: str = "",
        issued_by: str,
    ) -> IssuedToken:
        """Create a token; the returned secret is the only copy there will ever be."""
        scopes = parse_scopes(scopes if scopes is not None else self.default_scopes)
        if expires_in is not None and expires_in <= timedelta(0):
            raise InvalidInput("A token's lifetime must be positive")
        now = datetime.now(UTC)
        secret = "".join(secrets.choice(SECRET_ALPHABET) for _ in range(SECRET_LENGTH))
        token = Token(
            id=new_id(),
            owner_id=owner.id,
            owner_name=owner.name,
            purpose=purpose,
            scopes=scopes,
            issued_by=issued_by,
            created_at=now,
            expires_at=now + expires_in if expires_in else None,
            revoked_at=None,
            last_used_at=None,
        )
        await self.repo.insert_token(token, _hash(secret))
        return IssuedToken(token=token, secret=secret)

    async def verify(self, secret: str | None) -> Token:
        """The active token for `secret`; Unauthorized (code `missing` or `invalid`)
        otherwise."""
        if not secret:
            raise Unauthorized("Authentication required", reason="missing")
        secret = secret.strip()
        if secret[:7].lower() == "bearer ":
            secret = secret[7:].strip()
        if not _SECRET_RE.fullmatch(secret):
            raise Unauthorized("Invalid token", reason="invalid")
        digest = _hash(secret)
        found = await self.repo.token_by_hash(digest)
        if found is None or not hmac.compare_digest(found[1], digest):
            raise Unauthorized("Invalid token", reason="invalid")
        token = found[0]
        now = datetime.now(UTC)
        if not token.active(now):
            raise Unauthorized("Invalid token", reason="invalid")
        if token.last_used_at is None or now - token.last_used_at > _TOUCH_EVERY:
            await self.repo.touch_token(token.id, now)
        return token

    def require(self, token: Token, scope: str) -> None:
        """Forbidden unless `token` grants `scope`."""
        if not has_scope(token, scope):
            raise Forbidden(f"Missing permission: {scope}", scope=scope)

    async def find(self, token_id: str) -> Token:
        """A token by id or by a unique id prefix of at least 6 characters."""
        token = await self.repo.get_token(token_id)
        if token is not None:
            return token
        if len(token_id) >= 6:
            matches = [t for t in await self.repo.list_tokens() if t.id.startswith(token_id)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise InvalidInput(f"Token id {token_id!r} is ambiguous; give more of it")
        raise NotFound(f"No token with id {token_id!r}")

    async def revoke(self, token_id: str) -> Token:
        """Revoke a token by id (or unique prefix); NotFound/Conflict if it can't be."""
        token = await self.find(token_id)
        if not await self.repo.revoke_token(token.id, datetime.now(UTC)):
            raise Conflict(f"Token {token.id} is already revoked")
        revoked = await self.repo.get_token(token.id)
        assert revoked is not None
        return revoked

    async def list_tokens(self, owner_id: str | None = None) -> list[Token]:
        """Tokens, newest first (never their secrets: those are not stored)."""
        return await self.repo.list_tokens(owner_id)

    async def pending_requests(self) -> list[TokenRequest]:
        """Members' requests waiting for an owner's decision, oldest first."""
        return await self.repo.list_token_requests("pending")

    async def request(self, requester: User, purpose: str) -> TokenRequest:
        """File a member's request; Conflict if one is already pending."""
        purpose = purpose.strip()
        if not purpose:
            raise InvalidInput("Say what the token is for")
        if len(purpose) > 500:
            raise InvalidInput("The purpose is limited to 500 characters")
        return await self.repo.create_token_request(requester, purpose)

    async def approve_request(
        self, request_id: str, decided_by: User
    ) -> tuple[TokenRequest, IssuedToken]:
        """Issue the token with the default scopes; Conflict if already decided."""
        request = await self.repo.get_token_request(request_id)
        if request is None:
            raise NotFound("No such token request")
        if request.status != "pending":
            raise Conflict(f"This request was already {request.status} by {request.decider_name}")
        issued = await self.issue(
            User(request.requester_id, request.requester_name),
            purpose=request.purpose,
            issued_by=f"{decided_by.name} ({decided_by.id})",
        )
        if not await self.repo.decide_token_request(
            request_id, "approved", f"{decided_by.name} ({decided_by.id})", issued.token.id
        ):
            await self.repo.revoke_token(issued.token.id, datetime.now(UTC))
            raise Conflict("This request was decided by another owner meanwhile")
        decided = await self.repo.get_token_request(request_id)
        assert decided is not None
        return decided, issued

    async def deny_request(self, request_id: str, decided_by: User) -> TokenRequest:
        """Deny a pending request; Conflict if already decided."""
        request = await self.repo.get_token_request(request_id)
        if request is None:
            raise NotFound("No such token request")
        if not await self.repo.decide_token_request(
            request_id, "denied", f"{decided_by.name} ({decided_by.id})", None
        ):
            raise Conflict(f"This request was already {request.status} by {request.decider_name}")
        decided = await self.repo.get_token_request(request_id)
        assert decided is not None
        return decided
