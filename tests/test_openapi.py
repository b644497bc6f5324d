"""/openapi.json: a valid OpenAPI 3.1 document describing every route the app serves."""

from __future__ import annotations

import re

from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from api.dialect import Dialect
from api.openapi import build_document

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


async def _document(client: TestClient) -> dict:
    response = await client.get("/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    return await response.json()


async def test_document_is_valid_openapi_3_1(client: TestClient) -> None:
    document = await _document(client)
    assert document["openapi"].startswith("3.1")
    validate(document)


async def test_every_served_route_is_documented(client: TestClient) -> None:
    document = await _document(client)
    missing = []
    for route in client.server.app.router.routes():
        if route.method in ("HEAD", "*"):
            continue
        # The web gallery's pages are for browsers, not an API (except /i/{id}, the
        # Chevereto viewer page, which Chevereto documents).
        if (route.name or "").startswith("gallery.") and route.name != "gallery.image":
            continue
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        # aiohttp writes {name:regex}; OpenAPI writes {name}.
        path = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path or "")
        if route.method.lower() not in document["paths"].get(path, {}):
            missing.append(f"{route.method} {path}")
    assert missing == []


async def test_operation_ids_are_unique(client: TestClient) -> None:
    document = await _document(client)
    ids = [
        op["operationId"]
        for item in document["paths"].values()
        for method, op in item.items()
        if method in _METHODS
    ]
    assert len(ids) == len(set(ids))


async def test_every_operation_declares_its_responses(client: TestClient) -> None:
    document = await _document(client)
    for path, item in document["paths"].items():
        for method, op in item.items():
            if method in _METHODS:
                assert op.get("responses"), f"{method} {path}"


async def test_servers_name_the_public_url(client: TestClient) -> None:
    document = await _document(client)
    assert document["servers"] == [{"url": "http://gazou.test"}]


def test_operations_are_tagged_with_their_dialect() -> None:
    dialect = Dialect(
        name="demo",
        routes=[],
        render_error=lambda e: None,  # type: ignore
        openapi_paths={"/demo": {"get": {"responses": {"200": {"description": "ok"}}}}},
    )
    document = build_document([dialect], "http://x")
    assert document["paths"]["/demo"]["get"]["tags"] == ["demo"]
    assert {"name": "demo"} in document["tags"]


def test_dialects_sharing_a_path_are_merged_by_method() -> None:
    def dialect(name: str, method: str) -> Dialect:
        return Dialect(
            name=name,
            routes=[],
            render_error=lambda e: None,  # type: ignore
            openapi_paths={"/x": {method: {"responses": {"200": {"description": "ok"}}}}},
        )

    document = build_document([dialect("a", "get"), dialect("b", "post")], "http://x")
    assert set(document["paths"]["/x"]) == {"get", "post"}
    validate(document)
