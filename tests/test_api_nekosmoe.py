"""nekos.moe v1 over real HTTP: images, random, search, uploads, files, errors."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

from aiohttp import FormData
from aiohttp.test_utils import TestClient

from core.models import Image, IngestMetadata, Rating, Status, User
from core.services import Services
from tests.conftest import MEMBER, OWNER, make_image

PUBLIC = "http://gazou.test"


async def _stored(
    services: Services,
    seed: int,
    *,
    rating: Rating = Rating.SFW,
    trusted: bool = True,
    tags: tuple[str, ...] = (),
    artist: str | None = None,
    uploader: User = OWNER,
) -> Image:
    meta = IngestMetadata(rating=rating, tags=tags, artist=artist)
    return await services.images.ingest(make_image(seed=seed), meta, uploader, trusted=trusted)


async def _token(services: Services, *scopes: str) -> str:
    issued = await services.tokens.issue(
        MEMBER, scopes=scopes or ("image:upload",), issued_by="test"
    )
    return issued.secret


def _upload_form(data: bytes, **fields: str | list[str]) -> FormData:
    form = FormData()
    form.add_field(
        "image", io.BytesIO(data), filename="upload", content_type="application/octet-stream"
    )
    for name, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            form.add_field(name, item)
    return form


# ---- index and get ---------------------------------------------------------------


async def test_index_gives_docs_and_version_1(client: TestClient) -> None:
    body = await (await client.get("/api/v1/")).json()
    assert body == {"docs": f"{PUBLIC}/openapi.json", "version": 1}


async def test_get_image_returns_image_object(client: TestClient, services: Services) -> None:
    image = await _stored(services, 1, tags=("cat ears", "blue"), artist="Mika")
    response = await client.get(f"/api/v1/images/{image.id}")
    assert response.status == 200
    body = (await response.json())["image"]
    assert set(body) == {
        "id",
        "artist",
        "nsfw",
        "tags",
        "likes",
        "favorites",
        "uploader",
        "approver",
        "comments",
        "createdAt",
    }
    assert body["id"] == image.id
    assert body["artist"] == "Mika"
    assert body["nsfw"] is False
    assert body["tags"] == ["blue", "cat ears"]
    assert body["uploader"] == {"id": OWNER.id, "username": OWNER.name}
    assert body["comments"] == []
    assert datetime.fromisoformat(body["createdAt"]).tzinfo is not None


async def test_get_pending_image_is_marked_pending_without_social_fields(
    client: TestClient, services: Services
) -> None:
    image = await _stored(services, 1, trusted=False)
    body = (await (await client.get(f"/api/v1/images/{image.id}")).json())["image"]
    assert body["pending"] is True
    assert not {"likes", "favorites", "comments", "approver"} & set(body)


async def test_get_unknown_image_is_404_image_not_found(client: TestClient) -> None:
    response = await client.get("/api/v1/images/nope")
    assert response.status == 404
    assert await response.json() == {"message": "Image not found"}


async def test_get_rejected_image_is_404(client: TestClient, services: Services) -> None:
    image = await _stored(services, 1, trusted=False)
    await services.images.reject(image.id, OWNER)
    assert (await client.get(f"/api/v1/images/{image.id}")).status == 404


# ---- random ----------------------------------------------------------------------


async def test_random_includes_original_hash(client: TestClient, services: Services) -> None:
    image = await _stored(services, 1)
    body = await (await client.get("/api/v1/random/image")).json()
    assert [i["id"] for i in body["images"]] == [image.id]
    assert body["images"][0]["originalHash"] == image.md5


async def test_random_nsfw_true_gives_only_nsfw(client: TestClient, services: Services) -> None:
    await _stored(services, 1)
    nsfw = await _stored(services, 2, rating=Rating.NSFW)
    body = await (await client.get("/api/v1/random/image?nsfw=true&count=10")).json()
    assert [i["id"] for i in body["images"]] == [nsfw.id]


async def test_random_nsfw_other_than_true_gives_sfw(
    client: TestClient, services: Services
) -> None:
    sfw = await _stored(services, 1)
    await _stored(services, 2, rating=Rating.NSFW)
    body = await (await client.get("/api/v1/random/image?nsfw=TRUE&count=10")).json()
    assert [i["id"] for i in body["images"]] == [sfw.id]


async def test_random_without_nsfw_gives_sfw_only(client: TestClient, services: Services) -> None:
    sfw = await _stored(services, 1)
    await _stored(services, 2, rating=Rating.NSFW)
    await _stored(services, 3, rating=Rating.QUESTIONABLE)
    body = await (await client.get("/api/v1/random/image?count=10")).json()
    assert [i["id"] for i in body["images"]] == [sfw.id]


async def test_random_count_returns_that_many(client: TestClient, services: Services) -> None:
    for seed in range(4):
        await _stored(services, seed)
    body = await (await client.get("/api/v1/random/image?count=3")).json()
    assert len({i["id"] for i in body["images"]}) == 3


async def test_random_count_out_of_range_means_one(client: TestClient, services: Services) -> None:
    for seed in range(3):
        await _stored(services, seed)
    for count in ("0", "101", "abc", "2.5", "-1"):
        body = await (await client.get(f"/api/v1/random/image?count={count}")).json()
        assert len(body["images"]) == 1, count


# ---- search ----------------------------------------------------------------------


async def _search(client: TestClient, body: object, **kw: object) -> tuple[int, dict]:
    response = await client.post("/api/v1/images/search", json=body, **kw)
    return response.status, await response.json()


async def test_search_without_content_type_parses_json(
    client: TestClient, services: Services
) -> None:
    image = await _stored(services, 1, tags=("fox",))
    response = await client.post(
        "/api/v1/images/search",
        data=json.dumps({"tags": ["fox"]}).encode(),
        headers={"Content-Type": ""},
    )
    assert [i["id"] for i in (await response.json())["images"]] == [image.id]


async def test_search_by_id_ignores_other_fields(client: TestClient, services: Services) -> None:
    image = await _stored(services, 1)
    _, body = await _search(client, {"id": image.id, "tags": ["absent"], "nsfw": True})
    assert [i["id"] for i in body["images"]] == [image.id]


async def test_search_tags_comma_string_and_exclusion(
    client: TestClient, services: Services
) -> None:
    both = await _stored(services, 1, tags=("fox", "snow"))
    await _stored(services, 2, tags=("fox", "rain"))
    _, body = await _search(client, {"tags": "fox,-rain"})
    assert [i["id"] for i in body["images"]] == [both.id]


async def test_search_nsfw_false_gives_sfw_only(client: TestClient, services: Services) -> None:
    sfw = await _stored(services, 1)
    await _stored(services, 2, rating=Rating.QUESTIONABLE)
    _, body = await _search(client, {"nsfw": False})
    assert [i["id"] for i in body["images"]] == [sfw.id]


async def test_search_without_nsfw_gives_sfw_only(client: TestClient, services: Services) -> None:
    sfw = await _stored(services, 1)
    await _stored(services, 2, rating=Rating.NSFW)
    _, body = await _search(client, {})
    assert [i["id"] for i in body["images"]] == [sfw.id]


async def test_search_artist_is_case_insensitive_substring(
    client: TestClient, services: Services
) -> None:
    image = await _stored(services, 1, artist="Hoshino Mika")
    await _stored(services, 2, artist="Other")
    _, body = await _search(client, {"artist": "MIKA"})
    assert [i["id"] for i in body["images"]] == [image.id]


async def test_search_uploader_as_string_or_object(client: TestClient, services: Services) -> None:
    mine = await _stored(services, 1, uploader=MEMBER)
    await _stored(services, 2, uploader=OWNER)
    for uploader in (
        MEMBER.name,
        {"id": MEMBER.id, "username": MEMBER.name},
        {"username": MEMBER.name},
    ):
        _, body = await _search(client, {"uploader": uploader})
        assert [i["id"] for i in body["images"]] == [mine.id], uploader


async def test_search_sort_oldest_and_newest(client: TestClient, services: Services) -> None:
    first = await _stored(services, 1)
    second = await _stored(services, 2)
    _, newest = await _search(client, {})
    _, oldest = await _search(client, {"sort": "oldest"})
    assert [i["id"] for i in newest["images"]] == [second.id, first.id]
    assert [i["id"] for i in oldest["images"]] == [first.id, second.id]


async def test_search_sort_likes_puts_liked_first(client: TestClient, services: Services) -> None:
    liked = await _stored(services, 1)
    await _stored(services, 2)
    await services.images.set_like(liked.id, MEMBER)
    _, body = await _search(client, {"sort": "likes"})
    assert body["images"][0]["id"] == liked.id
    assert body["images"][0]["likes"] == 1


async def test_search_posted_before_and_after_in_ms(client: TestClient, services: Services) -> None:
    image = await _stored(services, 1)
    ms = int(image.created_at.timestamp() * 1000)
    _, before = await _search(client, {"posted_before": ms - 1000})
    _, after = await _search(client, {"posted_after": ms - 1000})
    assert before["images"] == []
    assert [i["id"] for i in after["images"]] == [image.id]


async def test_search_skip_over_2500_is_400(client: TestClient) -> None:
    status, body = await _search(client, {"skip": 2501})
    assert status == 400
    assert body == {"message": "Cannot skip more than 2,500 images"}


async def test_search_offset_is_an_alias_of_skip(client: TestClient, services: Services) -> None:
    first = await _stored(services, 1)
    await _stored(services, 2)
    _, body = await _search(client, {"offset": 1})
    assert [i["id"] for i in body["images"]] == [first.id]
    status, _ = await _search(client, {"offset": 3000})
    assert status == 400


async def test_search_limit_above_50_becomes_20(client: TestClient, services: Services) -> None:
    for seed in range(22):
        await _stored(services, seed)
    _, body = await _search(client, {"limit": 51})
    assert len(body["images"]) == 20
    _, body = await _search(client, {"limit": 21})
    assert len(body["images"]) == 21


async def test_search_never_returns_pending(client: TestClient, services: Services) -> None:
    await _stored(services, 1, trusted=False)
    _, body = await _search(client, {})
    assert body == {"images": []}


async def test_search_malformed_json_is_400(client: TestClient) -> None:
    response = await client.post(
        "/api/v1/images/search", data=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    assert set(await response.json()) == {"message"}


async def test_search_result_has_no_original_hash(client: TestClient, services: Services) -> None:
    await _stored(services, 1)
    _, body = await _search(client, {})
    assert "originalHash" not in body["images"][0]


# ---- upload ----------------------------------------------------------------------


async def test_upload_creates_pending_image(client: TestClient, services: Services) -> None:
    token = await _token(services)
    response = await client.post(
        "/api/v1/images",
        headers={"Authorization": token},
        data=_upload_form(
            make_image("JPEG", seed=5), nsfw="TRUE", artist="Mika", tags="Cat_Ears, blue,cat ears"
        ),
    )
    assert response.status == 200
    body = await response.json()
    image = body["image"]
    assert image["pending"] is True
    assert image["nsfw"] is True
    assert image["artist"] == "Mika"
    assert image["tags"] == ["blue", "cat ears"]
    assert body["image_url"] == f"{PUBLIC}/image/{image['id']}.jpg"
    assert body["post_url"] == f"{PUBLIC}/post/{image['id']}"
    stored = await services.images.get(image["id"], include_pending=True)
    assert stored.status is Status.PENDING


async def test_upload_accepts_bearer_prefix(client: TestClient, services: Services) -> None:
    token = await _token(services)
    response = await client.post(
        "/api/v1/images",
        headers={"Authorization": f"Bearer {token}"},
        data=_upload_form(make_image(seed=5), tags="a"),
    )
    assert response.status == 200


async def test_upload_tags_as_json_array_or_repeated_fields(
    client: TestClient, services: Services
) -> None:
    token = await _token(services)
    first = await client.post(
        "/api/v1/images",
        headers={"Authorization": token},
        data=_upload_form(make_image(seed=5), tags='["B", "a_b"]'),
    )
    second = await client.post(
        "/api/v1/images",
        headers={"Authorization": token},
        data=_upload_form(make_image(seed=6), tags=["Z", "y"]),
    )
    assert (await first.json())["image"]["tags"] == ["a b", "b"]
    assert (await second.json())["image"]["tags"] == ["y", "z"]


async def test_upload_takes_file_beside_text_field_named_image(
    client: TestClient, services: Services
) -> None:
    token = await _token(services)
    form = _upload_form(make_image(seed=5), tags="a", image="some text")
    response = await client.post("/api/v1/images", headers={"Authorization": token}, data=form)
    assert response.status == 200


async def test_upload_drops_unknown_artist_and_empty_nsfw_is_false(
    client: TestClient, services: Services
) -> None:
    token = await _token(services)
    response = await client.post(
        "/api/v1/images",
        headers={"Authorization": token},
        data=_upload_form(make_image(seed=5), artist="unknown", nsfw=""),
    )
    image = (await response.json())["image"]
    assert "artist" not in image
    assert image["nsfw"] is False


async def test_upload_without_token_is_400_authentication_required(client: TestClient) -> None:
    response = await client.post("/api/v1/images", data=_upload_form(make_image()))
    assert response.status == 400
    assert await response.json() == {"message": "Authentication required"}


async def test_upload_with_bad_token_is_401_invalid_token(client: TestClient) -> None:
    response = await client.post(
        "/api/v1/images", headers={"Authorization": "nope"}, data=_upload_form(make_image())
    )
    assert response.status == 401
    assert await response.json() == {"message": "Invalid token"}


async def test_upload_without_upload_scope_is_403(client: TestClient, services: Services) -> None:
    token = await _token(services, "image:list")
    response = await client.post(
        "/api/v1/images", headers={"Authorization": token}, data=_upload_form(make_image())
    )
    assert response.status == 403
    assert await response.json() == {"message": "You must have a verified account to post images"}


async def test_upload_gif_is_400_invalid_file_type(client: TestClient, services: Services) -> None:
    token = await _token(services)
    response = await client.post(
        "/api/v1/images", headers={"Authorization": token}, data=_upload_form(make_image("GIF"))
    )
    assert response.status == 400
    assert await response.json() == {"message": "Invalid file type"}


async def test_upload_over_3_mb_is_400(client: TestClient, services: Services) -> None:
    token = await _token(services)
    big = make_image("PNG", size=(1100, 1100), seed=1, compress_level=0)
    assert 3 * 1024 * 1024 < len(big) < 50 * 1024 * 1024
    response = await client.post(
        "/api/v1/images", headers={"Authorization": token}, data=_upload_form(big)
    )
    assert response.status == 400
    assert "too large" in (await response.json())["message"]


async def test_upload_artist_over_60_characters_is_400(
    client: TestClient, services: Services
) -> None:
    token = await _token(services)
    response = await client.post(
        "/api/v1/images",
        headers={"Authorization": token},
        data=_upload_form(make_image(), artist="a" * 61),
    )
    assert response.status == 400


async def test_upload_more_than_120_tags_is_400(client: TestClient, services: Services) -> None:
    token = await _token(services)
    tags = ",".join(f"t{n}" for n in range(121))
    response = await client.post(
        "/api/v1/images",
        headers={"Authorization": token},
        data=_upload_form(make_image(), tags=tags),
    )
    assert response.status == 400
    assert "120" in (await response.json())["message"]


async def test_upload_tag_over_50_characters_is_400(client: TestClient, services: Services) -> None:
    token = await _token(services)
    response = await client.post(
        "/api/v1/images",
        headers={"Authorization": token},
        data=_upload_form(make_image(), tags="x" * 51),
    )
    assert response.status == 400


async def test_upload_bad_nsfw_value_is_400(client: TestClient, services: Services) -> None:
    token = await _token(services)
    response = await client.post(
        "/api/v1/images",
        headers={"Authorization": token},
        data=_upload_form(make_image(), nsfw="maybe"),
    )
    assert response.status == 400


async def test_duplicate_upload_returns_409_with_existing_id(
    client: TestClient, services: Services
) -> None:
    existing = await _stored(services, 7)
    token = await _token(services)
    response = await client.post(
        "/api/v1/images", headers={"Authorization": token}, data=_upload_form(make_image(seed=7))
    )
    assert response.status == 409
    assert await response.json() == {"message": "Image already uploaded", "id": existing.id}


# ---- files and errors ------------------------------------------------------------


async def test_image_file_with_and_without_jpg_suffix(
    client: TestClient, services: Services
) -> None:
    image = await _stored(services, 1)
    plain = await client.get(f"/image/{image.id}")
    suffixed = await client.get(f"/image/{image.id}.jpg")
    assert plain.status == suffixed.status == 200
    assert plain.content_type == "image/png"
    assert await plain.read() == await suffixed.read()


async def test_thumbnail_is_jpeg_within_360x420(client: TestClient, services: Services) -> None:
    from PIL import Image as PILImage

    image = await services.images.ingest(
        make_image(size=(1000, 500), seed=3), IngestMetadata(), OWNER, trusted=True
    )
    response = await client.get(f"/thumbnail/{image.id}.jpg")
    assert response.status == 200
    assert response.content_type == "image/jpeg"
    thumb = PILImage.open(io.BytesIO(await response.read()))
    assert thumb.format == "JPEG" and thumb.width <= 360 and thumb.height <= 420


async def test_unknown_route_under_api_v1_is_404_message(client: TestClient) -> None:
    response = await client.get("/api/v1/nothing-here")
    assert response.status == 404
    assert await response.json() == {"message": "Not found"}


async def test_wrong_method_is_405_message(client: TestClient) -> None:
    response = await client.delete("/api/v1/images/search")
    assert response.status == 405
    assert set(await response.json()) == {"message"}


async def test_created_at_is_javascript_iso_format(client: TestClient, services: Services) -> None:
    image = await _stored(services, 1)
    body = (await (await client.get(f"/api/v1/images/{image.id}")).json())["image"]
    expected = image.created_at.astimezone(UTC)
    assert body["createdAt"].endswith("Z") and len(body["createdAt"]) == 24
    parsed = datetime.fromisoformat(body["createdAt"].replace("Z", "+00:00"))
    assert abs((parsed - expected).total_seconds()) < 0.001


async def test_search_with_non_string_sort_falls_back_to_newest(
    client: TestClient, services: Services
) -> None:
    first = await _stored(services, 1)
    second = await _stored(services, 2)
    for sort in ({}, [], 3, "sideways"):
        status, body = await _search(client, {"sort": sort})
        assert status == 200
        assert [i["id"] for i in body["images"]] == [second.id, first.id]


async def test_upload_with_malformed_part_headers_is_400(
    client: TestClient, services: Services
) -> None:
    token = await _token(services)
    body = b'--b\r\nContent-Disposition: form-data; name="\x03bad"\r\n\r\nx\r\n--b--\r\n'
    response = await client.post(
        "/api/v1/images",
        data=body,
        headers={"Authorization": token, "Content-Type": "multipart/form-data; boundary=b"},
    )
    assert response.status == 400
    assert (await response.json())["message"].startswith("Malformed multipart body")


async def test_post_url_leads_to_the_image(client: TestClient, services: Services) -> None:
    image = await _stored(services, 1, trusted=False)
    response = await client.get(f"/post/{image.id}", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == f"/api/v1/images/{image.id}"
    followed = await client.get(f"/post/{image.id}")
    assert (await followed.json())["image"]["pending"] is True


async def test_post_url_escapes_odd_ids(client: TestClient) -> None:
    response = await client.get("/post/a%0Ab%2Fc", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/api/v1/images/a%0Ab%2Fc"


def test_internal_error_is_500_message_without_details() -> None:
    from api.app import InternalError
    from api.nekosmoe import render_error

    response = render_error(InternalError("Internal server error"))
    assert response.status == 500
    assert response.body == b'{"message":"Internal server error"}'
