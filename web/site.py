"""The gallery as one piece the app factory mounts: its routes, its HTML error pages,
its limits, and the headers every gallery response carries."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp_jinja2
import jinja2
from aiohttp import web

from core.errors import GazouError
from core.services import Services
from core.sessions import SessionService
from web import community, discord_oauth, owner
from web.assets import Assets
from web.discord_oauth import OAUTH, DiscordOAuth
from web.keys import ASSETS, RENDERED, SERVICES, SESSIONS
from web.pages import human_size, routes
from web.rendered import RenderedListings

NAME = "gallery"
TEMPLATES = Path(__file__).parent / "templates"
# Unmatched paths under these get the gallery's HTML error page.
PREFIXES = (
    "/tags",
    "/artists",
    "/characters",
    "/static",
    "/login",
    "/logout",
    "/upload",
    "/me",
    "/mod",
    "/age",
    "/tokens",
    "/stats",
)
# Route name -> (requests, per seconds): guessing sign-in secrets is slow anyway
# (256 random bits, 100-character tokens); this keeps a guesser from costing much.
RATE_LIMITS = {
    "gallery.login": (10, 60.0),
    "gallery.link": (10, 60.0),
    "gallery.upload": (30, 60.0),
    # Each start of a Discord sign-in stores a state; each callback asks Discord.
    "gallery.discord": (10, 60.0),
    "gallery.discord_callback": (10, 60.0),
    # Each report reaches every owner's DM; one per image and member anyway.
    "gallery.report": (20, 60.0),
}


def content_security_policy(public_url: str) -> str:
    """No inline script anywhere; images from here (and PUBLIC_URL's origin, where the
    image links point); style attributes only for the dominant-colour placeholders."""
    parts = urlsplit(public_url)
    origin = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        "style-src-attr 'unsafe-inline'; "
        f"img-src 'self' data: {origin}".rstrip()
        + "; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )


def environment() -> jinja2.Environment:
    """The gallery's templates: HTML-escaped by default, missing variables an error."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        # Templates are code: read once, not stat'ed on every render (3 stats a page).
        auto_reload=False,
    )
    env.filters["human_size"] = human_size
    return env


@dataclass(slots=True)
class Site:
    """What the app factory needs to mount the gallery (shaped like a dialect, so the
    error middleware and the rate limiter treat it like one by its route names)."""

    name: str
    routes: Sequence[web.RouteDef]
    render_error: Callable[[GazouError], web.Response]
    prefixes: tuple[str, ...]
    rate_limits: dict[str, tuple[int, float]]
    install: Callable[[web.Application], None]
    headers: dict[str, str] = field(default_factory=dict)


def build_site(services: Services) -> Site:
    """The gallery over `services`; `install(app)` before the app starts."""
    env = environment()
    assets = Assets()
    headers = {
        "Content-Security-Policy": content_security_policy(services.settings.public_url),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "X-Frame-Options": "DENY",
    }
    error_template = env.get_template("error.html")

    def render_error(error: GazouError) -> web.Response:
        text = error_template.render(
            error=error,
            session=None,
            csrf="",
            assets=assets,
            public_url=services.settings.public_url,
            age_ok=False,
            path_qs="/",
        )
        response = web.Response(
            text=text, status=error.status, content_type="text/html", headers=headers
        )
        if error.status == 429 and "retry_after" in error.details:
            response.headers["Retry-After"] = str(int(float(str(error.details["retry_after"]))))
        return response

    def is_gallery(request: web.Request) -> bool:
        name = request.match_info.route.name or ""
        if name:
            return name.startswith(NAME + ".")
        return request.path == "/" or request.path.startswith(PREFIXES)

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        if is_gallery(request):
            for key, value in headers.items():
                response.headers.setdefault(key, value)

    def install(app: web.Application) -> None:
        app[aiohttp_jinja2.APP_KEY] = env
        app[SERVICES] = services
        app[SESSIONS] = SessionService(services.kv, services.tokens)
        app[ASSETS] = assets
        app[RENDERED] = RenderedListings()
        app.on_response_prepare.append(add_headers)
        # "Log in with Discord" only when its secret is set (the login page's button).
        env.globals["discord_login"] = bool(services.settings.discord_client_secret)
        if services.settings.discord_client_secret:
            app[OAUTH] = DiscordOAuth(services.settings)

        async def close_oauth(app: web.Application) -> None:
            oauth = app.get(OAUTH)
            if oauth is not None:
                await oauth.close()

        app.on_cleanup.append(close_oauth)

    return Site(
        name=NAME,
        routes=[
            *routes(assets.handler),
            *discord_oauth.routes(),
            *owner.routes(),
            *community.routes(),
        ],
        render_error=render_error,
        prefixes=PREFIXES,
        rate_limits=RATE_LIMITS,
        install=install,
        headers=headers,
    )
