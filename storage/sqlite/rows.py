"""SQLite rows -> models: the column lists each read selects and the mappers that build
models from them."""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from core.models import (
    Album,
    Artist,
    Character,
    Image,
    ImageFile,
    Rating,
    Status,
    Tag,
    Token,
    TokenRequest,
    User,
)
from storage.rows import unsigned64

# Enum lookups by value cost microseconds each on the hot read path; a dict doesn't.
_RATING = {r.value: r for r in Rating}
_STATUS = {s.value: s for s in Status}


def _dt(value: float | None) -> datetime | None:
    return None if value is None else _at(value)


def _at(value: float) -> datetime:
    """A NOT NULL timestamp column as an aware datetime."""
    return datetime.fromtimestamp(value, UTC)


# What an image read selects (images i, albums al), by name, in the order rows come
# back: `_image` unpacks them under the same names.
_IMAGE_READ = {
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
    "tag_rids": "(SELECT group_concat(tag_rid) FROM image_tags WHERE seq = i.seq)",
    "character_rids": (
        "(SELECT group_concat(character_rid) FROM image_characters WHERE seq = i.seq)"
    ),
}
_IMAGE_COLUMNS = ", ".join(_IMAGE_READ.values())
# Where the values hydrating looks up before `_image` sit in those rows, found once by
# name: rows stay plain tuples (sqlite3.Row reads a name by comparing it with every
# column, ~8x slower than an index on these 38), and rows may carry more after them.
_SEQ, _ARTIST_RID, _TAG_RIDS, _CHARACTER_RIDS = (
    list(_IMAGE_READ).index(name) for name in ("seq", "artist_rid", "tag_rids", "character_rids")
)
_IMAGE_FROM = """
    FROM images i
    LEFT JOIN albums al ON al.rid = i.album_rid
"""
# SQLite's NOCASE collation folds ASCII letters only: sort names the way it does.
_NOCASE = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _tag(row: Sequence[Any]) -> Tag:
    """A row of _TAG_COLUMNS as a Tag."""
    tag_id, name, description, nsfw, created_at, images = row
    return Tag(
        id=tag_id,
        name=name,
        description=description,
        nsfw=bool(nsfw),
        created_at=_at(created_at),
        images=images or 0,
    )


def _artist(row: Sequence[Any]) -> Artist:
    """A row of _ARTIST_COLUMNS as an Artist."""
    artist_id, name, url, created_at, images = row
    return Artist(id=artist_id, name=name, url=url, created_at=_at(created_at), images=images or 0)


def _character(row: Sequence[Any]) -> Character:
    """A row of _CHARACTER_COLUMNS as a Character."""
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
        created_at=_at(created_at),
        images=images or 0,
    )


_TAG_COLUMNS = (
    "t.id, t.name, t.description, t.nsfw, t.created_at, "
    "(SELECT size FROM pools WHERE name = 'tag:' || t.rid)"
)
_ARTIST_COLUMNS = (
    "a.id, a.name, a.url, a.created_at, (SELECT size FROM pools WHERE name = 'artist:' || a.rid)"
)
_CHARACTER_COLUMNS = (
    "c.id, c.name, c.description, c.source, c.gender, c.ages, c.birth_date, c.nationality, "
    "c.occupations, c.created_at, (SELECT size FROM pools WHERE name = 'character:' || c.rid)"
)
# What hydrating an image reads of its tags, artist and characters, by table.
_MEMBERS: dict[str, tuple[str, str, Callable[[Sequence[Any]], Any]]] = {
    "tags": ("t", _TAG_COLUMNS, _tag),
    "artists": ("a", _ARTIST_COLUMNS, _artist),
    "characters": ("c", _CHARACTER_COLUMNS, _character),
}
_TOKEN_COLUMNS = (
    "id, owner_id, owner_name, purpose, scopes, issued_by, created_at, expires_at, "
    "revoked_at, last_used_at"
)
_REQUEST_COLUMNS = (
    "id, requester_id, requester_name, purpose, status, decided_by, created_at, "
    "decided_at, token_id"
)


def _token(row: Sequence[Any]) -> Token:
    """A row starting with _TOKEN_COLUMNS as a Token (more columns may follow)."""
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
        created_at=_at(created_at),
        expires_at=_dt(expires_at),
        revoked_at=_dt(revoked_at),
        last_used_at=_dt(last_used_at),
    )


def _request(row: Sequence[Any]) -> TokenRequest:
    """A row of _REQUEST_COLUMNS as a TokenRequest."""
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
        created_at=_at(created_at),
        decided_at=_dt(decided_at),
        token_id=token_id,
    )


_FILE_COLUMNS = (
    "id, extension, sha256, mimetype, size, thumbnail_size, status, uploader_id, expires_at"
)


def _image_file(row: Sequence[Any]) -> ImageFile:
    """A row of _FILE_COLUMNS as an ImageFile."""
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
    ) = row
    return ImageFile(
        id=image_id,
        extension=extension,
        sha256=sha256,
        mimetype=mimetype,
        size=size,
        thumbnail_size=thumbnail_size,
        status=_STATUS[status],
        uploader_id=uploader_id,
        expires_at=_dt(expires_at),
    )


def _image(
    row: Sequence[Any], artist: tuple[Any, ...], tags: tuple[Any, ...], characters: tuple[Any, ...]
) -> Image:
    """A row starting with _IMAGE_READ as an Image, given its members (from the read
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
        rating=_RATING[rating],
        status=_STATUS[status],
        title=title,
        description=description,
        source_name=source_name,
        source_url=source_url,
        original_filename=original_filename,
        uploader=User(uploader_id, uploader_name or "") if uploader_id is not None else None,
        approver=User(approver_id, approver_name or "") if approver_id is not None else None,
        likes=likes,
        favorites=favorites,
        created_at=_at(created_at),
        expires_at=_dt(expires_at),
        near_duplicate_of=near_duplicate_of,
        artist=artist[0] if artist else None,
        album=(
            Album(album_id, album_name, album_owner, _at(album_created_at))
            if album_id is not None
            else None
        ),
        tags=tags,
        characters=characters,
    )
