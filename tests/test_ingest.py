"""Ingest: duplicates and near-duplicates, every refused input with its error,
moderation state by trust, the files written and the hashes of the uploaded bytes."""

from __future__ import annotations

import hashlib
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image as PILImage

from core import events as ev
from core.errors import (
    CorruptImage,
    DuplicateImage,
    GazouError,
    ImageTooLarge,
    InvalidInput,
    UnsupportedImage,
)
from core.images import MAX_TAG_LENGTH, MAX_TAGS
from core.imaging import sniff_format
from core.models import Image, IngestMetadata, Status
from core.services import Services, open_services
from tests.conftest import MEMBER, OWNER, make_image, make_settings, stored_path

META = IngestMetadata(tags=("cat",))


def reencode(raw: bytes, quality: int) -> bytes:
    """The same picture saved again as a JPEG of another quality."""
    out = io.BytesIO()
    PILImage.open(io.BytesIO(raw)).convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


async def stored_count(services: Services) -> int:
    return (await services.storage.repo._one("SELECT COUNT(*) FROM images"))[0]


def stored_files(services: Services) -> list[Path]:
    root = services.settings.data_dir / "files"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def test_duplicate_upload_raises_with_the_existing_id(services: Services) -> None:
    raw = make_image(seed=1)
    first = await services.images.ingest(raw, META, OWNER, trusted=True)
    with pytest.raises(DuplicateImage) as caught:
        await services.images.ingest(raw, IngestMetadata(tags=("other",)), MEMBER)
    assert caught.value.existing_id == first.id
    assert caught.value.status == 409
    assert await stored_count(services) == 1
    assert len(stored_files(services)) == 2  # the first upload's image and thumbnail


async def test_reencoded_picture_is_flagged_as_a_near_duplicate(services: Services) -> None:
    original = make_image("JPEG", (320, 240), seed=5, quality=95)
    first = await services.images.ingest(original, META, OWNER, trusted=True)
    again = await services.images.ingest(reencode(original, 40), META, MEMBER)
    assert again.id != first.id
    assert again.near_duplicate_of == first.id


async def test_a_different_picture_is_not_a_near_duplicate(services: Services) -> None:
    await services.images.ingest(make_image("JPEG", (320, 240), seed=5), META, OWNER, trusted=True)
    other = await services.images.ingest(make_image("JPEG", (320, 240), seed=6), META, MEMBER)
    assert other.near_duplicate_of is None


def truncated_jpeg() -> bytes:
    raw = make_image("JPEG", (200, 150), seed=3)
    return raw[: len(raw) // 2]


def decompression_bomb_png() -> bytes:
    """A few kilobytes that decode to 4 million pixels (the limit in these tests is 1 M)."""
    out = io.BytesIO()
    PILImage.new("L", (2000, 2000)).save(out, "PNG", optimize=True)
    return out.getvalue()


REFUSED: dict[str, tuple[bytes | None, IngestMetadata, type[GazouError], str]] = {
    "text file": (
        b"just some words, not a picture\n" * 4,
        META,
        UnsupportedImage,
        "Unsupported image type",
    ),
    "truncated jpeg": (truncated_jpeg(), META, CorruptImage, "truncated or corrupt"),
    "decompression bomb png": (decompression_bomb_png(), META, ImageTooLarge, "too many pixels"),
    "oversize bytes": (
        b"\x89PNG\r\n\x1a\n" + b"\0" * (1024 * 1024 + 1),
        META,
        ImageTooLarge,
        "larger than 1 MB",
    ),
    "oversize for the dialect's limit": (
        make_image(size=(300, 300), seed=9),
        IngestMetadata(max_bytes=1000),
        ImageTooLarge,
        "larger than",
    ),
    "too many tags": (
        None,
        IngestMetadata(tags=tuple(f"t{n}" for n in range(MAX_TAGS + 1))),
        InvalidInput,
        f"At most {MAX_TAGS} tags",
    ),
    "too long tag": (
        None,
        IngestMetadata(tags=("x" * (MAX_TAG_LENGTH + 1),)),
        InvalidInput,
        f"limited to {MAX_TAG_LENGTH} characters",
    ),
    "too narrow width": (
        None,
        IngestMetadata(resize_width=15),
        InvalidInput,
        "between 16 and 10000",
    ),
    "too wide width": (
        None,
        IngestMetadata(resize_width=10_001),
        InvalidInput,
        "between 16 and 10000",
    ),
}


@pytest.fixture
async def small_limits(tmp_path: Path) -> AsyncIterator[Services]:
    """Services with the smallest limits the settings allow: 1 MB, 1 M pixels."""
    settings = make_settings(tmp_path / "data", MAX_REQUEST_MB="1", MAX_IMAGE_PIXELS="1000000")
    async with open_services(settings) as services:
        yield services


@pytest.mark.parametrize("case", REFUSED)
async def test_refused_input_raises_its_error_and_stores_nothing(
    small_limits: Services, case: str
) -> None:
    raw, meta, error, message = REFUSED[case]
    with pytest.raises(error, match=message):
        await small_limits.images.ingest(raw or make_image(seed=2), meta, MEMBER)
    assert await stored_count(small_limits) == 0
    assert stored_files(small_limits) == []


async def test_a_tag_of_exactly_the_longest_length_is_accepted(services: Services) -> None:
    tag = "y" * MAX_TAG_LENGTH
    image = await services.images.ingest(make_image(seed=4), IngestMetadata(tags=(tag,)), MEMBER)
    assert image.tag_names == [tag]


async def test_tags_are_trimmed_folded_and_deduplicated(services: Services) -> None:
    meta = IngestMetadata(tags=("  big   cat ", "big cat", "", "dog"))
    image = await services.images.ingest(make_image(seed=4), meta, MEMBER)
    assert image.tag_names == ["big cat", "dog"]


async def test_trusted_upload_is_approved_at_once(services: Services) -> None:
    image = await services.images.ingest(make_image(seed=1), META, OWNER, trusted=True)
    assert image.status is Status.APPROVED
    assert image.approver == OWNER
    assert (await services.images.get(image.id)).id == image.id


async def test_untrusted_upload_is_pending_and_announced(services: Services) -> None:
    announced: list[Image] = []

    async def on_pending(image: Image) -> None:
        announced.append(image)

    services.events.subscribe(ev.IMAGE_PENDING, on_pending)
    image = await services.images.ingest(make_image(seed=1), META, MEMBER)
    assert await services.outbox.catch_up() == 1
    assert image.status is Status.PENDING
    assert image.approver is None
    assert [a.id for a in announced] == [image.id]


async def test_trusted_upload_is_not_announced_to_moderators(services: Services) -> None:
    announced: list[Image] = []

    async def on_pending(image: Image) -> None:
        announced.append(image)

    services.events.subscribe(ev.IMAGE_PENDING, on_pending)
    await services.images.ingest(make_image(seed=1), META, OWNER, trusted=True)
    assert await services.outbox.catch_up() == 0
    assert announced == []


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
async def test_ingest_writes_the_image_and_a_jpeg_thumbnail_where_it_says(
    services: Services, fmt: str
) -> None:
    raw = make_image(fmt, (120, 90), seed=8)
    image = await services.images.ingest(raw, META, MEMBER)
    path, thumb = stored_path(services, image), stored_path(services, image, thumbnail=True)
    assert sorted(stored_files(services)) == sorted([path, thumb])
    with PILImage.open(path) as stored:
        assert stored.format == fmt and stored.size == (image.width, image.height) == (120, 90)
    assert image.size == path.stat().st_size
    assert sniff_format(thumb.read_bytes()) == "JPEG"
    assert image.thumbnail_size == thumb.stat().st_size
    assert await services.images.read_bytes(image) == path.read_bytes()


async def test_ingest_records_md5_and_sha256_of_the_uploaded_bytes(services: Services) -> None:
    raw = make_image("JPEG", (100, 80), seed=11)
    image = await services.images.ingest(raw, META, MEMBER)
    assert image.sha256 == hashlib.sha256(raw).hexdigest()
    assert image.md5 == hashlib.md5(raw).hexdigest()
    assert image.mimetype == "image/jpeg" and image.extension == "jpg"


async def test_ingest_measures_the_picture(services: Services) -> None:
    image = await services.images.ingest(make_image(size=(90, 160), seed=12), META, MEMBER)
    assert (image.width, image.height) == (90, 160)
    assert image.orientation == "portrait"
    assert image.aspect_ratio == "9:16"
    assert image.dominant_color.startswith("#") and len(image.dominant_color) == 7


async def test_ingest_keeps_the_uploaders_words(services: Services) -> None:
    meta = IngestMetadata(
        tags=("cat",),
        artist="  Mika  ",
        characters=("Neko", "Neko"),
        title=" A title ",
        description="words",
        source_name="site",
        source_url="https://example.org/a",
        original_filename="a.png",
    )
    image = await services.images.ingest(make_image(seed=13), meta, MEMBER)
    assert image.artist is not None and image.artist.name == "Mika"
    assert [c.name for c in image.characters] == ["Neko"]
    assert (image.title, image.description) == ("A title", "words")
    assert (image.source_name, image.source_url) == ("site", "https://example.org/a")
    assert image.original_filename == "a.png"
    assert image.uploader == MEMBER
