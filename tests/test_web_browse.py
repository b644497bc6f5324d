"""The gallery's browse filters (orientation), similar images on the image page, the
upload's one-file answer for the progress script, and the page weight, through
aiohttp's test client and the production app."""

from __future__ import annotations

import re

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient

from core.models import Image, IngestMetadata, Rating, User
from core.services import Services
from tests.conftest import MEMBER, OWNER, make_image
from tests.test_web_gallery import csrf_of, page_csrf, sign_in, store

SIZES = {"landscape": (80, 50), "portrait": (50, 80), "square": (60, 60)}


async def shaped(services: Services, seed: int, orientation: str, **meta: object) -> Image:
    data = make_image(seed=seed, size=SIZES[orientation])
    return await services.images.ingest(
        data, IngestMetadata(tags=("cat",), **meta), OWNER, trusted=True
    )


async def weigh(client: TestClient, path: str) -> int:
    """Bytes of a page's HTML and of every stylesheet and script it names, uncompressed."""
    page = await (await client.get(path)).read()
    total = len(page)
    for url in re.findall(r'(?:src|href)="(/static/[^"]+)"', page.decode()):
        total += len(await (await client.get(url, headers={"Accept-Encoding": "identity"})).read())
    return total


# ---- orientation ----------------------------------------------------------------------


async def test_the_orientation_filter_shows_only_that_shape(
    client: TestClient, services: Services
) -> None:
    wide = await shaped(services, 1, "landscape")
    tall = await shaped(services, 2, "portrait")
    square = await shaped(services, 3, "square")
    page = await (await client.get("/?orientation=portrait")).text()
    assert tall.id in page and wide.id not in page and square.id not in page
    assert '<option value="portrait" selected>' in page
    page = await (await client.get("/?orientation=square&q=cat")).text()
    assert square.id in page and tall.id not in page and wide.id not in page


async def test_the_orientation_stays_in_the_url_of_every_page(
    client: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("web.pages.PAGE_SIZE", 1)
    for n in range(2):
        await shaped(services, 10 + n, "landscape")
    first = await (await client.get("/?orientation=landscape")).text()
    assert 'href="/?orientation=landscape&amp;page=2"' in first
    response = await client.get(
        "/?q=&artist=&orientation=landscape&sort=newest", headers={"HX-Request": "true"}
    )
    assert response.headers["HX-Push-Url"] == "/?orientation=landscape"


async def test_random_order_with_an_orientation_draws_only_that_shape(
    client: TestClient, services: Services
) -> None:
    tall = [await shaped(services, 20 + n, "portrait") for n in range(3)]
    wide = await shaped(services, 30, "landscape")
    page = await (await client.get("/?sort=random&orientation=portrait")).text()
    assert all(t.id in page for t in tall) and wide.id not in page


async def test_an_unknown_orientation_is_a_400_page(client: TestClient) -> None:
    response = await client.get("/?orientation=diagonal")
    assert response.status == 400 and response.content_type == "text/html"
    assert "orientation must be one of" in await response.text()


# ---- similar images -----------------------------------------------------------------------


async def look_alikes(services: Services, rating: Rating = Rating.SFW) -> tuple[Image, ...]:
    """A picture, the same picture larger as JPEG (another file, a near hash) and an
    unrelated one."""
    meta = IngestMetadata(tags=("cat",))
    original = await services.images.ingest(
        make_image(seed=50, size=(96, 96)), meta, OWNER, trusted=True
    )
    copy = await services.images.ingest(
        make_image("JPEG", seed=50, size=(160, 160), quality=90),
        IngestMetadata(tags=("cat",), rating=rating),
        OWNER,
        trusted=True,
    )
    other = await store(services, 51)
    return original, copy, other


async def test_the_image_page_shows_similar_images(client: TestClient, services: Services) -> None:
    original, copy, other = await look_alikes(services)
    page = await (await client.get(f"/i/{original.id}")).text()
    similar = page[page.index("Similar images") :]
    assert f'href="/i/{copy.id}"' in similar
    assert f"/i/{other.id}" not in similar and f'href="/i/{original.id}"' not in similar
    alone = await (await client.get(f"/i/{other.id}")).text()
    assert "Similar images" not in alone


async def test_similar_images_above_sfw_wait_for_the_age_confirmation(
    client: TestClient, services: Services
) -> None:
    original, copy, _ = await look_alikes(services, rating=Rating.NSFW)
    page = await (await client.get(f"/i/{original.id}")).text()
    assert "Similar images" not in page and copy.id not in page
    csrf = await page_csrf(client, "/age")
    await client.post("/age", data={"csrf": csrf, "next": "/"}, allow_redirects=False)
    page = await (await client.get(f"/i/{original.id}")).text()
    assert f'href="/i/{copy.id}"' in page[page.index("Similar images") :]


async def test_a_pending_image_is_never_shown_as_similar(
    client: TestClient, services: Services
) -> None:
    original = await services.images.ingest(
        make_image(seed=60, size=(96, 96)), IngestMetadata(tags=("cat",)), OWNER, trusted=True
    )
    pending = await services.images.ingest(
        make_image("JPEG", seed=60, size=(160, 160), quality=90),
        IngestMetadata(tags=("cat",)),
        MEMBER,
    )
    page = await (await client.get(f"/i/{original.id}")).text()
    assert pending.id not in page
    # The pending image's own page (for its link's holders) shows its approved twin.
    page = await (await client.get(f"/i/{pending.id}")).text()
    assert f'href="/i/{original.id}"' in page[page.index("Similar images") :]


# ---- upload, one file per request -------------------------------------------------------


async def send_one(
    client: TestClient, csrf: str, seed: int, *, fragment: bool = True
) -> tuple[int, str]:
    form = FormData()
    for name, value in (("csrf", csrf), ("tags", "cat"), ("rating", "sfw")):
        form.add_field(name, value)
    form.add_field("files", make_image(seed=seed), filename=f"{seed}.png")
    headers = {"HX-Request": "true"} if fragment else {}
    response = await client.post("/upload", data=form, headers=headers)
    return response.status, await response.text()


async def test_the_progress_script_gets_one_result_row_per_file(
    client: TestClient, services: Services
) -> None:
    await sign_in(client, services, MEMBER, owner=False)
    csrf = await page_csrf(client, "/upload")
    status, fragment = await send_one(client, csrf, 70)
    assert status == 200
    assert "<html" not in fragment and fragment.count('<li class="upload-result">') == 1
    assert re.search(r'<span class="outcome"><a href="/i/[0-9a-f-]{36}">pending</a>', fragment)
    status, fragment = await send_one(client, csrf, 70)
    assert status == 400 and '<span class="error">' in fragment and "the stored one" in fragment


async def test_a_failed_check_answers_the_script_with_the_error_page(
    client: TestClient, services: Services
) -> None:
    await sign_in(client, services, MEMBER, owner=False)
    status, page = await send_one(client, "forged", 71)
    # The script shows the page's heading beside the file's bar.
    assert status == 403 and re.search(r"<h1>This form has expired", page)


async def test_the_upload_page_works_without_the_script(
    client: TestClient, services: Services
) -> None:
    await sign_in(client, services, User("400", "nojs"), owner=False)
    page = await (await client.get("/upload")).text()
    assert 'enctype="multipart/form-data"' in page and "multiple" in page
    assert 'id="upload-progress"' in page and "hidden" in page
    status, whole = await send_one(client, csrf_of(page), 72, fragment=False)
    assert status == 200 and whole.startswith("<!doctype html>") and "Upload results" in whole


# ---- weight ----------------------------------------------------------------------------


async def test_a_full_home_page_and_an_image_page_weigh_under_100_kb(
    client: TestClient, services: Services
) -> None:
    from web.pages import PAGE_SIZE

    long_title = "a title as long as allowed " * 7
    stored = [
        await store(services, 100 + n, tags=("cat", "a-longer-tag-name"), title=long_title)
        for n in range(PAGE_SIZE + 1)
    ]
    home = await weigh(client, "/")
    image = await weigh(client, f"/i/{stored[0].id}")
    assert home < 100 * 1024 and image < 100 * 1024, (home, image)
