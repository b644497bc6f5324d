"""The visibility rule (core/visibility.py) through every uploading dialect, over real
HTTP: a member's upload answers at its own URLs at once, with no token, and stays out
of random, search, listings and stats until approved; once rejected its URLs are 404
for everyone and its files are gone; an image past its expiry is served to nobody."""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient

from core.errors import Conflict, DuplicateImage
from core.models import Filters, IngestMetadata, Status
from core.services import Services
from core.visibility import served_at_link, trusted_uploader
from tests.conftest import ALL_BACKENDS, MEMBER, OWNER, make_image

BACKENDS = ALL_BACKENDS

PUBLIC = "http://gazou.test"


@dataclass
class Uploaded:
    """What a dialect's upload answer names: the image and its own URLs (as paths)."""

    image_id: str
    file_urls: list[str]  # the direct link(s) the answer gave
    thumb_url: str


def _path(url: str) -> str:
    assert url.startswith(PUBLIC + "/"), url
    return url.removeprefix(PUBLIC)


def _form(field: str, data: bytes) -> FormData:
    form = FormData()
    form.add_field(field, io.BytesIO(data), filename="shot.png", content_type="image/png")
    return form


async def _miku(client: TestClient, secret: str, data: bytes) -> Uploaded:
    response = await client.post(
        "/api/add", data=_form("image", data), headers={"Authorization": f"Bearer {secret}"}
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    return Uploaded(body["cuid"], [f"/img/{body['filename']}"], f"/thumbnail/{body['cuid']}")


async def _nekosmoe(client: TestClient, secret: str, data: bytes) -> Uploaded:
    form = _form("image", data)
    form.add_field("tags", "screenshot")
    response = await client.post("/api/v1/images", data=form, headers={"Authorization": secret})
    assert response.status == 200, await response.text()
    body = await response.json()
    image_id = body["image"]["id"]
    return Uploaded(image_id, [_path(body["image_url"])], f"/thumbnail/{image_id}.jpg")


async def _discord_images(client: TestClient, secret: str, data: bytes) -> Uploaded:
    response = await client.post(
        "/api/upload", data=_form("files[]", data), headers={"token": secret}
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    listed = await (await client.get("/api/uploads", headers={"token": secret})).json()
    (entry,) = listed["files"]  # the uploader's own listing shows it, pending
    assert entry["file"] == body["url"]
    image_id = body["code"].split(".")[0]
    return Uploaded(image_id, [_path(body["url"])], _path(entry["thumb"]))


async def _chevereto(client: TestClient, secret: str, data: bytes) -> Uploaded:
    form = _form("source", data)
    response = await client.post("/api/1/upload", data=form, headers={"X-API-Key": secret})
    assert response.status == 200, await response.text()
    image = (await response.json())["image"]
    # Plain URLs now: a pending image needs no signature at its own link.
    assert "signature=" not in image["url"] and "signature=" not in image["url_viewer"]
    return Uploaded(
        image["name"],
        [_path(image["url"]), _path(image["url_viewer"])],
        _path(image["thumb"]["url"]),
    )


Uploader = Callable[[TestClient, str, bytes], Awaitable[Uploaded]]
DIALECTS: dict[str, Uploader] = {
    "miku": _miku,
    "nekosmoe": _nekosmoe,
    "discord_images": _discord_images,
    "chevereto": _chevereto,
}


@pytest.fixture(params=list(DIALECTS))
def upload(request: pytest.FixtureRequest) -> Uploader:
    return DIALECTS[request.param]


@pytest.fixture
async def member_secret(services: Services) -> str:
    return (await services.tokens.issue(MEMBER, scopes=("image:upload",), issued_by="t")).secret


@pytest.fixture
async def lister_secret(services: Services) -> str:
    """A token that may list (NekosAPI's /image needs image:list); not an admin."""
    return (await services.tokens.issue(OWNER, scopes=("image:list",), issued_by="t")).secret


async def _public_view(client: TestClient, lister: str) -> dict[str, Any]:
    """What the public pools show, through each dialect that has them."""
    miku_all = await (await client.get("/api/v2/all")).json()
    search = await (await client.post("/api/v1/images/search", json={})).json()
    moe_random = await (await client.get("/api/v1/random/image?count=5")).json()
    auth = {"Authorization": f"Bearer {lister}"}
    listed = await (await client.get("/api/image", headers=auth)).json()
    stats = await (await client.get("/api/stats")).json()
    return {
        "miku_all": [f.rsplit("/", 1)[1].split(".")[0] for f in miku_all["files"]],
        "miku_random": (await client.get("/api/v2/random")).status,
        "nekosmoe_search": [i["id"] for i in search["images"]],
        "nekosmoe_random": [i["id"] for i in moe_random["images"]],
        "nekosapi_list": [i["id"] for i in listed["data"]],
        "nekosapi_random": (await client.get("/api/image/random")).status,
        "nekosapi_stats": stats["data"]["images"]["count"],
    }


def _view_of(image_id: str | None) -> dict[str, Any]:
    ids = [image_id] if image_id else []
    return {
        "miku_all": ids,
        "miku_random": 200 if image_id else 404,
        "nekosmoe_search": ids,
        "nekosmoe_random": ids,
        "nekosapi_list": ids,
        "nekosapi_random": 200 if image_id else 404,
        "nekosapi_stats": len(ids),
    }


async def test_a_members_upload_answers_at_its_urls_at_once_without_a_token(
    client: TestClient, services: Services, upload: Uploader, member_secret: str
) -> None:
    picture = make_image(size=(120, 90), seed=11)
    uploaded = await upload(client, member_secret, picture)
    stored = await services.images.get(uploaded.image_id, include_pending=True)
    assert stored.status is Status.PENDING
    stored_bytes = await services.images.read_bytes(stored)
    for url in uploaded.file_urls:
        response = await client.get(url)  # no token, no signature
        assert response.status == 200, url
        # Out of shared caches: it can still be rejected.
        assert response.headers["Cache-Control"] == "private, no-store", url
        if not url.startswith("/i/"):
            assert await response.read() == stored_bytes
    thumb = await client.get(uploaded.thumb_url)
    assert thumb.status == 200
    assert thumb.headers["Cache-Control"] == "private, no-store"
    assert await thumb.read() == await services.images.read_bytes(stored, thumbnail=True)


async def test_a_pending_upload_enters_the_pools_only_when_approved(
    client: TestClient,
    services: Services,
    upload: Uploader,
    member_secret: str,
    lister_secret: str,
) -> None:
    uploaded = await upload(client, member_secret, make_image(seed=12))
    assert await _public_view(client, lister_secret) == _view_of(None)
    await services.images.approve(uploaded.image_id, OWNER)
    assert await _public_view(client, lister_secret) == _view_of(uploaded.image_id)
    response = await client.get(uploaded.file_urls[0])
    assert response.status == 200
    assert "immutable" in response.headers["Cache-Control"]


async def test_a_rejected_upload_is_404_everywhere_and_its_files_are_gone(
    client: TestClient, services: Services, upload: Uploader, member_secret: str
) -> None:
    picture = make_image(seed=13)
    uploaded = await upload(client, member_secret, picture)
    stored = await services.images.get(uploaded.image_id, include_pending=True)
    blobs = services.storage.blobs
    keys = [services.images.blob_key(stored, thumbnail=thumb) for thumb in (False, True)]
    assert all([await blobs.exists(key) for key in keys])
    await services.images.reject(uploaded.image_id, OWNER)
    for url in [*uploaded.file_urls, uploaded.thumb_url]:
        assert (await client.get(url)).status == 404, url
    assert not any([await blobs.exists(key) for key in keys])
    # The row stays: the same bytes are refused as a duplicate.
    with pytest.raises(DuplicateImage):
        await services.images.ingest(picture, IngestMetadata(), MEMBER)


async def test_approving_a_rejected_image_is_refused(services: Services) -> None:
    image = await services.images.ingest(make_image(seed=14), IngestMetadata(), MEMBER)
    await services.images.reject(image.id, OWNER)
    with pytest.raises(Conflict, match="rejected"):
        await services.images.approve(image.id, OWNER)
    stored = await services.storage.repo.get_image(image.id)
    assert stored is not None and stored.status is Status.REJECTED
    assert (await services.images.latest()).images == []


async def test_an_approve_racing_a_reject_cannot_publish_a_fileless_image(
    services: Services,
) -> None:
    """Both owners saw the upload pending; the reject lands first."""
    image = await services.images.ingest(make_image(seed=15), IngestMetadata(), MEMBER)
    seen = await services.images.get(image.id, include_pending=True)
    assert seen.status is Status.PENDING  # what the approving owner's check saw
    await services.images.reject(image.id, OWNER)
    with pytest.raises(Conflict):
        await services.images.approve(image.id, OWNER)
    assert await services.images.random_files(Filters()) == []


async def test_the_start_up_check_does_not_miss_a_rejected_images_files(
    services: Services,
) -> None:
    image = await services.images.ingest(make_image(seed=16), IngestMetadata(), MEMBER)
    await services.images.reject(image.id, OWNER)
    report = await services.images.check_consistency()
    assert report.missing_files == []


@pytest.mark.parametrize("trusted", [True, False])
async def test_an_expired_image_is_served_to_nobody_before_the_sweeper_runs(
    client: TestClient, services: Services, trusted: bool
) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    image = await services.images.ingest(
        make_image(seed=17), IngestMetadata(expires_at=past), MEMBER, trusted=trusted
    )
    for path in (
        f"/img/{image.filename}",
        f"/image/{image.id}",
        f"/thumbnail/{image.id}.jpg",
        f"/i/{image.id}",
        f"/api/v1/images/{image.id}",
        f"/api/image/{image.id}",
    ):
        assert (await client.get(path)).status == 404, path


def test_served_at_link_is_approved_or_pending_and_unexpired() -> None:
    now = datetime.now(UTC)
    later, earlier = now + timedelta(hours=1), now - timedelta(hours=1)
    assert served_at_link(Status.APPROVED, None, now)
    assert served_at_link(Status.PENDING, later, now)
    assert not served_at_link(Status.REJECTED, None, now)
    assert not served_at_link(Status.APPROVED, earlier, now)
    assert not served_at_link(Status.PENDING, now, now)


async def test_only_admin_tokens_and_owners_are_trusted(services: Services) -> None:
    admin = (await services.tokens.issue(OWNER, scopes=("admin",), issued_by="t")).token
    member = (await services.tokens.issue(MEMBER, scopes=("image:upload",), issued_by="t")).token
    assert trusted_uploader(admin)
    assert not trusted_uploader(member)
    assert not trusted_uploader(None)
    assert trusted_uploader(owner=True)
