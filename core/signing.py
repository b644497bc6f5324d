"""Expiring links: an HMAC over the path and the expiry time, so a link stops
working after its time and can't be altered."""

from __future__ import annotations

import hmac
import time

from core.errors import Forbidden


class LinkSigner:
    """Signs and checks `path?expires=...&signature=...` links."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, path: str, expires: int) -> str:
        # hmac.digest: the one-shot C path (the same MAC as hmac.new, without its objects).
        return hmac.digest(self._secret, f"{path}\n{expires}".encode(), "sha256").hex()

    def sign(self, path: str, ttl_seconds: int, now: float | None = None) -> str:
        """`path` with the query that keeps it valid for `ttl_seconds`."""
        expires = int((time.time() if now is None else now) + ttl_seconds)
        return f"{path}?expires={expires}&signature={self._mac(path, expires)}"

    def expiry_of(self, ttl_seconds: int, now: float | None = None) -> int:
        """The unix time a link signed now for `ttl_seconds` stops working."""
        return int((time.time() if now is None else now) + ttl_seconds)

    def check(
        self, path: str, expires: str | None, signature: str | None, now: float | None = None
    ) -> None:
        """Forbidden unless the signature matches and has not expired."""
        # Only ASCII digits and hex can be ours; anything else (non-ASCII text, which
        # compare_digest refuses, or a number too long to parse) is simply wrong.
        if (
            not expires
            or not signature
            or not expires.isascii()
            or not expires.isdigit()
            or len(expires) > 12
            or not signature.isascii()
        ):
            raise Forbidden("Invalid signature")
        if not hmac.compare_digest(self._mac(path, int(expires)), signature):
            raise Forbidden("Invalid signature")
        if int(expires) < (time.time() if now is None else now):
            raise Forbidden("This link has expired")
