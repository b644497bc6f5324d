"""'Log in with Discord' against the Discord stand-in's OAuth2 endpoints (never the real
Discord): the button only when configured, the state bound to the browser, the code
used once, the owner decided as the bot's /gallery link decides it, Discord's errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from core.owners import application_owner_ids, is_owner
from core.services import open_services
from tests.conftest import make_settings
from tests.discord_standin import DiscordStandIn
from tests.test_web_gallery import page_csrf
from web.discord_oauth import OAUTH, DiscordOAuth, _basic, owner_ids_of

CALLBACK = "http://gazou.test/login/discord/callback"


@pytest.fixture
async def standin() -> AsyncIterator[DiscordStandIn]:
    async with DiscordStandIn() as server:
        server.oauth_redirect_uris = [CALLBACK]
        yield server


@asynccontextmanager
async def gallery(tmp_path: Path, standin: DiscordStandIn, **env: str) -> AsyncIterator[TestClient]:
    """The production app with Discord sign-in pointed at the stand-in."""
    base = {
        "RATE_LIMITS": "off",
        "DISCORD_CLIENT_SECRET": standin.client_secret,
        "DISCORD_TOKEN": standin.token,
    }
    settings = make_settings(tmp_path / "data", **{**base, **env})
    async with open_services(settings) as services:
        app = create_app(services)
        if settings.discord_client_secret:
            app[OAUTH] = DiscordOAuth(
                settings,
                api_base=standin.api_base,
                authorize_url=str(standin.base_url.with_path("/oauth2/authorize")),
            )
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            yield client


async def consent(client: TestClient, next_path: str = "") -> str:
    """Click the button and answer Discord's consent screen: the callback's path and
    query, where Discord sends the browser back."""
    login = await (await client.get("/login" + (f"?next={next_path}" if next_path else ""))).text()
    assert "Log in with Discord" in login
    start = await client.get(
        "/login/discord" + (f"?next={next_path}" if next_path else ""), allow_redirects=False
    )
    assert start.status == 303, await start.text()
    async with (
        aiohttp.ClientSession() as browser,
        browser.get(start.headers["Location"], allow_redirects=False) as answer,
    ):
        assert answer.status == 302, await answer.text()
        back = urlsplit(answer.headers["Location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == CALLBACK
    return f"{back.path}?{back.query}"


async def test_a_member_logs_in_with_discord(tmp_path: Path, standin: DiscordStandIn) -> None:
    async with gallery(tmp_path, standin) as client:
        callback = await consent(client, "/upload")
        asked = standin.authorizations[-1]
        assert asked["scope"] == "identify" and asked["response_type"] == "code"
        assert asked["client_id"] == str(standin.application_id)
        assert asked["redirect_uri"] == CALLBACK
        response = await client.get(callback, allow_redirects=False)
        assert response.status == 303 and response.headers["Location"] == "/upload"
        cookie = response.cookies["gazou_session"]
        assert cookie["httponly"] and cookie["samesite"] == "Lax"
        me = await (await client.get("/me")).text()
        assert f"Sign out {standin.user.global_name}" in me
        assert 'href="/mod"' not in me  # alice is a member
        # The code went to Discord with the client's credentials, and was used once.
        (exchange,) = standin.requests_to("POST", r"/oauth2/token")
        assert exchange.status == 200 and exchange.authorization.startswith("Basic ")


async def test_the_applications_owner_signs_in_as_an_owner(
    tmp_path: Path, standin: DiscordStandIn
) -> None:
    standin.oauth_user = standin.owner
    async with gallery(tmp_path, standin) as client:
        response = await client.get(await consent(client), allow_redirects=False)
        assert response.status == 303 and response.headers["Location"] == "/me"
        assert (await client.get("/mod")).status == 200


async def test_owner_ids_make_an_owner_without_a_bot_token(
    tmp_path: Path, standin: DiscordStandIn
) -> None:
    env = {
        "DISCORD_TOKEN": "",
        "DISCORD_CLIENT_ID": str(standin.application_id),
        "OWNER_IDS": str(standin.user.id),
    }
    async with gallery(tmp_path, standin, **env) as client:
        await client.get(await consent(client))
        assert (await client.get("/mod")).status == 200
        # Without the bot's token nobody asked Discord who owns the application.
        assert standin.requests_to("GET", r"/oauth2/applications/@me") == []


async def test_a_member_of_the_owning_team_is_an_owner_only_as_admin_or_developer(
    tmp_path: Path,
) -> None:
    async with DiscordStandIn() as server:
        dev = server.add_user("dev")
        viewer = server.add_user("viewer")
        server.team_members = [(server.owner, "admin"), (dev, "developer"), (viewer, "read_only")]
        for user, owner in ((dev, True), (viewer, False)):
            server.oauth_user = user
            async with gallery(tmp_path / user.name, server) as client:
                await client.get(await consent(client))
                assert ((await client.get("/mod")).status == 200) is owner, user.name


def test_one_core_rule_names_the_owners_for_the_bot_and_the_web() -> None:
    team = [(1, "admin"), (2, "developer"), (3, "read_only")]
    assert application_owner_ids(9, team) == {1, 2}  # a team's owner is not its member
    assert application_owner_ids(9, None) == {9}
    assert application_owner_ids(None, None) == set()
    body = {"owner": {"id": "9"}, "team": {"members": [{"user": {"id": "3"}, "role": "admin"}]}}
    assert owner_ids_of(body) == {3}  # Discord's JSON read into the same rule


async def test_owner_ids_decide_without_asking_for_the_application() -> None:
    asked: list[int] = []

    async def application() -> set[int]:
        asked.append(1)
        return {3}

    assert await is_owner(5, {5}, application) and asked == []
    assert await is_owner(3, {5}, application) and not await is_owner(4, {5}, application)
    assert len(asked) == 2


async def test_a_callback_from_another_browser_is_refused(
    tmp_path: Path, standin: DiscordStandIn
) -> None:
    async with gallery(tmp_path, standin) as client:
        callback = await consent(client)
        # Another browser (no cookies: not the one that started) presents the callback.
        async with aiohttp.ClientSession() as other:
            url = client.make_url(callback)
            async with other.get(url, allow_redirects=False) as response:
                assert response.status == 403
                assert "was not started here" in await response.text()
                assert "gazou_session" not in response.cookies
        # The code was never exchanged: nothing reached Discord's token endpoint.
        assert standin.requests_to("POST", r"/oauth2/token") == []


async def test_a_wrong_or_missing_state_is_refused(tmp_path: Path, standin: DiscordStandIn) -> None:
    async with gallery(tmp_path, standin) as client:
        callback = await consent(client)
        query = parse_qs(urlsplit(callback).query)
        for forged in ("x" * 43, "", "short"):
            response = await client.get(
                f"/login/discord/callback?code={query['code'][0]}&state={forged}"
            )
            assert response.status == 403 and "gazou_session" not in response.cookies
        no_state = await client.get(f"/login/discord/callback?code={query['code'][0]}")
        assert no_state.status == 403
        # The real state still works once.
        assert (await client.get(callback, allow_redirects=False)).status == 303


async def test_a_reused_callback_is_refused(tmp_path: Path, standin: DiscordStandIn) -> None:
    async with gallery(tmp_path, standin) as client:
        callback = await consent(client)
        assert (await client.get(callback, allow_redirects=False)).status == 303
        csrf = await page_csrf(client, "/me")
        await client.post("/logout", data={"csrf": csrf})
        again = await client.get(callback, allow_redirects=False)
        assert again.status == 403 and "already used" in await again.text()
        assert (await client.get("/me", allow_redirects=False)).status == 303


async def test_a_code_discord_refuses_is_a_clear_401(
    tmp_path: Path, standin: DiscordStandIn
) -> None:
    async with gallery(tmp_path, standin) as client:
        callback = await consent(client)
        code = parse_qs(urlsplit(callback).query)["code"][0]
        # Someone else exchanged the code first: Discord answers invalid_grant.
        async with (
            aiohttp.ClientSession() as thief,
            thief.post(
                standin.api_base + "/oauth2/token",
                data={"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK},
                headers={
                    "Authorization": _basic(str(standin.application_id), standin.client_secret)
                },
            ) as stolen,
        ):
            assert stolen.status == 200
        response = await client.get(callback)
        assert response.status == 401
        assert "was already used" in await response.text()
        refused = standin.requests_to("POST", r"/oauth2/token")[-1]
        assert refused.status == 400 and refused.response["error"] == "invalid_grant"
        assert "gazou_session" not in response.cookies


async def test_cancelling_on_discord_is_a_clear_401(
    tmp_path: Path, standin: DiscordStandIn
) -> None:
    standin.oauth_deny = True
    async with gallery(tmp_path, standin) as client:
        callback = await consent(client)
        assert "error=access_denied" in callback
        response = await client.get(callback)
        assert response.status == 401 and "cancelled" in await response.text()
        assert standin.requests_to("POST", r"/oauth2/token") == []


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, {"message": "500: Internal Server Error", "code": 0}),
        (401, {"error": "invalid_client"}),
    ],
)
async def test_discord_failing_is_a_502_page(
    tmp_path: Path, standin: DiscordStandIn, status: int, body: dict[str, object]
) -> None:
    async with gallery(tmp_path, standin) as client:
        callback = await consent(client)
        standin.override("POST", r"/oauth2/token", status, body)
        response = await client.get(callback)
        assert response.status == 502 and response.content_type == "text/html"
        assert "Discord refused the sign-in" in await response.text()
        assert "gazou_session" not in response.cookies


async def test_discord_unreachable_is_a_502_page(tmp_path: Path, standin: DiscordStandIn) -> None:
    async with gallery(tmp_path, standin) as client:
        callback = await consent(client)
        await standin.close()  # Discord is gone
        response = await client.get(callback)
        assert response.status == 502 and "could not be reached" in await response.text()


async def test_without_a_client_secret_there_is_no_button(
    tmp_path: Path, standin: DiscordStandIn
) -> None:
    async with gallery(tmp_path, standin, DISCORD_CLIENT_SECRET="") as client:
        page = await (await client.get("/login")).text()
        assert "Log in with Discord" not in page and "/gallery" in page
        assert (await client.get("/login/discord", allow_redirects=False)).status == 404
        assert (await client.get("/login/discord/callback?code=x&state=y")).status == 404
    assert standin.requests == [] and standin.authorizations == []
