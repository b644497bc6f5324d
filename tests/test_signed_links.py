"""Signed expiring links: NekosAPI hands them out, the file routes check them."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from aiohttp.test_utils import TestClient

from api.links import image_file_path, signed_image_url
from core.models import Image, IngestMetadata
from core.services import Services
from tests.conftest import ALL_BACKENDS, MEMBER, OWNER, make_image

BACKENDS = ALL_BACKENDS


@pytest.fixture
async def image(services: Services) -> Image:
    return await services.images.ingest(
        make_image(seed=1), IngestMetadata(tags=("cat",)), OWNER, trusted=True
    )


def local(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


async def test_nekosapi_url_serves_the_image(
    client: TestClient, services: Services, image: Image
) -> None:
    data = (await (await client.get(f"/api/image/{image.id}")).json())["data"]
    response = await client.get(local(data["url"]))
    assert response.status == 200
    assert response.content_type == "image/png"
    assert await response.read() == await services.images.read_bytes(image)


async def test_a_tampered_signature_is_403(client: TestClient, image: Image) -> None:
    data = (await (await client.get(f"/api/image/{image.id}")).json())["data"]
    query = parse_qs(urlsplit(data["url"]).query)
    signature = query["signature"][0]
    forged = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    path = image_file_path(image)
    response = await client.get(
        f"{path}?{urlencode({'expires': query['expires'][0], 'signature': forged})}"
    )
    assert response.status == 403


async def test_a_prolonged_expiry_is_403(client: TestClient, image: Image) -> None:
    data = (await (await client.get(f"/api/image/{image.id}")).json())["data"]
    query = parse_qs(urlsplit(data["url"]).query)
    later = int(query["expires"][0]) + 86400
    params = urlencode({"expires": later, "signature": query["signature"][0]})
    response = await client.get(f"{image_file_path(image)}?{params}")
    assert response.status == 403


async def test_an_expired_link_is_403(client: TestClient, services: Services, image: Image) -> None:
    url, expires = signed_image_url(services, image, 3600, now=time.time() - 7200)
    assert expires < time.time()
    assert (await client.get(local(url))).status == 403


async def test_a_signature_for_another_image_is_403(
    client: TestClient, services: Services, image: Image
) -> None:
    other = await services.images.ingest(make_image(seed=2), IngestMetadata(), OWNER, trusted=True)
    url, _ = signed_image_url(services, other, 3600)
    query = urlsplit(url).query
    assert (await client.get(f"{image_file_path(image)}?{query}")).status == 403


async def test_expires_without_a_signature_is_403(client: TestClient, image: Image) -> None:
    response = await client.get(f"{image_file_path(image)}?expires={int(time.time()) + 60}")
    assert response.status == 403


async def test_an_unsigned_request_for_an_approved_image_still_works(
    client: TestClient, image: Image
) -> None:
    assert (await client.get(image_file_path(image))).status == 200


async def test_a_valid_signature_opens_a_pending_image_as_its_plain_link_does(
    client: TestClient, services: Services
) -> None:
    """Links signed for pending uploads before the plain-link rule keep working."""
    pending = await services.images.ingest(make_image(seed=3), IngestMetadata(), MEMBER)
    url, _ = signed_image_url(services, pending, 600)
    assert (await client.get(local(url))).status == 200
    assert (await client.get(image_file_path(pending))).status == 200


async def test_a_tampered_signature_on_a_pending_image_is_403(
    client: TestClient, services: Services
) -> None:
    pending = await services.images.ingest(make_image(seed=4), IngestMetadata(), MEMBER)
    url, _ = signed_image_url(services, pending, 600)
    assert (await client.get(local(url)[:-1] + ("0" if url[-1] != "0" else "1"))).status == 403


async def test_a_valid_signature_does_not_open_a_rejected_image(
    client: TestClient, services: Services
) -> None:
    pending = await services.images.ingest(make_image(seed=5), IngestMetadata(), MEMBER)
    url, _ = signed_image_url(services, pending, 600)
    await services.images.reject(pending.id, OWNER)
    assert (await client.get(local(url))).status == 404


@pytest.mark.parametrize(
    ("expires", "signature"),
    [
        ("1" * 5000, "ab"),
        ("²", "ab"),
        ("4102444800", "é" * 64),
        ("", ""),
        ("x", "y"),
    ],
)
async def test_a_malformed_signature_is_403_never_a_500(
    client: TestClient, image: Image, expires: str, signature: str
) -> None:
    params = urlencode({"expires": expires, "signature": signature})
    assert (await client.get(f"{image_file_path(image)}?{params}")).status == 403
    assert (await client.get(f"/i/{image.id}?{params}")).status == 403
