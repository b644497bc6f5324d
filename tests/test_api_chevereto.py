"""Chevereto v1.1 (and imgBB-style) uploads over HTTP against a real store: every
source form, key form, parameter, format, error code; the viewer page."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path

import pytest
from aiohttp import FormData, web
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image as PILImage

from api.app import create_app
from api.chevereto import decode_base64, parse_expiration, render_error, size_formatted
from core.errors import (
    CorruptImage,
    DuplicateImage,
    Forbidden,
    GazouError,
    ImageTooLarge,
    InvalidInput,
    NotFound,
    RateLimited,
    Unauthorized,
    UnsupportedImage,
)
from core.models import Status
from core.services import Services, open_services
from tests.conftest import MEMBER, OWNER, make_image, make_settings

UPLOAD = "/api/1/upload"
IMAGE_KEYS = {
    "name",
    "extension",
    "size",
    "width",
    "height",
    "date",
    "date_gmt",
    "title",
    "description",
    "nsfw",
    "md5",
    "original_filename",
    "expiration_date_gmt",
    "id_encoded",
    "filename",
    "mime",
    "url",
    "image",
    "thumb",
    "medium",
    "url_viewer",
    "url_short",
    "display_url",
    "display_width",
    "display_height",
    "size_formatted",
    "delete_url",
}
FILE_KEYS = {"filename", "name", "mime", "extension", "url", "size"}


@pytest.fixture
async def key(services: Services) -> str:
    """A member's key that may upload (its uploads start pending)."""
    return (await services.tokens.issue(MEMBER, scopes=("image:upload",), issued_by="x")).secret


@pytest.fixture
async def admin_key(services: Services) -> str:
    return (await services.tokens.issue(OWNER, scopes=("admin",), issued_by="x")).secret


def multipart(data: bytes, filename: str = "cat.png", **fields: str) -> FormData:
    form = FormData()
    form.add_field("source", io.BytesIO(data), filename=filename, content_type="image/png")
    for name, value in fields.items():
        form.add_field(name, value)
    return form


async def chevereto_error(response, status: int, message: str, code: int) -> None:  # type: ignore[no-untyped-def]
    assert response.status == status
    assert await response.json() == {
        "status_code": status,
        "error": {"message": message, "code": code},
        "status_txt": {
            400: "Bad Request",
            401: "Unauthorized",
            404: "Not Found",
            405: "Method Not Allowed",
            413: "Request Entity Too Large",
        }[status],
    }


def url_path(url: str) -> str:
    """The path and query of an absolute gazou URL (PUBLIC_URL is http://gazou.test)."""
    assert url.startswith("http://gazou.test/")
    return url.removeprefix("http://gazou.test")


# ---- success shape and key forms ----------------------------------------------------


async def test_multipart_upload_answers_the_chevereto_shape(
    client: TestClient, admin_key: str
) -> None:
    data = make_image(seed=1)
    response = await client.post(
        UPLOAD, data=multipart(data, title="A cat"), headers={"X-API-Key": admin_key}
    )
    body = await response.json()
    assert response.status == 200
    assert list(body) == ["status_code", "success", "image", "status_txt"]
    assert body["status_code"] == 200
    assert body["success"] == {"message": "image uploaded", "code": 200}
    assert body["status_txt"] == "OK"
    image = body["image"]
    assert set(image) == IMAGE_KEYS
    assert set(image["image"]) == set(image["thumb"]) == set(image["medium"]) == FILE_KEYS
    assert image["title"] == "A cat"
    assert image["original_filename"] == "cat.png"
    assert image["extension"] == "png" and image["mime"] == "image/png"
    assert (image["width"], image["height"]) == (64, 48)
    assert image["nsfw"] == 0
    assert image["expiration_date_gmt"] is None
    assert image["url"] == f"http://gazou.test/image/{image['name']}.png"
    assert image["url_viewer"] == f"http://gazou.test/i/{image['name']}"
    datetime.strptime(image["date_gmt"], "%Y-%m-%d %H:%M:%S")  # Chevereto's date format


async def test_the_returned_url_serves_the_uploaded_bytes(
    client: TestClient, services: Services, admin_key: str
) -> None:
    response = await client.post(
        UPLOAD, data=multipart(make_image(seed=2)), headers={"X-API-Key": admin_key}
    )
    image = (await response.json())["image"]
    served = await client.get(url_path(image["url"]))
    stored = await services.images.get(image["name"])
    assert served.status == 200
    assert await served.read() == await services.images.read_bytes(stored)
    thumb = await client.get(url_path(image["thumb"]["url"]))
    assert thumb.status == 200 and thumb.content_type == "image/jpeg"


async def test_key_in_the_query_string(client: TestClient, admin_key: str) -> None:
    response = await client.post(f"{UPLOAD}?key={admin_key}", data=multipart(make_image(seed=3)))
    assert response.status == 200


async def test_key_in_the_multipart_body(client: TestClient, admin_key: str) -> None:
    response = await client.post(UPLOAD, data=multipart(make_image(seed=4), key=admin_key))
    assert response.status == 200


async def test_trailing_slash_path_uploads_too(client: TestClient, admin_key: str) -> None:
    response = await client.post(
        UPLOAD + "/", data=multipart(make_image(seed=5)), headers={"X-API-Key": admin_key}
    )
    assert response.status == 200


async def test_missing_key_is_400_code_100(client: TestClient) -> None:
    await chevereto_error(
        await client.post(UPLOAD, data=multipart(make_image(seed=6))), 400, "Empty API key.", 100
    )


async def test_invalid_key_is_400_code_100(client: TestClient) -> None:
    response = await client.post(
        UPLOAD, data=multipart(make_image(seed=6)), headers={"X-API-Key": "nope"}
    )
    await chevereto_error(response, 400, "Invalid API v1 key.", 100)


async def test_key_without_upload_scope_is_401_request_denied(
    client: TestClient, services: Services
) -> None:
    secret = (await services.tokens.issue(MEMBER, scopes=("image:list",), issued_by="x")).secret
    response = await client.post(
        UPLOAD, data=multipart(make_image(seed=6)), headers={"X-API-Key": secret}
    )
    await chevereto_error(response, 401, "Request denied", 401)


# ---- sources ------------------------------------------------------------------------


async def test_base64_source_in_a_urlencoded_body(client: TestClient, admin_key: str) -> None:
    data = make_image(seed=7)
    response = await client.post(
        UPLOAD, data={"key": admin_key, "source": base64.b64encode(data).decode()}
    )
    assert response.status == 200
    assert (await response.json())["image"]["size"] > 0


async def test_base64_source_with_a_data_url_prefix(client: TestClient, admin_key: str) -> None:
    encoded = "data:image/png;base64," + base64.b64encode(make_image(seed=8)).decode()
    response = await client.post(UPLOAD, data={"key": admin_key, "source": encoded})
    assert response.status == 200


async def test_base64_source_in_a_get_query(client: TestClient, admin_key: str) -> None:
    encoded = base64.b64encode(make_image(seed=9, size=(16, 16))).decode()
    response = await client.get(UPLOAD, params={"key": admin_key, "source": encoded})
    assert response.status == 200


async def test_bad_base64_is_400_code_120(client: TestClient, admin_key: str) -> None:
    response = await client.post(UPLOAD, data={"key": admin_key, "source": "not*base64!"})
    await chevereto_error(response, 400, "Invalid base64 string.", 120)


async def test_empty_source_is_400_code_130(client: TestClient, admin_key: str) -> None:
    response = await client.post(UPLOAD, data={"key": admin_key, "source": ""})
    await chevereto_error(response, 400, "Empty upload source.", 130)


async def test_no_source_at_all_is_400_code_130(client: TestClient, admin_key: str) -> None:
    response = await client.post(UPLOAD, data={"key": admin_key})
    await chevereto_error(response, 400, "Empty upload source.", 130)


async def test_imgbb_image_field_answers_data_and_status(
    client: TestClient, admin_key: str
) -> None:
    form = FormData()
    form.add_field("image", make_image(seed=10), filename="x.png")
    response = await client.post(f"{UPLOAD}?key={admin_key}", data=form)
    body = await response.json()
    assert list(body) == ["status_code", "success", "data", "status_txt", "status"]
    assert body["status"] == 200
    assert set(body["data"]) == IMAGE_KEYS


async def test_imgbb_base64_image_field(client: TestClient, admin_key: str) -> None:
    encoded = base64.b64encode(make_image(seed=11)).decode()
    response = await client.post(UPLOAD, data={"key": admin_key, "image": encoded})
    assert (await response.json())["status"] == 200


async def test_non_image_bytes_are_400(client: TestClient, admin_key: str) -> None:
    response = await client.post(
        UPLOAD, data=multipart(b"hello, not an image"), headers={"X-API-Key": admin_key}
    )
    body = await response.json()
    assert response.status == 400
    assert body["error"]["code"] == 400
    assert "Unsupported image type" in body["error"]["message"]


async def test_duplicate_upload_is_400_duplicated_upload(
    client: TestClient, admin_key: str
) -> None:
    data = make_image(seed=12)
    first = await client.post(UPLOAD, data=multipart(data), headers={"X-API-Key": admin_key})
    assert first.status == 200
    again = await client.post(UPLOAD, data=multipart(data), headers={"X-API-Key": admin_key})
    await chevereto_error(again, 400, "Duplicated upload", 400)


async def test_a_private_source_url_is_refused(client: TestClient, admin_key: str) -> None:
    response = await client.post(
        UPLOAD, data={"key": admin_key, "source": "http://127.0.0.1:9/cat.png"}
    )
    body = await response.json()
    assert response.status == 400
    assert body["error"]["message"] == "The source URL points to a private or reserved address"


@pytest.fixture
async def url_client(tmp_path: Path) -> AsyncIterator[tuple[TestClient, Services, str]]:
    """gazou allowed to fetch from loopback, and a loopback image host."""
    png = make_image(seed=13)

    async def cat(request: web.Request) -> web.Response:
        return web.Response(body=png, content_type="image/png")

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/pics/cat.png")

    host = web.Application()
    host.router.add_get("/pics/cat.png", cat)
    host.router.add_get("/moved", moved)
    settings = make_settings(tmp_path / "data", RATE_LIMITS="off", URL_FETCH_ALLOW_PRIVATE="on")
    async with (
        TestServer(host, host="127.0.0.1") as source,
        open_services(settings) as services,
        TestClient(TestServer(create_app(services), host="127.0.0.1")) as client,
    ):
        yield client, services, f"http://127.0.0.1:{source.port}"


async def test_url_source_is_downloaded(url_client: tuple[TestClient, Services, str]) -> None:
    client, services, source = url_client
    secret = (await services.tokens.issue(OWNER, scopes=("admin",), issued_by="x")).secret
    response = await client.post(UPLOAD, data={"key": secret, "source": f"{source}/moved"})
    image = (await response.json())["image"]
    assert response.status == 200
    assert image["original_filename"] == "cat.png"
    stored = await services.images.get(image["name"])
    assert stored.source_url == f"{source}/moved"
    assert (
        stored.sha256
        == __import__("hashlib").sha256(await services.images.read_bytes(stored)).hexdigest()
    )


async def test_url_source_error_status_is_a_clear_400(
    url_client: tuple[TestClient, Services, str],
) -> None:
    client, services, source = url_client
    secret = (await services.tokens.issue(OWNER, scopes=("admin",), issued_by="x")).secret
    response = await client.get(UPLOAD, params={"key": secret, "source": f"{source}/nope"})
    assert response.status == 400
    assert (await response.json())["error"]["message"] == "The source URL answered HTTP 404"


# ---- parameters ---------------------------------------------------------------------


async def test_name_is_an_alias_of_title(client: TestClient, admin_key: str) -> None:
    response = await client.post(
        UPLOAD, data=multipart(make_image(seed=14), name="Named"), headers={"X-API-Key": admin_key}
    )
    assert (await response.json())["image"]["title"] == "Named"


async def test_description_is_kept(client: TestClient, services: Services, admin_key: str) -> None:
    response = await client.post(
        UPLOAD,
        data=multipart(make_image(seed=15), description="hi"),
        headers={"X-API-Key": admin_key},
    )
    image = (await response.json())["image"]
    assert image["description"] == "hi"
    assert (await services.images.get(image["name"])).description == "hi"


async def test_album_id_puts_the_image_in_the_album(
    client: TestClient, services: Services, admin_key: str
) -> None:
    album = await services.storage.repo.create_album("holiday", OWNER.id)
    response = await client.post(
        UPLOAD,
        data=multipart(make_image(seed=16), album_id=album.id),
        headers={"X-API-Key": admin_key},
    )
    stored = await services.images.get((await response.json())["image"]["name"])
    assert stored.album is not None and stored.album.id == album.id


async def test_unknown_album_is_400(client: TestClient, admin_key: str) -> None:
    response = await client.post(
        UPLOAD,
        data=multipart(make_image(seed=17), album_id="nope"),
        headers={"X-API-Key": admin_key},
    )
    await chevereto_error(response, 400, "Invalid album", 400)


async def test_someone_elses_album_is_400(client: TestClient, services: Services, key: str) -> None:
    album = await services.storage.repo.create_album("owner's", OWNER.id)
    response = await client.post(
        UPLOAD, data=multipart(make_image(seed=18), album_id=album.id), headers={"X-API-Key": key}
    )
    await chevereto_error(response, 400, "Invalid album", 400)


async def test_category_id_tags_the_image(
    client: TestClient, services: Services, admin_key: str
) -> None:
    tag = await services.storage.repo.upsert_tag("Landscape")
    response = await client.post(
        UPLOAD,
        data=multipart(make_image(seed=19), category_id=tag.id),
        headers={"X-API-Key": admin_key},
    )
    stored = await services.images.get((await response.json())["image"]["name"])
    assert stored.tag_names == ["Landscape"]


async def test_unknown_category_id_is_ignored(
    client: TestClient, services: Services, admin_key: str
) -> None:
    response = await client.post(
        UPLOAD,
        data=multipart(make_image(seed=20), category_id="3"),
        headers={"X-API-Key": admin_key},
    )
    stored = await services.images.get((await response.json())["image"]["name"])
    assert stored.tag_names == []


async def test_width_resizes_keeping_the_aspect_ratio(
    client: TestClient, services: Services, admin_key: str
) -> None:
    response = await client.post(
        UPLOAD,
        data=multipart(make_image(seed=21, size=(400, 300)), width="200"),
        headers={"X-API-Key": admin_key},
    )
    image = (await response.json())["image"]
    assert (image["width"], image["height"]) == (200, 150)
    stored = await services.images.get(image["name"])
    with PILImage.open(io.BytesIO(await services.images.read_bytes(stored))) as pic:
        assert pic.size == (200, 150)


async def test_bad_width_is_400(client: TestClient, admin_key: str) -> None:
    response = await client.post(
        UPLOAD, data=multipart(make_image(seed=22), width="wide"), headers={"X-API-Key": admin_key}
    )
    await chevereto_error(response, 400, "Invalid width: a number of pixels", 400)


@pytest.mark.parametrize(
    ("value", "seconds"), [("PT5M", 300), ("P1D", 86400), ("3600", 3600), ("10", 300)]
)
async def test_expiration_sets_the_auto_delete_time(
    client: TestClient, services: Services, admin_key: str, value: str, seconds: int
) -> None:
    response = await client.post(
        UPLOAD,
        data=multipart(make_image(seed=23), expiration=value),
        headers={"X-API-Key": admin_key},
    )
    image = (await response.json())["image"]
    stored = await services.images.get(image["name"])
    assert stored.expires_at is not None
    left = (stored.expires_at - datetime.now(UTC)).total_seconds()
    assert seconds - 5 <= left <= seconds
    assert image["expiration_date_gmt"] == stored.expires_at.strftime("%Y-%m-%d %H:%M:%S")


async def test_bad_expiration_is_400(client: TestClient, admin_key: str) -> None:
    response = await client.post(
        UPLOAD,
        data=multipart(make_image(seed=24), expiration="soon"),
        headers={"X-API-Key": admin_key},
    )
    assert response.status == 400
    assert (await response.json())["error"]["message"].startswith("Invalid expiration")


async def test_nsfw_flag_rates_the_image_nsfw(
    client: TestClient, services: Services, admin_key: str
) -> None:
    response = await client.post(
        UPLOAD, data=multipart(make_image(seed=25), nsfw="1"), headers={"X-API-Key": admin_key}
    )
    image = (await response.json())["image"]
    assert image["nsfw"] == 1
    assert (await services.images.get(image["name"])).rating == "nsfw"


# ---- formats -------------------------------------------------------------------------


async def test_format_txt_answers_the_direct_url(client: TestClient, admin_key: str) -> None:
    response = await client.post(
        f"{UPLOAD}?format=txt",
        data=multipart(make_image(seed=26)),
        headers={"X-API-Key": admin_key},
    )
    text = await response.text()
    assert response.status == 200
    assert response.content_type == "text/plain"
    assert text.startswith("http://gazou.test/image/") and text.endswith(".png")
    assert (await client.get(url_path(text))).status == 200


async def test_format_redirect_sends_to_the_viewer(client: TestClient, admin_key: str) -> None:
    response = await client.post(
        UPLOAD,
        data=multipart(make_image(seed=27), format="redirect"),
        headers={"X-API-Key": admin_key},
        allow_redirects=False,
    )
    assert response.status == 302
    assert response.headers["Location"].startswith("http://gazou.test/i/")
    page = await client.get(url_path(response.headers["Location"]))
    assert page.status == 200 and page.content_type == "text/html"


async def test_errors_with_format_txt_are_the_plain_message(client: TestClient) -> None:
    response = await client.post(f"{UPLOAD}?format=txt", data=multipart(make_image(seed=28)))
    assert response.status == 400
    assert response.content_type == "text/plain"
    assert await response.text() == "Empty API key."


async def test_errors_with_format_redirect_are_the_plain_message(
    client: TestClient, admin_key: str
) -> None:
    response = await client.post(
        UPLOAD,
        data={"key": admin_key, "source": "%%%", "format": "redirect"},
        allow_redirects=False,
    )
    assert response.status == 400
    assert await response.text() == "Invalid base64 string."


# ---- moderation: pending uploads at their own links ------------------------------------


async def test_admin_uploads_are_approved(
    client: TestClient, services: Services, admin_key: str
) -> None:
    response = await client.post(
        UPLOAD, data=multipart(make_image(seed=29)), headers={"X-API-Key": admin_key}
    )
    stored = await services.images.get((await response.json())["image"]["name"])
    assert stored.status is Status.APPROVED


async def test_member_uploads_are_pending_but_their_plain_links_work(
    client: TestClient, services: Services, key: str
) -> None:
    response = await client.post(
        UPLOAD, data=multipart(make_image(seed=30)), headers={"X-API-Key": key}
    )
    image = (await response.json())["image"]
    stored = await services.images.get(image["name"], include_pending=True)
    assert stored.status is Status.PENDING
    assert image["url"] == f"http://gazou.test/image/{image['name']}.png"
    assert image["url_viewer"] == f"http://gazou.test/i/{image['name']}"
    assert (await client.get(url_path(image["url"]))).status == 200
    assert (await client.get(url_path(image["thumb"]["url"]))).status == 200
    page = await client.get(url_path(image["url_viewer"]))
    assert page.status == 200
    # For the link's holders, not for search engines or shared caches.
    assert page.headers["X-Robots-Tag"] == "noindex"
    assert '<meta name="robots" content="noindex">' in await page.text()
    assert page.headers["Cache-Control"] == "private, no-store"
    # Still out of the public reads until approved.
    assert (await client.get(f"/api/image/{image['name']}")).status == 404


async def test_an_approved_images_viewer_page_may_be_indexed(
    client: TestClient, admin_key: str
) -> None:
    response = await client.post(
        UPLOAD, data=multipart(make_image(seed=34)), headers={"X-API-Key": admin_key}
    )
    page = await client.get(url_path((await response.json())["image"]["url_viewer"]))
    assert page.status == 200
    assert "X-Robots-Tag" not in page.headers
    assert "noindex" not in await page.text()


async def test_a_rejected_images_links_stop_working(
    client: TestClient, services: Services, key: str
) -> None:
    response = await client.post(
        UPLOAD, data=multipart(make_image(seed=31)), headers={"X-API-Key": key}
    )
    image = (await response.json())["image"]
    signed = services.signer.sign(f"/image/{image['name']}.png", 600)
    await services.images.reject(image["name"], OWNER)
    assert (await client.get(url_path(image["url"]))).status == 404
    assert (await client.get(url_path(image["thumb"]["url"]))).status == 404
    assert (await client.get(url_path(image["url_viewer"]))).status == 404
    assert (await client.get(signed)).status == 404


async def test_a_signed_viewer_link_from_an_older_answer_still_works(
    client: TestClient, services: Services, key: str
) -> None:
    response = await client.post(
        UPLOAD, data=multipart(make_image(seed=35)), headers={"X-API-Key": key}
    )
    name = (await response.json())["image"]["name"]
    assert (await client.get(services.signer.sign(f"/i/{name}", 600))).status == 200


async def test_a_tampered_viewer_link_is_403(
    client: TestClient, services: Services, key: str
) -> None:
    response = await client.post(
        UPLOAD, data=multipart(make_image(seed=32)), headers={"X-API-Key": key}
    )
    name = (await response.json())["image"]["name"]
    viewer = services.signer.sign(f"/i/{name}", 600)
    tampered = viewer[:-1] + ("0" if viewer[-1] != "0" else "1")
    assert (await client.get(tampered)).status == 403


# ---- the viewer page ------------------------------------------------------------------


async def test_viewer_page_escapes_the_title_and_description(
    client: TestClient, admin_key: str
) -> None:
    response = await client.post(
        UPLOAD,
        data=multipart(make_image(seed=33), title="<script>alert(1)</script>", description='"&<b>'),
        headers={"X-API-Key": admin_key},
    )
    image = (await response.json())["image"]
    page = await (await client.get(url_path(image["url_viewer"]))).text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&#34;&amp;&lt;b&gt;" in page  # Jinja2 (markupsafe) writes " as &#34;
    assert f'src="{image["url"]}"' in page


@pytest.mark.parametrize("path", ["/i/00000000-0000-4000-8000-000000000000", "/i/nope"])
async def test_viewer_of_an_unknown_image_is_a_404_page(client: TestClient, path: str) -> None:
    response = await client.get(path)
    assert response.status == 404
    assert response.content_type == "text/html"


# ---- transport-level errors --------------------------------------------------------------


async def test_wrong_method_is_405_in_chevereto_shape(client: TestClient) -> None:
    response = await client.put(UPLOAD)
    await chevereto_error(response, 405, "Method Not Allowed", 405)


async def test_a_body_over_the_request_cap_is_413(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", RATE_LIMITS="off", MAX_REQUEST_MB="1")
    async with (
        open_services(settings) as services,
        TestClient(TestServer(create_app(services), host="127.0.0.1")) as client,
    ):
        secret = (await services.tokens.issue(OWNER, scopes=("admin",), issued_by="x")).secret
        response = await client.post(
            UPLOAD, data=multipart(b"\0" * (1024 * 1024 + 10)), headers={"X-API-Key": secret}
        )
        assert response.status == 413
        body = await response.json()
        assert body["status_code"] == 413 and body["error"]["code"] == 413


# ---- pure helpers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("PT5M", 300),
        ("PT15M", 900),
        ("PT1H", 3600),
        ("P1D", 86400),
        ("P1W", 604800),
        ("P2W", 1209600),
        ("P1M", 2592000),
        ("P6M", 15552000),
        ("P1Y", 31536000),
        ("pt30m", 1800),
        ("60", 300),
        ("P5Y", 31536000),
        ("999999999999999", 31536000),
        ("", None),
        (None, None),
    ],
)
def test_parse_expiration_reads_the_seed_table_and_clamps(
    value: str | None, seconds: int | None
) -> None:
    assert parse_expiration(value) == seconds


@pytest.mark.parametrize("value", ["P", "PT", "1h", "P1DT", "-5", "P-1D"])
def test_parse_expiration_refuses_other_text(value: str) -> None:
    with pytest.raises(InvalidInput, match="Invalid expiration"):
        parse_expiration(value)


def test_decode_base64_accepts_the_forms_clients_send() -> None:
    data = make_image(seed=34)
    plain = base64.b64encode(data).decode()
    wrapped = "\n".join(plain[i : i + 76] for i in range(0, len(plain), 76))
    assert decode_base64(plain) == data
    assert decode_base64(wrapped) == data
    assert decode_base64(plain.rstrip("=")) == data
    assert decode_base64(base64.urlsafe_b64encode(data).decode()) == data
    assert decode_base64(plain.replace("+", " ")) == data  # a query string's + as space
    assert decode_base64("data:image/png;base64," + plain) == data


@pytest.mark.parametrize(
    ("size", "text"),
    [(512, "512 B"), (2048, "2 KB"), (53350, "52.1 KB"), (3 * 1024 * 1024, "3 MB")],
)
def test_size_formatted_like_chevereto(size: int, text: str) -> None:
    assert size_formatted(size) == text


async def test_a_bad_header_key_is_refused_before_the_body_is_read(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", RATE_LIMITS="off", MAX_REQUEST_MB="1")
    async with (
        open_services(settings) as services,
        TestClient(TestServer(create_app(services), host="127.0.0.1")) as client,
    ):
        response = await client.post(
            UPLOAD, data=multipart(b"\0" * (1024 * 1024 + 10)), headers={"X-API-Key": "wrong"}
        )
        await chevereto_error(response, 400, "Invalid API v1 key.", 100)


async def test_rate_limit_answers_429_in_chevereto_shape(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", RATE_LIMITS="on")
    # Windows are aligned to whole minutes: start well inside one so all 31 land in it.
    into_window = time.time() % 60
    if into_window > 50:
        await asyncio.sleep(60 - into_window + 0.1)
    async with (
        open_services(settings) as services,
        TestClient(TestServer(create_app(services), host="127.0.0.1")) as client,
    ):
        statuses = [(await client.get(UPLOAD)).status for _ in range(30)]
        response = await client.get(UPLOAD)
        assert statuses == [400] * 30  # no key: counted against the address
        assert response.status == 429
        assert int(response.headers["Retry-After"]) >= 1
        assert 0 <= int(response.headers["X-RateLimit-Reset"]) <= 60
        assert await response.json() == {
            "status_code": 429,
            "error": {"message": "Too many requests", "code": 429},
            "status_txt": "Too Many Requests",
        }


@pytest.mark.parametrize(
    ("error", "status", "message", "code"),
    [
        (ImageTooLarge("Image is larger than 50 MB"), 413, "Image is larger than 50 MB", 413),
        (UnsupportedImage("Unsupported image type"), 400, "Unsupported image type", 400),
        (
            CorruptImage("Image data is truncated or corrupt"),
            400,
            "Image data is truncated or corrupt",
            400,
        ),
        (DuplicateImage("abc"), 400, "Duplicated upload", 400),
        (NotFound("Not Found"), 404, "Not Found", 404),
        (Unauthorized("x", reason="missing"), 400, "Empty API key.", 100),
        (Unauthorized("x", reason="invalid"), 400, "Invalid API v1 key.", 100),
        (Forbidden("Missing permission"), 401, "Request denied", 401),
        (RateLimited("Too many requests", retry_after=0.2), 429, "Too many requests", 429),
    ],
)
def test_render_error_keeps_the_shape_for_every_domain_error(
    error: GazouError, status: int, message: str, code: int
) -> None:
    response = render_error(error)
    assert response.status == status
    assert json.loads(response.body) == {
        "status_code": status,
        "error": {"message": message, "code": code},
        "status_txt": HTTPStatus(status).phrase,
    }
    if status == 429:
        assert response.headers["Retry-After"] == "1"
