"""Discord Images (a lolisafe-style host): list the caller's uploads, upload files.

The token comes in a `token:` header. Uploads start pending unless the token has
the `admin` scope (core/visibility.py). The returned URLs (`/img/<file>` and the
thumbnail) answer at once to whoever holds them, pending or not; a pending upload is
listed only in its uploader's own /api/uploads until approved, and a rejected one is
gone (404)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from api.auth import HeaderForm, authenticate
from api.dialect import Dialect, RateLimit, json_response
from api.forms import Upload, continue_when_read, read_form
from api.keys import SERVICES
from core.errors import DuplicateImage, GazouError, InvalidInput, RateLimited, Unauthorized
from core.models import Image, IngestMetadata, SearchQuery, Status, Token, User
from core.tokens import SCOPE_UPLOAD
from core.visibility import trusted_uploader

NAME = "discordimages"
PAGE_SIZE = 25
# File fields clients send: lolisafe's `files[]`, and the bare forms some scripts use.
FILE_FIELDS = ("files[]", "files", "file")
MAX_FILES = 20

routes = web.RouteTableDef()


def pretty_size(size: int) -> str:
    """Bytes in SI units with three significant digits, as lolisafe shows them
    (`508 kB`, `1.5 MB`)."""
    if size < 1000:
        return f"{size} B"
    value = float(size)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        if value < 999.5 or unit == "TB":
            return f"{float(f'{value:.3g}'):g} {unit}"
    raise AssertionError("unreachable")


def _urls(request: web.Request, image: Image) -> tuple[str, str]:
    public = request.app[SERVICES].settings.public_url
    return f"{public}/img/{image.filename}", f"{public}/thumbnail/{image.id}.jpg"


def file_json(request: web.Request, image: Image) -> dict[str, Any]:
    """One entry of /api/uploads."""
    url, thumb = _urls(request, image)
    return {
        "id": image.id,
        "albumid": image.album.id if image.album else None,
        "timestamp": int(image.created_at.timestamp()),
        "name": image.filename,
        "userid": image.uploader.id if image.uploader else None,
        "size": pretty_size(image.size),
        "file": url,
        "date": image.created_at.strftime("%Y/%m/%d %H:%M:%S"),
        "album": image.album.name if image.album else None,
        "extname": f".{image.extension}",
        "thumb": thumb,
    }


async def _caller(request: web.Request) -> Token:
    token = await authenticate(request, HeaderForm.TOKEN_HEADER)
    assert token is not None
    return token


@routes.get("/api/uploads", name=f"{NAME}.uploads")
@routes.get("/api/uploads/{page}", name=f"{NAME}.uploads_page")
async def uploads(request: web.Request) -> web.Response:
    """The caller's uploads, newest first, 25 a page (`/api/uploads/{page}`, from 0)."""
    token = await _caller(request)
    raw_page = request.match_info.get("page", "0")
    # isdigit() alone would let "²" through to int().
    if not (raw_page.isascii() and raw_page.isdigit()) or int(raw_page) > 10_000:
        raise InvalidInput("Page must be a number")
    query = SearchQuery(
        uploader=token.owner_id,
        skip=int(raw_page) * PAGE_SIZE,
        limit=PAGE_SIZE,
        statuses=frozenset({Status.APPROVED, Status.PENDING}),
    )
    page = await request.app[SERVICES].images.search(query, count_total=False)
    # The uploader filter also matches names; keep only what this owner uploaded.
    mine = [i for i in page.images if i.uploader is not None and i.uploader.id == token.owner_id]
    return json_response({"success": True, "files": [file_json(request, i) for i in mine]})


def _uploaded_files(fields: dict[str, list[Upload]]) -> list[Upload]:
    for name in FILE_FIELDS:
        if fields.get(name):
            return fields[name]
    return []


@routes.post("/api/upload", name=f"{NAME}.upload", expect_handler=continue_when_read)
async def upload(request: web.Request) -> web.Response:
    """Store one or more files (multipart `files[]`)."""
    services = request.app[SERVICES]
    token = await _caller(request)
    services.tokens.require(token, SCOPE_UPLOAD)
    form = await read_form(request, services.settings.max_request_bytes)
    parts = _uploaded_files(form.files)
    if not parts:
        raise InvalidInput("No files.")
    if len(parts) > MAX_FILES:
        raise InvalidInput(f"At most {MAX_FILES} files at once.")
    uploader = User(token.owner_id, token.owner_name)
    # All or nothing: a batch with one bad file stores none, so a retry is not a 409.
    stored = await services.images.ingest_many(
        [(part.data, IngestMetadata(original_filename=part.filename)) for part in parts],
        uploader,
        trusted=trusted_uploader(token),
    )
    entries = [
        {"name": i.filename, "code": i.filename, "url": _urls(request, i)[0]} for i in stored
    ]
    body: dict[str, Any] = {"success": True, "code": entries[0]["code"], "url": entries[0]["url"]}
    if len(entries) > 1:
        body["files"] = entries
    return json_response(body)


_STATUS_MESSAGES = {
    404: "Not found.",
    405: "Method not allowed.",
    413: "File too large.",
    500: "Internal server error.",
}


def render_error(error: GazouError) -> web.Response:
    """`{"success": false, "message": ...}` with the error's HTTP status."""
    body: dict[str, Any] = {"success": False, "message": error.message}
    if isinstance(error, Unauthorized):
        missing = error.details.get("reason") == "missing"
        body["message"] = "No token provided." if missing else "Invalid token."
    elif isinstance(error, DuplicateImage):
        body["id"] = error.existing_id
    elif isinstance(error, RateLimited):
        body["message"] = "Too many requests."
    elif type(error) is GazouError or error.status >= 500:
        body["message"] = _STATUS_MESSAGES.get(error.status, error.message)
    return json_response(body, status=error.status)


# ---- OpenAPI ---------------------------------------------------------------------

_ERROR = {
    "type": "object",
    "required": ["success", "message"],
    "properties": {
        "success": {"const": False},
        "message": {"type": "string"},
        "id": {"type": "string"},
    },
    "additionalProperties": False,
}
_NULLABLE_STRING = {"type": ["string", "null"]}
_FILE = {
    "type": "object",
    "required": [
        "id",
        "albumid",
        "timestamp",
        "name",
        "userid",
        "size",
        "file",
        "date",
        "album",
        "extname",
        "thumb",
    ],
    "properties": {
        "id": {"type": "string"},
        "albumid": _NULLABLE_STRING,
        "timestamp": {"type": "integer"},
        "name": {"type": "string"},
        "userid": _NULLABLE_STRING,
        "size": {"type": "string", "pattern": r"^[0-9.]+ (B|kB|MB|GB|TB)$"},
        "file": {"type": "string"},
        "date": {"type": "string", "pattern": r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d$"},
        "album": _NULLABLE_STRING,
        "extname": {"type": "string", "pattern": r"^\.[a-z]+$"},
        "thumb": {"type": "string"},
    },
    "additionalProperties": False,
}
_ENTRY = {
    "type": "object",
    "required": ["name", "code", "url"],
    "properties": {
        "name": {"type": "string"},
        "code": {"type": "string"},
        "url": {"type": "string"},
    },
    "additionalProperties": False,
}
_TOKEN_PARAM = {"name": "token", "in": "header", "required": False, "schema": {"type": "string"}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


def _uploads_op(operation_id: str, params: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "get": {
            "summary": "The caller's uploads, newest first (25 a page)",
            "operationId": operation_id,
            "parameters": [_TOKEN_PARAM, *params],
            "responses": {
                "200": {
                    "description": "The uploads.",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["success", "files"],
                                "properties": {
                                    "success": {"const": True},
                                    "files": {
                                        "type": "array",
                                        "maxItems": PAGE_SIZE,
                                        "items": _FILE,
                                    },
                                },
                                "additionalProperties": False,
                            }
                        }
                    },
                },
                "400": _error("A page that is not a number."),
                "401": _error("No token, or a bad one."),
            },
        }
    }


OPENAPI_PATHS: dict[str, Any] = {
    "/api/uploads": _uploads_op("discordimages.uploads", []),
    "/api/uploads/{page}": _uploads_op(
        "discordimages.uploads_page",
        [{"name": "page", "in": "path", "required": True, "schema": {"type": "string"}}],
    ),
    "/api/upload": {
        "post": {
            "summary": "Upload one or more files",
            "operationId": "discordimages.upload",
            "parameters": [_TOKEN_PARAM],
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["files[]"],
                            "properties": {
                                "files[]": {
                                    "type": "array",
                                    "items": {
                                        "type": "string",
                                        "contentMediaType": "application/octet-stream",
                                    },
                                }
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "Stored (pending unless the token is an admin's).",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["success", "code", "url"],
                                "properties": {
                                    "success": {"const": True},
                                    "code": {"type": "string"},
                                    "url": {"type": "string"},
                                    "files": {"type": "array", "minItems": 2, "items": _ENTRY},
                                },
                                "additionalProperties": False,
                            }
                        }
                    },
                },
                "400": _error("No files, or one that is not a supported image."),
                "401": _error("No token, or a bad one."),
                "403": _error("The token may not upload."),
                "409": _error("These exact bytes are already stored (`id` names them)."),
                "413": _error("Too large (bytes or pixels)."),
            },
        }
    },
}

DIALECT = Dialect(
    name=NAME,
    routes=list(routes),
    render_error=render_error,
    prefixes=("/api/upload", "/api/uploads"),
    # Discord Images publishes no limit; uploads get one (each request may carry up to
    # MAX_FILES files) so a token can't flood the moderation queue.
    rate_limits={f"{NAME}.upload": RateLimit(10, 60.0, reset="seconds")},
    openapi_paths=OPENAPI_PATHS,
)
