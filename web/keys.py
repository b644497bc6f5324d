"""Typed application and request keys of the gallery (web/ keeps its own, as api/ does)."""

from __future__ import annotations

from aiohttp import web

from core.services import Services
from core.sessions import SessionService
from web.assets import Assets
from web.rendered import RenderedListings

SERVICES = web.AppKey("gallery_services", Services)
SESSIONS = web.AppKey("gallery_sessions", SessionService)
ASSETS = web.AppKey("gallery_assets", Assets)
# Listings' HTML, kept while their search result is (web/rendered.py).
RENDERED = web.AppKey("gallery_rendered", RenderedListings)
# The request's session, looked up once (None: a visitor).
SESSION = web.RequestKey("gallery_session", object)
# A visitor's fresh CSRF token, made while rendering, set as a cookie on the response.
NEW_CSRF = web.RequestKey("gallery_new_csrf", str)
# The blacklist of who is asking (web/blacklist.py), resolved once per request.
BLACKLIST = web.RequestKey("gallery_blacklist", object)
