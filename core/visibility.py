"""Who may see an image: one rule for every transport (DESIGN.md, "Visibility").

- An accepted upload is served at once at its own file URLs (direct link, thumbnail,
  Chevereto's viewer page) to whoever holds the link: the id is an unguessable UUID,
  as on every image host. No token is needed, whoever uploaded it.
- It enters the public pools (random, search, listings, stats) only when approved.
- A rejected image is served to nobody and its files are removed; its row stays, so
  the same bytes are refused as a duplicate. It can't be approved afterwards: it has
  nothing left to show.
- An image past its expires_at is served to nobody, even before the expiry sweeper
  has deleted it.
- Uploads are trusted (approved at once) from an admin token over HTTP, from an owner
  on Discord, and from the operator's own import; every other upload starts pending."""

from __future__ import annotations

from datetime import UTC, datetime

from core.models import Status, Token
from core.tokens import SCOPE_ADMIN

# What a file URL (or a read by id at the image's own link) may show.
AT_LINK = frozenset({Status.APPROVED, Status.PENDING})
# What the public pools (random, search, listings, stats) hold.
IN_POOLS = frozenset({Status.APPROVED})


def expired(expires_at: datetime | None, now: datetime | None = None) -> bool:
    """Whether an image with this expires_at has expired by `now`."""
    return expires_at is not None and expires_at <= (now or datetime.now(UTC))


def served_at_link(
    status: Status, expires_at: datetime | None, now: datetime | None = None
) -> bool:
    """Whether an image's own file URLs serve it: approved or pending, and not expired."""
    return status in AT_LINK and not expired(expires_at, now)


def in_public_pools(status: Status) -> bool:
    """Whether an image belongs in random draws, searches, listings and stats."""
    return status in IN_POOLS


def cacheable_by_anyone(status: Status) -> bool:
    """Whether shared caches may keep an image's bytes for good: only approved ones;
    a pending image can still be rejected, and then must be gone everywhere."""
    return status is Status.APPROVED


def trusted_uploader(token: Token | None = None, *, owner: bool = False) -> bool:
    """Whether an upload goes public without review: an admin token's (HTTP) or an
    owner's (Discord, `owner=True`); everyone else's start pending."""
    return owner or (token is not None and SCOPE_ADMIN in token.scopes)
