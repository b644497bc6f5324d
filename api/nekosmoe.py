"""nekos.moe v1: images by id, random images, search, uploads (pending images), and
the /image and /thumbnail files, with the original's per-route rate limits.

Uploads start pending, as on nekos.moe; a token with the `admin` scope is trusted
and its uploads are approved at once (core/visibility.py). A pending image's
`image_url` (`/image/{id}`) and `/thumbnail/{id}` answer at once to whoever holds the
link; it enters random and search only once approved; a rejected one is 404."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web

from api import files
from api.auth import HeaderForm, authenticate
from api.dialect import (
    Dialect,
    RateLimit,
    Rendered,
    Rendering,
    bodies,
    iso_ms,
    json_body_response,
    json_response,
)
from api.forms import (
    Form,
    continue_when_read,
    parse_json,
    read_form,
    read_json_object,
    upload_body_limit,
)
from api.keys import SERVICES
from core.errors import (
    DuplicateImage,
    Forbidden,
    GazouError,
    ImageTooLarge,
    InvalidInput,
    NotFound,
    RateLimited,
    Unauthorized,
    UnsupportedImage,
)
from core.imaging import sniff_format
from core.models import (
    Filters,
    Image,
    IngestMetadata,
    Rating,
    SearchPage,
    SearchQuery,
    Sort,
    Status,
    User,
)
from core.tokens import SCOPE_ADMIN, SCOPE_UPLOAD
from core.visibility import trusted_uploader

NAME = "nekosmoe"
BASE = "/api/v1"
MAX_UPLOAD_BYTES = 3 * 1024 * 1024
# A search is a few filters: a body past this is refused before it is read on.
MAX_SEARCH_BODY_BYTES = 256 * 1024
FILE_TOO_LARGE = "File too large (max 3 MB)"
ALLOWED_FORMATS = frozenset({"JPEG", "PNG"})
MAX_ARTIST = 60
MAX_TAGS = 120
MAX_TAG_LENGTH = 50
MAX_SKIP = 2500
MAX_LIMIT = 50
DEFAULT_LIMIT = 20
MAX_RANDOM = 100
TOO_MANY = "Too many requests, please try again later nyaa~"
_NSFW = frozenset({Rating.QUESTIONABLE, Rating.NSFW})
_SFW = frozenset({Rating.SFW})
_COUNT = re.compile(r"[0-9]{1,3}")

routes = web.RouteTableDef()


# ---- shaping ---------------------------------------------------------------------


def _user(user: User | None) -> dict[str, str]:
    # Imported images have no uploader; clients read uploader.username unconditionally.
    return {"id": user.id, "username": user.name} if user else {"id": "", "username": ""}


def image_json(image: Image, *, original_hash: bool = False) -> dict[str, Any]:
    """The nekos.moe Image (or PendingImage) object."""
    body: dict[str, Any] = {"id": image.id}
    if image.artist is not None:
        body["artist"] = image.artist.name
    body["nsfw"] = image.nsfw
    body["tags"] = image.tag_names
    if image.status is Status.PENDING:
        body["pending"] = True
    else:
        body["likes"] = image.likes
        body["favorites"] = image.favorites
    body["uploader"] = _user(image.uploader)
    if image.status is not Status.PENDING:
        if image.approver is not None:
            body["approver"] = _user(image.approver)
        body["comments"] = []
    body["createdAt"] = iso_ms(image.created_at)
    if original_hash:
        body["originalHash"] = image.md5
    return body


def _public(request: web.Request) -> str:
    return request.app[SERVICES].settings.public_url


# ---- reads -----------------------------------------------------------------------


@routes.get(f"{BASE}/", name=f"{NAME}.index")
@routes.get(BASE, name=f"{NAME}.index_bare")
async def index(request: web.Request) -> web.Response:
    """Where the docs are and which version this is."""
    return json_response({"docs": f"{_public(request)}/openapi.json", "version": 1})


@routes.get(BASE + "/images/{id}", name=f"{NAME}.image")
async def get_image(request: web.Request) -> web.Response:
    """One image by id; pending images too, marked pending."""
    image = await request.app[SERVICES].images.get(request.match_info["id"], include_pending=True)
    return json_response({"image": image_json(image)})


# The random route's image objects, kept by the store (api.dialect.Rendering): a draw
# hands out their bytes. Change the version whenever `random_image_body` changes.
RANDOM_RENDERING = f"{NAME}.random/1"
_RANDOM_FILTERS = {True: Filters(ratings=_NSFW), False: Filters(ratings=_SFW)}


def random_image_body(image: Image) -> bytes:
    """The encoded Image object of the random route (with `originalHash`)."""
    return orjson.dumps(image_json(image, original_hash=True))


@routes.get(BASE + "/random/image", name=f"{NAME}.random")
async def random_images(request: web.Request) -> web.Response:
    """1-100 random approved images; nsfw=true for NSFW only, otherwise SFW only (the
    original's "absent means both" would show NSFW to clients that never asked)."""
    filters = _RANDOM_FILTERS[request.query.get("nsfw") == "true"]
    raw = request.query.get("count", "")
    count = int(raw) if _COUNT.fullmatch(raw) and 1 <= int(raw) <= MAX_RANDOM else 1
    found = await request.app[SERVICES].images.random_renditions(RANDOM_RENDERING, filters, count)
    return json_body_response(b'{"images":[' + b",".join(bodies(found)) + b"]}")


def _number_field(body: dict[str, Any], name: str) -> int | float | None:
    """A number field (or a numeric string), truncated to an integer; None when absent
    or null. Like the original's JavaScript, a number too big for a double (`1e400`,
    `"inf"`) is an infinity, which callers compare like any number; NaN is refused."""
    value = body.get(name)
    if value is None or value == "":
        return None
    number: int | float
    if isinstance(value, bool):
        raise InvalidInput(f"{name} must be a number")
    if isinstance(value, int | float):
        number = value
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise InvalidInput(f"{name} must be a number") from None
    else:
        raise InvalidInput(f"{name} must be a number")
    if math.isnan(number):
        raise InvalidInput(f"{name} must be a number")
    return int(number) if math.isfinite(number) else number


def _ms(body: dict[str, Any], name: str) -> datetime | None:
    value = _number_field(body, name)
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(value / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        raise InvalidInput(f"{name} must be a time in milliseconds") from None


def _split_tags(value: Any) -> list[str]:
    """Tags from an array or a comma-separated string."""
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, list):
        items = value
    elif value is None:
        return []
    else:
        raise InvalidInput("tags must be an array of strings")
    return [t.strip() for t in items if isinstance(t, str) and t.strip()]


def search_query(body: dict[str, Any]) -> SearchQuery:
    """The SearchQuery a nekos.moe search body asks for (its leniencies included)."""
    image_id = body.get("id")
    if image_id is not None and image_id != "":
        return SearchQuery(image_id=str(image_id), limit=1)
    nsfw = body.get("nsfw")
    if isinstance(nsfw, str) and nsfw.lower() in ("true", "false"):
        nsfw = nsfw.lower() == "true"
    # NSFW only when asked for: an absent or non-boolean `nsfw` means SFW.
    ratings = _NSFW if nsfw is True else _SFW
    uploader = body.get("uploader")
    if isinstance(uploader, dict):
        uploader = uploader.get("id") or uploader.get("username")
    uploader = str(uploader).strip() if uploader not in (None, "") else None
    artist = body.get("artist")
    artist = artist.strip() or None if isinstance(artist, str) else None
    include, exclude = [], []
    for tag in _split_tags(body.get("tags")):
        if tag.startswith("-"):
            if tag[1:].strip():
                exclude.append(tag[1:].strip())
        else:
            include.append(tag)
    sort_name = body.get("sort")
    sort = (
        Sort(sort_name)
        if isinstance(sort_name, str) and sort_name in Sort.__members__.values()
        else Sort.NEWEST
    )
    skip = _number_field(body, "skip")
    if skip is None:
        skip = _number_field(body, "offset")
    skip = max(0, skip or 0)
    if skip > MAX_SKIP:
        raise InvalidInput("Cannot skip more than 2,500 images")
    limit = _number_field(body, "limit")
    if limit is None or not 1 <= limit <= MAX_LIMIT:
        limit = DEFAULT_LIMIT
    return SearchQuery(
        tags=tuple(include),
        exclude_tags=tuple(exclude),
        ratings=ratings,
        artist=artist,
        uploader=uploader,
        posted_before=_ms(body, "posted_before"),
        posted_after=_ms(body, "posted_after"),
        sort=sort,
        skip=int(skip),
        limit=int(limit),
    )


# A popular query's page comes from the core's page cache as one shared object for a
# second: its answer is encoded once.
_search_body: Rendered[SearchPage] = Rendered(
    lambda page: orjson.Fragment(orjson.dumps({"images": [image_json(i) for i in page.images]})),
    max_entries=64,
)


@routes.post(BASE + "/images/search", name=f"{NAME}.search", expect_handler=continue_when_read)
async def search(request: web.Request) -> web.Response:
    """Approved images matching the body's filters (JSON, whatever the Content-Type)."""
    services = request.app[SERVICES]
    body = await read_json_object(request, MAX_SEARCH_BODY_BYTES)
    page = await services.images.search(search_query(body), count_total=False)
    return json_response(_search_body(page))


# ---- upload ----------------------------------------------------------------------


def _nsfw_field(form: Form) -> bool:
    raw = (form.get("nsfw") or "").strip().lower()
    if raw in ("", "false"):
        return False
    if raw == "true":
        return True
    raise InvalidInput("nsfw must be true or false")


def upload_tags(values: list[str]) -> tuple[str, ...]:
    """Tags as nekos.moe stores them: from JSON arrays, comma strings or repeated
    fields; lower-cased, `_` read as a space, de-duplicated and sorted."""
    tags: set[str] = set()
    for value in values:
        items: list[Any]
        text = value.strip()
        if text.startswith("["):
            parsed = parse_json(text, "tags")
            if not isinstance(parsed, list) or not all(isinstance(t, str) for t in parsed):
                raise InvalidInput("tags must be an array of strings")
            items = parsed
        else:
            items = text.split(",")
        for item in items:
            tag = " ".join(item.replace("_", " ").lower().split())
            if tag:
                tags.add(tag)
    if len(tags) > MAX_TAGS:
        raise InvalidInput(f"There can be up to {MAX_TAGS} tags")
    if any(len(t) > MAX_TAG_LENGTH for t in tags):
        raise InvalidInput(f"Tags can be up to {MAX_TAG_LENGTH} characters long")
    return tuple(sorted(tags))


@routes.post(BASE + "/images", name=f"{NAME}.upload", expect_handler=continue_when_read)
async def upload(request: web.Request) -> web.Response:
    """Create a pending image from a multipart form."""
    services = request.app[SERVICES]
    token = await authenticate(request, HeaderForm.RAW)
    assert token is not None
    if SCOPE_UPLOAD not in token.scopes and SCOPE_ADMIN not in token.scopes:
        raise Forbidden("You must have a verified account to post images")
    # After the token check, and refused from Content-Length before any body is read:
    # past the server's MAX_REQUEST_MB a 413, past the dialect's own cap its 400.
    limit = upload_body_limit(services.settings.max_request_bytes, MAX_UPLOAD_BYTES)
    try:
        form = await read_form(request, limit)
    except ImageTooLarge:
        if limit < services.settings.max_request_bytes:
            raise InvalidInput(FILE_TOO_LARGE) from None
        raise
    upload_part = form.file("image")
    if upload_part is None:
        raise InvalidInput("No image provided")
    if sniff_format(upload_part.data) not in ALLOWED_FORMATS:
        raise UnsupportedImage("Invalid file type")
    if len(upload_part.data) > MAX_UPLOAD_BYTES:
        raise InvalidInput(FILE_TOO_LARGE)
    artist = (form.get("artist") or "").strip()
    if len(artist) > MAX_ARTIST:
        raise InvalidInput(f"Artist can be up to {MAX_ARTIST} characters long")
    if artist.lower() == "unknown":
        artist = ""
    meta = IngestMetadata(
        tags=upload_tags(form.getall("tags") + form.getall("tags[]")),
        rating=Rating.NSFW if _nsfw_field(form) else Rating.SFW,
        artist=artist or None,
        original_filename=upload_part.filename,
        max_bytes=MAX_UPLOAD_BYTES,
    )
    image = await services.images.ingest(
        upload_part.data,
        meta,
        User(token.owner_id, token.owner_name),
        trusted=trusted_uploader(token),
    )
    public = _public(request)
    return json_response(
        {
            "image": image_json(image),
            "image_url": f"{public}/image/{image.id}.jpg",
            "post_url": f"{public}/post/{image.id}",
        }
    )


# ---- files -----------------------------------------------------------------------


def _file_id(request: web.Request) -> str:
    # /image/{id} and /image/{id}.jpg name the same bytes.
    return request.match_info["id"].split(".", 1)[0]


@routes.get("/image/{id}", name=f"{NAME}.file")
async def image_file(request: web.Request) -> web.StreamResponse:
    """The image's bytes (`/image/{id}` or `/image/{id}.jpg`)."""
    return await files.serve(request, _file_id(request))


@routes.get("/post/{id}", name=f"{NAME}.post")
async def post_page(request: web.Request) -> web.Response:
    """`post_url` of an upload: gazou has no post pages, so it leads to the image's
    JSON (which says whether it is still pending)."""
    image_id = quote(request.match_info["id"], safe="")
    raise web.HTTPFound(f"{BASE}/images/{image_id}")


@routes.get("/thumbnail/{id}", name=f"{NAME}.thumbnail")
async def thumbnail_file(request: web.Request) -> web.StreamResponse:
    """The JPEG thumbnail (fits 360x420), `/thumbnail/{id}` or `/thumbnail/{id}.jpg`."""
    return await files.serve(request, _file_id(request), thumbnail=True)


# ---- errors ----------------------------------------------------------------------

_STATUS_MESSAGES = {
    404: "Not found",
    405: "Method not allowed",
    413: "Request entity too large",
    500: "Internal server error",
}


def render_error(error: GazouError) -> web.Response:
    """`{"message": ...}` with nekos.moe's wording and status codes."""
    if isinstance(error, Unauthorized):
        if error.details.get("reason") == "missing":
            return json_response({"message": "Authentication required"}, status=400)
        return json_response({"message": "Invalid token"}, status=401)
    if isinstance(error, RateLimited):
        retry_ms = int(float(str(error.details.get("retry_after", 0))) * 1000)
        return json_response({"message": TOO_MANY, "retryAfter": retry_ms}, status=429)
    if isinstance(error, DuplicateImage):
        return json_response(
            {"message": "Image already uploaded", "id": error.existing_id}, status=409
        )
    if isinstance(error, NotFound):
        message = error.message if error.message.endswith("not found") else "Not found"
        return json_response({"message": message}, status=404)
    if type(error) is GazouError or error.status >= 500:
        # The middleware's own errors (unmatched route, wrong method, too large, crash).
        message = _STATUS_MESSAGES.get(error.status, error.message)
        return json_response({"message": message}, status=error.status)
    return json_response({"message": error.message}, status=error.status)


# ---- OpenAPI ---------------------------------------------------------------------

_USER = {
    "type": "object",
    "required": ["id", "username"],
    "properties": {"id": {"type": "string"}, "username": {"type": "string"}},
    "additionalProperties": False,
}
_IMAGE_PROPS: dict[str, Any] = {
    "id": {"type": "string"},
    "artist": {"type": "string"},
    "nsfw": {"type": "boolean"},
    "tags": {"type": "array", "items": {"type": "string"}},
    "likes": {"type": "integer", "minimum": 0},
    "favorites": {"type": "integer", "minimum": 0},
    "uploader": _USER,
    "approver": _USER,
    "comments": {"type": "array", "maxItems": 0},
    "createdAt": {"type": "string", "format": "date-time"},
}
_APPROVED: dict[str, Any] = {
    "type": "object",
    "required": ["id", "nsfw", "tags", "likes", "favorites", "uploader", "comments", "createdAt"],
    "properties": {**_IMAGE_PROPS, "pending": False},
    "additionalProperties": False,
}
_PENDING = {
    "type": "object",
    "required": ["id", "nsfw", "tags", "uploader", "createdAt", "pending"],
    "properties": {
        k: v
        for k, v in _IMAGE_PROPS.items()
        if k not in ("likes", "favorites", "comments", "approver")
    }
    | {"pending": {"const": True}},
    "additionalProperties": False,
}
_RANDOM_IMAGE = {
    **_APPROVED,
    "required": [*_APPROVED["required"], "originalHash"],
    "properties": {**_IMAGE_PROPS, "originalHash": {"type": "string", "pattern": "^[0-9a-f]{32}$"}},
}
_MESSAGE = {
    "type": "object",
    "required": ["message"],
    "properties": {"message": {"type": "string"}},
    "additionalProperties": False,
}
_RATE_HEADERS = {
    name: {"schema": {"type": "string", "pattern": "^[0-9]+$"}}
    for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
}


def _json(schema: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
        **extra,
    }


def _error(description: str) -> dict[str, Any]:
    return _json(_MESSAGE, description)


_TOO_MANY = _json(
    {
        "type": "object",
        "required": ["message", "retryAfter"],
        "properties": {
            "message": {"const": TOO_MANY},
            "retryAfter": {"type": "integer", "minimum": 0},
        },
        "additionalProperties": False,
    },
    "Over the route's limit for this 10 s window.",
    headers={"Retry-After": {"schema": {"type": "string"}}, **_RATE_HEADERS},
)


def _images(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["images"],
        "properties": {"images": {"type": "array", "items": item}},
        "additionalProperties": False,
    }


_ID_PARAM = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_FILE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_TAGS_SCHEMA = {"oneOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]}

OPENAPI_PATHS: dict[str, Any] = {
    f"{BASE}/": {
        "get": {
            "summary": "API information",
            "operationId": "nekosmoe.index",
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["docs", "version"],
                        "properties": {"docs": {"type": "string"}, "version": {"const": 1}},
                        "additionalProperties": False,
                    },
                    "Where the docs are.",
                )
            },
        }
    },
    BASE: {
        "get": {
            "summary": "API information (without the trailing slash)",
            "operationId": "nekosmoe.index_bare",
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["docs", "version"],
                        "properties": {"docs": {"type": "string"}, "version": {"const": 1}},
                        "additionalProperties": False,
                    },
                    "Where the docs are.",
                )
            },
        }
    },
    f"{BASE}/images/{{id}}": {
        "get": {
            "summary": "Get image",
            "operationId": "nekosmoe.image",
            "parameters": [_ID_PARAM],
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["image"],
                        "properties": {"image": {"oneOf": [_APPROVED, _PENDING]}},
                        "additionalProperties": False,
                    },
                    "The image.",
                    headers=_RATE_HEADERS,
                ),
                "404": _error("No such image."),
                "429": _TOO_MANY,
            },
        }
    },
    f"{BASE}/random/image": {
        "get": {
            "summary": "Get random images",
            "operationId": "nekosmoe.random",
            "parameters": [
                {
                    "name": "nsfw",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": "`true` for NSFW only; any other value for SFW only.",
                },
                {
                    "name": "count",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": "1-100; anything else means 1.",
                },
            ],
            "responses": {
                "200": _json(_images(_RANDOM_IMAGE), "Random images.", headers=_RATE_HEADERS),
                "429": _TOO_MANY,
            },
        }
    },
    f"{BASE}/images/search": {
        "post": {
            "summary": "Search images",
            "operationId": "nekosmoe.search",
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "id": {"type": "string"},
                                "nsfw": {"type": "boolean"},
                                "uploader": {"oneOf": [{"type": "string"}, _USER]},
                                "artist": {"type": "string"},
                                "tags": _TAGS_SCHEMA,
                                "sort": {"enum": [s.value for s in Sort]},
                                "posted_before": {
                                    "type": "integer",
                                    "minimum": 0,
                                    "maximum": 253402300799999,
                                },
                                "posted_after": {
                                    "type": "integer",
                                    "minimum": 0,
                                    "maximum": 253402300799999,
                                },
                                "skip": {"type": "integer", "minimum": 0, "maximum": MAX_SKIP},
                                "offset": {"type": "integer", "minimum": 0, "maximum": MAX_SKIP},
                                "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": _json(_images(_APPROVED), "Matching images.", headers=_RATE_HEADERS),
                "400": _error("A malformed body, or skip over 2,500."),
                "413": _error("The body is over the server's request limit."),
                "429": _TOO_MANY,
            },
        }
    },
    f"{BASE}/images": {
        "post": {
            "summary": "Upload image (creates a pending image)",
            "operationId": "nekosmoe.upload",
            "parameters": [
                {
                    "name": "Authorization",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string"},
                }
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["image"],
                            "properties": {
                                "image": {
                                    "type": "string",
                                    "contentMediaType": "application/octet-stream",
                                },
                                "nsfw": {"type": "string"},
                                "artist": {"type": "string", "maxLength": MAX_ARTIST},
                                "tags": _TAGS_SCHEMA,
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["image", "image_url", "post_url"],
                        "properties": {
                            "image": {"oneOf": [_PENDING, _APPROVED]},
                            "image_url": {"type": "string"},
                            "post_url": {"type": "string"},
                        },
                        "additionalProperties": False,
                    },
                    "The new (pending) image.",
                    headers=_RATE_HEADERS,
                ),
                "400": _error("Bad form, file type or size, or no token."),
                "401": _error("Invalid token."),
                "403": _error("The token may not upload."),
                "409": _json(
                    {
                        "type": "object",
                        "required": ["message", "id"],
                        "properties": {
                            "message": {"const": "Image already uploaded"},
                            "id": {"type": "string"},
                        },
                        "additionalProperties": False,
                    },
                    "These bytes are already stored.",
                ),
                "413": _error("Over the server's request limit, or too many pixels."),
                "429": _TOO_MANY,
            },
        }
    },
}
OPENAPI_PATHS["/post/{id}"] = {
    "get": {
        "summary": "An upload's post page (a redirect to the image's JSON)",
        "operationId": "nekosmoe.post",
        "parameters": [_ID_PARAM],
        "responses": {
            "302": {
                "description": "Where the image is described.",
                "headers": {"Location": {"schema": {"type": "string"}}},
            }
        },
    }
}
for _path, _thumb in (
    ("/image/{id}", False),
    ("/image/{id}.jpg", False),
    ("/thumbnail/{id}", True),
    ("/thumbnail/{id}.jpg", True),
):
    OPENAPI_PATHS[_path] = {
        "get": files.file_operation(
            "An image's thumbnail (JPEG)" if _thumb else "An image's bytes",
            f"nekosmoe.{'thumbnail' if _thumb else 'file'}"
            + ("_jpg" if _path.endswith(".jpg") else ""),
            [_ID_PARAM],
            ("image/jpeg",) if _thumb else _FILE_TYPES,
            _error("No such image."),
        )
    }

DIALECT = Dialect(
    name=NAME,
    routes=list(routes),
    render_error=render_error,
    prefixes=(BASE, "/image", "/thumbnail", "/post"),
    rate_limits={
        # The seed's 5/10s (DIALECTS.md said 10).
        f"{NAME}.image": RateLimit(5, 10.0),
        f"{NAME}.random": RateLimit(5, 10.0),
        f"{NAME}.search": RateLimit(5, 10.0),
        f"{NAME}.upload": RateLimit(2, 10.0),
    },
    openapi_paths=OPENAPI_PATHS,
    renderings={RANDOM_RENDERING: Rendering(random_image_body)},
)
