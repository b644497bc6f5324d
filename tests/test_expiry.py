"""Expiry: images whose expires_at has passed are deleted, rows and files, by a sweep
and by the background sweeper."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from core.errors import NotFound
from core.models import Filters, Image, IngestMetadata
from core.services import Services
from tests.conftest import MEMBER, OWNER, make_image, stored_path


async def ingest_expiring(
    services: Services, seed: int, expires_at: datetime | None, trusted: bool = True
) -> Image:
    meta = IngestMetadata(tags=("cat",), expires_at=expires_at)
    return await services.images.ingest(
        make_image(seed=seed), meta, OWNER if trusted else MEMBER, trusted=trusted
    )


async def test_sweep_deletes_expired_images_rows_and_files(services: Services) -> None:
    now = datetime.now(UTC)
    expired = [await ingest_expiring(services, n, now - timedelta(seconds=1 + n)) for n in range(3)]
    expired.append(await ingest_expiring(services, 3, now - timedelta(seconds=1), trusted=False))
    later = await ingest_expiring(services, 10, now + timedelta(hours=1))
    forever = await ingest_expiring(services, 11, None)
    assert await services.images.sweep_expired() == len(expired)
    for image in expired:
        assert await services.storage.repo.get_image(image.id) is None
        assert not stored_path(services, image).exists()
        assert not stored_path(services, image, thumbnail=True).exists()
    for image in (later, forever):
        assert (await services.images.get(image.id)).id == image.id
        assert stored_path(services, image).exists()


async def test_swept_images_leave_the_random_pools(services: Services) -> None:
    now = datetime.now(UTC)
    gone = await ingest_expiring(services, 1, now - timedelta(seconds=1))
    kept = await ingest_expiring(services, 2, None)
    await services.images.sweep_expired()
    drawn = await services.storage.repo.random_images(Filters(tags=("cat",)), 10)
    assert [i.id for i in drawn] == [kept.id]
    assert gone.id not in {i.id for i in drawn}
    assert await services.storage.repo.pool_size("all") == 1


async def test_sweep_with_nothing_expired_deletes_nothing(services: Services) -> None:
    image = await ingest_expiring(services, 1, datetime.now(UTC) + timedelta(minutes=5))
    assert await services.images.sweep_expired() == 0
    assert (await services.images.get(image.id)).id == image.id


async def test_sweep_at_a_given_time_deletes_what_has_expired_by_then(services: Services) -> None:
    soon = await ingest_expiring(services, 1, datetime.now(UTC) + timedelta(minutes=5))
    assert await services.images.sweep_expired(datetime.now(UTC) + timedelta(minutes=6)) == 1
    assert await services.storage.repo.get_image(soon.id) is None


async def test_background_sweeper_deletes_an_image_soon_after_it_expires(
    services: Services,
) -> None:
    image = await ingest_expiring(services, 1, datetime.now(UTC) + timedelta(seconds=0.3))
    sweeper = asyncio.create_task(services.images.run_expiry_sweeper(0.05))
    try:
        deadline = time.monotonic() + 5
        while await services.storage.repo.get_image(image.id) is not None:
            assert time.monotonic() < deadline, "not swept within 5 s"
            await asyncio.sleep(0.05)
    finally:
        sweeper.cancel()
        await asyncio.gather(sweeper, return_exceptions=True)
    assert not stored_path(services, image).exists()
    with pytest.raises(NotFound):
        await services.images.get(image.id)
