"""Typed application keys: the one place the web layer keeps shared state."""

from __future__ import annotations

from aiohttp import web

from core.services import Services

SERVICES = web.AppKey("services", Services)
