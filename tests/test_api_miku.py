"""MikuAPI v2 over real HTTP: random, all, uploads with Bearer tokens, /img files."""

from __future__ import annotations

import io

from aiohttp import FormData
from aiohttp.test_utils import TestClient

from core.models import IngestMetadata, Rating, Status
from core.services import Services
from tests.conftest import ALL_BACKENDS, MEMBER, OWNER, make_image

BACKENDS = ALL_BACKENDS

PUBLIC = "http://gazou.test"


async def _stored(
    services: Services,
    seed: int,
    rating: Rating = Rating.SFW,
    trusted: bool = True,
    fmt: str = "PNG",
):
    return await services.images.ingest(
        make_image(fmt, seed=seed), IngestMetadata(rating=rating), OWNER, trusted=trusted
    )


async def _token(services: Services, *scopes: str) -> str:
    issued = await services.tokens.issue(
        MEMBER, scopes=scopes or ("image:upload",), issued_by="test"
    )
    return issued.secret


def _form(data: bytes, name: str = "image", filename: str = "a.png") -> FormData:
    form = FormData()
    form.add_field(
        name, io.BytesIO(data), filename=filename, content_type="application/octet-stream"
    )
    return form


async def test_random_returns_url_of_an_sfw_image(client: TestClient, services: Services) -> None:
    sfw = await _stored(services, 1)
    await _stored(services, 2, rating=Rating.NSFW)
    for _ in range(5):
        response = await client.get("/api/v2/random")
        assert response.status == 200
        assert response.content_type == "application/json"
        assert await response.json() == {"url": f"{PUBLIC}/img/{sfw.id}.png"}


async def test_random_on_empty_collection_is_404_with_message(client: TestClient) -> None:
    response = await client.get("/api/v2/random")
    assert response.status == 404
    body = await response.json()
    assert set(body) == {"message"} and body["message"]


async def test_random_never_returns_pending_images(client: TestClient, services: Services) -> None:
    await _stored(services, 1, trusted=False)
    assert (await client.get("/api/v2/random")).status == 404


async def test_all_lists_sfw_approved_files_with_warning(
    client: TestClient, services: Services
) -> None:
    a = await _stored(services, 1)
    b = await _stored(services, 2, fmt="JPEG")
    await _stored(services, 3, rating=Rating.QUESTIONABLE)
    await _stored(services, 4, trusted=False)
    body = await (await client.get("/api/v2/all")).json()
    assert body["message"].startswith("Warning, making usage of this endpoint is NOT")
    assert sorted(body["files"]) == sorted([f"{PUBLIC}/img/{a.id}.png", f"{PUBLIC}/img/{b.id}.jpg"])


async def test_add_with_bearer_token_stores_pending_image(
    client: TestClient, services: Services
) -> None:
    token = await _token(services)
    response = await client.post(
        "/api/add", data=_form(make_image(seed=9)), headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status == 200
    body = await response.json()
    assert body["message"] == "File as been renamed to a collision resistant ID. (CUID)"
    assert body["filename"] == f"{body['cuid']}.png"
    stored = await services.images.get(body["cuid"], include_pending=True)
    assert stored.status is Status.PENDING
    assert stored.uploader is not None and stored.uploader.id == MEMBER.id


async def test_add_with_admin_token_is_approved_at_once(
    client: TestClient, services: Services
) -> None:
    token = await _token(services, "admin")
    response = await client.post(
        "/api/add", data=_form(make_image(seed=9)), headers={"Authorization": f"Bearer {token}"}
    )
    cuid = (await response.json())["cuid"]
    assert (await services.images.get(cuid)).status is Status.APPROVED
    assert await (await client.get("/api/v2/random")).json() == {"url": f"{PUBLIC}/img/{cuid}.png"}


async def test_add_without_token_is_401_access_denied_text(client: TestClient) -> None:
    response = await client.post("/api/add", data=_form(make_image()))
    assert response.status == 401
    assert response.content_type == "text/plain"
    assert await response.text() == "Access denied"


async def test_add_with_unknown_token_is_401_access_denied_text(client: TestClient) -> None:
    response = await client.post(
        "/api/add", data=_form(make_image()), headers={"Authorization": "Bearer " + "x" * 100}
    )
    assert response.status == 401
    assert await response.text() == "Access denied"


async def test_add_with_token_lacking_upload_scope_is_403(
    client: TestClient, services: Services
) -> None:
    token = await _token(services, "image:list")
    response = await client.post(
        "/api/add", data=_form(make_image()), headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status == 403
    assert await response.text() == "Access denied"


async def test_add_refuses_webp_with_400_message(client: TestClient, services: Services) -> None:
    token = await _token(services)
    response = await client.post(
        "/api/add",
        data=_form(make_image("WEBP"), filename="a.webp"),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status == 400
    assert "jpg" in (await response.json())["message"]


async def test_add_refuses_non_image_with_400(client: TestClient, services: Services) -> None:
    token = await _token(services)
    response = await client.post(
        "/api/add", data=_form(b"not an image at all"), headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status == 400
    assert set(await response.json()) == {"message"}


async def test_add_without_image_field_is_400(client: TestClient, services: Services) -> None:
    token = await _token(services)
    response = await client.post(
        "/api/add",
        data=_form(make_image(), name="file"),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status == 400


async def test_add_over_5_mb_is_413(client: TestClient, services: Services) -> None:
    token = await _token(services)
    # Incompressible noise keeps the PNG above 5 MB.
    big = make_image("PNG", size=(1400, 1400), seed=1, compress_level=0)
    assert len(big) > 5 * 1024 * 1024
    response = await client.post(
        "/api/add", data=_form(big), headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status == 413
    assert "5 MB" in (await response.json())["message"]


async def test_duplicate_upload_returns_409_with_existing_cuid(
    client: TestClient, services: Services
) -> None:
    existing = await _stored(services, 3)
    token = await _token(services)
    response = await client.post(
        "/api/add", data=_form(make_image(seed=3)), headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status == 409
    assert (await response.json())["cuid"] == existing.id


async def test_img_serves_bytes_with_content_type(client: TestClient, services: Services) -> None:
    image = await _stored(services, 5, fmt="JPEG")
    response = await client.get(f"/img/{image.filename}")
    assert response.status == 200
    assert response.content_type == "image/jpeg"
    assert await response.read() == await services.images.read_bytes(image)


async def test_img_of_pending_image_is_served_at_once(
    client: TestClient, services: Services
) -> None:
    image = await _stored(services, 5, trusted=False)
    response = await client.get(f"/img/{image.filename}")
    assert response.status == 200
    assert await response.read() == await services.images.read_bytes(image)


async def test_img_of_rejected_image_is_404(client: TestClient, services: Services) -> None:
    image = await _stored(services, 5, trusted=False)
    await services.images.reject(image.id, OWNER)
    response = await client.get(f"/img/{image.filename}")
    assert response.status == 404
    assert "message" in await response.json()


async def test_wrong_method_is_405_in_miku_shape(client: TestClient) -> None:
    response = await client.get("/api/add")
    assert response.status == 405
    assert "POST" in response.headers["Allow"]
    assert set(await response.json()) == {"message"}


def test_internal_error_is_500_message() -> None:
    from api.app import InternalError
    from api.miku import render_error

    response = render_error(InternalError("Internal server error"))
    assert response.status == 500
    assert response.body == b'{"message":"Internal server error"}'


async def test_unknown_path_under_img_is_404_message(client: TestClient) -> None:
    response = await client.get("/img/")
    assert response.status == 404
    assert set(await response.json()) == {"message"}


async def test_random_stops_naming_an_image_once_rejected(
    client: TestClient, services: Services
) -> None:
    image = await _stored(services, 1)
    assert (await client.get("/api/v2/random")).status == 200
    await services.images.reject(image.id, OWNER)
    assert (await client.get("/api/v2/random")).status == 404
