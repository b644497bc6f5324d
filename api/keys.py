"""Typed application keys: the one place the web layer keeps shared state."""

from __future__ import annotations

from aiohttp import web

from core.models import Token
from core.services import Services

SERVICES = web.AppKey("services", Services)
# The caller's verified token, cached on the request by api.auth.authenticate.
TOKEN = web.RequestKey("token", Token)
