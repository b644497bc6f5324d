"""One round trip per uploading dialect: upload in one dialect, find the image with
another, fetch its bytes through a file route, and get the same picture back.

NekosAPI v1 has no upload route, so it appears only as a finder. Member uploads
start pending everywhere; where the trip goes through moderation an owner approves
the image with the same service call the Discord buttons make."""

from __future__ import annotations

import base64
import io
from urllib.parse import urlsplit

from aiohttp import FormData
from aiohttp.test_utils import TestClient
from PIL import Image as PILImage

from core.services import Services
from tests.conftest import ALL_BACKENDS, MEMBER, OWNER, make_image

# Every dialect's round trip on every backend: the HTTP smoke test of PostgreSQL.
BACKENDS = ALL_BACKENDS


def same_picture(a: bytes, b: bytes) -> bool:
    """Same size, mode and pixels (a re-encode may change bytes, never the picture)."""
    with PILImage.open(io.BytesIO(a)) as x, PILImage.open(io.BytesIO(b)) as y:
        return x.size == y.size and x.convert("RGBA").tobytes() == y.convert("RGBA").tobytes()


def local(url: str) -> str:
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == "http://gazou.test"
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


async def secret_for(services: Services, *scopes: str, owner: bool = False) -> str:
    user = OWNER if owner else MEMBER
    return (await services.tokens.issue(user, scopes=scopes, issued_by="owner (100)")).secret


async def fetch_bytes(client: TestClient, url: str) -> bytes:
    response = await client.get(local(url))
    assert response.status == 200, await response.text()
    return await response.read()


async def test_miku_upload_found_by_nekosapi_after_approval(
    client: TestClient, services: Services
) -> None:
    picture = make_image(seed=1)
    form = FormData()
    form.add_field("image", io.BytesIO(picture), filename="miku.png", content_type="image/png")
    secret = await secret_for(services, "image:upload")
    added = await client.post("/api/add", data=form, headers={"Authorization": f"Bearer {secret}"})
    image_id = (await added.json())["cuid"]
    assert (await client.get(f"/api/image/{image_id}")).status == 404  # pending: hidden
    await services.images.approve(image_id, OWNER)
    found = (await (await client.get(f"/api/image/{image_id}")).json())["data"]
    assert same_picture(await fetch_bytes(client, found["url"]), picture)


async def test_nekosmoe_upload_drawn_by_nekosapi_category_after_approval(
    client: TestClient, services: Services
) -> None:
    picture = make_image(seed=2)
    form = FormData()
    form.add_field("image", io.BytesIO(picture), filename="neko.png", content_type="image/png")
    form.add_field("tags", "roundtrip, cat ears")
    form.add_field("nsfw", "false")
    secret = await secret_for(services, "image:upload")
    posted = await client.post("/api/v1/images", data=form, headers={"Authorization": secret})
    image_id = (await posted.json())["image"]["id"]
    await services.images.approve(image_id, OWNER)
    drawn = await (await client.get("/v1/image/random?categories=ROUNDTRIP")).json()
    assert [i["id"] for i in drawn["data"]] == [image_id]
    assert same_picture(await fetch_bytes(client, drawn["data"][0]["url"]), picture)


async def test_discord_images_upload_found_by_nekosmoe(
    client: TestClient, services: Services
) -> None:
    picture = make_image("JPEG", seed=3)
    form = FormData()
    form.add_field("files[]", io.BytesIO(picture), filename="d.jpg", content_type="image/jpeg")
    secret = await secret_for(services, "admin", owner=True)  # trusted: public at once
    posted = await client.post("/api/upload", data=form, headers={"token": secret})
    image_id = (await posted.json())["code"].split(".", 1)[0]
    found = await (await client.get(f"/api/v1/images/{image_id}")).json()
    assert found["image"]["id"] == image_id
    served = await client.get(f"/image/{image_id}.jpg")
    assert served.status == 200
    assert await served.read() == await services.images.read_bytes(
        await services.images.get(image_id)
    )


async def test_chevereto_upload_works_at_once_and_is_listed_by_miku_after_approval(
    client: TestClient, services: Services
) -> None:
    picture = make_image(seed=4)
    secret = await secret_for(services, "image:upload")
    posted = await client.post(
        "/api/1/upload",
        data={"key": secret, "source": base64.b64encode(picture).decode(), "title": "trip"},
    )
    image = (await posted.json())["image"]
    # The pending image's URL works straight away, as Chevereto clients expect.
    assert same_picture(await fetch_bytes(client, image["url"]), picture)
    miku_file = f"http://gazou.test/img/{image['filename']}"
    assert miku_file not in (await (await client.get("/api/v2/all")).json())["files"]
    await services.images.approve(image["name"], OWNER)
    assert miku_file in (await (await client.get("/api/v2/all")).json())["files"]
    assert same_picture(await fetch_bytes(client, miku_file), picture)


async def test_admin_chevereto_upload_found_by_nekosmoe_search(
    client: TestClient, services: Services
) -> None:
    picture = make_image(seed=5)
    secret = await secret_for(services, "admin", owner=True)
    form = FormData()
    form.add_field("source", io.BytesIO(picture), filename="c.png", content_type="image/png")
    posted = await client.post("/api/1/upload/", data=form, headers={"X-API-Key": secret})
    image_id = (await posted.json())["image"]["id_encoded"]
    found = await (await client.post("/api/v1/images/search", json={"id": image_id})).json()
    assert [i["id"] for i in found["images"]] == [image_id]
    assert same_picture(
        await fetch_bytes(client, f"http://gazou.test/thumbnail/{image_id}"),
        await services.images.read_bytes(await services.images.get(image_id), thumbnail=True),
    )
