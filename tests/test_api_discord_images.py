"""Discord Images over real HTTP: the caller's uploads and multi-file uploads."""

from __future__ import annotations

import io

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient

from api.discord_images import pretty_size
from core.models import IngestMetadata, Status, User
from core.services import Services
from tests.conftest import ALL_BACKENDS, MEMBER, OWNER, make_image

BACKENDS = ALL_BACKENDS

PUBLIC = "http://gazou.test"


async def _token(services: Services, *scopes: str, owner: User = MEMBER) -> str:
    issued = await services.tokens.issue(
        owner, scopes=scopes or ("image:upload",), issued_by="test"
    )
    return issued.secret


def _files(*images: bytes, field: str = "files[]") -> FormData:
    form = FormData()
    for n, data in enumerate(images):
        form.add_field(field, io.BytesIO(data), filename=f"pic{n}.png", content_type="image/png")
    return form


async def test_upload_one_file_returns_code_and_url(client: TestClient, services: Services) -> None:
    token = await _token(services)
    response = await client.post(
        "/api/upload", headers={"token": token}, data=_files(make_image(seed=1))
    )
    assert response.status == 200
    body = await response.json()
    assert set(body) == {"success", "code", "url"}
    assert body["success"] is True
    assert body["url"] == f"{PUBLIC}/img/{body['code']}"
    image_id = body["code"].split(".")[0]
    stored = await services.images.get(image_id, include_pending=True)
    assert stored.status is Status.PENDING
    assert stored.original_filename == "pic0.png"


async def test_upload_several_files_lists_each(client: TestClient, services: Services) -> None:
    token = await _token(services)
    response = await client.post(
        "/api/upload", headers={"token": token}, data=_files(make_image(seed=1), make_image(seed=2))
    )
    body = await response.json()
    assert len(body["files"]) == 2
    assert body["code"] == body["files"][0]["code"]
    assert len({f["code"] for f in body["files"]}) == 2


async def test_upload_with_admin_token_is_approved(client: TestClient, services: Services) -> None:
    token = await _token(services, "admin")
    body = await (
        await client.post("/api/upload", headers={"token": token}, data=_files(make_image(seed=1)))
    ).json()
    stored = await services.images.get(body["code"].split(".")[0])
    assert stored.status is Status.APPROVED


async def test_upload_without_token_is_401(client: TestClient) -> None:
    response = await client.post("/api/upload", data=_files(make_image()))
    assert response.status == 401
    assert await response.json() == {"success": False, "message": "No token provided."}


async def test_upload_with_bad_token_is_401(client: TestClient) -> None:
    response = await client.post(
        "/api/upload", headers={"token": "x" * 100}, data=_files(make_image())
    )
    assert response.status == 401
    assert await response.json() == {"success": False, "message": "Invalid token."}


async def test_upload_without_upload_scope_is_403(client: TestClient, services: Services) -> None:
    token = await _token(services, "image:list")
    response = await client.post("/api/upload", headers={"token": token}, data=_files(make_image()))
    assert response.status == 403
    assert (await response.json())["success"] is False


async def test_upload_without_files_is_400(client: TestClient, services: Services) -> None:
    token = await _token(services)
    form = FormData()
    form.add_field("note", "hello")
    response = await client.post("/api/upload", headers={"token": token}, data=form)
    assert response.status == 400
    assert await response.json() == {"success": False, "message": "No files."}


async def test_upload_of_non_image_is_400(client: TestClient, services: Services) -> None:
    token = await _token(services)
    response = await client.post(
        "/api/upload", headers={"token": token}, data=_files(b"plain text, not a picture")
    )
    assert response.status == 400
    body = await response.json()
    assert body["success"] is False and body["message"]


async def test_duplicate_upload_returns_409_with_existing_id(
    client: TestClient, services: Services
) -> None:
    existing = await services.images.ingest(
        make_image(seed=4), IngestMetadata(), OWNER, trusted=True
    )
    token = await _token(services)
    response = await client.post(
        "/api/upload", headers={"token": token}, data=_files(make_image(seed=4))
    )
    assert response.status == 409
    assert await response.json() == {
        "success": False,
        "message": "Image already uploaded",
        "id": existing.id,
    }


async def test_uploads_lists_only_the_callers_files(client: TestClient, services: Services) -> None:
    token = await _token(services)
    mine = await services.images.ingest(make_image("JPEG", seed=1), IngestMetadata(), MEMBER)
    await services.images.ingest(make_image(seed=2), IngestMetadata(), OWNER, trusted=True)
    response = await client.get("/api/uploads", headers={"token": token})
    assert response.status == 200
    body = await response.json()
    assert body["success"] is True
    [entry] = body["files"]
    assert entry["id"] == mine.id
    assert entry["name"] == f"{mine.id}.jpg"
    assert entry["extname"] == ".jpg"
    assert entry["userid"] == MEMBER.id
    assert entry["file"] == f"{PUBLIC}/img/{mine.id}.jpg"
    assert entry["thumb"] == f"{PUBLIC}/thumbnail/{mine.id}.jpg"
    assert entry["timestamp"] == int(mine.created_at.timestamp())
    assert entry["size"] == pretty_size(mine.size)
    assert entry["albumid"] is None and entry["album"] is None


async def test_uploads_pages_by_25(client: TestClient, services: Services) -> None:
    token = await _token(services)
    for seed in range(27):
        await services.images.ingest(make_image(seed=seed), IngestMetadata(), MEMBER)
    first = await (await client.get("/api/uploads", headers={"token": token})).json()
    second = await (await client.get("/api/uploads/1", headers={"token": token})).json()
    assert len(first["files"]) == 25 and len(second["files"]) == 2
    assert not {f["id"] for f in first["files"]} & {f["id"] for f in second["files"]}


async def test_uploads_without_token_is_401(client: TestClient) -> None:
    response = await client.get("/api/uploads")
    assert response.status == 401
    assert (await response.json())["success"] is False


async def test_uploads_bad_page_is_400(client: TestClient, services: Services) -> None:
    token = await _token(services)
    for page in ("abc", "%C2%B2", "-1", "99999"):
        response = await client.get(f"/api/uploads/{page}", headers={"token": token})
        assert response.status == 400, page


def test_pretty_size_matches_lolisafe_style() -> None:
    assert pretty_size(999) == "999 B"
    assert pretty_size(508_000) == "508 kB"
    assert pretty_size(1_500_000) == "1.5 MB"
    assert pretty_size(1_234_567) == "1.23 MB"
    assert pretty_size(999_999) == "1 MB"


def test_internal_error_is_500_in_its_shape() -> None:
    from api.app import InternalError
    from api.discord_images import render_error

    response = render_error(InternalError("Internal server error"))
    assert response.status == 500
    assert response.body == b'{"success":false,"message":"Internal server error."}'


async def test_unknown_path_under_api_upload_is_404_in_its_shape(client: TestClient) -> None:
    response = await client.get("/api/uploadz")
    assert response.status == 404
    assert await response.json() == {"success": False, "message": "Not found."}


async def test_wrong_method_is_405_in_its_shape(client: TestClient) -> None:
    response = await client.get("/api/upload")
    assert response.status == 405
    assert (await response.json())["success"] is False


@pytest.mark.filterwarnings("ignore::aiohttp.BadContentDispositionHeader")
async def test_part_with_unparsable_disposition_is_skipped(
    client: TestClient, services: Services
) -> None:
    token = await _token(services)
    body = b'--b\r\nContent-Disposition: form-data; name="a b"c\r\n\r\nx\r\n--b--\r\n'
    response = await client.post(
        "/api/upload",
        data=body,
        headers={"token": token, "Content-Type": "multipart/form-data; boundary=b"},
    )
    assert response.status == 400
    assert await response.json() == {"success": False, "message": "No files."}
