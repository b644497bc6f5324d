"""Image bytes over real HTTP: types, strong ETags, caching, 304, ranges, HEAD,
and who may see pending or rejected images (anyone with the link; nobody). Every test
runs on each backend (SQLite + files, and PostgreSQL + S3 on a real Swift) through the
production app, and both for small files (from memory) and large ones (sendfile from files,
streamed from S3): the answers must not depend on where the bytes live."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer

from api import files
from api.app import create_app
from core.models import Image, IngestMetadata, User
from core.services import Services, open_services
from storage.blobs import READ_CHUNK
from tests.conftest import ALL_BACKENDS, MEMBER, OWNER, make_image, make_settings

BACKENDS = ALL_BACKENDS


@pytest.fixture(autouse=True, params=["memory", "large"])
def serving_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs twice: small files from memory, and files too large for it
    (sendfile for files, a stream for S3)."""
    if request.param == "large":
        monkeypatch.setattr(files, "MEMORY_MAX_FILE", 0)
    return request.param


async def _stored(
    services: Services,
    *,
    fmt: str = "PNG",
    trusted: bool = True,
    uploader: User = OWNER,
    seed: int = 1,
) -> Image:
    return await services.images.ingest(
        make_image(fmt, size=(200, 150), seed=seed), IngestMetadata(), uploader, trusted=trusted
    )


async def _bytes(services: Services, image: Image) -> bytes:
    return await services.images.read_bytes(image)


async def test_file_has_type_strong_etag_and_immutable_caching(
    client: TestClient, services: Services
) -> None:
    image = await _stored(services, fmt="GIF")
    response = await client.get(f"/img/{image.filename}")
    assert response.status == 200
    assert response.headers["Content-Type"] == "image/gif"
    assert response.headers["ETag"] == f'"{image.sha256}"'
    assert "immutable" in response.headers["Cache-Control"]
    assert response.headers["Accept-Ranges"] == "bytes"
    assert await response.read() == await _bytes(services, image)


async def test_if_none_match_with_the_etag_is_304(client: TestClient, services: Services) -> None:
    image = await _stored(services)
    response = await client.get(
        f"/image/{image.id}", headers={"If-None-Match": f'"{image.sha256}"'}
    )
    assert response.status == 304
    assert response.headers["ETag"] == f'"{image.sha256}"'
    assert await response.read() == b""


async def test_if_none_match_weak_or_in_a_list_is_304(
    client: TestClient, services: Services
) -> None:
    image = await _stored(services)
    response = await client.get(
        f"/image/{image.id}", headers={"If-None-Match": f'"other", W/"{image.sha256}"'}
    )
    assert response.status == 304


async def test_if_none_match_with_other_etag_sends_bytes(
    client: TestClient, services: Services
) -> None:
    image = await _stored(services)
    response = await client.get(f"/image/{image.id}", headers={"If-None-Match": '"stale"'})
    assert response.status == 200
    assert await response.read() == await _bytes(services, image)


async def test_range_request_returns_206_with_the_slice(
    client: TestClient, services: Services
) -> None:
    image = await _stored(services)
    data = await _bytes(services, image)
    response = await client.get(f"/image/{image.id}", headers={"Range": "bytes=10-19"})
    assert response.status == 206
    assert response.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    assert response.headers["ETag"] == f'"{image.sha256}"'
    assert await response.read() == data[10:20]


async def test_suffix_range_returns_the_tail(client: TestClient, services: Services) -> None:
    image = await _stored(services)
    data = await _bytes(services, image)
    response = await client.get(f"/image/{image.id}", headers={"Range": "bytes=-5"})
    assert response.status == 206
    assert await response.read() == data[-5:]


async def test_range_past_the_end_is_416(client: TestClient, services: Services) -> None:
    image = await _stored(services)
    size = len(await _bytes(services, image))
    response = await client.get(
        f"/image/{image.id}", headers={"Range": f"bytes={size + 10}-{size + 20}"}
    )
    assert response.status == 416
    assert response.headers["Content-Range"] == f"bytes */{size}"


async def test_if_range_with_the_etag_honours_the_range(
    client: TestClient, services: Services
) -> None:
    image = await _stored(services)
    response = await client.get(
        f"/image/{image.id}", headers={"Range": "bytes=0-3", "If-Range": f'"{image.sha256}"'}
    )
    assert response.status == 206
    assert await response.read() == (await _bytes(services, image))[:4]


async def test_if_range_with_other_etag_sends_everything(
    client: TestClient, services: Services
) -> None:
    image = await _stored(services)
    response = await client.get(
        f"/image/{image.id}", headers={"Range": "bytes=0-3", "If-Range": '"stale"'}
    )
    assert response.status == 200
    assert await response.read() == await _bytes(services, image)


async def test_if_match_with_other_etag_is_412(client: TestClient, services: Services) -> None:
    image = await _stored(services)
    response = await client.get(f"/image/{image.id}", headers={"If-Match": '"stale"'})
    assert response.status == 412


async def test_if_match_with_the_etag_sends_bytes(client: TestClient, services: Services) -> None:
    image = await _stored(services)
    response = await client.get(f"/image/{image.id}", headers={"If-Match": f'"{image.sha256}"'})
    assert response.status == 200


async def test_head_gives_headers_without_body(client: TestClient, services: Services) -> None:
    image = await _stored(services)
    response = await client.head(f"/image/{image.id}")
    assert response.status == 200
    assert response.headers["Content-Length"] == str(len(await _bytes(services, image)))
    assert response.headers["ETag"] == f'"{image.sha256}"'
    assert await response.read() == b""


async def test_thumbnail_has_its_own_etag(client: TestClient, services: Services) -> None:
    image = await _stored(services)
    response = await client.get(f"/thumbnail/{image.id}")
    assert response.headers["ETag"] == f'"{image.sha256}-thumb"'
    assert response.headers["Content-Type"] == "image/jpeg"
    again = await client.get(
        f"/thumbnail/{image.id}", headers={"If-None-Match": response.headers["ETag"]}
    )
    assert again.status == 304


async def test_pending_image_is_served_to_anyone_with_the_link_but_not_cached_shared(
    client: TestClient, services: Services
) -> None:
    image = await _stored(services, trusted=False, uploader=MEMBER)
    for path in (f"/img/{image.filename}", f"/image/{image.id}", f"/thumbnail/{image.id}"):
        response = await client.get(path)
        assert response.status == 200, path
        assert response.headers["Cache-Control"] == "private, no-store", path
        # The answer no longer depends on who asks.
        assert "Vary" not in response.headers, path
    assert await (await client.get(f"/image/{image.id}")).read() == await _bytes(services, image)


async def test_pending_image_is_served_privately_to_its_uploader(
    client: TestClient, services: Services
) -> None:
    image = await _stored(services, trusted=False, uploader=MEMBER)
    issued = await services.tokens.issue(MEMBER, issued_by="test")
    response = await client.get(
        f"/img/{image.filename}", headers={"Authorization": f"Bearer {issued.secret}"}
    )
    assert response.status == 200
    assert response.headers["Cache-Control"] == "private, no-store"
    assert await response.read() == await _bytes(services, image)


async def test_pending_image_is_served_whatever_token_comes_along(
    client: TestClient, services: Services
) -> None:
    image = await _stored(services, trusted=False, uploader=MEMBER)
    issued = await services.tokens.issue(User("300", "someone"), issued_by="test")
    response = await client.get(f"/img/{image.filename}", headers={"token": issued.secret})
    assert response.status == 200
    assert await response.read() == await _bytes(services, image)


async def test_rejected_image_is_never_served(client: TestClient, services: Services) -> None:
    image = await _stored(services, trusted=False, uploader=MEMBER)
    assert (await client.get(f"/image/{image.id}")).status == 200  # cached in memory now
    await services.images.reject(image.id, OWNER)
    issued = await services.tokens.issue(OWNER, scopes=("admin",), issued_by="test")
    for path in (f"/img/{image.filename}", f"/image/{image.id}", f"/thumbnail/{image.id}"):
        response = await client.get(path, headers={"Authorization": f"Bearer {issued.secret}"})
        assert response.status == 404, path
    blobs = services.storage.blobs
    assert not await blobs.exists(services.images.blob_key(image))
    assert not await blobs.exists(services.images.blob_key(image, thumbnail=True))


async def test_approving_makes_the_file_public(client: TestClient, services: Services) -> None:
    image = await _stored(services, trusted=False, uploader=MEMBER)
    await services.images.approve(image.id, OWNER)
    response = await client.get(f"/image/{image.id}")
    assert response.status == 200
    assert "immutable" in response.headers["Cache-Control"]


async def test_large_file_is_sent_whole_with_its_length(
    client: TestClient, services: Services
) -> None:
    # Bigger than a read chunk, so a stream really comes in several pieces.
    image = await services.images.ingest(
        make_image("PNG", size=(400, 300), seed=9, compress_level=0),
        IngestMetadata(),
        OWNER,
        trusted=True,
    )
    assert image.size > READ_CHUNK
    response = await client.get(f"/image/{image.id}")
    assert response.status == 200
    assert response.headers["Content-Length"] == str(image.size)
    assert await response.read() == await _bytes(services, image)
    tail = await client.get(f"/image/{image.id}", headers={"Range": f"bytes={READ_CHUNK - 3}-"})
    assert tail.status == 206
    assert await tail.read() == (await _bytes(services, image))[READ_CHUNK - 3 :]


async def test_image_whose_bytes_vanished_is_404_for_get_and_head(
    client: TestClient, services: Services
) -> None:
    image = await _stored(services)
    await services.storage.blobs.remove(services.images.blob_key(image))
    assert (await client.get(f"/image/{image.id}")).status == 404
    assert (await client.head(f"/image/{image.id}")).status == 404


@pytest.fixture
async def redirect_client(
    tmp_path: Path, backend_env: dict[str, str]
) -> AsyncIterator[tuple[TestClient, Services]]:
    """The app with BLOB_REDIRECT=on over each backend."""
    settings = make_settings(
        tmp_path / "redirect", RATE_LIMITS="off", BLOB_REDIRECT="on", **backend_env
    )
    async with open_services(settings) as services:
        async with TestClient(TestServer(create_app(services), host="127.0.0.1")) as client:
            yield client, services


async def test_redirect_sends_approved_bytes_to_the_direct_url_of_the_store(
    redirect_client: tuple[TestClient, Services],
) -> None:
    client, services = redirect_client
    image = await _stored(services)
    response = await client.get(f"/image/{image.id}", allow_redirects=False)
    if services.storage.blobs.local_path(services.images.blob_key(image)) is not None:
        # Files have no direct URL: served here as usual.
        assert response.status == 200
        assert await response.read() == await _bytes(services, image)
        return
    assert response.status == 302
    assert response.headers["ETag"] == f'"{image.sha256}"'
    assert response.headers["Cache-Control"] == f"public, max-age={files.REDIRECT_SECONDS // 2}"
    async with aiohttp.ClientSession() as session:
        async with session.get(response.headers["Location"]) as direct:
            assert direct.status == 200
            assert await direct.read() == await _bytes(services, image)


async def test_redirect_still_answers_a_matching_etag_with_304(
    redirect_client: tuple[TestClient, Services],
) -> None:
    client, services = redirect_client
    image = await _stored(services)
    response = await client.get(
        f"/image/{image.id}",
        headers={"If-None-Match": f'"{image.sha256}"'},
        allow_redirects=False,
    )
    assert response.status == 304


async def test_pending_bytes_are_never_redirected(
    redirect_client: tuple[TestClient, Services],
) -> None:
    client, services = redirect_client
    image = await _stored(services, trusted=False, uploader=MEMBER)
    for path in (f"/image/{image.id}", f"/thumbnail/{image.id}"):
        response = await client.get(path, allow_redirects=False)
        assert response.status == 200, path
        assert response.headers["Cache-Control"] == "private, no-store", path


# ---- request bodies over MAX_REQUEST_MB ------------------------------------------------


@pytest.fixture
async def small_client(tmp_path: Path) -> AsyncIterator[tuple[TestClient, Services]]:
    """The app with a 1 MB request limit."""
    settings = make_settings(tmp_path / "small", RATE_LIMITS="off", MAX_REQUEST_MB="1")
    async with open_services(settings) as services:
        async with TestClient(TestServer(create_app(services), host="127.0.0.1")) as client:
            yield client, services


def _big_form(field: str) -> FormData:
    form = FormData()
    form.add_field(
        field,
        io.BytesIO(b"\x89PNG\r\n\x1a\n" + b"\0" * (2 * 1024 * 1024)),
        filename="big.png",
        content_type="image/png",
    )
    return form


async def _chunks(total: int) -> AsyncIterator[bytes]:
    for _ in range(total // 65536):
        yield b"\0" * 65536


async def test_oversized_miku_upload_is_413_in_miku_shape(small_client) -> None:
    client, services = small_client
    token = (await services.tokens.issue(MEMBER, issued_by="t")).secret
    response = await client.post(
        "/api/add", data=_big_form("image"), headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status == 413
    assert set(await response.json()) == {"message"}


async def test_oversized_nekosmoe_upload_is_413_in_nekos_shape(small_client) -> None:
    client, services = small_client
    token = (await services.tokens.issue(MEMBER, issued_by="t")).secret
    response = await client.post(
        "/api/v1/images", data=_big_form("image"), headers={"Authorization": token}
    )
    assert response.status == 413
    assert set(await response.json()) == {"message"}


async def test_oversized_discord_upload_is_413_in_its_shape(small_client) -> None:
    client, services = small_client
    token = (await services.tokens.issue(MEMBER, issued_by="t")).secret
    response = await client.post("/api/upload", data=_big_form("files[]"), headers={"token": token})
    assert response.status == 413
    body = await response.json()
    assert body["success"] is False and body["message"]


async def test_oversized_chunked_search_body_is_413_not_a_hang(small_client) -> None:
    client, _ = small_client
    response = await asyncio.wait_for(
        client.post("/api/v1/images/search", data=_chunks(3 * 1024 * 1024)), timeout=10
    )
    assert response.status == 413
    assert set(await response.json()) == {"message"}


async def test_nothing_is_stored_from_an_oversized_upload(small_client) -> None:
    client, services = small_client
    token = (await services.tokens.issue(MEMBER, scopes=("admin",), issued_by="t")).secret
    await client.post(
        "/api/add", data=_big_form("image"), headers={"Authorization": f"Bearer {token}"}
    )
    assert await services.images.pending() == []
    assert (await services.images.latest()).images == []


def test_byte_cache_drops_least_recently_used_to_fit() -> None:
    cache = files.ByteCache(budget=10)
    cache.put("a", b"aaaa")
    cache.put("b", b"bbbb")
    assert cache.get("a") == b"aaaa"  # now b is the least recently used
    cache.put("c", b"cccc")
    assert cache.get("b") is None
    assert cache.get("a") == b"aaaa" and cache.get("c") == b"cccc"
    assert cache.used == 8


def test_byte_cache_ignores_items_bigger_than_its_budget() -> None:
    cache = files.ByteCache(budget=3)
    cache.put("big", b"abcd")
    assert cache.get("big") is None and cache.used == 0


async def test_multiple_ranges_are_416(client: TestClient, services: Services) -> None:
    image = await _stored(services)
    response = await client.get(f"/image/{image.id}", headers={"Range": "bytes=0-1,4-5"})
    assert response.status == 416


async def test_get_file_carries_what_serving_needs(services: Services) -> None:
    image = await services.images.ingest(
        make_image(seed=3), IngestMetadata(tags=("a", "b")), MEMBER
    )
    found = await services.images.get_file(image.id, include_pending=True)
    assert (
        found.id,
        found.extension,
        found.sha256,
        found.mimetype,
        found.size,
        found.thumbnail_size,
        found.uploader_id,
    ) == (
        image.id,
        image.extension,
        image.sha256,
        image.mimetype,
        image.size,
        image.thumbnail_size,
        MEMBER.id,
    )
    assert found.status is image.status
