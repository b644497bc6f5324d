"""Chevereto v1.1 dialect: `GET`/`POST /api/1/upload` (imgBB clients too). The
viewer page its `url_viewer` points at (`/i/{id}`) is the web gallery's image page
(web/pages.py image_page); it is still described here, in /openapi.json.

Moderation follows core/visibility.py: an upload with a token holding `admin` is
approved at once; every other upload starts pending, as everywhere in gazou.
Chevereto clients (ShareX, scripts) paste the returned URL somewhere straight away,
and an image's own URLs (file, thumbnail, viewer page) serve it at once to whoever
holds them, so the answer gives the same plain URLs for a pending image as for an
approved one; the image stays out of every listing and random draw until a moderator
approves it. A rejected image, or one past its `expiration`, is served to nobody.
The viewer page of a pending image is marked noindex and kept out of shared caches.

Answers before this rule gave a pending image signed links
(`?expires=...&signature=...`, api/links.py); those still open the image while it is
servable, and an altered or expired signature is still 403.

`category_id` names a tag (by id or name, case-insensitively); the image gets that
tag. Chevereto categories are integers that mean nothing here, so an unknown
category is ignored rather than failing an upload a client configured for another
host."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from api.auth import HeaderForm, authenticate, presented_secret
from api.dialect import Dialect, RateLimit, json_response
from api.fetch import fetch_url
from api.forms import Form, continue_when_read, read_form, upload_body_limit
from api.keys import SERVICES
from core.errors import (
    DuplicateImage,
    Forbidden,
    GazouError,
    InvalidInput,
    NotFound,
    Unauthorized,
)
from core.images import MAX_TITLE_LENGTH
from core.models import Image, IngestMetadata, Rating, Token, User
from core.services import Services
from core.tokens import SCOPE_ADMIN, SCOPE_UPLOAD, has_scope
from core.visibility import trusted_uploader

UPLOAD_PATHS = ("/api/1/upload", "/api/1/upload/")
VIEWER_PREFIX = "/i/"
FORMATS = ("json", "txt", "redirect")
MIN_EXPIRATION = 300
MAX_EXPIRATION = 365 * 24 * 3600
_DURATION = re.compile(
    r"P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?",
    re.IGNORECASE,
)
# Seconds per unit of the ISO-8601 duration groups above (a month is 30 days).
_UNITS = (365 * 86400, 30 * 86400, 7 * 86400, 86400, 3600, 60, 1)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_TRUE = ("1", "true", "yes", "on")

# Chevereto's own error codes (its `error.code`), where they differ from the status.
CODE_KEY = 100
CODE_BASE64 = 120
CODE_EMPTY_SOURCE = 130

# The seed's public API takes images of at most 20 MB. A body may carry one as base64
# text, percent-encoded in a urlencoded form: 5/3 of its size leaves room for both.
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
_MAX_SOURCE_TEXT = MAX_UPLOAD_BYTES * 5 // 3


# ---- errors ---------------------------------------------------------------------


def _error_parts(error: GazouError) -> tuple[int, str, int]:
    """(HTTP status, message, Chevereto code) for a domain error."""
    if isinstance(error, Unauthorized):
        missing = error.details.get("reason") == "missing"
        return 400, "Empty API key." if missing else "Invalid API v1 key.", CODE_KEY
    if isinstance(error, Forbidden):
        return 401, "Request denied", 401
    if isinstance(error, DuplicateImage):
        return 400, "Duplicated upload", 400
    code = error.details.get("chevereto_code")
    return error.status, error.message, code if isinstance(code, int) else error.status


def _status_txt(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def render_error(error: GazouError) -> web.Response:
    """`{"status_code", "error": {"message", "code"}, "status_txt"}`."""
    status, message, code = _error_parts(error)
    headers = None
    if status == 429 and "retry_after" in error.details:
        retry = float(str(error.details["retry_after"]))
        headers = {"Retry-After": str(max(1, int(retry + 0.999)))}
    return json_response(
        {
            "status_code": status,
            "error": {"message": message, "code": code},
            "status_txt": _status_txt(status),
        },
        status=status,
        headers=headers,
    )


def _plain_error(error: GazouError) -> web.Response:
    """With format=txt or redirect, an error is its plain message."""
    status, message, _ = _error_parts(error)
    return web.Response(text=message, status=status, content_type="text/plain")


# ---- parameters -----------------------------------------------------------------


class _Params:
    """Body fields first, then the query string (Chevereto reads `$_REQUEST`)."""

    def __init__(self, request: web.Request, form: Form) -> None:
        self._query = request.rel_url.query
        self.form = form

    def get(self, name: str) -> str | None:
        value = self.form.get(name)
        return value if value is not None else self._query.get(name)


def _format(raw: str | None) -> str:
    value = (raw or "json").strip().lower()
    return value if value in FORMATS else "json"


def parse_expiration(raw: str | None) -> int | None:
    """Seconds from an ISO-8601 duration (PT5M ... P1Y) or a number of seconds,
    clamped to 5 minutes - 1 year; None when not given."""
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    if text.isascii() and text.isdigit():
        seconds = int(text[:12])
    else:
        match = _DURATION.fullmatch(text)
        if not match or not any(match.groups()) or text.upper().endswith("T"):
            raise InvalidInput(
                "Invalid expiration: use an ISO-8601 duration such as PT5M, "
                "P1D or P1Y, or a number of seconds"
            )
        seconds = sum(
            int(g[:9]) * unit for g, unit in zip(match.groups(), _UNITS, strict=True) if g
        )
    return min(MAX_EXPIRATION, max(MIN_EXPIRATION, seconds))


def decode_base64(text: str) -> bytes:
    """Bytes from base64 text, with or without a `data:` URL prefix, line breaks, the
    URL-safe alphabet, or padding; `+` turned into spaces by a query string is undone."""
    body = text.strip()
    if body[:5].lower() == "data:":
        _, comma, body = body.partition(",")
        if not comma:
            raise InvalidInput("Invalid base64 string.", chevereto_code=CODE_BASE64)
    body = re.sub(r"[\r\n\t]", "", body).replace(" ", "+").replace("-", "+").replace("_", "/")
    body = body.rstrip("=")
    if not body:
        raise InvalidInput("Empty upload source.", chevereto_code=CODE_EMPTY_SOURCE)
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("Invalid base64 string.", chevereto_code=CODE_BASE64) from None


def _looks_like_url(text: str) -> bool:
    return re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*://", text) is not None


async def _source(
    services: Services, params: _Params
) -> tuple[bytes, str | None, str | None, bool]:
    """(bytes, original filename, source URL, imgBB style) from `source` or `image`."""
    for name, imgbb in (("source", False), ("image", True)):
        upload = params.form.file(name)
        if upload is not None:
            if not upload.data:
                raise InvalidInput("Empty upload source.", chevereto_code=CODE_EMPTY_SOURCE)
            return upload.data, upload.filename, None, imgbb
        text = params.get(name)
        if text is None:
            continue
        text = text.strip()
        if not text:
            raise InvalidInput("Empty upload source.", chevereto_code=CODE_EMPTY_SOURCE)
        if _looks_like_url(text):
            settings = services.settings
            fetched = await fetch_url(
                text,
                max_bytes=min(settings.url_fetch_max_bytes, MAX_UPLOAD_BYTES),
                time_limit=settings.url_fetch_timeout,
                allow_private=settings.url_fetch_allow_private,
            )
            return fetched.data, fetched.filename, text, imgbb
        return decode_base64(text), None, None, imgbb
    raise InvalidInput("Empty upload source.", chevereto_code=CODE_EMPTY_SOURCE)


async def _metadata(
    services: Services, params: _Params, token: Token, filename: str | None, source_url: str | None
) -> IngestMetadata:
    title = (params.get("title") or params.get("name") or "").strip()[:MAX_TITLE_LENGTH]
    tags: tuple[str, ...] = ()
    category = (params.get("category_id") or "").strip()
    if category:
        try:
            tags = ((await services.images.tag(category)).name,)
        except NotFound:
            tags = ()  # see the module docstring
    album_id = (params.get("album_id") or "").strip() or None
    if album_id is not None:
        try:
            album = await services.images.album(album_id)
        except NotFound:
            raise InvalidInput("Invalid album") from None
        if album.owner_id not in (None, token.owner_id) and not has_scope(token, SCOPE_ADMIN):
            raise InvalidInput("Invalid album")
    width_raw = (params.get("width") or "").strip()
    width = None
    if width_raw:
        if not (width_raw.isascii() and width_raw.isdigit()) or len(width_raw) > 6:
            raise InvalidInput("Invalid width: a number of pixels")
        width = int(width_raw)
    seconds = parse_expiration(params.get("expiration"))
    nsfw = (params.get("nsfw") or "").strip().lower() in _TRUE
    return IngestMetadata(
        tags=tags,
        rating=Rating.NSFW if nsfw else Rating.SFW,
        title=title,
        description=params.get("description") or "",
        source_name=urlsplit(source_url).hostname if source_url else None,
        source_url=source_url,
        original_filename=(filename or "")[:200] or None,
        album_id=album_id,
        resize_width=width,
        expires_at=datetime.now(UTC) + timedelta(seconds=seconds) if seconds else None,
        max_bytes=MAX_UPLOAD_BYTES,
    )


# ---- shaping --------------------------------------------------------------------


def _when(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else None


def size_formatted(size: int) -> str:
    """Chevereto's human size: `512 B`, `52.1 KB`, `3 MB`."""
    if size < 1024:
        return f"{size} B"
    value, unit = size / 1024, "KB"
    if value >= 1024:
        value, unit = value / 1024, "MB"
    return f"{value:.1f}".removesuffix(".0") + f" {unit}"


class _Links:
    """The URLs of one uploaded image (the same plain ones, pending or approved)."""

    def __init__(self, services: Services, image: Image) -> None:
        base = services.settings.public_url
        self.url = f"{base}/image/{image.id}.{image.extension}"
        self.thumb = f"{base}/thumbnail/{image.id}.jpg"
        self.viewer = f"{base}{VIEWER_PREFIX}{image.id}"


def image_json(image: Image, links: _Links) -> dict[str, Any]:
    """The uploaded image as Chevereto describes it."""
    full = {
        "filename": image.filename,
        "name": image.id,
        "mime": image.mimetype,
        "extension": image.extension,
        "url": links.url,
        "size": image.size,
    }
    return {
        "name": image.id,
        "extension": image.extension,
        "size": image.size,
        "width": image.width,
        "height": image.height,
        "date": _when(image.created_at),
        "date_gmt": _when(image.created_at),
        "title": image.title,
        "description": image.description or None,
        "nsfw": int(image.nsfw),
        "md5": image.md5,
        "original_filename": image.original_filename or image.filename,
        "expiration_date_gmt": _when(image.expires_at),
        "id_encoded": image.id,
        "filename": image.filename,
        "mime": image.mimetype,
        "url": links.url,
        "image": full,
        "thumb": {
            "filename": f"{image.id}.th.jpg",
            "name": f"{image.id}.th",
            "mime": "image/jpeg",
            "extension": "jpg",
            "url": links.thumb,
            "size": image.thumbnail_size,
        },
        # gazou keeps no medium size; the full image stands in, as Chevereto does for
        # images smaller than its medium size.
        "medium": dict(full),
        "url_viewer": links.viewer,
        "url_short": links.viewer,
        "display_url": links.url,
        "display_width": image.width,
        "display_height": image.height,
        "size_formatted": size_formatted(image.size),
        "delete_url": None,
    }


# ---- handlers -------------------------------------------------------------------


async def _token(request: web.Request, params: _Params | None) -> Token | None:
    """The key's token: from X-API-Key, else `key` (query, or body once `params` are
    read). None when no key is in sight yet (before the body is read)."""
    secret = (
        presented_secret(request, HeaderForm.API_KEY)
        or (request.rel_url.query.get("key") or "").strip()
    )
    if not secret and params is not None:
        secret = (params.get("key") or "").strip()
    if not secret and params is None:
        return None
    return await authenticate(request, HeaderForm.API_KEY, secret=secret or None)


async def upload(request: web.Request) -> web.StreamResponse:
    """Upload one image from a file, base64 text or a URL."""
    services = request.app[SERVICES]
    fmt = _format(request.rel_url.query.get("format"))
    try:
        # A key in the header or query is checked before a body is read.
        token = await _token(request, None)
        if token is not None:
            services.tokens.require(token, SCOPE_UPLOAD)
        # A body (where the key may also be) past the cap is refused from its
        # Content-Length before it is read.
        form = (
            await read_form(
                request, upload_body_limit(services.settings.max_request_bytes, _MAX_SOURCE_TEXT)
            )
            if request.method == "POST"
            else Form()
        )
        params = _Params(request, form)
        fmt = _format(params.get("format"))
        if token is None:
            token = await _token(request, params)
            assert token is not None
            services.tokens.require(token, SCOPE_UPLOAD)
        raw, filename, source_url, imgbb = await _source(services, params)
        meta = await _metadata(services, params, token, filename, source_url)
        image = await services.images.ingest(
            raw, meta, User(token.owner_id, token.owner_name), trusted=trusted_uploader(token)
        )
    except GazouError as error:
        if fmt != "json":
            return _plain_error(error)
        raise
    links = _Links(services, image)
    if fmt == "txt":
        return web.Response(text=links.url, content_type="text/plain")
    if fmt == "redirect":
        raise web.HTTPFound(links.viewer)
    body: dict[str, Any] = {
        "status_code": 200,
        "success": {"message": "image uploaded", "code": 200},
    }
    body["data" if imgbb else "image"] = image_json(image, links)
    body["status_txt"] = "OK"
    if imgbb:
        body["status"] = 200
    return json_response(body)


# ---- routes, limits, OpenAPI ----------------------------------------------------


def _routes() -> list[web.RouteDef]:
    routes = []
    for path, name in zip(
        UPLOAD_PATHS, ("chevereto.upload", "chevereto.upload_slash"), strict=True
    ):
        # No HEAD: a GET here uploads.
        routes.append(web.get(path, upload, name=name, allow_head=False))
        routes.append(web.post(path, upload, name=name, expect_handler=continue_when_read))
    return routes


RATE_LIMITS = {
    # Chevereto publishes no API limit; its flood guard defaults sit near this.
    "chevereto.upload": RateLimit(30, 60.0, reset="seconds"),
    "chevereto.upload_slash": RateLimit(30, 60.0, reset="seconds"),
}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


_STR = {"type": "string"}
_INT = {"type": "integer", "minimum": 0}
_URL = {"type": "string", "format": "uri"}
_DATE = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"}
_BASE64 = {"type": "string", "pattern": "^[A-Za-z0-9+/]*={0,2}$"}
_FILE = _object(
    {"filename": _STR, "name": _STR, "mime": _STR, "extension": _STR, "url": _URL, "size": _INT}
)
IMAGE_SCHEMA = _object(
    {
        "name": _STR,
        "extension": _STR,
        "size": _INT,
        "width": _INT,
        "height": _INT,
        "date": _DATE,
        "date_gmt": _DATE,
        "title": _STR,
        "description": {"type": ["string", "null"]},
        "nsfw": {"enum": [0, 1]},
        "md5": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
        "original_filename": _STR,
        "expiration_date_gmt": {"oneOf": [_DATE, {"type": "null"}]},
        "id_encoded": _STR,
        "filename": _STR,
        "mime": _STR,
        "url": _URL,
        "image": _FILE,
        "thumb": _FILE,
        "medium": _FILE,
        "url_viewer": _URL,
        "url_short": _URL,
        "display_url": _URL,
        "display_width": _INT,
        "display_height": _INT,
        "size_formatted": _STR,
        "delete_url": {"type": "null"},
    }
)
_SUCCESS = {"const": {"message": "image uploaded", "code": 200}}
SUCCESS_SCHEMA = {
    "oneOf": [
        _object(
            {
                "status_code": {"const": 200},
                "success": _SUCCESS,
                "image": IMAGE_SCHEMA,
                "status_txt": {"const": "OK"},
            }
        ),
        _object(
            {
                "status_code": {"const": 200},
                "success": _SUCCESS,
                "data": IMAGE_SCHEMA,
                "status_txt": {"const": "OK"},
                "status": {"const": 200},
            }
        ),
    ]
}
ERROR_SCHEMA = _object(
    {
        "status_code": {"type": "integer"},
        "error": _object({"message": _STR, "code": {"type": "integer"}}),
        "status_txt": _STR,
    }
)
_FIELDS: dict[str, tuple[dict[str, Any], str]] = {
    "key": (_STR, "The API key (or the X-API-Key header)"),
    # Documented as base64 text so that generated requests never make gazou download
    # from the internet; an http(s) URL is accepted as well.
    "source": (_BASE64, "Base64 image data (a data: URL too) or an http(s) URL"),
    "image": (_BASE64, "imgBB style source; the answer then says `data` and `status`"),
    "title": (_STR, "Image title"),
    "name": (_STR, "Alias of title"),
    "description": (_STR, "Image description"),
    "album_id": (_STR, "An existing album's id"),
    "category_id": (_STR, "A tag's id or name"),
    "width": ({"type": "integer", "minimum": 16, "maximum": 10000}, "Resize to this width"),
    "expiration": (_STR, "ISO-8601 duration (PT5M ... P1Y) or seconds; 5 min - 1 year"),
    "nsfw": ({"enum": ["0", "1"]}, "1 marks the image not safe for work"),
    "format": ({"enum": list(FORMATS)}, "json (default), txt (the URL) or redirect"),
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": ERROR_SCHEMA}, "text/plain": {"schema": _STR}},
    }


def _upload_operation(method: str, suffix: str) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": "X-API-Key", "in": "header", "required": False, "schema": _STR}
    ]
    query_fields = _FIELDS if method == "get" else {k: _FIELDS[k] for k in ("key", "format")}
    params += [
        {"name": n, "in": "query", "required": False, "schema": s, "description": d}
        for n, (s, d) in query_fields.items()
    ]
    operation: dict[str, Any] = {
        "operationId": f"chevereto_upload_{method}{suffix}",
        "summary": "Chevereto v1.1: upload an image",
        "tags": ["Chevereto v1.1"],
        "parameters": params,
        "responses": {
            "200": {
                "description": "Uploaded (json) or its direct URL (txt)",
                "content": {
                    "application/json": {"schema": SUCCESS_SCHEMA},
                    "text/plain": {"schema": _STR},
                },
            },
            "302": {
                "description": "format=redirect: to the viewer page",
                "headers": {"Location": {"schema": _STR}},
            },
            "400": _error(
                "Bad Request: key (code 100), base64 (120), empty source (130), "
                "bad image or parameter"
            ),
            "401": _error("Request denied: the key may not upload"),
            "413": _error("The image or the request is too large"),
            "429": _error("Too many requests"),
        },
    }
    if method == "post":
        fields = {n: s for n, (s, _) in _FIELDS.items()}
        multipart = {
            **fields,
            "source": {
                "oneOf": [
                    _BASE64,
                    {"type": "string", "contentMediaType": "application/octet-stream"},
                ]
            },
        }
        operation["requestBody"] = {
            "required": False,
            "content": {
                "multipart/form-data": {"schema": {"type": "object", "properties": multipart}},
                "application/x-www-form-urlencoded": {
                    "schema": {"type": "object", "properties": fields}
                },
            },
        }
    return operation


def _openapi_paths() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for path, suffix in zip(UPLOAD_PATHS, ("", "_slash"), strict=True):
        paths[path] = {
            "get": _upload_operation("get", suffix),
            "post": _upload_operation("post", suffix),
        }
    paths[VIEWER_PREFIX + "{id}"] = {
        "get": {
            "operationId": "chevereto_viewer",
            "summary": "Chevereto v1.1: an uploaded image's viewer page",
            "tags": ["Chevereto v1.1"],
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": _STR},
                {"name": "expires", "in": "query", "required": False, "schema": _STR},
                {"name": "signature", "in": "query", "required": False, "schema": _STR},
            ],
            "responses": {
                "200": {"description": "The page", "content": {"text/html": {"schema": _STR}}},
                "400": {
                    "description": "A request line too long for the HTTP server",
                    "content": {"text/plain": {"schema": _STR}},
                },
                "403": {
                    "description": "An altered or expired signed link",
                    "content": {"text/html": {"schema": _STR}},
                },
                "404": {"description": "No such image", "content": {"text/html": {"schema": _STR}}},
                "429": _error("Too many requests"),
            },
        }
    }
    return paths


DIALECT = Dialect(
    name="chevereto",
    routes=_routes(),
    render_error=render_error,
    prefixes=("/api/1", VIEWER_PREFIX),
    rate_limits=RATE_LIMITS,
    openapi_paths=_openapi_paths(),
)
