"""Image objects rendered once and kept by the store (ImageService.add_rendering): the
random routes of nekos.moe and NekosAPI hand out kept bytes, which must say exactly
what the per-request shaping says, through uploads, approvals, likes and catalogue
edits; a rendering of an older state is never kept nor served."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson
from aiohttp.test_utils import TestClient, make_mocked_request

from api import nekosapi, nekosmoe
from api.app import create_app
from api.keys import SERVICES
from core.models import Filters, Image, IngestMetadata, Rating, User
from core.services import Services
from storage.schema import MIGRATIONS
from storage.sqlite import SQLiteRepo
from tests.conftest import make_image

OWNER = User("1", "owner")
MEMBER = User("2", "member")
EVERYTHING = Filters()


async def collection(services: Services) -> list[Image]:
    """Images with every part a rendering shows: tags in mixed case, an artist,
    characters, a source, ratings, an uploader; one pending, one liked."""
    metas = [
        IngestMetadata(
            tags=("Cat", "cute", "ZEBRA"),
            artist="Alice",
            characters=("Neko", "inu"),
            source_name="pixiv",
            source_url="https://example.test/1",
        ),
        IngestMetadata(tags=("cat",), artist="bob", rating=Rating.QUESTIONABLE),
        IngestMetadata(tags=(), characters=("Neko",), rating=Rating.NSFW),
        IngestMetadata(tags=("dog", "cute"), title="a title"),
    ]
    images = [
        await services.images.ingest(make_image(seed=700 + n), meta, OWNER, trusted=True)
        for n, meta in enumerate(metas)
    ]
    # An upload that waits for review, then is approved (its object changes).
    pending = await services.images.ingest(
        make_image(seed=799), IngestMetadata(tags=("cat", "new")), MEMBER
    )
    images.append(pending)
    await services.images.set_like(images[0].id, MEMBER)
    await services.images.set_like(images[0].id, OWNER, kind="favorite")
    return images


async def drawn(services: Services, name: str, count: int = 100) -> dict[str, bytes]:
    """Every approved image's kept `name` rendering, by id, drawn afresh."""
    services.images.rendition_buffers[name].invalidate()
    found = await services.images.random_renditions(name, EVERYTHING, count)
    return {r.id: r.body for r in found if r.body is not None}


async def assert_same_as_shaping(services: Services, app_request) -> None:  # type: ignore[no-untyped-def]
    """Each kept rendering, filled in as the random routes fill it, is byte for byte
    what the per-request shaping encodes for the image as it is now."""
    moe = await drawn(services, nekosmoe.RANDOM_RENDERING)
    api_found = await services.images.random_renditions(nekosapi.IMAGE_RENDERING, EVERYTHING, 100)
    api = {r.id: r for r in api_found}
    assert moe.keys() == api.keys()
    assert moe, "nothing approved was drawn"
    now = time.time()
    expires = nekosapi._expires_json(services.signer.expiry_of(3600, now=now))
    for image_id, body in moe.items():
        image = await services.images.get(image_id)
        assert body == orjson.dumps(nekosmoe.image_json(image, original_hash=True))
        filled = nekosapi._filled(services, api[image_id], 3600, now, expires)
        assert filled == orjson.dumps(nekosapi.image_json(app_request, image, 3600, now))


async def test_kept_renderings_equal_the_shaping_through_every_change(
    services: Services,
) -> None:
    app = create_app(services)  # adds the dialects' renderings
    request = make_mocked_request("GET", "/", app=app)
    assert request.app[SERVICES] is services
    images = await collection(services)
    pending = images[-1]
    moe = await drawn(services, nekosmoe.RANDOM_RENDERING)
    assert pending.id not in moe and len(moe) == 4
    await assert_same_as_shaping(services, request)

    # Approval, likes and unlikes change the objects: drawn again, they say so.
    await services.images.approve(pending.id, OWNER)
    await services.images.set_like(images[1].id, MEMBER)
    await services.images.set_like(images[0].id, MEMBER, on=False)
    moe = await drawn(services, nekosmoe.RANDOM_RENDERING)
    assert orjson.loads(moe[pending.id])["approver"] == {"id": "1", "username": "owner"}
    assert "pending" not in orjson.loads(moe[pending.id])
    assert orjson.loads(moe[images[1].id])["likes"] == 1
    assert orjson.loads(moe[images[0].id])["likes"] == 0
    await assert_same_as_shaping(services, request)

    # A catalogue edit and a new upload change the nested objects (descriptions, image
    # counts), which are filled in per request: no kept rendering needs to change.
    await services.storage.repo.upsert_tag("cute", description="small and sweet", nsfw=False)
    await services.storage.repo.upsert_character("Neko", description="a cat girl")
    await services.images.ingest(
        make_image(seed=800),
        IngestMetadata(tags=("cute",), characters=("Neko",)),
        OWNER,
        trusted=True,
    )
    await assert_same_as_shaping(services, request)


async def test_random_routes_answer_what_the_routes_by_id_answer(
    client: TestClient, services: Services
) -> None:
    images = await collection(services)
    await services.images.approve(images[-1].id, OWNER)
    ids = {i.id for i in images if i.rating is Rating.SFW}

    response = await client.get("/api/v1/random/image?count=100")
    assert response.status == 200 and response.content_type == "application/json"
    found = (await response.json())["images"]
    assert {o["id"] for o in found} == ids
    for obj in found:
        one = await (await client.get(f"/api/v1/images/{obj['id']}")).json()
        assert obj == {**one["image"], "originalHash": obj["originalHash"]}
        assert obj["originalHash"] == (await services.images.get(obj["id"])).md5

    response = await client.get("/api/image/random?limit=25")
    assert response.status == 200 and response.content_type == "application/json"
    body = await response.json()
    assert body["success"] is True and {o["id"] for o in body["data"]} == ids
    for obj in body["data"]:
        one = (await (await client.get(f"/api/image/{obj['id']}")).json())["data"]
        # The link is signed for the moment of each answer; everything else is equal.
        url, other = obj.pop("url"), one.pop("url")
        expires, other_expires = obj["meta"].pop("expires"), one["meta"].pop("expires")
        assert obj == one
        assert urlsplit(url).path == urlsplit(other).path
        query = parse_qs(urlsplit(url).query)
        assert expires == nekosapi.iso_ms(
            nekosapi.datetime.fromtimestamp(int(query["expires"][0]), nekosapi.UTC)
        )
        assert other_expires.endswith("Z")
        # The spliced link opens the file.
        file = await client.get(url.removeprefix(services.settings.public_url))
        assert file.status == 200


async def test_a_rendering_of_an_older_state_is_neither_kept_nor_served(
    services: Services,
) -> None:
    create_app(services)
    repo = services.storage.repo
    (image,) = [
        await services.images.ingest(
            make_image(seed=900), IngestMetadata(tags=("a",)), OWNER, trusted=True
        )
    ]
    name = nekosmoe.RANDOM_RENDERING
    (first,) = await repo.random_renditions(EVERYTHING, 1, name)
    assert first.body is None and first.image is not None  # never rendered yet
    assert await repo.put_renditions(name, [(image.id, first.rev, b"{}")]) == 1
    (kept,) = await repo.random_renditions(EVERYTHING, 1, name)
    assert kept.body == b"{}" and kept.rev == first.rev

    await services.images.set_like(image.id, MEMBER)  # the object changes: rev moves
    (after,) = await repo.random_renditions(EVERYTHING, 1, name)
    assert after.rev > first.rev and after.body is None
    assert after.image is not None and after.image.likes == 1
    # A rendering made from the state before the like arrives late: dropped.
    assert await repo.put_renditions(name, [(image.id, first.rev, b'{"old":1}')]) == 0
    services.images.rendition_buffers[name].invalidate()
    (served,) = await services.images.random_renditions(name, EVERYTHING, 1)
    assert orjson.loads(served.body or b"")["likes"] == 1


async def test_backlog_renders_every_approved_image_once(services: Services) -> None:
    create_app(services)
    images = await collection(services)
    repo = services.storage.repo
    kept = await services.images.render_backlog(chunk=2)  # several chunks
    assert kept == 2 * 4  # two renderings of each approved image; not the pending one
    assert await services.images.render_backlog() == 0
    for name in (nekosmoe.RANDOM_RENDERING, nekosapi.IMAGE_RENDERING):
        assert (await repo.unrendered(name, 0, 100)) == ([], None)
    await services.images.approve(images[-1].id, OWNER)
    await services.images.set_like(images[1].id, MEMBER)
    assert await services.images.render_backlog() == 2 * 2


async def test_deleting_an_image_deletes_its_renderings(services: Services) -> None:
    create_app(services)
    images = await collection(services)
    await services.images.render_backlog()
    await services.images.delete(images[0].id)
    rows = await services.storage.repo._all(
        "SELECT count(*) FROM rendered r JOIN images i ON i.seq = r.seq WHERE i.id = ?",
        (images[0].id,),
    )
    assert rows[0][0] == 0
    (total,) = (await services.storage.repo._all("SELECT count(*) FROM rendered"))[0]
    assert total == 2 * 3


async def test_migration_adds_renderings_to_a_store_of_version_4(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript("".join(MIGRATIONS[:4]) + "PRAGMA user_version = 4;")
    async with SQLiteRepo(path) as repo:
        assert await repo.schema_version() == len(MIGRATIONS) >= 5
        assert await repo._all("SELECT * FROM rendered") == []
        columns = [r[1] for r in await repo._all("PRAGMA table_info(images)")]
        assert "rev" in columns
