"""The one data model every dialect and the bot are shaped from."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Rating(StrEnum):
    """How explicit an image is; boolean dialects map nsfw = rating != sfw."""

    SFW = "sfw"
    QUESTIONABLE = "questionable"
    NSFW = "nsfw"


class Status(StrEnum):
    """Moderation state; only approved images are served by public reads."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class Sort(StrEnum):
    """Search orders (nekos.moe's four)."""

    NEWEST = "newest"
    OLDEST = "oldest"
    LIKES = "likes"
    RELEVANCE = "relevance"


@dataclass(frozen=True, slots=True)
class User:
    """Someone who uploads, approves or owns: a Discord user or a token owner."""

    id: str
    name: str


@dataclass(frozen=True, slots=True)
class Tag:
    """A tag, called a category by NekosAPI. `images` counts approved images."""

    id: str
    name: str
    description: str
    nsfw: bool
    created_at: datetime
    images: int = 0


@dataclass(frozen=True, slots=True)
class Artist:
    id: str
    name: str
    url: str | None
    created_at: datetime
    images: int = 0


@dataclass(frozen=True, slots=True)
class Character:
    id: str
    name: str
    description: str
    source: str
    gender: str
    ages: tuple[int, ...]
    birth_date: str
    nationality: str
    occupations: tuple[str, ...]
    created_at: datetime
    images: int = 0


@dataclass(frozen=True, slots=True)
class Album:
    id: str
    name: str
    owner_id: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Image:
    """A stored image with its metadata, as every transport reads it."""

    id: str
    sha256: str
    md5: str
    phash: int
    mimetype: str
    extension: str
    size: int
    width: int
    height: int
    aspect_ratio: str
    orientation: str
    dominant_color: str
    animated: bool
    rating: Rating
    status: Status
    title: str
    description: str
    source_name: str | None
    source_url: str | None
    original_filename: str | None
    artist: Artist | None
    characters: tuple[Character, ...]
    tags: tuple[Tag, ...]
    album: Album | None
    uploader: User | None
    approver: User | None
    likes: int
    favorites: int
    created_at: datetime
    expires_at: datetime | None
    near_duplicate_of: str | None
    thumbnail_size: int

    @property
    def nsfw(self) -> bool:
        return self.rating is not Rating.SFW

    @property
    def filename(self) -> str:
        return f"{self.id}.{self.extension}"

    @property
    def tag_names(self) -> list[str]:
        return [t.name for t in self.tags]


# What core/imaging.orientation() classifies a size as (the images.orientation column).
ORIENTATIONS = ("landscape", "portrait", "square")


@dataclass(frozen=True, slots=True)
class Filters:
    """What `random` draws from: all of `tags`, none of `exclude_tags`, any of
    `ratings` (empty = any), and optionally one artist and one character (by id or
    name). Categories are tags."""

    tags: tuple[str, ...] = ()
    exclude_tags: tuple[str, ...] = ()
    ratings: frozenset[Rating] = frozenset()
    artist: str | None = None
    character: str | None = None
    orientation: str | None = None  # one of ORIENTATIONS

    def key(self) -> str:
        """A stable text form, used to remember what a member has already seen."""
        parts = [
            "t=" + ",".join(sorted(t.lower() for t in self.tags)),
            "x=" + ",".join(sorted(t.lower() for t in self.exclude_tags)),
            "r=" + ",".join(sorted(self.ratings)),
            "a=" + (self.artist or "").lower(),
            "c=" + (self.character or "").lower(),
        ]
        if self.orientation:
            # Only when set: the keys members' seen images are kept under stay as they were.
            parts.append("o=" + self.orientation)
        return "&".join(parts)


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """Everything `search` understands; None means "no constraint"."""

    image_id: str | None = None
    tags: tuple[str, ...] = ()
    exclude_tags: tuple[str, ...] = ()
    ratings: frozenset[Rating] = frozenset()
    artist: str | None = None  # case-insensitive substring of the artist's name
    artist_id: str | None = None
    character: str | None = None  # id or exact name
    orientation: str | None = None  # one of ORIENTATIONS
    uploader: str | None = None  # user id or name
    album_id: str | None = None
    posted_before: datetime | None = None
    posted_after: datetime | None = None
    sort: Sort = Sort.NEWEST
    skip: int = 0
    limit: int = 20
    statuses: frozenset[Status] = frozenset({Status.APPROVED})


@dataclass(frozen=True, slots=True)
class ImageFile:
    """Just enough of an image to link to and serve its bytes (cheap random draws and
    file routes), without its tags, characters and the rest."""

    id: str
    extension: str
    sha256: str
    mimetype: str
    size: int
    thumbnail_size: int
    status: Status
    uploader_id: str | None
    expires_at: datetime | None = None

    @property
    def filename(self) -> str:
        return f"{self.id}.{self.extension}"


@dataclass(frozen=True, slots=True)
class Rendition:
    """An image as one dialect renders it (its JSON, or a template of it), drawn with
    the store's copy of that rendering: `body` is the kept bytes, or None when the store
    has none for the image's current `rev`; then `image` is the image to render it
    from. `artist`, `tags` and `characters` are the image's catalogue entries (as on
    `Image`) when the draw asked for them, for dialects that splice them in per request
    (their image counts change with every upload)."""

    id: str
    rev: int
    body: bytes | None
    image: Image | None = None
    artist: Artist | None = None
    tags: tuple[Tag, ...] = ()
    characters: tuple[Character, ...] = ()


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of results; `total` is exact when `total_exact`, else a lower bound."""

    images: list[Image]
    total: int
    total_exact: bool
    skip: int
    limit: int


@dataclass(frozen=True, slots=True)
class IngestMetadata:
    """What an uploader says about an image; the bytes say the rest."""

    tags: tuple[str, ...] = ()
    rating: Rating = Rating.SFW
    artist: str | None = None
    characters: tuple[str, ...] = ()
    title: str = ""
    description: str = ""
    source_name: str | None = None
    source_url: str | None = None
    original_filename: str | None = None
    album_id: str | None = None
    expires_at: datetime | None = None
    resize_width: int | None = None
    max_bytes: int | None = None  # a dialect's own upload limit, when tighter than the global one


@dataclass(frozen=True, slots=True)
class Token:
    """An API token as stored: never the secret, only its hash."""

    id: str
    owner_id: str
    owner_name: str
    purpose: str
    scopes: tuple[str, ...]
    issued_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """The result of issuing: the stored token and its secret, shown once."""

    token: Token
    secret: str


@dataclass(frozen=True, slots=True)
class TokenRequest:
    id: str
    requester_id: str
    requester_name: str
    purpose: str
    status: str  # pending | approved | denied
    decided_by: str | None  # "name (id)", kept whole for the record
    created_at: datetime
    decided_at: datetime | None
    token_id: str | None

    @property
    def decider_name(self) -> str | None:
        """Who decided, by name only: what people are shown."""
        if self.decided_by is None:
            return None
        name, paren, rest = self.decided_by.rpartition(" (")
        return name if paren and rest.endswith(")") else self.decided_by


@dataclass(frozen=True, slots=True)
class Stats:
    """Counts over approved images, as NekosAPI's /stats and the bot's /stats show."""

    images: int
    by_rating: dict[str, int]
    by_orientation: dict[str, int]
    by_resolution: dict[str, int]
    pending: int
    artists: int
    characters: int
    categories: int
    extra: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One announcement in the durable outbox: `kind` (an event name of core/events.py)
    about an image, with what the event needs beyond the image (`payload`)."""

    seq: int
    kind: str
    image_id: str
    payload: dict[str, Any]
    created_at: datetime


# ---- reports ----


class ReportReason(StrEnum):
    """Why a member reported an image."""

    WRONG_RATING = "wrong_rating"
    NOT_ALLOWED = "not_allowed"
    DUPLICATE = "duplicate"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Report:
    """A member's report of an image; `action` (e.g. `dismissed`, `removed`,
    `rerated:nsfw`) once an owner handled it."""

    id: int
    image_id: str
    reporter: User
    reason: ReportReason
    text: str
    created_at: datetime
    action: str | None = None
    handled_by: User | None = None
    handled_at: datetime | None = None


def new_id() -> str:
    """A fresh UUID4 (NekosAPI clients reject ids that are not UUIDs)."""
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class NewImage:
    """A row to insert: the measured facts from the pipeline plus the uploader's words."""

    id: str
    sha256: str
    md5: str
    phash: int
    mimetype: str
    extension: str
    size: int
    width: int
    height: int
    aspect_ratio: str
    orientation: str
    dominant_color: str
    animated: bool
    thumbnail_size: int
    rating: Rating
    status: Status
    title: str
    description: str
    source_name: str | None
    source_url: str | None
    original_filename: str | None
    artist: str | None
    characters: tuple[str, ...]
    tags: tuple[str, ...]
    album_id: str | None
    uploader: User | None
    approver: User | None
    created_at: datetime
    expires_at: datetime | None
    near_duplicate_of: str | None
