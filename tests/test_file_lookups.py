"""The file routes keep their lookup of an image by id for LINK_CACHE_SECONDS: a
change made by this process is seen at once, one made by another process (another
`Services` on the same DATA_DIR, as a second worker has) once that time is over."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from core import images as images_module
from core.models import IngestMetadata, User
from core.services import Services, open_services
from core.settings import Settings
from tests.conftest import make_image

OWNER = User("1", "owner")


async def test_a_reject_here_is_seen_at_once_and_one_elsewhere_within_the_cache_time(
    client: TestClient, services: Services, settings: Settings
) -> None:
    here = await services.images.ingest(make_image(seed=1), IngestMetadata(), OWNER, trusted=True)
    there = await services.images.ingest(make_image(seed=2), IngestMetadata(), OWNER, trusted=True)
    assert (await client.get(f"/image/{here.id}")).status == 200  # its lookup kept
    await services.images.reject(here.id, OWNER)
    assert (await client.get(f"/image/{here.id}")).status == 404

    assert (await client.get(f"/image/{there.id}")).status == 200  # its lookup kept

    async with open_services(settings) as other:  # another process's view of the store
        await other.images.delete(there.id)
    # Still kept here (a second at most), then looked up again.
    assert (await client.get(f"/image/{there.id}")).status == 200
    now = services.images.clock()
    services.images.clock = lambda: now + images_module.LINK_CACHE_SECONDS
    assert (await client.get(f"/image/{there.id}")).status == 404
