"""NekosAPI v1 dialect: the same routes under `/api` and `/v1` (the documented base
moves), envelope `{"success": true, "data": ...}`, errors `{"code", "message",
"success": false}` with the documented wording (docs/dialects.md).

Ratings: the original returned every rating and left filtering to clients, and v1 has
no rating parameter. gazou only ever hands out NSFW images where a request asks for
them, so random draws and every list here are `sfw` only; an image fetched by its id
(`/image/{id}`) is returned whatever its rating, since the client named that very
image, and its `nsfw` field says what it is."""

from __future__ import annotations

import functools
import re
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from api.auth import HeaderForm, authenticate
from api.dialect import (
    Dialect,
    RateLimit,
    Rendered,
    Rendering,
    iso_ms,
    json_body_response,
    json_response,
)
from api.keys import SERVICES
from api.links import DEFAULT_LINK_TTL, image_file_path, signed_image_url
from core.errors import Forbidden, GazouError, InvalidInput, NotFound, Unauthorized
from core.models import (
    Artist,
    Character,
    Filters,
    Image,
    Rating,
    Rendition,
    SearchQuery,
    Tag,
    Token,
)
from core.services import Services
from core.tokens import SCOPE_LIST, custom_expiry_limit, has_scope

BASES = ("/api", "/v1")
VERSION = "v1.4.2"  # the version docs/dialects.md describes
MAX_LIMIT = 25
MAX_SEARCH = 50
DEFAULT_LIST_LIMIT = 10
# Longest custom link life even for unbounded tokens: keeps expiry times representable.
MAX_EXPIRY = 10 * 365 * 24 * 3600
SFW_ONLY = frozenset({Rating.SFW})
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DIGITS = re.compile(r"[0-9]{1,12}")
# The route list `GET /` reports, relative to the base.
ROUTES = (
    "/",
    "/stats",
    "/token",
    "/image",
    "/image/random",
    "/image/{id}",
    "/artist",
    "/artist/{id}",
    "/artist/{id}/images",
    "/character",
    "/character/{id}",
    "/category",
    "/category/{id}",
)
# The documented wording (docs/dialects.md) for each status with a fixed message.
_MESSAGES = {
    403: "Missing permission",
    404: "Not found",
    405: "Method not allowed",
    413: "Payload too large",
    429: "Too many requests",
    500: "Internal server error",
}


# ---- errors ---------------------------------------------------------------------


def render_error(error: GazouError) -> web.Response:
    """`{"code": status, "message": ..., "success": false}`, worded as docs/dialects.md."""
    status = error.status
    if isinstance(error, Unauthorized) or status == 401:
        missing = error.details.get("reason") == "missing"
        message = "Unauthorized" if missing else "Invalid token"
    elif status in _MESSAGES:
        message = _MESSAGES[status]
    else:
        message = error.message
    headers = None
    if status == 429 and "retry_after" in error.details:
        retry = float(str(error.details["retry_after"]))
        headers = {"Retry-After": str(max(1, int(retry + 0.999)))}
    return json_response(
        {"code": status, "message": message, "success": False}, status=status, headers=headers
    )


# ---- parameters -----------------------------------------------------------------


def _number(
    request: web.Request, name: str, default: int, low: int, high: int, message: str
) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    raw = raw.strip()
    if not _DIGITS.fullmatch(raw) or not low <= int(raw) <= high:
        raise InvalidInput(message, field=name)
    return int(raw)


def _limit(request: web.Request, default: int = DEFAULT_LIST_LIMIT) -> int:
    return _number(request, "limit", default, 1, MAX_LIMIT, "Invalid limit")


def _offset(request: web.Request) -> int:
    return _number(request, "offset", 0, 0, 10**9, "Invalid offset")


def _search(request: web.Request) -> str | None:
    raw = request.query.get("search")
    if not raw:
        return None  # clients send `search=` for "everything"
    if len(raw) > MAX_SEARCH:
        raise InvalidInput("Invalid search query", field="search")
    return raw


def _uuid(request: web.Request) -> str:
    raw = request.match_info["id"]
    if not _UUID.fullmatch(raw):
        raise InvalidInput("Invalid ID", field="id")
    return raw.lower()


async def _caller(request: web.Request, *, required: bool = False) -> Token | None:
    """The caller's token: a bad one is 401 on every route, a missing one only where
    `required`."""
    return await authenticate(request, HeaderForm.BEARER, required=required)


def _link_ttl(request: web.Request, token: Token | None) -> int:
    """How long image links in this answer stay valid (`expiry`, scope-checked)."""
    raw = request.query.get("expiry")
    if raw is None or raw == "":
        return DEFAULT_LINK_TTL
    raw = raw.strip()
    if not _DIGITS.fullmatch(raw) or not 30 < int(raw) <= MAX_EXPIRY:
        raise InvalidInput("Invalid expiry", field="expiry")
    seconds = int(raw)
    if token is None:
        raise Unauthorized("Unauthorized", reason="missing")
    bound = custom_expiry_limit(token)
    if bound is None or (bound and seconds > bound):
        raise Forbidden("Missing permission", scope="image:custom-expiry")
    return seconds


# ---- shaping --------------------------------------------------------------------


def artist_json(artist: Artist) -> dict[str, Any]:
    """Artist object: exactly id, name, url, images."""
    return {"id": artist.id, "name": artist.name, "url": artist.url, "images": artist.images}


def category_json(tag: Tag) -> dict[str, Any]:
    """Category object; gazou's tags are all of one type, reported as "tag"."""
    return {
        "id": tag.id,
        "name": tag.name,
        "description": tag.description,
        "nsfw": tag.nsfw,
        "type": "tag",
        "images": tag.images,
        "createdAt": iso_ms(tag.created_at),
    }


def character_json(character: Character) -> dict[str, Any]:
    """Character object with every key clients build it from."""
    return {
        "id": character.id,
        "name": character.name,
        "description": character.description,
        "source": character.source,
        "gender": character.gender,
        "ages": list(character.ages),
        "birth_date": character.birth_date,
        "nationality": character.nationality,
        "occupations": list(character.occupations),
        "createdAt": iso_ms(character.created_at),
        "images": character.images,
    }


# Inside image objects, each artist, category and character is shaped once.
_nested_artist = Rendered(artist_json)
_nested_category = Rendered(category_json)
_nested_character = Rendered(character_json)


def image_json(request: web.Request, image: Image, ttl: int, now: float) -> dict[str, Any]:
    """Image object: exactly the keys NekosAPI clients read, with a signed `url`."""
    url, expires = signed_image_url(request.app[SERVICES], image, ttl, now=now)
    return {
        "id": image.id,
        "url": url,
        "artist": _nested_artist(image.artist) if image.artist else None,
        "source": {"name": image.source_name, "url": image.source_url},
        "original": None,
        "nsfw": image.rating.value,
        "categories": [_nested_category(t) for t in image.tags],
        "characters": [_nested_character(c) for c in image.characters],
        "createdAt": iso_ms(image.created_at),
        "meta": {
            "eTag": image.md5,
            "size": image.size,
            "mimetype": image.mimetype,
            "color": image.dominant_color,
            "expires": iso_ms(datetime.fromtimestamp(expires, UTC)),
            "dimens": {
                "width": image.width,
                "height": image.height,
                "aspectRatio": image.aspect_ratio,
                "orientation": image.orientation,
            },
        },
    }


# Image objects as kept by the store (api.dialect.Rendering): the object with five
# holes for what is per request or changes with other images (the signed url, the
# artist, categories and characters with their image counts, the link's expiry),
# after the file path the url signs. orjson escapes control characters inside strings,
# so a raw NUL byte in its output can only be one of these holes. Change the version
# whenever `image_template` changes.
IMAGE_RENDERING = "nekosapi.image/1"
_HOLE = b"\x00"
_HOLE_FRAGMENT = orjson.Fragment(_HOLE)
# The artists, tags and characters drawn images carry are shared (the store's read
# cache), so each is encoded once until it changes. (Not their tuples: a collection has
# as many tag combinations as images, more than the read cache keeps.)
_artist_bytes: Rendered[Artist] = Rendered(lambda a: orjson.dumps(artist_json(a)))
_category_bytes: Rendered[Tag] = Rendered(lambda t: orjson.dumps(category_json(t)))
_character_bytes: Rendered[Character] = Rendered(lambda c: orjson.dumps(character_json(c)))


def image_template(image: Image) -> bytes:
    """The kept rendering of `image_json`: `image_file_path(image)`, then the encoded
    object with a NUL byte for each of url, artist, categories, characters, expires."""
    body = {
        "id": image.id,
        "url": _HOLE_FRAGMENT,
        "artist": _HOLE_FRAGMENT,
        "source": {"name": image.source_name, "url": image.source_url},
        "original": None,
        "nsfw": image.rating.value,
        "categories": _HOLE_FRAGMENT,
        "characters": _HOLE_FRAGMENT,
        "createdAt": iso_ms(image.created_at),
        "meta": {
            "eTag": image.md5,
            "size": image.size,
            "mimetype": image.mimetype,
            "color": image.dominant_color,
            "expires": _HOLE_FRAGMENT,
            "dimens": {
                "width": image.width,
                "height": image.height,
                "aspectRatio": image.aspect_ratio,
                "orientation": image.orientation,
            },
        },
    }
    return image_file_path(image).encode() + _HOLE + orjson.dumps(body)


def _filled(services: Services, found: Rendition, ttl: int, now: float, expires: bytes) -> bytes:
    """`image_json` of a drawn rendition, encoded: its template with the holes filled."""
    assert found.body is not None
    path, p0, p1, p2, p3, p4, p5 = found.body.split(_HOLE)
    signed = services.signer.sign(path.decode(), ttl, now=now)
    return b"".join(
        (
            p0,
            orjson.dumps(services.settings.public_url + signed),
            p1,
            _artist_bytes(found.artist) if found.artist else b"null",
            p2,
            b"[" + b",".join([_category_bytes(t) for t in found.tags]) + b"]",
            p3,
            b"[" + b",".join([_character_bytes(c) for c in found.characters]) + b"]",
            p4,
            expires,
            p5,
        )
    )


def _ok(data: Any, meta: dict[str, Any] | None = None) -> web.Response:
    body: dict[str, Any] = {"data": data}
    if meta is not None:
        body["meta"] = meta
    body["success"] = True
    return json_response(body)


def _page(data: list[Any], limit: int, offset: int, total: int) -> web.Response:
    return _ok(
        data, {"pagination": {"limit": limit, "offset": offset, "count": len(data), "total": total}}
    )


# ---- handlers -------------------------------------------------------------------


async def index(request: web.Request) -> web.Response:
    """Route list and version."""
    await _caller(request)
    base = "/v1" if request.path.startswith("/v1") else "/api"
    return json_response(
        {"data": list(ROUTES), "meta": {"version": VERSION, "baseApiRoute": base}, "success": True}
    )


async def stats(request: web.Request) -> web.Response:
    """Counts of images by rating, orientation and resolution; artists, characters,
    categories."""
    await _caller(request)
    s = await request.app[SERVICES].images.stats()
    resolution = {k: s.by_resolution.get(k, 0) for k in ("sd", "720p", "1080p", "4k")}
    return _ok(
        {
            "images": {
                "count": s.images,
                "nsfw": {r.value: s.by_rating.get(r.value, 0) for r in Rating},
                "orientation": {
                    k: s.by_orientation.get(k, 0) for k in ("landscape", "portrait", "square")
                },
                "resolution": resolution,
            },
            "artists": {"count": s.artists},
            "characters": {"count": s.characters},
            "categories": {"count": s.categories},
        }
    )


def _person(name: str, user_id: str) -> str:
    return f"{name} (Discord ID: {user_id})" if user_id.isdigit() else name


async def token_info(request: web.Request) -> web.Response:
    """The caller's token: owner, purpose, scopes, issuer, dates."""
    token = await _caller(request, required=True)
    assert token is not None
    return _ok(
        {
            "owner": _person(token.owner_name, token.owner_id),
            "purpose": token.purpose,
            "scopes": list(token.scopes),
            "issuedBy": token.issued_by,
            "createdAt": iso_ms(token.created_at),
            "expires": iso_ms(token.expires_at) if token.expires_at else None,
        }
    )


async def image_list(request: web.Request) -> web.Response:
    """Every (sfw) image, newest first; scope image:list."""
    limit, offset = _limit(request), _offset(request)
    token = await _caller(request, required=True)
    assert token is not None
    if not has_scope(token, SCOPE_LIST):
        raise Forbidden("Missing permission", scope=SCOPE_LIST)
    ttl = _link_ttl(request, token)
    page = await request.app[SERVICES].images.search(
        SearchQuery(ratings=SFW_ONLY, skip=offset, limit=limit)
    )
    now = time.time()
    return _page([image_json(request, i, ttl, now) for i in page.images], limit, offset, page.total)


@functools.lru_cache(maxsize=1024)
def _random_filters(categories: str) -> Filters:
    """What `?categories=` asks random to draw from (the same few, asked again and again)."""
    names = [n.strip() for n in categories.split(",") if n.strip()]
    return Filters(tags=tuple(names), ratings=SFW_ONLY)


@functools.lru_cache(maxsize=4)
def _expires_json(expires: int) -> bytes:
    """A link expiry time as `meta.expires` writes it (the same for a second)."""
    return orjson.dumps(iso_ms(datetime.fromtimestamp(expires, UTC)))


async def image_random(request: web.Request) -> web.Response:
    """Random sfw images having every category named (case-insensitively)."""
    limit = _limit(request, default=1)
    filters = _random_filters(request.query.get("categories", ""))
    names = filters.tags
    token = await _caller(request)
    ttl = _link_ttl(request, token)
    services = request.app[SERVICES]
    images = services.images
    try:
        found = await images.random_renditions(IMAGE_RENDERING, filters, limit)
    except InvalidInput as exc:
        if exc.details.get("field") != "tags":
            raise
        # Past the core's cap of distinct tags: the seed's one wording for categories.
        raise InvalidInput("Invalid categories", field="categories") from None
    if not found:
        # Only an empty draw can hide an unknown category: a match has every one.
        if names and await images.unknown_tags(names):
            raise InvalidInput("Invalid categories", field="categories")
        raise NotFound("Not found")
    now = time.time()
    expires = _expires_json(services.signer.expiry_of(ttl, now=now))
    items = b",".join([_filled(services, r, ttl, now, expires) for r in found])
    return json_body_response(b'{"data":[' + items + b'],"success":true}')


async def image_get(request: web.Request) -> web.Response:
    """One approved image by its UUID."""
    image_id = _uuid(request)
    token = await _caller(request)
    ttl = _link_ttl(request, token)
    image = await request.app[SERVICES].images.get(image_id)
    return _ok(image_json(request, image, ttl, time.time()))


async def artist_list(request: web.Request) -> web.Response:
    """Artists whose whole name matches the LIKE pattern `search`."""
    limit, offset, pattern = _limit(request), _offset(request), _search(request)
    await _caller(request)
    artists, total = await request.app[SERVICES].images.artists(pattern, offset, limit)
    return _page([artist_json(a) for a in artists], limit, offset, total)


async def artist_get(request: web.Request) -> web.Response:
    """One artist by UUID."""
    artist_id = _uuid(request)
    await _caller(request)
    artist = await request.app[SERVICES].images.artist(artist_id)
    return _ok(artist_json(artist))


async def artist_images(request: web.Request) -> web.Response:
    """An artist's (sfw) images, newest first."""
    artist_id = _uuid(request)
    limit, offset = _limit(request), _offset(request)
    token = await _caller(request)
    ttl = _link_ttl(request, token)
    images = request.app[SERVICES].images
    artist = await images.artist(artist_id)
    page = await images.search(
        SearchQuery(artist_id=artist.id, ratings=SFW_ONLY, skip=offset, limit=limit)
    )
    now = time.time()
    return _page([image_json(request, i, ttl, now) for i in page.images], limit, offset, page.total)


async def character_list(request: web.Request) -> web.Response:
    """Characters whose whole name matches the LIKE pattern `search`."""
    limit, offset, pattern = _limit(request), _offset(request), _search(request)
    await _caller(request)
    found, total = await request.app[SERVICES].images.characters(pattern, offset, limit)
    return _page([character_json(c) for c in found], limit, offset, total)


async def character_get(request: web.Request) -> web.Response:
    """One character by UUID."""
    character_id = _uuid(request)
    await _caller(request)
    return _ok(character_json(await request.app[SERVICES].images.character(character_id)))


async def category_list(request: web.Request) -> web.Response:
    """Categories whose whole name matches the LIKE pattern `search`."""
    limit, offset, pattern = _limit(request), _offset(request), _search(request)
    await _caller(request)
    found, total = await request.app[SERVICES].images.tags(pattern, offset, limit)
    return _page([category_json(t) for t in found], limit, offset, total)


async def category_get(request: web.Request) -> web.Response:
    """One category by UUID."""
    tag_id = _uuid(request)
    await _caller(request)
    return _ok(category_json(await request.app[SERVICES].images.tag(tag_id)))


# ---- routes, limits, OpenAPI ----------------------------------------------------

# (path under the base, route suffix, handler); the random route comes before the
# `{id}` one so "random" is never read as an id.
_TABLE: tuple[tuple[str, str, Handler], ...] = (
    ("/", "index", index),
    ("/stats", "stats", stats),
    ("/token", "token", token_info),
    ("/image", "image_list", image_list),
    ("/image/random", "image_random", image_random),
    ("/image/{id}", "image_get", image_get),
    ("/artist", "artist_list", artist_list),
    ("/artist/{id}", "artist_get", artist_get),
    ("/artist/{id}/images", "artist_images", artist_images),
    ("/character", "character_list", character_list),
    ("/character/{id}", "character_get", character_get),
    ("/category", "category_list", category_list),
    ("/category/{id}", "category_get", category_get),
)


def route_name(base: str, suffix: str) -> str:
    """`nekosapi.<route>` under /api, `nekosapi.v1_<route>` under /v1."""
    return f"nekosapi.{suffix}" if base == "/api" else f"nekosapi.v1_{suffix}"


def _routes() -> list[web.RouteDef]:
    routes = []
    for base in BASES:
        for path, suffix, handler in _TABLE:
            routes.append(web.get(base + path, handler, name=route_name(base, suffix)))
        # `GET /api` without the slash is the same index.
        routes.append(web.get(base, index, name=route_name(base, "index_bare")))
    return routes


# No published numbers for v1; one a second on average per client and route.
_LIMIT = RateLimit(60, 60.0, reset="seconds")
RATE_LIMITS = {
    route_name(base, suffix): _LIMIT
    for base in BASES
    for suffix in [s for _, s, _ in _TABLE] + ["index_bare"]
}

_STRING = {"type": "string"}
_NULLABLE_STRING = {"type": ["string", "null"]}
_DATE = {"type": "string", "format": "date-time"}
_UUID_SCHEMA = {"type": "string", "format": "uuid"}
_COUNT = {"type": "integer", "minimum": 0}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


ERROR_SCHEMA = _object(
    {"code": {"type": "integer"}, "message": _STRING, "success": {"const": False}}
)
ARTIST_SCHEMA = _object(
    {"id": _UUID_SCHEMA, "name": _STRING, "url": _NULLABLE_STRING, "images": _COUNT}
)
CATEGORY_SCHEMA = _object(
    {
        "id": _UUID_SCHEMA,
        "name": _STRING,
        "description": _STRING,
        "nsfw": {"type": "boolean"},
        "type": _STRING,
        "images": _COUNT,
        "createdAt": _DATE,
    }
)
CHARACTER_SCHEMA = _object(
    {
        "id": _UUID_SCHEMA,
        "name": _STRING,
        "description": _STRING,
        "source": _STRING,
        "gender": _STRING,
        "ages": {"type": "array", "items": {"type": "integer"}},
        "birth_date": _STRING,
        "nationality": _STRING,
        "occupations": {"type": "array", "items": _STRING},
        "createdAt": _DATE,
        "images": _COUNT,
    }
)
IMAGE_SCHEMA = _object(
    {
        "id": _UUID_SCHEMA,
        "url": {"type": "string", "format": "uri"},
        "artist": {"oneOf": [ARTIST_SCHEMA, {"type": "null"}]},
        "source": _object({"name": _NULLABLE_STRING, "url": _NULLABLE_STRING}),
        "original": {"type": "null"},
        "nsfw": {"enum": [r.value for r in Rating]},
        "categories": {"type": "array", "items": CATEGORY_SCHEMA},
        "characters": {"type": "array", "items": CHARACTER_SCHEMA},
        "createdAt": _DATE,
        "meta": _object(
            {
                "eTag": _STRING,
                "size": _COUNT,
                "mimetype": _STRING,
                "color": {"type": "string", "pattern": "^#[0-9a-fA-F]{6}$"},
                "expires": _DATE,
                "dimens": _object(
                    {
                        "width": {"type": "integer", "minimum": 1},
                        "height": {"type": "integer", "minimum": 1},
                        "aspectRatio": {"type": "string", "pattern": "^[0-9]+:[0-9]+$"},
                        "orientation": {"enum": ["landscape", "portrait", "square"]},
                    }
                ),
            }
        ),
    }
)
_PAGINATION = _object(
    {"pagination": _object({"limit": _COUNT, "offset": _COUNT, "count": _COUNT, "total": _COUNT})}
)
_COUNTS = _object({"count": _COUNT})
STATS_SCHEMA = _object(
    {
        "images": _object(
            {
                "count": _COUNT,
                "nsfw": _object({r.value: _COUNT for r in Rating}),
                "orientation": _object({k: _COUNT for k in ("landscape", "portrait", "square")}),
                "resolution": _object({k: _COUNT for k in ("sd", "720p", "1080p", "4k")}),
            }
        ),
        "artists": _COUNTS,
        "characters": _COUNTS,
        "categories": _COUNTS,
    }
)
TOKEN_SCHEMA = _object(
    {
        "owner": _STRING,
        "purpose": _STRING,
        "scopes": {"type": "array", "items": _STRING},
        "issuedBy": _STRING,
        "createdAt": _DATE,
        "expires": {"oneOf": [_DATE, {"type": "null"}]},
    }
)
INDEX_SCHEMA = _object(
    {
        "data": {"type": "array", "items": _STRING},
        "meta": _object({"version": _STRING, "baseApiRoute": _STRING}),
        "success": {"const": True},
    }
)


def _envelope(data: dict[str, Any], paged: bool = False) -> dict[str, Any]:
    fields: dict[str, Any] = {"data": data}
    if paged:
        fields["meta"] = _PAGINATION
    fields["success"] = {"const": True}
    return _object(fields)


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR_TEXT = {
    400: "Invalid parameter (limit, offset, expiry, categories, search, ID); "
    "a request line too long for the server is plain text",
    401: "Unauthorized (no token where one is needed) or Invalid token",
    403: "Missing permission",
    404: "Not found",
    429: "Too many requests",
}


def _param(
    name: str, schema: dict[str, Any], where: str = "query", description: str = ""
) -> dict[str, Any]:
    param = {"name": name, "in": where, "required": where == "path", "schema": schema}
    if description:
        param["description"] = description
    return param


_LIMIT_P = _param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT})
_OFFSET_P = _param("offset", {"type": "integer", "minimum": 0})
_SEARCH_P = _param(
    "search",
    {"type": "string", "maxLength": MAX_SEARCH},
    description="A LIKE pattern over the whole name (% and _ wildcards)",
)
_EXPIRY_P = _param(
    "expiry",
    {"type": "integer", "minimum": 31, "maximum": MAX_EXPIRY},
    description="Link validity in seconds (scope image:custom-expiry)",
)
_ID_P = _param("id", _UUID_SCHEMA, "path")
_CATEGORIES_P = _param(
    "categories",
    {"type": "string"},
    description="Comma-separated category names (case-insensitive)",
)

# suffix -> (summary, params, 200 schema, error statuses, needs a token)
_DOCS: dict[str, tuple[str, list[dict[str, Any]], dict[str, Any], tuple[int, ...], bool]] = {
    "index": ("API information and routes", [], INDEX_SCHEMA, (401,), False),
    "stats": ("Collection statistics", [], _envelope(STATS_SCHEMA), (401,), False),
    "token": ("The caller's token", [], _envelope(TOKEN_SCHEMA), (401,), True),
    "image_list": (
        "All images (sfw; scope image:list)",
        [_LIMIT_P, _OFFSET_P, _EXPIRY_P],
        _envelope({"type": "array", "items": IMAGE_SCHEMA}, paged=True),
        (400, 401, 403),
        True,
    ),
    "image_random": (
        "Random sfw images",
        [_CATEGORIES_P, _LIMIT_P, _EXPIRY_P],
        _envelope({"type": "array", "items": IMAGE_SCHEMA}),
        (400, 401, 403, 404),
        False,
    ),
    "image_get": (
        "An image by id",
        [_ID_P, _EXPIRY_P],
        _envelope(IMAGE_SCHEMA),
        (400, 401, 403, 404),
        False,
    ),
    "artist_list": (
        "Search artists",
        [_LIMIT_P, _OFFSET_P, _SEARCH_P],
        _envelope({"type": "array", "items": ARTIST_SCHEMA}, paged=True),
        (400, 401),
        False,
    ),
    "artist_get": ("An artist by id", [_ID_P], _envelope(ARTIST_SCHEMA), (400, 401, 404), False),
    "artist_images": (
        "An artist's sfw images",
        [_ID_P, _LIMIT_P, _OFFSET_P, _EXPIRY_P],
        _envelope({"type": "array", "items": IMAGE_SCHEMA}, paged=True),
        (400, 401, 403, 404),
        False,
    ),
    "character_list": (
        "Search characters",
        [_LIMIT_P, _OFFSET_P, _SEARCH_P],
        _envelope({"type": "array", "items": CHARACTER_SCHEMA}, paged=True),
        (400, 401),
        False,
    ),
    "character_get": (
        "A character by id",
        [_ID_P],
        _envelope(CHARACTER_SCHEMA),
        (400, 401, 404),
        False,
    ),
    "category_list": (
        "Search categories",
        [_LIMIT_P, _OFFSET_P, _SEARCH_P],
        _envelope({"type": "array", "items": CATEGORY_SCHEMA}, paged=True),
        (400, 401),
        False,
    ),
    "category_get": (
        "A category by id",
        [_ID_P],
        _envelope(CATEGORY_SCHEMA),
        (400, 401, 404),
        False,
    ),
}


def _openapi_paths() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    auth = _param(
        "Authorization",
        {"type": "string"},
        "header",
        "`Bearer <token>` (a raw token is accepted too)",
    )
    for base in BASES:
        for path, suffix, _ in _TABLE:
            summary, params, schema, errors, needs_token = _DOCS[suffix]
            responses = {"200": _json(schema, "Success")}
            for status in sorted({*errors, 400, 401, 429}):
                responses[str(status)] = _json(ERROR_SCHEMA, _ERROR_TEXT[status])
            # A request line or header over aiohttp's 8190-byte limit is refused by the
            # HTTP parser before any route runs, as plain text.
            responses["400"]["content"]["text/plain"] = {"schema": _STRING}
            operation: dict[str, Any] = {
                "operationId": route_name(base, suffix).replace(".", "_"),
                "summary": f"NekosAPI v1: {summary}",
                "tags": ["NekosAPI v1"],
                "parameters": [*params, {**auth, "required": needs_token}],
                "responses": responses,
            }
            full = base + path
            paths[full] = {"get": operation}
            if path == "/":
                paths[base] = {
                    "get": {**operation, "operationId": operation["operationId"] + "_bare"}
                }
    return paths


DIALECT = Dialect(
    name="nekosapi",
    routes=_routes(),
    render_error=render_error,
    prefixes=BASES,
    rate_limits=RATE_LIMITS,
    openapi_paths=_openapi_paths(),
    renderings={IMAGE_RENDERING: Rendering(image_template, members=True)},
)
