"""The web gallery through aiohttp's test client and the production app: every page,
every role (visitor, member, owner), every refusal, the age gate, pending visibility,
the headers every page carries, and escaping."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from core.models import Image, IngestMetadata, Rating, SearchQuery, Status, User
from core.services import Services, open_services
from core.sessions import SessionService
from tests.conftest import MEMBER, OWNER, make_image, make_settings

OTHER = User(id="300", name="other")


async def store(
    services: Services,
    seed: int,
    *,
    tags: tuple[str, ...] = ("cat",),
    rating: Rating = Rating.SFW,
    trusted: bool = True,
    uploader: User = OWNER,
    title: str = "",
    artist: str | None = "someone",
) -> Image:
    meta = IngestMetadata(tags=tags, rating=rating, artist=artist, title=title)
    return await services.images.ingest(
        make_image(seed=seed, size=(80, 60)), meta, uploader, trusted=trusted
    )


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page[:500]
    return found.group(1)


async def sign_in(client: TestClient, services: Services, user: User, *, owner: bool) -> None:
    """Sign in the way a member does: the link /gallery sends, then its button."""
    secret = await SessionService(services.kv, services.tokens).issue_link(user, owner=owner)
    page = await client.get(f"/login/link?t={secret}")
    assert page.status == 200
    response = await client.post(
        "/login/link",
        data={"t": secret, "csrf": csrf_of(await page.text())},
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()


async def page_csrf(client: TestClient, path: str = "/") -> str:
    return csrf_of(await (await client.get(path)).text())


# ---- browsing --------------------------------------------------------------------------


async def test_home_lists_approved_images_only(client: TestClient, services: Services) -> None:
    approved = await store(services, 1)
    pending = await store(services, 2, trusted=False, uploader=MEMBER)
    response = await client.get("/")
    assert response.status == 200 and response.content_type == "text/html"
    page = await response.text()
    assert f"/i/{approved.id}" in page
    assert pending.id not in page
    # Lazy thumbnails over their dominant colour.
    assert f'src="/thumbnail/{approved.id}.jpg" loading="lazy"' in page
    assert f"background-color: {approved.dominant_color}" in page


async def test_every_gallery_page_carries_a_csp_without_inline_scripts(
    client: TestClient, services: Services
) -> None:
    image = await store(services, 3)
    for path in ("/", "/tags", f"/i/{image.id}", "/login", "/age", "/tags/nope", "/mod/nope"):
        response = await client.get(path)
        csp = response.headers["Content-Security-Policy"]
        script_src = re.search(r"script-src ([^;]*)", csp)
        assert script_src and script_src.group(1) == "'self'", path
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        page = await response.text()
        # Every script is a file of ours: none is written into the page.
        assert re.findall(r"<script(?![^>]*\ssrc=)", page) == [], path
        assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_htmx_requests_get_only_the_grid(client: TestClient, services: Services) -> None:
    image = await store(services, 4)
    response = await client.get("/?q=cat&artist=&sort=newest", headers={"HX-Request": "true"})
    fragment = await response.text()
    assert f"/i/{image.id}" in fragment
    assert response.headers["HX-Push-Url"] == "/?q=cat"  # the shareable link, no empty fields
    assert "<html" not in fragment and "<form" not in fragment
    page = await (await client.get("/?q=cat")).text()
    assert page.startswith("<!doctype html>")


async def test_tag_search_includes_and_excludes(client: TestClient, services: Services) -> None:
    cat = await store(services, 5, tags=("cat",))
    dog = await store(services, 6, tags=("dog",))
    both = await store(services, 7, tags=("cat", "dog"))
    page = await (await client.get("/?q=cat")).text()
    assert cat.id in page and both.id in page and dog.id not in page
    page = await (await client.get("/?q=cat,+-dog")).text()
    assert cat.id in page and both.id not in page and dog.id not in page
    page = await (await client.get("/?artist=nobody")).text()
    assert "Nothing matches." in page


async def test_paging_keeps_the_search_in_the_url(
    client: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("web.pages.PAGE_SIZE", 2)
    stored = [await store(services, 10 + n, tags=("cat",)) for n in range(3)]
    first = await (await client.get("/?q=cat")).text()
    assert 'href="/?q=cat&amp;page=2"' in first
    assert stored[2].id in first and stored[0].id not in first
    second = await (await client.get("/?q=cat&page=2")).text()
    assert stored[0].id in second and stored[2].id not in second
    assert 'href="/?q=cat"' in second  # back to page 1


@pytest.mark.parametrize("query", ["page=0", "page=x", "sort=best", "rating=spicy"])
async def test_bad_listing_parameters_are_a_400_page(client: TestClient, query: str) -> None:
    response = await client.get(f"/?{query}")
    assert response.status == 400 and response.content_type == "text/html"
    assert "Content-Security-Policy" in response.headers


async def test_tag_artist_and_character_pages_filter(
    client: TestClient, services: Services
) -> None:
    cat = await store(services, 20, tags=("cat",), artist="Ann")
    dog = await store(services, 21, tags=("dog",), artist="Bob")
    for path in ("/tags/cat", "/artists/Ann"):
        page = await (await client.get(path)).text()
        assert cat.id in page and dog.id not in page, path
    assert (await client.get("/tags/unknown")).status == 404
    assert (await client.get("/characters/nobody")).status == 404


async def test_random_order_draws_from_the_matches(client: TestClient, services: Services) -> None:
    cat = await store(services, 22, tags=("cat",))
    page = await (await client.get("/?sort=random&q=cat")).text()
    assert cat.id in page and "More at random" in page


async def test_tag_suggestions_for_the_search_box(client: TestClient, services: Services) -> None:
    await store(services, 23, tags=("catgirl", "cat", "dog"))
    fragment = await (await client.get("/tags?q=dog,+ca", headers={"HX-Request": "true"})).text()
    assert '<option value="dog, cat">' in fragment
    assert '<option value="dog, catgirl">' in fragment
    assert "dog (" not in fragment
    page = await (await client.get("/tags?q=ca")).text()
    assert 'href="/tags/catgirl"' in page and "/tags/dog" not in page


# ---- the image page -------------------------------------------------------------------


async def test_image_page_shows_everything_and_unfurls(
    client: TestClient, services: Services
) -> None:
    image = await store(services, 30, tags=("cat", "sleeping"), title="Nap")
    response = await client.get(f"/i/{image.id}")
    page = await response.text()
    direct = f"http://gazou.test/image/{image.id}.png"
    assert f'<meta property="og:image" content="{direct}">' in page
    assert '<meta name="twitter:card" content="summary_large_image">' in page
    assert f'value="{direct}"' in page
    assert f'value="http://gazou.test/thumbnail/{image.id}.jpg"' in page
    assert 'data-copy="direct-link"' in page and 'data-copy="thumb-link"' in page
    assert 'href="/tags/sleeping"' in page and 'href="/artists/someone"' in page
    assert f"{image.width} × {image.height}" in page
    assert "<h1>Nap</h1>" in page


async def test_user_text_is_escaped(client: TestClient, services: Services) -> None:
    image = await store(services, 31, tags=("<script>",), title="<b>bold</b>", artist='"x"&')
    for path in (f"/i/{image.id}", "/"):
        page = await (await client.get(path)).text()
        assert "<script>" not in page and "<b>bold" not in page, path
    page = await (await client.get(f"/i/{image.id}")).text()
    assert "&lt;script&gt;" in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    fragment = await (await client.get("/tags?q=%3C", headers={"HX-Request": "true"})).text()
    assert "&lt;script&gt;" in fragment and "<script>" not in fragment


async def test_a_source_link_is_never_javascript(client: TestClient, services: Services) -> None:
    meta = IngestMetadata(source_url="javascript:alert(1)", source_name="evil")
    image = await services.images.ingest(make_image(seed=32), meta, OWNER, trusted=True)
    page = await (await client.get(f"/i/{image.id}")).text()
    assert 'href="javascript:' not in page and "evil" in page


async def test_a_pending_image_page_is_for_its_link_only(
    client: TestClient, services: Services
) -> None:
    image = await store(services, 33, trusted=False, uploader=MEMBER)
    response = await client.get(f"/i/{image.id}")
    assert response.status == 200
    assert response.headers["Cache-Control"] == "private, no-store"
    assert "waiting for review" in await response.text()
    await services.images.reject(image.id, OWNER)
    assert (await client.get(f"/i/{image.id}")).status == 404


# ---- the age gate ---------------------------------------------------------------------


async def test_images_above_sfw_wait_for_the_age_confirmation(
    client: TestClient, services: Services
) -> None:
    safe = await store(services, 40, rating=Rating.SFW)
    spicy = await store(services, 41, rating=Rating.NSFW)
    page = await (await client.get("/?rating=nsfw")).text()
    assert safe.id in page and spicy.id not in page
    image_page = await (await client.get(f"/i/{spicy.id}")).text()
    assert f'<img src="http://gazou.test/image/{spicy.id}.png"' not in image_page
    assert "og:image" not in image_page  # a link pasted in Discord does not show it
    assert "I am an adult" in image_page

    csrf = await page_csrf(client, "/age")
    response = await client.post(
        "/age", data={"csrf": csrf, "next": "/?rating=nsfw"}, allow_redirects=False
    )
    assert response.status == 303 and response.headers["Location"] == "/?rating=nsfw"
    page = await (await client.get("/?rating=nsfw")).text()
    assert spicy.id in page and safe.id not in page
    image_page = await (await client.get(f"/i/{spicy.id}")).text()
    assert f'<img src="http://gazou.test/image/{spicy.id}.png"' in image_page


async def test_the_age_form_refuses_a_missing_csrf_token_and_foreign_next(
    client: TestClient,
) -> None:
    refused = await client.post("/age", data={"next": "/"}, allow_redirects=False)
    assert refused.status == 403 and "set-cookie" not in refused.headers
    csrf = await page_csrf(client, "/age")
    response = await client.post(
        "/age", data={"csrf": csrf, "next": "//evil.test/"}, allow_redirects=False
    )
    assert response.headers["Location"] == "/"


# ---- signing in -----------------------------------------------------------------------


async def test_a_sign_in_link_works_once(client: TestClient, services: Services) -> None:
    secret = await SessionService(services.kv, services.tokens).issue_link(MEMBER, owner=False)
    page = await (await client.get(f"/login/link?t={secret}")).text()
    csrf = csrf_of(page)
    first = await client.post(
        "/login/link", data={"t": secret, "csrf": csrf}, allow_redirects=False
    )
    assert first.status == 303 and first.headers["Location"] == "/me"
    cookie = first.cookies["gazou_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and not cookie["secure"]
    me = await (await client.get("/me")).text()
    assert "My uploads" in me and "Sign out member" in me
    again = await client.post("/login/link", data={"t": secret, "csrf": csrf_of(me)})
    assert again.status == 401 and "already used" in await again.text()


async def test_an_expired_sign_in_link_is_refused(client: TestClient, services: Services) -> None:
    sessions = SessionService(services.kv, services.tokens)
    secret = await sessions.issue_link(MEMBER, owner=False, now=0.0)  # long expired
    csrf = await page_csrf(client, f"/login/link?t={secret}")
    response = await client.post("/login/link", data={"t": secret, "csrf": csrf})
    assert response.status == 401
    assert "gazou_session" not in response.cookies


@pytest.mark.parametrize("secret", ["", "short", "x" * 43, "é" * 43])
async def test_a_wrong_sign_in_link_is_refused(client: TestClient, secret: str) -> None:
    csrf = await page_csrf(client, "/login")
    response = await client.post("/login/link", data={"t": secret, "csrf": csrf})
    assert response.status == 401


async def test_a_sign_in_link_needs_the_forms_csrf_token(
    client: TestClient, services: Services
) -> None:
    secret = await SessionService(services.kv, services.tokens).issue_link(MEMBER, owner=False)
    response = await client.post("/login/link", data={"t": secret, "csrf": "forged"})
    assert response.status == 403
    # The refused attempt did not use the link up.
    csrf = await page_csrf(client, f"/login/link?t={secret}")
    ok = await client.post("/login/link", data={"t": secret, "csrf": csrf}, allow_redirects=False)
    assert ok.status == 303


async def test_an_admin_token_signs_an_owner_in_until_it_is_revoked(
    client: TestClient, services: Services
) -> None:
    issued = await services.tokens.issue(OWNER, scopes=("admin",), issued_by="test")
    csrf = await page_csrf(client, "/login")
    response = await client.post(
        "/login",
        data={"token": issued.secret, "csrf": csrf, "next": "/mod"},
        allow_redirects=False,
    )
    assert response.status == 303 and response.headers["Location"] == "/mod"
    assert (await client.get("/mod")).status == 200
    await services.tokens.revoke(issued.token.id)
    after = await client.get("/mod", allow_redirects=False)
    assert after.status == 303 and after.headers["Location"].startswith("/login")


async def test_login_refuses_wrong_and_non_admin_tokens(
    client: TestClient, services: Services
) -> None:
    member_token = await services.tokens.issue(MEMBER, scopes=("image:upload",), issued_by="t")
    csrf = await page_csrf(client, "/login")
    wrong = await client.post("/login", data={"token": "x" * 100, "csrf": csrf})
    assert wrong.status == 401 and "Invalid token" in await wrong.text()
    member = await client.post("/login", data={"token": member_token.secret, "csrf": csrf})
    assert member.status == 403 and "Only an admin token" in await member.text()
    no_csrf = await client.post("/login", data={"token": member_token.secret})
    assert no_csrf.status == 403
    assert "gazou_session" not in wrong.cookies and "gazou_session" not in member.cookies


async def test_signing_out_ends_the_session_for_good(
    client: TestClient, services: Services
) -> None:
    await sign_in(client, services, MEMBER, owner=False)
    session_id = client.session.cookie_jar.filter_cookies(client.make_url("/"))[
        "gazou_session"
    ].value
    csrf = await page_csrf(client, "/me")
    response = await client.post("/logout", data={"csrf": csrf}, allow_redirects=False)
    assert response.status == 303
    assert (await client.get("/me", allow_redirects=False)).status == 303
    # The old cookie, replayed, opens nothing.
    replayed = await client.get(
        "/me", headers={"Cookie": f"gazou_session={session_id}"}, allow_redirects=False
    )
    assert replayed.status == 303


async def test_session_cookies_are_secure_behind_https(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", RATE_LIMITS="off", PUBLIC_URL="https://g.test")
    async with (
        open_services(settings) as services,
        TestClient(TestServer(create_app(services), host="127.0.0.1")) as client,
    ):
        secret = await SessionService(services.kv, services.tokens).issue_link(MEMBER, owner=False)
        page = await client.get(f"/login/link?t={secret}")
        assert page.cookies["gazou_csrf"]["secure"]


# ---- members --------------------------------------------------------------------------


async def test_me_needs_a_session(client: TestClient) -> None:
    response = await client.get("/me", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/login?next=/me"


async def test_me_lists_only_the_members_own_uploads_with_status(
    client: TestClient, services: Services
) -> None:
    mine = await store(services, 50, trusted=False, uploader=MEMBER)
    theirs = await store(services, 51, trusted=False, uploader=OTHER)
    await sign_in(client, services, MEMBER, owner=False)
    page = await (await client.get("/me")).text()
    assert mine.id in page and theirs.id not in page
    assert 'class="pill pending">pending' in page
    # Still nowhere public.
    assert mine.id not in await (await client.get("/")).text()


async def _upload(
    client: TestClient, csrf: str, *seeds: int, rating: str = "sfw", tags: str = "cat"
) -> tuple[int, str]:
    form = FormData()
    form.add_field("csrf", csrf)
    form.add_field("tags", tags)
    form.add_field("artist", "Ann")
    form.add_field("rating", rating)
    for seed in seeds:
        form.add_field(
            "files", make_image(seed=seed), filename=f"{seed}.png", content_type="image/png"
        )
    response = await client.post("/upload", data=form)
    return response.status, await response.text()


async def test_a_members_uploads_wait_for_review(client: TestClient, services: Services) -> None:
    await sign_in(client, services, MEMBER, owner=False)
    csrf = await page_csrf(client, "/upload")
    status, page = await _upload(client, csrf, 60, 61)
    assert status == 200 and page.count(">pending</a>") == 2
    mine = await services.images.search(SearchQuery(uploader=MEMBER.id, statuses=frozenset(Status)))
    assert {i.status for i in mine.images} == {Status.PENDING} and mine.total == 2
    assert {i.artist.name for i in mine.images if i.artist} == {"Ann"}


async def test_an_owners_uploads_are_approved_and_duplicates_reported(
    client: TestClient, services: Services
) -> None:
    await sign_in(client, services, OWNER, owner=True)
    csrf = await page_csrf(client, "/upload")
    status, page = await _upload(client, csrf, 62)
    assert status == 200 and ">approved</a>" in page
    status, page = await _upload(client, csrf, 62)
    assert status == 400 and "the stored one" in page


async def test_upload_refusals(client: TestClient, services: Services) -> None:
    visitor_csrf = await page_csrf(client, "/login")
    status, _ = await _upload(client, visitor_csrf, 63)
    assert status == 403
    assert (await client.get("/upload", allow_redirects=False)).status == 303
    await sign_in(client, services, MEMBER, owner=False)
    status, _ = await _upload(client, "forged", 64)
    assert status == 403
    csrf = await page_csrf(client, "/upload")
    status, page = await _upload(client, csrf, 65, rating="spicy")
    assert status == 400 and "rating must be" in page
    nothing = await services.images.search(
        SearchQuery(uploader=MEMBER.id, statuses=frozenset(Status))
    )
    assert nothing.total == 0


# ---- owners ---------------------------------------------------------------------------


async def test_moderation_is_for_owners_only(client: TestClient, services: Services) -> None:
    response = await client.get("/mod", allow_redirects=False)
    assert response.status == 303
    await sign_in(client, services, MEMBER, owner=False)
    assert (await client.get("/mod")).status == 403
    csrf = await page_csrf(client, "/me")
    pending = await store(services, 70, trusted=False, uploader=OTHER)
    refused = await client.post("/mod", data={"csrf": csrf, "one": f"approve:{pending.id}"})
    assert refused.status == 403
    assert (await services.images.get(pending.id, include_pending=True)).status is Status.PENDING


async def test_owners_approve_one_with_htmx_and_reject_several(
    client: TestClient, services: Services
) -> None:
    first = await store(services, 71, trusted=False, uploader=MEMBER)
    second = await store(services, 72, trusted=False, uploader=MEMBER)
    third = await store(services, 73, trusted=False, uploader=MEMBER)
    await sign_in(client, services, OWNER, owner=True)
    queue = await (await client.get("/mod")).text()
    assert all(i.id in queue for i in (first, second, third))
    csrf = csrf_of(queue)

    row = await client.post(
        "/mod", data={"csrf": csrf, "one": f"approve:{first.id}"}, headers={"HX-Request": "true"}
    )
    text = await row.text()
    assert row.status == 200 and "<html" not in text and ": approved" in text
    assert (await services.images.get(first.id)).status is Status.APPROVED
    assert first.id in await (await client.get("/")).text()

    bulk = await client.post(
        "/mod",
        data=[("csrf", csrf), ("action", "reject"), ("ids", second.id), ("ids", third.id)],
        allow_redirects=False,
    )
    assert bulk.status == 303 and bulk.headers["Location"] == "/mod?decided=2"
    assert "Nothing waits for review" in await (await client.get("/mod")).text()


async def test_moderation_refuses_a_bad_csrf_token(client: TestClient, services: Services) -> None:
    pending = await store(services, 74, trusted=False, uploader=MEMBER)
    await sign_in(client, services, OWNER, owner=True)
    response = await client.post("/mod", data={"csrf": "forged", "one": f"approve:{pending.id}"})
    assert response.status == 403
    assert (await services.images.get(pending.id, include_pending=True)).status is Status.PENDING


async def test_the_queue_shows_a_near_duplicate_beside_its_twin(
    client: TestClient, services: Services
) -> None:
    original = await services.images.ingest(
        make_image(seed=75, size=(200, 150)), IngestMetadata(), OWNER, trusted=True
    )
    twin = await services.images.ingest(
        make_image("JPEG", seed=75, size=(200, 150), quality=80), IngestMetadata(), MEMBER
    )
    assert twin.near_duplicate_of == original.id
    await sign_in(client, services, OWNER, owner=True)
    queue = await (await client.get("/mod")).text()
    assert f'class="thumb lookalike" href="/i/{original.id}"' in queue


# ---- static files ---------------------------------------------------------------------


async def test_static_files_are_versioned_and_cached_for_good(client: TestClient) -> None:
    page = await (await client.get("/")).text()
    url = re.search(r'src="(/static/htmx\.min\.js\?v=[0-9a-f]+)"', page)
    assert url
    response = await client.get(url.group(1))
    assert response.status == 200 and response.content_type == "text/javascript"
    assert "immutable" in response.headers["Cache-Control"]
    again = await client.get(url.group(1), headers={"If-None-Match": response.headers["ETag"]})
    assert again.status == 304
    assert (await client.get("/static/nope.js")).status == 404
    assert (await client.get("/static/VENDORED.md")).status == 404


async def test_the_home_page_weighs_under_100_kb(client: TestClient, services: Services) -> None:
    for n in range(3):
        await store(services, 80 + n)
    page = await (await client.get("/")).read()
    total = len(page)
    for url in re.findall(r'(?:src|href)="(/static/[^"]+)"', page.decode()):
        total += len(await (await client.get(url, headers={"Accept-Encoding": "identity"})).read())
    assert total < 100 * 1024
