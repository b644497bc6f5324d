"""What the SQL backends share about rows: how an image row is written (its columns
and values, in one order) and how values are encoded (hashes in signed 64-bit
columns, times as epoch seconds, LIKE patterns, rid lists)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.models import NewImage

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
