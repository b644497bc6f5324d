"""SQLite rows -> models: the column lists each read selects and the mappers that build
models from them."""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from core.models import Artist, Character, ImageFile, Rating, Status, Tag, Token, TokenRequest

# Enum lookups by value cost microseconds each on the hot read path; a dict doesn't.
_RATING = {r.value: r for r in Rating}
_STATUS = {s.value: s for s in Status}


def _dt(value: float | None) -> datetime | None:
    return None if value is None else _at(value)


def _at(value: float) -> datetime:
    """A NOT NULL timestamp column as an aware datetime."""
    return datetime.fromtimestamp(value, UTC)


_IMAGE_COLUMNS = """
    i.seq, i.id, i.sha256, i.md5, i.phash, i.mimetype, i.extension, i.size, i.width,
    i.height, i.aspect_ratio, i.orientation, i.dominant_color, i.animated,
    i.thumbnail_size, i.rating, i.status, i.title, i.description, i.source_name,
    i.source_url, i.original_filename, i.uploader_id, i.uploader_name, i.approver_id,
    i.approver_name, i.likes, i.favorites, i.created_at, i.expires_at,
    i.near_duplicate_of, i.artist_rid,
    al.id, al.name, al.owner_id, al.created_at,
    (SELECT group_concat(tag_rid) FROM image_tags WHERE seq = i.seq),
    (SELECT group_concat(character_rid) FROM image_characters WHERE seq = i.seq)
"""
_IMAGE_FROM = """
    FROM images i
    LEFT JOIN albums al ON al.rid = i.album_rid
"""
# SQLite's NOCASE collation folds ASCII letters only: sort names the way it does.
_NOCASE = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _tag(row: Sequence[Any]) -> Tag:
    return Tag(
        id=row[0],
        name=row[1],
        description=row[2],
        nsfw=bool(row[3]),
        created_at=_at(row[4]),
        images=row[5] or 0,
    )


def _artist(row: Sequence[Any]) -> Artist:
    return Artist(id=row[0], name=row[1], url=row[2], created_at=_at(row[3]), images=row[4] or 0)


def _character(row: Sequence[Any]) -> Character:
    return Character(
        id=row[0],
        name=row[1],
        description=row[2],
        source=row[3],
        gender=row[4],
        ages=tuple(json.loads(row[5])),
        birth_date=row[6],
        nationality=row[7],
        occupations=tuple(json.loads(row[8])),
        created_at=_at(row[9]),
        images=row[10] or 0,
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
    return Token(
        id=row[0],
        owner_id=row[1],
        owner_name=row[2],
        purpose=row[3],
        scopes=tuple(s for s in row[4].split(" ") if s),
        issued_by=row[5],
        created_at=_at(row[6]),
        expires_at=_dt(row[7]),
        revoked_at=_dt(row[8]),
        last_used_at=_dt(row[9]),
    )


def _request(row: Sequence[Any]) -> TokenRequest:
    return TokenRequest(
        id=row[0],
        requester_id=row[1],
        requester_name=row[2],
        purpose=row[3],
        status=row[4],
        decided_by=row[5],
        created_at=_at(row[6]),
        decided_at=_dt(row[7]),
        token_id=row[8],
    )


_FILE_COLUMNS = (
    "id, extension, sha256, mimetype, size, thumbnail_size, status, uploader_id, expires_at"
)


def _image_file(row: Sequence[Any]) -> ImageFile:
    return ImageFile(
        id=row[0],
        extension=row[1],
        sha256=row[2],
        mimetype=row[3],
        size=row[4],
        thumbnail_size=row[5],
        status=_STATUS[row[6]],
        uploader_id=row[7],
        expires_at=_dt(row[8]),
    )
