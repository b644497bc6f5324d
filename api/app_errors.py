"""The error shape for paths that belong to no dialect."""

from __future__ import annotations

from aiohttp import web

from api.dialect import json_response
from core.errors import GazouError


def plain_error(error: GazouError) -> web.Response:
    """`{"error": code, "message": text}` with the error's status."""
    return json_response({"error": error.code, "message": error.message}, status=error.status)
