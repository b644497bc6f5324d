""" "Log in with Discord": OAuth2's authorization-code grant with the `identify` scope.

`GET /login/discord` stores a random `state` bound to the browser's pre-login CSRF token
(core/sessions.py) and sends the browser to Discord's consent screen; Discord sends it
back to `PUBLIC_URL/login/discord/callback` with a code, which is exchanged for an access
token that reads who signed in (`/users/@me`). The member is an owner on the same terms
as the bot's `/gallery` link: in OWNER_IDS, or the application's owner (or an admin or
developer of its team). A link, not a form: a form's redirect to another origin would be
blocked by the page's `form-action 'self'`."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any
from urllib.parse import quote_plus, urlencode

import aiohttp
from aiohttp import web

from core.errors import GazouError, NotFound, Unauthorized
from core.models import User
from core.owners import application_owner_ids, is_owner
from core.settings import Settings
from web.auth import csrf_token, current_session, remember_csrf, start_session
from web.keys import SESSIONS
from web.pages import render, safe_next

DISCORD_API = "https://discord.com/api/v10"
DISCORD_AUTHORIZE = "https://discord.com/oauth2/authorize"
CALLBACK_PATH = "/login/discord/callback"
SCOPE = "identify"
# The application's owners change rarely; asking Discord once per 10 minutes is plenty.
APP_INFO_TTL = 600.0
TIMEOUT = aiohttp.ClientTimeout(total=10.0)


class DiscordUnavailable(GazouError):
    """Discord did not answer as documented (down, or gazou's client is misconfigured)."""

    status = 502
    code = "discord_unavailable"


def owner_ids_of(app: dict[str, Any]) -> set[int]:
    """The owners an application object (Discord's JSON) names (core/owners.py)."""
    team = app.get("team")
    members = None
    if isinstance(team, dict):
        members = [
            (int(m["user"]["id"]), str(m.get("role")))
            for m in team.get("members", [])
            if isinstance(m, dict) and str(m.get("user", {}).get("id", "")).isdigit()
        ]
    owner = app.get("owner")
    owner_id = None
    if isinstance(owner, dict) and str(owner.get("id", "")).isdigit():
        owner_id = int(owner["id"])
    return application_owner_ids(owner_id, members)


def _basic(client_id: str, secret: str) -> str:
    """HTTP Basic client authentication (RFC 6749 2.3.1: each part form-encoded first)."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


class DiscordOAuth:
    """Discord's OAuth2 endpoints for one application. `api_base` and `authorize_url`
    are Discord's; tests point them at the stand-in."""

    def __init__(
        self,
        settings: Settings,
        *,
        api_base: str = DISCORD_API,
        authorize_url: str = DISCORD_AUTHORIZE,
    ) -> None:
        if not settings.discord_client_secret:
            raise ValueError("DISCORD_CLIENT_SECRET is not set")
        self.settings = settings
        self.api_base = api_base.rstrip("/")
        self.authorize_base = authorize_url
        self.redirect_uri = settings.public_url + CALLBACK_PATH
        self._http: aiohttp.ClientSession | None = None
        self._app: tuple[float, int | None, set[int]] | None = None
        self._app_lock = asyncio.Lock()

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=TIMEOUT)
        return self._http

    async def close(self) -> None:
        """Close the HTTP client (the app's cleanup)."""
        if self._http is not None:
            await self._http.close()

    async def _call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        try:
            async with self._client().request(method, self.api_base + path, **kwargs) as resp:
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    body = None
                return resp.status, body
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DiscordUnavailable(
                "Discord could not be reached to sign you in; try again later."
            ) from exc

    async def _application(self) -> tuple[int | None, set[int]]:
        """(application id, owner ids) from Discord with the bot's token, cached; without
        a bot token, DISCORD_CLIENT_ID and no owners beyond OWNER_IDS."""
        token = self.settings.discord_token
        if not token:
            return self.settings.discord_client_id, set()
        async with self._app_lock:
            if self._app is not None and time.monotonic() - self._app[0] < APP_INFO_TTL:
                return self._app[1], self._app[2]
            status, body = await self._call(
                "GET", "/oauth2/applications/@me", headers={"Authorization": f"Bot {token}"}
            )
            if status != 200 or not isinstance(body, dict) or not str(body.get("id")).isdigit():
                raise DiscordUnavailable("Discord did not tell gazou who owns it; try again later.")
            app_id = self.settings.discord_client_id or int(body["id"])
            self._app = (time.monotonic(), app_id, owner_ids_of(body))
            return app_id, self._app[2]

    async def _client_id(self) -> int:
        app_id = self.settings.discord_client_id or (await self._application())[0]
        if app_id is None:  # the settings refuse a secret without either
            raise DiscordUnavailable("gazou does not know its Discord application ID.")
        return app_id

    async def authorize_url(self, state: str) -> str:
        """Where to send the browser: Discord's consent screen for `identify`."""
        query = {
            "response_type": "code",
            "client_id": str(await self._client_id()),
            "scope": SCOPE,
            "state": state,
            "redirect_uri": self.redirect_uri,
            "prompt": "none",  # no second consent screen for someone who agreed before
        }
        return f"{self.authorize_base}?{urlencode(query)}"

    async def identify(self, code: str) -> User:
        """Exchange `code` for an access token and read who it belongs to.
        Unauthorized when Discord refuses the code (unknown, used, expired)."""
        client_id = await self._client_id()
        secret = self.settings.discord_client_secret or ""
        status, body = await self._call(
            "POST",
            "/oauth2/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.redirect_uri,
            },
            headers={"Authorization": _basic(str(client_id), secret)},
        )
        error = body.get("error") if isinstance(body, dict) else None
        if status == 400 and error == "invalid_grant":
            raise Unauthorized(
                "Discord did not accept this sign-in (it expired or was already used); "
                "start again from the sign-in page.",
                reason="invalid_grant",
            )
        if status != 200 or not isinstance(body, dict) or not body.get("access_token"):
            raise DiscordUnavailable(
                f"Discord refused the sign-in ({error or status}); try again later.",
                discord_status=status,
            )
        status, me = await self._call(
            "GET", "/users/@me", headers={"Authorization": f"Bearer {body['access_token']}"}
        )
        if status != 200 or not isinstance(me, dict) or not str(me.get("id", "")).isdigit():
            raise DiscordUnavailable(f"Discord did not say who you are ({status}); try again.")
        name = me.get("global_name") or me.get("username") or str(me["id"])
        return User(str(me["id"]), str(name)[:100])

    async def is_owner(self, user_id: str) -> bool:
        """Whether this Discord user is one of gazou's owners (as the bot decides it)."""

        async def application_owners() -> set[int]:
            return (await self._application())[1]

        return await is_owner(int(user_id), self.settings.owner_ids, application_owners)


OAUTH = web.AppKey("gallery_discord_oauth", DiscordOAuth)


def _oauth(request: web.Request) -> DiscordOAuth:
    oauth = request.app.get(OAUTH)
    if oauth is None:
        raise NotFound("Signing in with Discord is not set up here.")
    return oauth


async def start(request: web.Request) -> web.Response:
    """Send the browser to Discord, with a `state` bound to this browser."""
    oauth = _oauth(request)
    session = await current_session(request)
    target = safe_next(request.rel_url.query.get("next"), "/me")
    state = await request.app[SESSIONS].begin_oauth(csrf_token(request, session), target)
    response = web.HTTPSeeOther(await oauth.authorize_url(state))
    remember_csrf(request, response)  # the binding, for a browser that had no cookie yet
    raise response


async def callback(request: web.Request) -> web.Response:
    """Discord sent the browser back: check `state`, learn who it is, open a session."""
    oauth = _oauth(request)
    session = await current_session(request)
    query = request.rel_url.query
    sessions = request.app[SESSIONS]
    try:
        target = await sessions.finish_oauth(query.get("state"), csrf_token(request, session))
        if "error" in query:
            # Cancelled on the consent screen (access_denied), or refused by Discord.
            raise Unauthorized(
                "Discord sign-in was cancelled"
                + ("." if query["error"] == "access_denied" else f" ({query['error'][:60]}).")
            )
        code = query.get("code", "")
        if not code or len(code) > 200:
            raise Unauthorized("Discord sent no sign-in code; start again.")
        user = await oauth.identify(code)
        owner = await oauth.is_owner(user.id)
    except GazouError as error:
        return await render(
            request, "login.html", {"next": "/me", "error": error.message}, status=error.status
        )
    if session is not None:
        await sessions.end(request.cookies.get("gazou_session"))  # a fresh id on sign-in
    session_id, _ = await sessions.open(user, owner=owner)
    response = web.HTTPSeeOther(target)
    start_session(request, response, session_id)
    raise response


def routes() -> list[web.RouteDef]:
    """The two routes of the Discord sign-in (404 when it is not configured)."""
    return [
        web.get("/login/discord", start, name="gallery.discord"),
        web.get(CALLBACK_PATH, callback, name="gallery.discord_callback"),
    ]
