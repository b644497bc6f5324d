"""NekosAPI v1 over HTTP against a real store: every route, every status
docs/dialects.md lists, each auth form, scopes, custom link expiry."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from api.nekosapi import render_error
from core.errors import (
    CorruptImage,
    DuplicateImage,
    ImageTooLarge,
    InvalidInput,
    RateLimited,
    UnsupportedImage,
)
from core.models import Image, IngestMetadata, Rating, User
from core.services import Services, open_services
from tests.conftest import MEMBER, OWNER, make_image, make_settings

IMAGE_KEYS = {
    "id",
    "url",
    "artist",
    "source",
    "original",
    "nsfw",
    "categories",
    "characters",
    "createdAt",
    "meta",
}
CATEGORY_KEYS = {"id", "name", "description", "nsfw", "type", "images", "createdAt"}
CHARACTER_KEYS = {
    "id",
    "name",
    "description",
    "source",
    "gender",
    "ages",
    "birth_date",
    "nationality",
    "occupations",
    "createdAt",
    "images",
}
ARTIST_KEYS = {"id", "name", "url", "images"}
UNKNOWN_UUID = "00000000-0000-4000-8000-000000000000"


@dataclass
class Seeded:
    cats: list[Image]  # sfw, tags Cat + Cute, artist Alice Artist, character Neko
    dog: Image  # sfw, tag Dog, no artist
    spicy: Image  # nsfw, tag Cat


@pytest.fixture
async def seeded(services: Services) -> Seeded:
    images = services.images
    await services.storage.repo.upsert_character(
        "Neko",
        description="a cat girl",
        source="Nekopara",
        gender="female",
        ages=(16, 17),
        birth_date="Feb 22",
        nationality="Japanese",
        occupations=("baker",),
    )
    await services.storage.repo.upsert_artist("Alice Artist", url="https://alice.example")
    meta = IngestMetadata(
        tags=("Cat", "Cute"),
        artist="Alice Artist",
        characters=("Neko",),
        source_name="pixiv",
        source_url="https://pixiv.example/1",
    )
    cats = [await images.ingest(make_image(seed=n), meta, OWNER, trusted=True) for n in range(3)]
    dog = await images.ingest(
        make_image(seed=10, size=(40, 80)), IngestMetadata(tags=("Dog",)), OWNER, trusted=True
    )
    spicy = await images.ingest(
        make_image(seed=20), IngestMetadata(tags=("Cat",), rating=Rating.NSFW), OWNER, trusted=True
    )
    return Seeded(cats, dog, spicy)


async def bearer(services: Services, *scopes: str, user: User = MEMBER) -> dict[str, str]:
    issued = await services.tokens.issue(
        user, scopes=scopes, purpose="tests", issued_by="owner (100)"
    )
    return {"Authorization": f"Bearer {issued.secret}"}


async def error_of(response, status: int, message: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status == status
    assert await response.json() == {"code": status, "message": message, "success": False}


# ---- index, stats, token ----------------------------------------------------------


@pytest.mark.parametrize("base", ["/api", "/v1"])
async def test_index_lists_routes_and_base(client: TestClient, base: str) -> None:
    response = await client.get(base + "/")
    body = await response.json()
    assert response.status == 200
    assert body["success"] is True
    assert "/image/random" in body["data"]
    assert body["meta"]["baseApiRoute"] == base


async def test_index_without_trailing_slash_is_the_same(client: TestClient) -> None:
    assert (await (await client.get("/api")).json())["data"] == (
        await (await client.get("/api/")).json()
    )["data"]


async def test_stats_counts_ratings_orientations_and_names(
    client: TestClient, seeded: Seeded
) -> None:
    data = (await (await client.get("/api/stats")).json())["data"]
    assert data["images"]["count"] == 5
    assert data["images"]["nsfw"] == {"sfw": 4, "questionable": 0, "nsfw": 1}
    assert data["images"]["orientation"]["portrait"] == 1
    assert data["artists"] == {"count": 1}
    assert data["characters"] == {"count": 1}
    assert data["categories"] == {"count": 3}


async def test_token_shows_the_callers_token(client: TestClient, services: Services) -> None:
    issued = await services.tokens.issue(
        User("123456789012345678", "mika"),
        scopes=("image:list", "image:custom-expiry:86400"),
        purpose="my bot",
        issued_by="owner (100)",
        expires_in=timedelta(days=2),
    )
    response = await client.get("/api/token", headers={"Authorization": f"Bearer {issued.secret}"})
    data = (await response.json())["data"]
    assert data == {
        "owner": "mika (Discord ID: 123456789012345678)",
        "purpose": "my bot",
        "scopes": ["image:list", "image:custom-expiry:86400"],
        "issuedBy": "owner (100)",
        "createdAt": data["createdAt"],
        "expires": data["expires"],
    }
    expires = datetime.fromisoformat(data["expires"].replace("Z", "+00:00"))
    assert timedelta(days=1, hours=23) < expires - datetime.now(UTC) <= timedelta(days=2)


async def test_token_accepts_a_raw_token_without_bearer(
    client: TestClient, services: Services
) -> None:
    issued = await services.tokens.issue(MEMBER, scopes=("image:list",), issued_by="x")
    response = await client.get("/api/token", headers={"Authorization": issued.secret})
    assert (await response.json())["data"]["purpose"] == ""


async def test_token_without_a_token_is_401_unauthorized(client: TestClient) -> None:
    await error_of(await client.get("/api/token"), 401, "Unauthorized")


@pytest.mark.parametrize(
    "path",
    [
        "/api/",
        "/api/stats",
        "/api/token",
        "/api/image",
        "/api/image/random",
        f"/api/image/{UNKNOWN_UUID}",
        "/api/artist",
        "/api/category",
        "/api/character",
        f"/v1/category/{UNKNOWN_UUID}",
    ],
)
async def test_a_bad_token_on_any_route_is_401_invalid_token(client: TestClient, path: str) -> None:
    await error_of(
        await client.get(path, headers={"Authorization": "Bearer " + "x" * 100}),
        401,
        "Invalid token",
    )


async def test_a_revoked_token_is_401_invalid_token(client: TestClient, services: Services) -> None:
    issued = await services.tokens.issue(MEMBER, scopes=("image:list",), issued_by="x")
    await services.tokens.revoke(issued.token.id)
    response = await client.get("/api/token", headers={"Authorization": f"Bearer {issued.secret}"})
    await error_of(response, 401, "Invalid token")


# ---- /image -----------------------------------------------------------------------


async def test_image_list_without_token_is_401_unauthorized(client: TestClient) -> None:
    await error_of(await client.get("/api/image"), 401, "Unauthorized")


async def test_image_list_without_list_scope_is_403(client: TestClient, services: Services) -> None:
    headers = await bearer(services, "image:upload")
    await error_of(await client.get("/api/image", headers=headers), 403, "Missing permission")


async def test_image_list_pages_sfw_images_with_pagination_meta(
    client: TestClient, services: Services, seeded: Seeded
) -> None:
    headers = await bearer(services, "image:list")
    body = await (await client.get("/api/image?limit=2&offset=1", headers=headers)).json()
    assert body["meta"] == {"pagination": {"limit": 2, "offset": 1, "count": 2, "total": 4}}
    # Newest first: the dog, then the cats from the last one; never the nsfw image.
    assert [i["id"] for i in body["data"]] == [seeded.cats[2].id, seeded.cats[1].id]


async def test_image_list_never_includes_nsfw_images(
    client: TestClient, services: Services, seeded: Seeded
) -> None:
    headers = await bearer(services, "image:list")
    body = await (await client.get("/api/image?limit=25", headers=headers)).json()
    assert {i["nsfw"] for i in body["data"]} == {"sfw"}
    assert seeded.spicy.id not in {i["id"] for i in body["data"]}


@pytest.mark.parametrize("limit", ["0", "26", "abc", "-1", "2.5", "١"])
async def test_image_list_bad_limit_is_400_invalid_limit(
    client: TestClient, services: Services, limit: str
) -> None:
    headers = await bearer(services, "image:list")
    await error_of(
        await client.get("/api/image", params={"limit": limit}, headers=headers),
        400,
        "Invalid limit",
    )


@pytest.mark.parametrize("offset", ["-1", "x"])
async def test_image_list_bad_offset_is_400_invalid_offset(
    client: TestClient, services: Services, offset: str
) -> None:
    headers = await bearer(services, "image:list")
    await error_of(
        await client.get("/api/image", params={"offset": offset}, headers=headers),
        400,
        "Invalid offset",
    )


async def test_image_object_has_exactly_the_documented_keys(
    client: TestClient, seeded: Seeded
) -> None:
    image = seeded.cats[0]
    data = (await (await client.get(f"/api/image/{image.id}")).json())["data"]
    assert set(data) == IMAGE_KEYS
    assert set(data["artist"]) == ARTIST_KEYS
    assert data["artist"]["name"] == "Alice Artist"
    assert data["artist"]["url"] == "https://alice.example"
    assert data["source"] == {"name": "pixiv", "url": "https://pixiv.example/1"}
    assert data["original"] is None
    assert data["nsfw"] == "sfw"
    assert [set(c) for c in data["categories"]] == [CATEGORY_KEYS, CATEGORY_KEYS]
    assert sorted(c["name"] for c in data["categories"]) == ["Cat", "Cute"]
    assert [set(c) for c in data["characters"]] == [CHARACTER_KEYS]
    assert data["characters"][0]["ages"] == [16, 17]
    assert data["characters"][0]["occupations"] == ["baker"]
    assert set(data["meta"]) == {"eTag", "size", "mimetype", "color", "expires", "dimens"}
    assert data["meta"]["dimens"] == {
        "width": 64,
        "height": 48,
        "aspectRatio": "4:3",
        "orientation": "landscape",
    }
    assert data["meta"]["size"] == image.size
    assert data["meta"]["mimetype"] == "image/png"
    assert data["meta"]["color"].startswith("#") and len(data["meta"]["color"]) == 7
    assert data["createdAt"].endswith("Z")


async def test_image_without_artist_has_null_artist(client: TestClient, seeded: Seeded) -> None:
    data = (await (await client.get(f"/api/image/{seeded.dog.id}")).json())["data"]
    assert data["artist"] is None
    assert data["source"] == {"name": None, "url": None}


async def test_image_get_returns_an_nsfw_image_asked_for_by_id(
    client: TestClient, seeded: Seeded
) -> None:
    data = (await (await client.get(f"/api/image/{seeded.spicy.id}")).json())["data"]
    assert data["nsfw"] == "nsfw"


async def test_image_get_accepts_an_upper_case_uuid(client: TestClient, seeded: Seeded) -> None:
    response = await client.get(f"/api/image/{seeded.dog.id.upper()}")
    assert (await response.json())["data"]["id"] == seeded.dog.id


async def test_image_get_non_uuid_is_400_invalid_id(client: TestClient) -> None:
    await error_of(await client.get("/api/image/not-a-uuid"), 400, "Invalid ID")


async def test_image_get_unknown_is_404(client: TestClient) -> None:
    await error_of(await client.get(f"/api/image/{UNKNOWN_UUID}"), 404, "Not found")


async def test_image_get_pending_image_is_404(client: TestClient, services: Services) -> None:
    pending = await services.images.ingest(make_image(seed=99), IngestMetadata(), MEMBER)
    await error_of(await client.get(f"/api/image/{pending.id}"), 404, "Not found")


# ---- /image/random ----------------------------------------------------------------


async def test_random_filters_by_category_case_insensitively(
    client: TestClient, seeded: Seeded
) -> None:
    body = await (await client.get("/api/image/random?categories=cAT,cute&limit=25")).json()
    assert sorted(i["id"] for i in body["data"]) == sorted(i.id for i in seeded.cats)


async def test_random_empty_categories_means_no_filter(client: TestClient, seeded: Seeded) -> None:
    body = await (await client.get("/api/image/random?categories=&limit=25")).json()
    assert len(body["data"]) == 4


async def test_random_returns_one_image_by_default(client: TestClient, seeded: Seeded) -> None:
    body = await (await client.get("/api/image/random")).json()
    assert len(body["data"]) == 1
    assert set(body["data"][0]) == IMAGE_KEYS
    assert "meta" not in body


async def test_random_never_draws_nsfw_images(client: TestClient, seeded: Seeded) -> None:
    # Only the nsfw image and the cats have the Cat tag; 25 draws cover them all.
    body = await (await client.get("/api/image/random?categories=Cat&limit=25")).json()
    assert seeded.spicy.id not in {i["id"] for i in body["data"]}
    assert {i["nsfw"] for i in body["data"]} == {"sfw"}


async def test_random_unknown_category_is_400_invalid_categories(
    client: TestClient, seeded: Seeded
) -> None:
    await error_of(
        await client.get("/api/image/random?categories=cat,unicorn"), 400, "Invalid categories"
    )


async def test_random_without_matches_is_404(client: TestClient, seeded: Seeded) -> None:
    await error_of(await client.get("/api/image/random?categories=Dog,Cute"), 404, "Not found")


async def test_random_on_an_empty_collection_is_404(client: TestClient) -> None:
    await error_of(await client.get("/api/image/random"), 404, "Not found")


@pytest.mark.parametrize("limit", ["0", "26"])
async def test_random_limit_outside_1_to_25_is_400(client: TestClient, limit: str) -> None:
    await error_of(
        await client.get("/api/image/random", params={"limit": limit}), 400, "Invalid limit"
    )


# ---- link expiry --------------------------------------------------------------------


def _link_expiry(image_json: dict) -> int:
    return int(parse_qs(urlsplit(image_json["url"]).query)["expires"][0])


async def test_links_are_signed_for_an_hour_by_default(client: TestClient, seeded: Seeded) -> None:
    before = time.time()
    data = (await (await client.get(f"/api/image/{seeded.dog.id}")).json())["data"]
    url = urlsplit(data["url"])
    assert f"{url.scheme}://{url.netloc}" == "http://gazou.test"
    assert url.path == f"/image/{seeded.dog.id}.png"
    assert "signature" in parse_qs(url.query)
    assert before + 3600 - 1 <= _link_expiry(data) <= time.time() + 3600 + 1
    expires = datetime.fromisoformat(data["meta"]["expires"].replace("Z", "+00:00"))
    assert int(expires.timestamp()) == _link_expiry(data)


async def test_custom_expiry_with_scope_sets_the_link_life(
    client: TestClient, services: Services, seeded: Seeded
) -> None:
    headers = await bearer(services, "image:custom-expiry:86400")
    response = await client.get(f"/api/image/{seeded.dog.id}?expiry=600", headers=headers)
    data = (await response.json())["data"]
    assert abs(_link_expiry(data) - (time.time() + 600)) <= 2


async def test_custom_expiry_unbounded_scope_allows_long_links(
    client: TestClient, services: Services, seeded: Seeded
) -> None:
    headers = await bearer(services, "image:custom-expiry")
    response = await client.get("/v1/image/random?expiry=604800", headers=headers)
    assert abs(_link_expiry((await response.json())["data"][0]) - (time.time() + 604800)) <= 2


async def test_custom_expiry_without_the_scope_is_403(
    client: TestClient, services: Services, seeded: Seeded
) -> None:
    headers = await bearer(services, "image:list")
    await error_of(
        await client.get(f"/api/image/{seeded.dog.id}?expiry=600", headers=headers),
        403,
        "Missing permission",
    )


async def test_custom_expiry_above_the_token_bound_is_403(
    client: TestClient, services: Services, seeded: Seeded
) -> None:
    headers = await bearer(services, "image:custom-expiry:600")
    await error_of(
        await client.get("/api/image/random?expiry=601", headers=headers), 403, "Missing permission"
    )


@pytest.mark.parametrize("expiry", ["30", "0", "abc", "-5"])
async def test_custom_expiry_of_30_or_less_is_400_invalid_expiry(
    client: TestClient, services: Services, expiry: str
) -> None:
    headers = await bearer(services, "image:custom-expiry")
    await error_of(
        await client.get("/api/image/random", params={"expiry": expiry}, headers=headers),
        400,
        "Invalid expiry",
    )


async def test_custom_expiry_without_a_token_is_401_unauthorized(
    client: TestClient, seeded: Seeded
) -> None:
    await error_of(await client.get(f"/api/image/{seeded.dog.id}?expiry=600"), 401, "Unauthorized")


async def test_image_list_takes_custom_expiry_too(
    client: TestClient, services: Services, seeded: Seeded
) -> None:
    headers = await bearer(services, "image:list", "image:custom-expiry:100")
    response = await client.get("/api/image?expiry=100", headers=headers)
    data = (await response.json())["data"]
    assert all(abs(_link_expiry(i) - (time.time() + 100)) <= 2 for i in data)


# ---- artists, characters, categories -------------------------------------------------


async def test_artist_search_is_a_like_pattern_over_the_whole_name(
    client: TestClient, seeded: Seeded
) -> None:
    async def names(search: str) -> list[str]:
        body = await (await client.get("/api/artist", params={"search": search})).json()
        return [a["name"] for a in body["data"]]

    assert await names("alice%") == ["Alice Artist"]
    assert await names("_lice Artist") == ["Alice Artist"]
    assert await names("Alice") == []  # the whole name, not a substring


async def test_artist_list_pages_with_pagination_meta(
    client: TestClient, services: Services
) -> None:
    for name in ("Ann", "Bob", "Cid"):
        await services.storage.repo.upsert_artist(name)
    body = await (await client.get("/api/artist?limit=1&offset=1")).json()
    assert [a["name"] for a in body["data"]] == ["Bob"]
    assert body["meta"]["pagination"] == {"limit": 1, "offset": 1, "count": 1, "total": 3}
    assert set(body["data"][0]) == ARTIST_KEYS


async def test_search_longer_than_50_characters_is_400(client: TestClient) -> None:
    await error_of(
        await client.get("/api/character", params={"search": "a" * 51}), 400, "Invalid search query"
    )


async def test_artist_get_counts_images(client: TestClient, seeded: Seeded) -> None:
    artist = seeded.cats[0].artist
    assert artist is not None
    data = (await (await client.get(f"/api/artist/{artist.id}")).json())["data"]
    assert data == {
        "id": artist.id,
        "name": "Alice Artist",
        "url": "https://alice.example",
        "images": 3,
    }


async def test_artist_get_unknown_is_404_and_non_uuid_400(client: TestClient) -> None:
    await error_of(await client.get(f"/api/artist/{UNKNOWN_UUID}"), 404, "Not found")
    await error_of(await client.get("/api/artist/alice"), 400, "Invalid ID")


async def test_artist_images_lists_only_that_artists_images(
    client: TestClient, seeded: Seeded
) -> None:
    artist = seeded.cats[0].artist
    assert artist is not None
    body = await (await client.get(f"/api/artist/{artist.id}/images?limit=2")).json()
    assert [i["id"] for i in body["data"]] == [seeded.cats[2].id, seeded.cats[1].id]
    assert body["meta"]["pagination"]["total"] == 3


async def test_artist_images_of_unknown_artist_is_404(client: TestClient) -> None:
    await error_of(await client.get(f"/api/artist/{UNKNOWN_UUID}/images"), 404, "Not found")


async def test_character_list_and_get(client: TestClient, seeded: Seeded) -> None:
    body = await (await client.get("/api/character?search=n%25")).json()
    assert [c["name"] for c in body["data"]] == ["Neko"]
    character = body["data"][0]
    assert set(character) == CHARACTER_KEYS
    data = (await (await client.get(f"/api/character/{character['id']}")).json())["data"]
    assert data == character
    assert data["images"] == 3


async def test_character_get_unknown_is_404(client: TestClient) -> None:
    await error_of(await client.get(f"/api/character/{UNKNOWN_UUID}"), 404, "Not found")


async def test_category_list_and_get(client: TestClient, seeded: Seeded) -> None:
    body = await (await client.get("/api/category")).json()
    assert [c["name"] for c in body["data"]] == ["Cat", "Cute", "Dog"]
    assert body["meta"]["pagination"]["total"] == 3
    cat = body["data"][0]
    assert set(cat) == CATEGORY_KEYS
    assert cat["images"] == 4  # three sfw cats and the nsfw one
    assert (await (await client.get(f"/api/category/{cat['id']}")).json())["data"] == cat


async def test_category_get_unknown_is_404_and_non_uuid_400(client: TestClient) -> None:
    await error_of(await client.get(f"/api/category/{UNKNOWN_UUID}"), 404, "Not found")
    await error_of(await client.get("/api/category/cat"), 400, "Invalid ID")


@pytest.mark.parametrize("path", ["/character", "/category", "/artist"])
async def test_named_lists_bad_limit_is_400(client: TestClient, path: str) -> None:
    await error_of(await client.get(f"/api{path}?limit=26"), 400, "Invalid limit")


# ---- the /v1 base, unknown routes, methods ---------------------------------------------


async def test_v1_base_serves_the_same_images(client: TestClient, seeded: Seeded) -> None:
    a = await (await client.get(f"/api/image/{seeded.dog.id}")).json()
    b = await (await client.get(f"/v1/image/{seeded.dog.id}")).json()
    assert a["data"]["id"] == b["data"]["id"] == seeded.dog.id


async def test_unknown_route_is_404_in_the_dialect_shape(client: TestClient) -> None:
    await error_of(await client.get("/api/nothing-here"), 404, "Not found")
    await error_of(await client.get("/v1/nothing-here"), 404, "Not found")


async def test_wrong_method_is_405_in_the_dialect_shape(client: TestClient) -> None:
    response = await client.post("/api/image/random")
    await error_of(response, 405, "Method not allowed")
    assert "GET" in response.headers["Allow"]


# ---- rate limits and error rendering ----------------------------------------------------


async def test_rate_limit_answers_429_with_retry_after(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path / "data", RATE_LIMITS="on")
    # Windows are aligned to whole minutes: start well inside one so all 61 land in it.
    into_window = time.time() % 60
    if into_window > 50:
        await asyncio.sleep(60 - into_window + 0.1)
    async with (
        open_services(settings) as services,
        TestClient(TestServer(create_app(services), host="127.0.0.1")) as client,
    ):
        statuses = [(await client.get("/api/stats")).status for _ in range(60)]
        response = await client.get("/api/stats")
        assert statuses == [200] * 60
        assert response.headers["X-RateLimit-Limit"] == "60"
        assert response.headers["X-RateLimit-Remaining"] == "0"
        assert 0 <= int(response.headers["X-RateLimit-Reset"]) <= 60  # seconds, not a time
        assert int(response.headers["Retry-After"]) >= 1
        await error_of(response, 429, "Too many requests")


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [
        (ImageTooLarge("Image is larger than 50 MB"), 413, "Payload too large"),
        (UnsupportedImage("Unsupported image type"), 400, "Unsupported image type"),
        (
            CorruptImage("Image data is truncated or corrupt"),
            400,
            "Image data is truncated or corrupt",
        ),
        (DuplicateImage("abc"), 409, "Image already uploaded"),
        (InvalidInput("Invalid limit"), 400, "Invalid limit"),
        (RateLimited("Too many requests", retry_after=2.5), 429, "Too many requests"),
    ],
)
def test_render_error_keeps_the_shape_for_every_domain_error(
    error, status: int, message: str
) -> None:  # type: ignore[no-untyped-def]
    response = render_error(error)
    assert response.status == status
    assert response.content_type == "application/json"
    assert json.loads(response.body) == {"code": status, "message": message, "success": False}
    if status == 429:
        assert response.headers["Retry-After"] == "3"
