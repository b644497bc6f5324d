"""The gallery's token pages (owners: list, issue, revoke, members' requests) and its
stats page (everyone), through aiohttp's test client and the production app: every
role, every refusal, and the secret shown once and never again."""

from __future__ import annotations

import re

import pytest
from aiohttp.test_utils import TestClient

from core.models import Rating, User
from core.services import Services
from core.tokens import SCOPE_ADMIN
from tests.conftest import MEMBER, OWNER
from tests.test_web_gallery import csrf_of, page_csrf, sign_in, store

SECRET = re.compile(r"[0-9A-Za-z]{100}")


# ---- who may see the token pages -------------------------------------------------------


async def test_token_pages_refuse_visitors_and_members(
    client: TestClient, services: Services
) -> None:
    issued = await services.tokens.issue(MEMBER, issued_by="t")
    request = await services.tokens.request(MEMBER, "my bot")
    visitor = await client.get("/tokens", allow_redirects=False)
    assert visitor.status == 303 and visitor.headers["Location"] == "/login?next=/tokens"
    csrf = await page_csrf(client, "/login")
    for path, data in (
        ("/tokens", {"name": "x"}),
        ("/tokens/revoke", {"id": issued.token.id}),
        ("/tokens/requests", {"id": request.id, "action": "approve"}),
    ):
        refused = await client.post(path, data={**data, "csrf": csrf})
        assert refused.status == 403, path

    await sign_in(client, services, MEMBER, owner=False)
    page = await client.get("/tokens")
    assert page.status == 403 and "Only the owners" in await page.text()
    csrf = await page_csrf(client, "/me")
    assert "/tokens" not in await (await client.get("/me")).text()  # no nav link either
    for path, data in (
        ("/tokens", {"name": "x"}),
        ("/tokens/revoke", {"id": issued.token.id}),
        ("/tokens/requests", {"id": request.id, "action": "approve"}),
    ):
        refused = await client.post(path, data={**data, "csrf": csrf})
        assert refused.status == 403, path
    # Nothing changed.
    assert [t.revoked_at for t in await services.tokens.list_tokens()] == [None]
    assert [r.id for r in await services.tokens.pending_requests()] == [request.id]


async def test_token_forms_refuse_a_bad_csrf_token(client: TestClient, services: Services) -> None:
    issued = await services.tokens.issue(MEMBER, issued_by="t")
    request = await services.tokens.request(MEMBER, "my bot")
    await sign_in(client, services, OWNER, owner=True)
    for path, data in (
        ("/tokens", {"name": "x"}),
        ("/tokens/revoke", {"id": issued.token.id}),
        ("/tokens/requests", {"id": request.id, "action": "deny"}),
    ):
        for csrf in ("forged", None):
            form = {**data, "csrf": csrf} if csrf else data
            response = await client.post(path, data=form)
            assert response.status == 403, (path, csrf)
            assert "This form has expired" in await response.text()
    assert len(await services.tokens.list_tokens()) == 1
    assert (await services.tokens.list_tokens())[0].revoked_at is None
    assert [r.id for r in await services.tokens.pending_requests()] == [request.id]


# ---- what owners do --------------------------------------------------------------------


async def test_the_list_shows_every_token_but_never_a_secret(
    client: TestClient, services: Services
) -> None:
    first = await services.tokens.issue(MEMBER, purpose="<b>my bot</b>", issued_by="t")
    second = await services.tokens.issue(User("300", "carol"), issued_by="t")
    await services.tokens.revoke(second.token.id)
    await sign_in(client, services, OWNER, owner=True)
    response = await client.get("/tokens")
    page = await response.text()
    assert response.status == 200
    assert first.token.id in page and second.token.id in page
    assert first.secret not in page and second.secret not in page
    assert not SECRET.search(page)
    assert "&lt;b&gt;my bot&lt;/b&gt;" in page and "<b>my bot" not in page
    assert 'class="pill active">active' in page and 'class="pill revoked">revoked' in page
    # Only the active one has a Revoke button.
    assert page.count('action="/tokens/revoke"') == 1


async def test_an_owner_issues_a_token_and_sees_its_secret_once(
    client: TestClient, services: Services
) -> None:
    await sign_in(client, services, OWNER, owner=True)
    csrf = await page_csrf(client, "/tokens")
    response = await client.post(
        "/tokens",
        data=[
            ("csrf", csrf),
            ("name", "dana"),
            ("discord_id", "400"),
            ("scopes", "image:upload"),
            ("more_scopes", "image:custom-expiry:3600"),
            ("days", "30"),
            ("purpose", "a gallery bot"),
        ],
    )
    page = await response.text()
    assert response.status == 200 and response.headers["Cache-Control"] == "no-store"
    shown = SECRET.findall(page)
    assert len(shown) == 1
    token = await services.tokens.verify(shown[0])  # the secret shown is the real one
    assert (token.owner_id, token.owner_name, token.purpose) == ("400", "dana", "a gallery bot")
    assert token.scopes == ("image:upload", "image:custom-expiry:3600")
    assert token.expires_at is not None and token.issued_by == f"{OWNER.name} ({OWNER.id})"
    # ...and never again.
    listing = await (await client.get("/tokens")).text()
    assert token.id in listing and shown[0] not in listing


async def test_a_token_without_a_discord_id_is_named_for_the_web(
    client: TestClient, services: Services
) -> None:
    await sign_in(client, services, OWNER, owner=True)
    csrf = await page_csrf(client, "/tokens")
    response = await client.post("/tokens", data={"csrf": csrf, "name": "eve"})
    assert response.status == 200
    (token,) = await services.tokens.list_tokens()
    assert token.owner_id == "web:eve" and token.scopes == ()


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"name": ""}, "Say who the token is for"),
        ({"name": "x" * 101}, "Say who the token is for"),
        ({"name": "x", "discord_id": "abc"}, "digits only"),
        ({"name": "x", "days": "0"}, "Days must be from 1"),
        ({"name": "x", "days": "soon"}, "whole number"),
        ({"name": "x", "scopes": "root"}, "Unknown scope"),
        ({"name": "x", "more_scopes": "image:custom-expiry:5"}, "bound must be"),
        ({"name": "x", "purpose": "p" * 501}, "500 characters"),
    ],
)
async def test_issuing_refuses_bad_input_with_a_400_page(
    client: TestClient, services: Services, form: dict[str, str], message: str
) -> None:
    await sign_in(client, services, OWNER, owner=True)
    csrf = await page_csrf(client, "/tokens")
    response = await client.post("/tokens", data={**form, "csrf": csrf})
    assert response.status == 400 and response.content_type == "text/html"
    assert message in await response.text()
    assert await services.tokens.list_tokens() == []


async def test_an_owner_revokes_a_token_and_it_stops_working(
    client: TestClient, services: Services
) -> None:
    issued = await services.tokens.issue(MEMBER, issued_by="t")
    await sign_in(client, services, OWNER, owner=True)
    csrf = await page_csrf(client, "/tokens")
    response = await client.post(
        "/tokens/revoke", data={"csrf": csrf, "id": issued.token.id}, allow_redirects=False
    )
    assert response.status == 303 and response.headers["Location"] == "/tokens?done=revoked"
    assert "Token revoked" in await (await client.get("/tokens?done=revoked")).text()
    assert (await services.tokens.find(issued.token.id)).revoked_at is not None
    again = await client.post("/tokens/revoke", data={"csrf": csrf, "id": issued.token.id})
    assert again.status == 409 and "already revoked" in await again.text()
    unknown = await client.post("/tokens/revoke", data={"csrf": csrf, "id": "nope"})
    assert unknown.status == 404


async def test_an_admin_token_session_ends_when_its_token_is_revoked_here(
    client: TestClient, services: Services
) -> None:
    admin = await services.tokens.issue(OWNER, scopes=(SCOPE_ADMIN,), issued_by="t")
    csrf = await page_csrf(client, "/login")
    signed_in = await client.post(
        "/login", data={"token": admin.secret, "csrf": csrf}, allow_redirects=False
    )
    assert signed_in.status == 303
    csrf = await page_csrf(client, "/tokens")
    await client.post("/tokens/revoke", data={"csrf": csrf, "id": admin.token.id})
    assert (await client.get("/tokens", allow_redirects=False)).status == 303


async def test_pending_requests_are_approved_with_the_secret_shown_once(
    client: TestClient, services: Services
) -> None:
    request = await services.tokens.request(MEMBER, "my <i>bot</i>")
    await sign_in(client, services, OWNER, owner=True)
    listing = await (await client.get("/tokens")).text()
    assert request.id in listing and "my &lt;i&gt;bot&lt;/i&gt;" in listing
    response = await client.post(
        "/tokens/requests", data={"csrf": csrf_of(listing), "id": request.id, "action": "approve"}
    )
    page = await response.text()
    assert response.status == 200 and response.headers["Cache-Control"] == "no-store"
    (secret,) = SECRET.findall(page)
    token = await services.tokens.verify(secret)
    assert token.owner_id == MEMBER.id and token.scopes == services.settings.default_token_scopes
    decided = await services.storage.repo.get_token_request(request.id)
    assert decided is not None and decided.status == "approved" and decided.token_id == token.id
    assert await services.tokens.pending_requests() == []
    # Deciding it again (another owner's stale page) is a conflict, not a second token.
    again = await client.post(
        "/tokens/requests", data={"csrf": csrf_of(listing), "id": request.id, "action": "deny"}
    )
    assert again.status == 409 and "already approved" in await again.text()
    assert len(await services.tokens.list_tokens()) == 1


async def test_pending_requests_are_denied(client: TestClient, services: Services) -> None:
    request = await services.tokens.request(MEMBER, "my bot")
    await sign_in(client, services, OWNER, owner=True)
    csrf = await page_csrf(client, "/tokens")
    response = await client.post(
        "/tokens/requests",
        data={"csrf": csrf, "id": request.id, "action": "deny"},
        allow_redirects=False,
    )
    assert response.status == 303 and response.headers["Location"] == "/tokens?done=denied"
    assert await services.tokens.list_tokens() == []
    assert "No member is waiting" in await (await client.get("/tokens")).text()
    bad = await client.post(
        "/tokens/requests", data={"csrf": csrf, "id": request.id, "action": "maybe"}
    )
    assert bad.status == 400
    unknown = await client.post(
        "/tokens/requests", data={"csrf": csrf, "id": "nope", "action": "approve"}
    )
    assert unknown.status == 404


# ---- stats -----------------------------------------------------------------------------


async def test_stats_show_the_bots_figures_to_everyone(
    client: TestClient, services: Services
) -> None:
    await store(services, 1, tags=("cat", "dog"), artist="Ann")
    await store(services, 2, rating=Rating.NSFW, artist="Bob")
    await store(services, 3, trusted=False, uploader=MEMBER, artist=None)
    stats = await services.images.stats()
    assert (stats.images, stats.pending, stats.artists) == (2, 1, 2)
    for who in ("visitor", "member", "owner"):
        if who != "visitor":
            await sign_in(
                client, services, MEMBER if who == "member" else OWNER, owner=who == "owner"
            )
        response = await client.get("/stats")
        page = await response.text()
        assert response.status == 200, who
        assert "<dt>Images</dt><dd>2</dd>" in page
        assert "<dt>Pending review</dt><dd>1</dd>" in page
        assert "<dt>Artists</dt><dd>2</dd>" in page
        assert f"<dt>Tags</dt><dd>{stats.categories}</dd>" in page
        for name, n in {**stats.by_rating, **stats.by_orientation}.items():
            assert f"<dt>{name}</dt><dd>{n}</dd>" in page, name
        assert 'href="/stats"' in page
        assert ('href="/tokens"' in page) is (who == "owner")


async def test_stats_show_the_leaderboard_most_liked_above_sfw_only_after_the_age_gate(
    client: TestClient, services: Services
) -> None:
    sfw = await store(services, 1, title="Sunny cat", uploader=MEMBER)
    nsfw = await store(services, 2, rating=Rating.NSFW, title="Night owl", uploader=MEMBER)
    await store(services, 3, uploader=OWNER)
    for image in (sfw, nsfw):
        await services.storage.repo.set_like(image.id, OWNER.id, "like", True)
    page = await (await client.get("/stats")).text()
    assert "Leaderboard" in page and "This week" in page and "All time" in page
    # MEMBER uploaded two approved images, OWNER one: MEMBER ranks first.
    assert page.index(f"{MEMBER.name}: 2 images") < page.index(f"{OWNER.name}: 1 image")
    assert f'href="/i/{sfw.id}">Sunny cat</a>: 1 like' in page
    assert "Night owl" not in page
    client.session.cookie_jar.update_cookies({"gazou_age": "1"})
    adult = await (await client.get("/stats")).text()
    assert f'href="/i/{nsfw.id}">Night owl</a>: 1 like' in adult


async def test_owner_pages_carry_the_csp_and_no_inline_script(
    client: TestClient, services: Services
) -> None:
    await services.tokens.request(MEMBER, "my bot")
    await sign_in(client, services, OWNER, owner=True)
    csrf = await page_csrf(client, "/tokens")
    secret_page = await client.post("/tokens", data={"csrf": csrf, "name": "x"})
    for response in (await client.get("/tokens"), await client.get("/stats"), secret_page):
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        assert re.findall(r"<script(?![^>]*\ssrc=)", await response.text()) == []
