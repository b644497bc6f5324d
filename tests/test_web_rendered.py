"""The gallery's kept listing HTML (web/rendered.py): a listing rendered once is served
again only while the page cache answers with the same result, so what a change does
shows at once, and nothing per visitor (signed-in member, age cookie, URL, CSRF
cookie) leaks from one visitor's page into another's."""

from __future__ import annotations

import re
from urllib.parse import quote

from aiohttp.test_utils import TestClient

from core.models import Rating, Status
from core.services import Services
from tests.conftest import MEMBER, OWNER
from tests.test_web_gallery import sign_in, store
from web.keys import RENDERED
from web.rendered import RenderedListings

HTMX = {"HX-Request": "true"}


def kept(client: TestClient) -> RenderedListings:
    return client.server.app[RENDERED]


def test_an_entry_is_served_only_for_the_object_it_was_rendered_from() -> None:
    cache = RenderedListings(max_entries=2)
    first, second = ["a"], ["a"]  # equal, not the same object
    cache.put("k", first, b"one")
    assert cache.get("k", first) == b"one"
    assert cache.get("k", second) is None
    assert cache.get("other", first) is None
    cache.put("k2", first, b"two")
    cache.get("k", first)  # used: "k2" is now the oldest
    cache.put("k3", first, b"three")
    assert len(cache) == 2
    assert cache.get("k2", first) is None and cache.get("k", first) == b"one"


async def test_a_change_shows_at_once_in_the_page_and_the_fragment(
    client: TestClient, services: Services
) -> None:
    old = await store(services, 1)
    for _ in range(2):
        assert old.id in await (await client.get("/?q=cat")).text()
        assert old.id in await (await client.get("/?q=cat", headers=HTMX)).text()
    assert len(kept(client)) >= 2  # the grid and the visitor's page
    new = await store(services, 2)
    page = await (await client.get("/?q=cat")).text()
    fragment = await (await client.get("/?q=cat", headers=HTMX)).text()
    assert new.id in page and new.id in fragment
    assert "2 images" in page and "2 images" in fragment
    await services.images.reject(new.id, OWNER)
    page = await (await client.get("/?q=cat")).text()
    assert new.id not in page and old.id in page
    assert new.id not in await (await client.get("/?q=cat", headers=HTMX)).text()


async def test_the_fragment_is_the_pages_grid(client: TestClient, services: Services) -> None:
    await store(services, 3)
    page = await (await client.get("/?q=cat")).text()
    fragment = await (await client.get("/?q=cat", headers=HTMX)).text()
    assert fragment.startswith('<p class="count')
    assert fragment in page
    # And the other way round: a page asked after its fragment has the same grid.
    fragment = await (await client.get("/?q=cat&page=1", headers=HTMX)).text()
    assert fragment in await (await client.get("/?q=cat&page=1")).text()


async def test_the_age_cookie_and_the_url_are_the_visitors_own(
    client: TestClient, services: Services
) -> None:
    sfw = await store(services, 4)
    nsfw = await store(services, 5, rating=Rating.NSFW)
    for _ in range(2):
        page = await (await client.get("/?q=cat")).text()
        assert sfw.id in page and nsfw.id not in page
        assert "Only sfw images are shown" in page
        other = await (await client.get("/?q=cat&from=elsewhere")).text()
        assert f"/age?next={quote('/?q=cat&from=elsewhere', safe='/')}" in other
        assert f"/age?next={quote('/?q=cat', safe='/')}" in page
    client.session.cookie_jar.update_cookies({"gazou_age": "1"})
    adult = await (await client.get("/?q=cat")).text()
    assert sfw.id in adult and nsfw.id in adult
    assert "Only sfw images are shown" not in adult
    client.session.cookie_jar.clear()
    page = await (await client.get("/?q=cat")).text()
    assert nsfw.id not in page and "Only sfw images are shown" in page


async def test_a_members_page_is_not_a_visitors(client: TestClient, services: Services) -> None:
    image = await store(services, 6)
    visitor = await (await client.get("/")).text()
    assert image.id in visitor and "Sign out" not in visitor
    await sign_in(client, services, MEMBER, owner=False)
    for _ in range(2):
        member = await (await client.get("/")).text()
        assert image.id in member and f"Sign out {MEMBER.name}" in member
    client.session.cookie_jar.clear()
    visitor = await (await client.get("/")).text()
    assert "Sign out" not in visitor and 'name="csrf"' not in visitor


async def test_every_visitor_still_gets_their_own_csrf_cookie(
    client: TestClient, services: Services
) -> None:
    await store(services, 7)
    seen = set()
    for _ in range(3):
        for headers in ({}, HTMX):
            client.session.cookie_jar.clear()
            response = await client.get("/?q=cat", headers=headers)
            cookie = response.cookies["gazou_csrf"]
            # Exactly what aiohttp's set_cookie writes for these attributes.
            assert response.headers.getall("Set-Cookie") == [
                f"gazou_csrf={cookie.value}; HttpOnly; Path=/; SameSite=Lax"
            ]
            assert re.fullmatch(r"[\w-]{43}", cookie.value)
            assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
            seen.add(cookie.value)
    assert len(seen) == 6
    # A pending upload is not a listing's: the kept page of a search stays right.
    pending = await store(services, 8, trusted=False, uploader=MEMBER)
    assert pending.status is Status.PENDING
    assert pending.id not in await (await client.get("/?q=cat")).text()
