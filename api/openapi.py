"""`GET /openapi.json`: one OpenAPI 3.1 document for every dialect's routes, built
from each Dialect's `openapi_paths`, plus /healthz and the document itself."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from api.dialect import Dialect, json_response
from api.keys import SERVICES

OPENAPI_VERSION = "3.1.0"

_HEALTH = {
    "get": {
        "summary": "Liveness and a cheap store check",
        "operationId": "healthz",
        "tags": ["gazou"],
        "responses": {
            "200": {
                "description": "The process is up and the store answers.",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["status"],
                            "properties": {"status": {"const": "ok"}},
                            "additionalProperties": False,
                        }
                    }
                },
            },
        },
    },
}

_SELF = {
    "get": {
        "summary": "This document",
        "operationId": "openapi",
        "tags": ["gazou"],
        "responses": {
            "200": {
                "description": "The OpenAPI 3.1 description of every route.",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["openapi", "info", "paths"],
                        }
                    }
                },
            },
        },
    },
}


def build_document(
    dialects: Iterable[Dialect], public_url: str, version: str = "0.1.0"
) -> dict[str, Any]:
    """The OpenAPI document. Each dialect's operations are tagged with its name; two
    dialects describing the same path (e.g. both under /api) are merged by method."""
    paths: dict[str, Any] = {"/healthz": _HEALTH, "/openapi.json": _SELF}
    tags = [{"name": "gazou", "description": "The server itself."}]
    for dialect in dialects:
        if not dialect.openapi_paths:
            continue
        tags.append({"name": dialect.name})
        for path, item in dialect.openapi_paths.items():
            merged = paths.setdefault(path, {})
            for method, operation in item.items():
                if isinstance(operation, dict) and method in _METHODS:
                    operation = {**operation, "tags": operation.get("tags", [dialect.name])}
                merged[method] = operation
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "gazou",
            "version": version,
            "description": (
                "A self-hosted image collection speaking the dialects of MikuAPI v2, "
                "nekos.moe v1, Discord Images, NekosAPI v1 and Chevereto v1.1, each at "
                "its original paths."
            ),
        },
        "servers": [{"url": public_url}],
        "tags": tags,
        "paths": dict(sorted(paths.items())),
    }


_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def openapi_handler(dialects: list[Dialect]) -> Handler:
    """A handler serving the document (built once, on first use)."""
    cache: dict[str, bytes] = {}

    async def openapi_json(request: web.Request) -> web.Response:
        if "doc" not in cache:
            settings = request.app[SERVICES].settings
            response = json_response(build_document(dialects, settings.public_url))
            assert isinstance(response.body, bytes)
            cache["doc"] = response.body
        return web.Response(
            body=cache["doc"],
            content_type="application/json",
            headers={"Access-Control-Allow-Origin": "*"},
        )

    return openapi_json
