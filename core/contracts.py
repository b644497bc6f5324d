"""The storage contracts core/ is written against: several small Protocols, one per job,
combined into `Repo` (pict-rs' `FullRepo` shape). `storage/` implements them, SQLite
today; nothing outside `storage/` names a backend.

Every backend keeps the same promises, which the contract tests check:
- random draws are exactly uniform over the approved images matching the filters;
- a write is all or nothing, and once it returns, every later read (from any process
  sharing the store) sees it, caches included, within a second;
- an insert of bytes already stored raises `DuplicateImage` with the stored id.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from core.models import (
    Album,
    Artist,
    Character,
    Filters,
    Image,
    ImageFile,
    NewImage,
    OutboxEntry,
    Rating,
    Rendition,
    Report,
    SearchPage,
    SearchQuery,
    Stats,
    Status,
    Tag,
    Token,
    TokenRequest,
    User,
)


class ImageRepo(Protocol):
    """Images: ingest, moderation state, pools and random draws, search, upkeep."""

    async def insert_image(self, new: NewImage, *, announce: bool = True) -> Image:
        """Store a row (files already written); DuplicateImage if its sha256 is known.
        A pending image is announced in the outbox in the same transaction, and with
        `announce` an approved one too (`image_decided`, by its approver)."""
        ...

    async def set_status(
        self,
        image_id: str,
        status: Status,
        approver: User | None,
        *,
        only_from: frozenset[Status] | None = None,
    ) -> Status | None:
        """Move an image to `status` (entering or leaving the pools) if its status is in
        `only_from` (checked in the same transaction); the status it had, None if unknown.
        A move to approved or rejected is announced in the outbox in that transaction."""
        ...

    async def delete_image(self, image_id: str) -> Image | None:
        """Remove a row and its pool slots; the removed image, or None if unknown."""
        ...

    async def set_rating(self, image_id: str, rating: Rating) -> Rating | None:
        """Change an image's rating, moving it between rating pools (if approved) and
        incrementing its `rev`, in one transaction; the rating it had, None if unknown."""
        ...

    async def get_image(self, image_id: str) -> Image | None:
        """One image by id, whatever its status."""
        ...

    async def get_file(self, image_id: str) -> ImageFile | None:
        """What serving an image's bytes needs, whatever its status."""
        ...

    async def id_by_sha256(self, sha256: str) -> str | None:
        """The id of the image with these bytes, if stored."""
        ...

    async def near_duplicate(self, phash: int, max_distance: int) -> str | None:
        """An image whose perceptual hash is within `max_distance` bits, if any."""
        ...

    async def similar_images(
        self,
        phash: int,
        count: int,
        max_distance: int,
        *,
        ratings: frozenset[Rating] = frozenset(),
        exclude_id: str | None = None,
    ) -> list[Image]:
        """Up to `count` approved images (of `ratings`, empty = any; not `exclude_id`)
        whose perceptual hash is within `max_distance` bits of `phash`, nearest first and
        newest first among equals; every one within that distance is a candidate."""
        ...

    async def random_images(
        self, filters: Filters, count: int, seen_by: str | None = None
    ) -> list[Image]:
        """Up to `count` distinct approved images drawn uniformly from the matches;
        with `seen_by`, none that member was shown in the current cycle."""
        ...

    async def random_files(self, filters: Filters, count: int) -> list[ImageFile]:
        """`random_images` for callers that only link to the bytes."""
        ...

    async def random_renditions(
        self, filters: Filters, count: int, dialect: str, *, members: bool = False
    ) -> list[Rendition]:
        """`random_images` (same uniform draw, no `seen_by`) as kept renderings: for each
        drawn image its id, its `rev` and the body stored for (image, `dialect`) if that
        body was stored for this very `rev`, else None and the hydrated `image` (its
        state at that `rev`: read in one consistent snapshot with the rev). With
        `members`, also the image's artist, tags and characters, as `Image` has them
        (tags and characters sorted by name, case-insensitively). A backend may keep no
        renderings at all: then every Rendition comes with its image, `unrendered` finds
        nothing and `put_renditions` keeps nothing."""
        ...

    async def unrendered(
        self, dialect: str, after: int, limit: int
    ) -> tuple[list[Rendition], int | None]:
        """Up to `limit` approved images with no body stored for their current `rev` and
        `dialect`, as Renditions with `body` None and `image` set, for a backfill in
        chunks: `after` is 0 for the first chunk, then the cursor returned with the
        previous one; the cursor is None once no image is left after this chunk. The
        cursor is the backend's own (e.g. a position in a stable order); each call must
        take time proportional to its chunk, not to the images before the cursor."""
        ...

    async def put_renditions(self, dialect: str, bodies: Iterable[tuple[str, int, bytes]]) -> int:
        """Keep each (image id, rev, body) as the image's `dialect` rendering, only where
        the image still has that `rev` (a rendering of an older state is dropped, in the
        same statement that would store it); how many were kept. Does not count as a
        change to images (no cache anywhere is dropped for it). Every write that changes
        what a rendering shows (status, approver, likes and favourites) increments the
        image's `rev` in its own transaction (as must any future edit of its artist, tags
        or characters); deleting an image deletes its renderings."""
        ...

    async def search(self, query: SearchQuery, *, count_total: bool = True) -> SearchPage:
        """A page of images matching `query`, with its (capped) total."""
        ...

    async def pool_size(self, name: str) -> int:
        """Approved images in one pool (`all`, a rating, a tag...): a cheap health probe."""
        ...

    async def stats(self) -> Stats:
        """Counts by rating, orientation, resolution; artists, characters, categories."""
        ...

    async def files_with_prefix(self, prefix: str) -> list[tuple[str, str]]:
        """(id, extension) of every image whose id starts with `prefix` and that has
        files (a rejected image's are removed)."""
        ...

    async def expired_ids(self, now: datetime, limit: int = 500) -> list[str]:
        """Ids of images whose expires_at is before `now`."""
        ...


class CatalogueRepo(Protocol):
    """Tags (categories), artists, characters and albums."""

    async def unknown_tags(self, names: Iterable[str]) -> list[str]:
        """Which of `names` are not tags."""
        ...

    async def list_tags(
        self, pattern: str | None = None, offset: int = 0, limit: int = 25
    ) -> tuple[list[Tag], int]:
        """Tags whose name is LIKE `pattern`, by name, with the total."""
        ...

    async def list_artists(
        self, pattern: str | None = None, offset: int = 0, limit: int = 25
    ) -> tuple[list[Artist], int]:
        """Artists whose name is LIKE `pattern`, by name, with the total."""
        ...

    async def list_characters(
        self, pattern: str | None = None, offset: int = 0, limit: int = 25
    ) -> tuple[list[Character], int]:
        """Characters whose name is LIKE `pattern`, by name, with the total."""
        ...

    async def get_tag(self, key: str) -> Tag | None:
        """A tag by id or name."""
        ...

    async def get_artist(self, key: str) -> Artist | None:
        """An artist by id or name."""
        ...

    async def get_character(self, key: str) -> Character | None:
        """A character by id or name."""
        ...

    async def get_album(self, album_id: str) -> Album | None:
        """An album by id."""
        ...


class MemberMemory(Protocol):
    """What the store remembers per member: likes and favourites (seen images are
    remembered by `ImageRepo.random_images(seen_by=...)`)."""

    async def set_like(self, image_id: str, user_id: str, kind: str, on: bool) -> int | None:
        """Like/unlike (or favourite); the new count, None if no such image."""
        ...

    async def has_liked(self, image_id: str, user_id: str, kind: str = "like") -> bool:
        """Whether the member likes (or favourites) the image."""
        ...

    async def liked_images(
        self, user_id: str, filters: Filters, skip: int, limit: int, kind: str = "like"
    ) -> SearchPage:
        """A page of the approved images the member likes (or favourites) that match
        `filters` (as a random draw reads them), newest like first, with the exact total."""
        ...

    async def random_liked(
        self,
        user_id: str,
        filters: Filters,
        count: int,
        kind: str = "like",
        *,
        remember: bool = False,
    ) -> list[Image]:
        """Up to `count` distinct images drawn uniformly from those `liked_images` lists;
        with `remember`, none the member was given by such a draw (same filters) in the
        current cycle, as `random_images(seen_by=...)`."""
        ...


class LeaderboardRepo(Protocol):
    """Rankings over approved images, for /stats (an image past its expiry counts until
    the sweeper removes it): each read is a pass over an index range (the period's
    uploads or likes), never a read of every image row."""

    async def top_uploaders(
        self, since: datetime | None, limit: int, exclude: Iterable[str] = ()
    ) -> list[tuple[User, int]]:
        """Uploaders (by id, with the name of their latest upload) of the most approved
        images created at or after `since` (None: ever), with how many; most first,
        ties by id. Uploader ids in `exclude` (e.g. the importer) are left out."""
        ...

    async def most_liked(
        self, since: datetime | None, limit: int, ratings: frozenset[Rating] = frozenset()
    ) -> list[tuple[str, int]]:
        """(image id, likes) of the approved images (of `ratings`; empty: any) with the
        most likes given at or after `since` (None: ever, which is each image's like
        count); most first, ties newest image first; images that got no like in the
        period are left out."""
        ...


class TokenRepo(Protocol):
    """API tokens (only the SHA-256 of each secret is kept) and token requests."""

    async def insert_token(self, token: Token, secret_sha256: bytes) -> None:
        """Store a new token under the hash of its secret."""
        ...

    async def token_by_hash(self, secret_sha256: bytes) -> tuple[Token, bytes] | None:
        """The token whose secret hashes to `secret_sha256`, with the stored hash."""
        ...

    async def get_token(self, token_id: str) -> Token | None:
        """A token by id."""
        ...

    async def touch_token(self, token_id: str, when: datetime) -> None:
        """Record a use of the token."""
        ...

    async def revoke_token(self, token_id: str, when: datetime) -> bool:
        """Revoke a token; False if it was already revoked or unknown."""
        ...

    async def list_tokens(self, owner_id: str | None = None) -> list[Token]:
        """Every token, or one owner's."""
        ...

    async def create_token_request(self, requester: User, purpose: str) -> TokenRequest:
        """A member's new request for a token."""
        ...

    async def get_token_request(self, request_id: str) -> TokenRequest | None:
        """A token request by id."""
        ...

    async def decide_token_request(
        self, request_id: str, status: str, decided_by: str, token_id: str | None
    ) -> bool:
        """Approve or deny a pending request; False if it was no longer pending."""
        ...

    async def list_token_requests(self, status: str | None = "pending") -> list[TokenRequest]:
        """Requests in `status` (None: all), oldest first."""
        ...


class KeyValue(Protocol):
    """Small durable values the transports keep (message ids, command digests)."""

    async def kv_get(self, key: str) -> str | None:
        """The value under `key`; None when absent or expired."""
        ...

    async def kv_set(self, key: str, value: str, *, expires_in: timedelta | None = None) -> None:
        """Set (or replace) the value under `key`, for good or for `expires_in`."""
        ...

    async def kv_purge_expired(self, now: datetime | None = None) -> int:
        """Delete the values whose expiry has passed; how many."""
        ...

    async def kv_claim(self, key: str, holder: str, ttl: timedelta) -> bool:
        """Atomically hold `key` for `holder` during `ttl` (a lease): succeeds when the
        key is absent, expired or already `holder`'s (renewing it); False otherwise,
        changing nothing. Safe between processes sharing the store."""
        ...

    async def kv_release(self, key: str, holder: str) -> bool:
        """Delete `key` only if `holder` holds it; whether it did."""
        ...


class Outbox(Protocol):
    """Durable announcements for the bot, whichever process made the change.

    The store appends them itself, in the same transaction as the change they announce:
    `insert_image` of a pending image appends `image_pending`, of an approved one (unless
    told not to: bulk imports) `image_decided` by its approver; `set_status` that moves
    an image to approved or rejected appends `image_decided` (payload: `approved`, and
    `by` as [id, name] or None); `add_report` appends `image_reported`. Entries become
    readable in `seq` order: once a reader has seen `seq` n, no entry below n appears
    later (SQLite serialises writers; a backend with concurrent writers must keep this
    promise some other way)."""

    async def outbox_after(self, seq: int, limit: int = 100) -> list[OutboxEntry]:
        """Up to `limit` entries after `seq`, oldest first."""
        ...

    async def outbox_cursor(self, consumer: str) -> int:
        """The last seq `consumer` acknowledged (0 if none)."""
        ...

    async def outbox_ack(self, consumer: str, seq: int) -> None:
        """Record that `consumer` handled every entry up to `seq` (never moves back)."""
        ...

    async def outbox_prune(self, handled_before: datetime, unhandled_before: datetime) -> int:
        """Delete entries older than `handled_before` that every consumer acknowledged,
        and all entries older than `unhandled_before`; how many."""
        ...


class ReportRepo(Protocol):
    """Members' reports of images, one per member and image."""

    async def add_report(
        self, image_id: str, reporter: User, reason: str, text: str
    ) -> Report | None:
        """File a report and append `image_reported` (payload `report`: its id) to the
        outbox in the same transaction; None (nothing written) if this member already
        reported this image."""
        ...

    async def get_report(self, report_id: int) -> Report | None:
        """A report by id."""
        ...

    async def reports_of(self, image_id: str) -> list[Report]:
        """Every report of an image, oldest first."""
        ...

    async def resolve_reports(self, image_id: str, action: str, by: User) -> int:
        """Mark the image's open reports handled with `action`; how many were open."""
        ...


class Repo(
    ImageRepo,
    CatalogueRepo,
    MemberMemory,
    LeaderboardRepo,
    TokenRepo,
    KeyValue,
    Outbox,
    ReportRepo,
    Protocol,
):
    """Everything the services need from a metadata store."""

    async def integrity_check(self) -> list[str]:
        """Problems the backend finds in its own data (empty when healthy)."""
        ...


class BlobNotFound(FileNotFoundError):
    """No bytes are stored under the key asked for."""


class BlobStore(Protocol):
    """Bytes by key. Keys look like `images/ab/<id>.jpg`: `/`-separated, no `..`.

    Nothing here assumes a local disk: bytes are read as a stream (optionally one
    byte range of it). A store may offer a direct URL (S3's presigned GET) and a local
    file (for sendfile); callers fall back to `read` when it offers neither."""

    async def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key` durably and atomically (all or nothing); once it
        returns, the bytes were verified as stored (a row may now point at them)."""

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncGenerator[bytes, None]:
        """The bytes of `key` from `start` up to `end` (exclusive; None: to the end), in
        chunks; BlobNotFound (from the first chunk) when `key` holds nothing. A reader
        that stops early closes it (`aclose`) to free the file or connection."""
        ...

    async def exists(self, key: str) -> bool:
        """Whether `key` holds bytes."""

    async def remove(self, key: str) -> None:
        """Remove `key`; removing a missing key is not an error."""

    async def list_prefix(self, prefix: str) -> list[str]:
        """Every key directly under the folder `prefix` (e.g. `images/ab`), temporaries
        included."""

    def list_all(self, prefix: str) -> AsyncGenerator[tuple[str, float], None]:
        """(key, when last written) of every key under the folder `prefix` (e.g.
        `images/`), at any depth and temporaries included, in ascending key order (by
        code point: S3's order), fetched a page at a time: the cost of a listing is what
        the folder holds, not how many sub-folders it has. A reader that stops early
        closes it (`aclose`)."""
        ...

    async def modified_at(self, key: str) -> float | None:
        """When `key` was last written (seconds since the epoch); None if it is gone."""

    async def direct_url(self, key: str, expires_in: int) -> str | None:
        """A URL clients may fetch the bytes from for `expires_in` seconds without
        going through gazou, or None when the store has none (local files)."""

    def local_path(self, key: str) -> Path | None:
        """The local file holding `key`, for sendfile; None when the bytes are remote."""


class WindowCounter(Protocol):
    """Hits per key in fixed windows aligned to multiples of the window length (a window
    of 10 s runs from each multiple of 10 s since the epoch to the next), for the rate
    limiter. Every process given the same counter sees one count per key and window:
    in-process (one process), shared memory (several on one machine), Redis (several
    machines). A counter that cannot count exactly counts low, never high, so a client
    within its limits is never refused."""

    async def hit(self, key: str, window: float, now: float) -> int:
        """Count one hit of `key` at `now` (unix seconds) and return the hits counted in
        the `window`-second window holding `now`, this one included."""
        ...

    async def close(self) -> None:
        """Release what the counter holds (connections, mappings)."""
        ...


class LocalWindowCounter(WindowCounter, Protocol):
    """A WindowCounter that answers without waiting on anything (this process's memory,
    shared memory): callers on the hot path skip the coroutine."""

    def count(self, key: str, window: float, now: float) -> int:
        """`hit`, synchronously."""
        ...


def image_key(image_id: str, extension: str) -> str:
    """Where an image's bytes live."""
    return f"images/{image_id[:2]}/{image_id}.{extension}"


def thumbnail_key(image_id: str) -> str:
    """Where an image's JPEG thumbnail lives."""
    return f"thumbs/{image_id[:2]}/{image_id}.jpg"


__all__ = [
    "BlobNotFound",
    "BlobStore",
    "CatalogueRepo",
    "ImageRepo",
    "KeyValue",
    "LeaderboardRepo",
    "LocalWindowCounter",
    "MemberMemory",
    "Outbox",
    "Repo",
    "ReportRepo",
    "TokenRepo",
    "WindowCounter",
    "image_key",
    "thumbnail_key",
]
