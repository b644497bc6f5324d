"""What the SQL backends share about rows: how an image row is written (its columns
and values, in one order) and how values are encoded (hashes in signed 64-bit
columns, times as epoch seconds, LIKE patterns, rid lists) and how hashes are
compared (the quarter index's neighbourhoods)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
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
