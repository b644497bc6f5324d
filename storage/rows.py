"""What the SQL backends share about rows: how an image row is written (its columns
and values, in one order), what each read selects and how its rows become models
(read by position, in the order the column lists give: SQLite's tuples and asyncpg's
Records alike), how values are encoded (hashes in signed 64-bit columns, times as
epoch seconds, LIKE patterns, rid lists) and how hashes are compared (the quarter
index's neighbourhoods)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from core.models import (
    Album,
    Artist,
    Character,
    Image,
    ImageFile,
    NewImage,
    Rating,
    Report,
    ReportReason,
    Status,
    Tag,
    Token,
    TokenRequest,
    User,
)

# The columns an image row is inserted with, in the order of `image_values`.
IMAGE_COLUMNS = (
    "id",
    "sha256",
    "md5",
    "phash",
    "ph0",
    "ph1",
    "ph2",
    "ph3",
    "mimetype",
    "extension",
    "size",
    "width",
    "height",
    "aspect_ratio",
    "orientation",
    "dominant_color",
    "animated",
    "thumbnail_size",
    "rating",
    "status",
    "title",
    "description",
    "source_name",
    "source_url",
    "original_filename",
    "artist_rid",
    "album_rid",
    "uploader_id",
    "uploader_name",
    "approver_id",
    "approver_name",
    "created_at",
    "expires_at",
    "near_duplicate_of",
)


def ts(dt: datetime | None) -> float | None:
    """A time as the epoch seconds the stores keep."""
    return None if dt is None else dt.timestamp()


def signed64(value: int) -> int:
    """SQL integers are signed: an unsigned 64-bit hash in that range."""
    return value - (1 << 64) if value >= 1 << 63 else value


def unsigned64(value: int) -> int:
    """The unsigned 64-bit hash back from its signed column."""
    return value + (1 << 64) if value < 0 else value


def quarters(phash: int) -> tuple[int, int, int, int]:
    """The four 16-bit quarters of a perceptual hash (the near-duplicate index)."""
    return (phash >> 48) & 0xFFFF, (phash >> 32) & 0xFFFF, (phash >> 16) & 0xFFFF, phash & 0xFFFF


# Rows a similar-images lookup reads at most: past it (a collection where thousands of
# hashes share quarters, e.g. flat pictures) the nearest are found among the first ones.
SIMILAR_CANDIDATES = 20_000


def quarter_neighbours(quarter: int, radius: int) -> list[int]:
    """Every 16-bit value within `radius` bits of `quarter` (itself first): two hashes
    within 4 * radius + 3 bits have some quarter within `radius` bits (pigeonhole)."""
    out = [quarter]
    for flips in range(1, radius + 1):
        for bits in itertools.combinations(range(16), flips):
            mask = 0
            for bit in bits:
                mask |= 1 << bit
            out.append(quarter ^ mask)
    return out


def nearest_by_phash(
    phash: int, rows: Iterable[tuple[int, int]], count: int, max_distance: int
) -> list[int]:
    """The seqs of up to `count` (seq, stored phash) rows within `max_distance` bits of
    `phash`, nearest first, newest (highest seq) first among equals."""
    found = []
    for seq, other in rows:
        distance = (phash ^ unsigned64(other)).bit_count()
        if distance <= max_distance:
            found.append((distance, -seq))
    return [-negated for _, negated in sorted(found)[:count]]


# What SQLite's NOCASE and PostgreSQL's lower() in the "C" collation fold: ASCII letters.
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold(name: str) -> str:
    """A name as both stores compare names: ASCII letters lowered, nothing else."""
    return name.translate(_ASCII_LOWER)


def like_pattern(text: str) -> str:
    """A substring LIKE pattern with the user's wildcards escaped."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def rid_list(key: str | int) -> list[int]:
    """Rids from one rid or a comma-joined list of them."""
    return [key] if isinstance(key, int) else [int(rid) for rid in key.split(",")]


def image_values(new: NewImage, artist_rid: int | None, album_rid: int | None) -> tuple[Any, ...]:
    """A NewImage as the values of IMAGE_COLUMNS, in order."""
    return (
        new.id,
        new.sha256,
        new.md5,
        signed64(new.phash),
        *quarters(new.phash),
        new.mimetype,
        new.extension,
        new.size,
        new.width,
        new.height,
        new.aspect_ratio,
        new.orientation,
        new.dominant_color,
        bool(new.animated),
        new.thumbnail_size,
        new.rating.value,
        new.status.value,
        new.title,
        new.description,
        new.source_name,
        new.source_url,
        new.original_filename,
        artist_rid,
        album_rid,
        new.uploader.id if new.uploader else None,
        new.uploader.name if new.uploader else None,
        new.approver.id if new.approver else None,
        new.approver.name if new.approver else None,
        new.created_at.timestamp(),
        ts(new.expires_at),
        new.near_duplicate_of,
    )


# Enum lookups by value cost microseconds each on the hot read path; a dict doesn't.
RATING = {r.value: r for r in Rating}
STATUS = {s.value: s for s in Status}


def dt(value: float | None) -> datetime | None:
    return None if value is None else at(value)


def at(value: float) -> datetime:
    """A NOT NULL timestamp column as an aware datetime."""
    return datetime.fromtimestamp(value, UTC)


def tag_of(row: Sequence[Any]) -> Tag:
    """A row of TAG_COLUMNS as a Tag."""
    tag_id, name, description, nsfw, created_at, images = row
    return Tag(
        id=tag_id,
        name=name,
        description=description,
        nsfw=bool(nsfw),
        created_at=at(created_at),
        images=images or 0,
    )


def artist_of(row: Sequence[Any]) -> Artist:
    """A row of ARTIST_COLUMNS as an Artist."""
    artist_id, name, url, created_at, images = row
    return Artist(id=artist_id, name=name, url=url, created_at=at(created_at), images=images or 0)


def character_of(row: Sequence[Any]) -> Character:
    """A row of CHARACTER_COLUMNS as a Character."""
    (
        character_id,
        name,
        description,
        source,
        gender,
        ages,
        birth_date,
        nationality,
        occupations,
        created_at,
        images,
    ) = row
    return Character(
        id=character_id,
        name=name,
        description=description,
        source=source,
        gender=gender,
        ages=tuple(json.loads(ages)),
        birth_date=birth_date,
        nationality=nationality,
        occupations=tuple(json.loads(occupations)),
        created_at=at(created_at),
        images=images or 0,
    )


TAG_COLUMNS = (
    "t.id, t.name, t.description, t.nsfw, t.created_at, "
    "(SELECT size FROM pools WHERE name = 'tag:' || t.rid) AS images"
)
ARTIST_COLUMNS = (
    "a.id, a.name, a.url, a.created_at, "
    "(SELECT size FROM pools WHERE name = 'artist:' || a.rid) AS images"
)
CHARACTER_COLUMNS = (
    "c.id, c.name, c.description, c.source, c.gender, c.ages, c.birth_date, c.nationality, "
    "c.occupations, c.created_at, "
    "(SELECT size FROM pools WHERE name = 'character:' || c.rid) AS images"
)
# What hydrating an image reads of its tags, artist and characters, by table.
MEMBERS: dict[str, tuple[str, str, Callable[[Sequence[Any]], Any]]] = {
    "tags": ("t", TAG_COLUMNS, tag_of),
    "artists": ("a", ARTIST_COLUMNS, artist_of),
    "characters": ("c", CHARACTER_COLUMNS, character_of),
}
TOKEN_COLUMNS = (
    "id, owner_id, owner_name, purpose, scopes, issued_by, created_at, expires_at, "
    "revoked_at, last_used_at"
)
REQUEST_COLUMNS = (
    "id, requester_id, requester_name, purpose, status, decided_by, created_at, "
    "decided_at, token_id"
)


def token_of(row: Sequence[Any]) -> Token:
    """A row starting with TOKEN_COLUMNS as a Token (more columns may follow)."""
    (
        token_id,
        owner_id,
        owner_name,
        purpose,
        scopes,
        issued_by,
        created_at,
        expires_at,
        revoked_at,
        last_used_at,
        *_,
    ) = row
    return Token(
        id=token_id,
        owner_id=owner_id,
        owner_name=owner_name,
        purpose=purpose,
        scopes=tuple(s for s in scopes.split(" ") if s),
        issued_by=issued_by,
        created_at=at(created_at),
        expires_at=dt(expires_at),
        revoked_at=dt(revoked_at),
        last_used_at=dt(last_used_at),
    )


def request_of(row: Sequence[Any]) -> TokenRequest:
    """A row of REQUEST_COLUMNS as a TokenRequest."""
    (
        request_id,
        requester_id,
        requester_name,
        purpose,
        status,
        decided_by,
        created_at,
        decided_at,
        token_id,
    ) = row
    return TokenRequest(
        id=request_id,
        requester_id=requester_id,
        requester_name=requester_name,
        purpose=purpose,
        status=status,
        decided_by=decided_by,
        created_at=at(created_at),
        decided_at=dt(decided_at),
        token_id=token_id,
    )


FILE_COLUMNS = (
    "id, extension, sha256, mimetype, size, thumbnail_size, status, uploader_id, expires_at"
)


def image_file_of(row: Sequence[Any]) -> ImageFile:
    """A row starting with FILE_COLUMNS as an ImageFile (more columns may follow)."""
    (
        image_id,
        extension,
        sha256,
        mimetype,
        size,
        thumbnail_size,
        status,
        uploader_id,
        expires_at,
        *_,
    ) = row
    return ImageFile(
        id=image_id,
        extension=extension,
        sha256=sha256,
        mimetype=mimetype,
        size=size,
        thumbnail_size=thumbnail_size,
        status=STATUS[status],
        uploader_id=uploader_id,
        expires_at=dt(expires_at),
    )


def image_of(
    row: Sequence[Any], artist: tuple[Any, ...], tags: tuple[Any, ...], characters: tuple[Any, ...]
) -> Image:
    """A row starting with IMAGE_READ as an Image, given its members (from the read
    cache); more columns may follow."""
    (
        _seq,
        image_id,
        sha256,
        md5,
        phash,
        mimetype,
        extension,
        size,
        width,
        height,
        aspect_ratio,
        orientation,
        dominant_color,
        animated,
        thumbnail_size,
        rating,
        status,
        title,
        description,
        source_name,
        source_url,
        original_filename,
        uploader_id,
        uploader_name,
        approver_id,
        approver_name,
        likes,
        favorites,
        created_at,
        expires_at,
        near_duplicate_of,
        _artist_rid,
        album_id,
        album_name,
        album_owner,
        album_created_at,
        _tag_rids,
        _character_rids,
        *_,
    ) = row
    return Image(
        id=image_id,
        sha256=sha256,
        md5=md5,
        phash=unsigned64(phash),
        mimetype=mimetype,
        extension=extension,
        size=size,
        width=width,
        height=height,
        aspect_ratio=aspect_ratio,
        orientation=orientation,
        dominant_color=dominant_color,
        animated=bool(animated),
        thumbnail_size=thumbnail_size,
        rating=RATING[rating],
        status=STATUS[status],
        title=title,
        description=description,
        source_name=source_name,
        source_url=source_url,
        original_filename=original_filename,
        uploader=User(uploader_id, uploader_name or "") if uploader_id is not None else None,
        approver=User(approver_id, approver_name or "") if approver_id is not None else None,
        likes=likes,
        favorites=favorites,
        created_at=at(created_at),
        expires_at=dt(expires_at),
        near_duplicate_of=near_duplicate_of,
        artist=artist[0] if artist else None,
        album=(
            Album(album_id, album_name, album_owner, at(album_created_at))
            if album_id is not None
            else None
        ),
        tags=tags,
        characters=characters,
    )


# What an image read selects (images i, albums al), by name, in the order rows come
# back: `image_of` unpacks them in this order. The rid lists are aggregated by each
# backend's own function (`image_columns`).
IMAGE_READ = {
    "seq": "i.seq",
    "id": "i.id",
    "sha256": "i.sha256",
    "md5": "i.md5",
    "phash": "i.phash",
    "mimetype": "i.mimetype",
    "extension": "i.extension",
    "size": "i.size",
    "width": "i.width",
    "height": "i.height",
    "aspect_ratio": "i.aspect_ratio",
    "orientation": "i.orientation",
    "dominant_color": "i.dominant_color",
    "animated": "i.animated",
    "thumbnail_size": "i.thumbnail_size",
    "rating": "i.rating",
    "status": "i.status",
    "title": "i.title",
    "description": "i.description",
    "source_name": "i.source_name",
    "source_url": "i.source_url",
    "original_filename": "i.original_filename",
    "uploader_id": "i.uploader_id",
    "uploader_name": "i.uploader_name",
    "approver_id": "i.approver_id",
    "approver_name": "i.approver_name",
    "likes": "i.likes",
    "favorites": "i.favorites",
    "created_at": "i.created_at",
    "expires_at": "i.expires_at",
    "near_duplicate_of": "i.near_duplicate_of",
    "artist_rid": "i.artist_rid",
    "album_id": "al.id",
    "album_name": "al.name",
    "album_owner": "al.owner_id",
    "album_created_at": "al.created_at",
    "tag_rids": "(SELECT {} FROM image_tags WHERE seq = i.seq)",
    "character_rids": "(SELECT {} FROM image_characters WHERE seq = i.seq)",
}
# Where hydrating finds the values it looks up before `image_of`, by position.
SEQ, ARTIST_RID, TAG_RIDS, CHARACTER_RIDS = (
    list(IMAGE_READ).index(name) for name in ("seq", "artist_rid", "tag_rids", "character_rids")
)
IMAGE_FROM = "FROM images i LEFT JOIN albums al ON al.rid = i.album_rid"


def image_columns(concat: str) -> str:
    """IMAGE_READ as a select list, each column named; `concat` joins a rid column's
    values with commas (`{}` stands for the column)."""
    out = []
    for name, expr in IMAGE_READ.items():
        if name == "tag_rids":
            expr = expr.format(concat.format("tag_rid"))
        elif name == "character_rids":
            expr = expr.format(concat.format("character_rid"))
        out.append(f"{expr} AS {name}")
    return ", ".join(out)


REPORT_COLUMNS = (
    "id, image_id, reporter_id, reporter_name, reason, text, created_at, action, "
    "handled_by_id, handled_by_name, handled_at"
)


def report_of(row: Sequence[Any]) -> Report:
    """A reports row (selected as REPORT_COLUMNS) as a Report."""
    (
        report_id,
        image_id,
        reporter_id,
        reporter_name,
        reason,
        text,
        created_at,
        action,
        handled_by_id,
        handled_by_name,
        handled_at,
    ) = row
    return Report(
        id=report_id,
        image_id=image_id,
        reporter=User(reporter_id, reporter_name),
        reason=ReportReason(reason),
        text=text,
        created_at=at(created_at),
        action=action,
        handled_by=User(handled_by_id, handled_by_name) if handled_by_id is not None else None,
        handled_at=dt(handled_at),
    )
