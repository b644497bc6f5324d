"""MikuAPI v2: a random SFW image URL, the list of all of them, token uploads, and the
files under /img.

Uploads follow core/visibility.py: with an `admin` token they are approved at once;
any other token's start pending. Either way the returned file (`/img/<filename>`)
answers at once to whoever holds the link, as a ShareX upload's clipboard link must;
a pending upload appears in /random and /all only once an owner approves it, and a
rejected one is gone (404)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from api import files
from api.auth import HeaderForm, authenticate
from api.dialect import Dialect, RateLimit, json_response
from api.forms import continue_when_read, read_form, upload_body_limit
from api.keys import SERVICES
from core.errors import (
    DuplicateImage,
    Forbidden,
    GazouError,
    InvalidInput,
    NotFound,
    Unauthorized,
    UnsupportedImage,
)
from core.imaging import sniff_format
from core.models import Filters, IngestMetadata, Rating, SearchQuery, User
from core.tokens import SCOPE_UPLOAD
from core.visibility import trusted_uploader

NAME = "miku"
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "GIF"})
# /all lists every SFW image in the original; past this many it would be a page of
# megabytes per call, so it stops here (newest first).
ALL_LIMIT = 1000
_PAGE = 100
ALL_MESSAGE = (
    "Warning, making usage of this endpoint is NOT recommended if you want to show all "
    "images, this could get clients being ratelimited by the API."
)
CUID_MESSAGE = "File as been renamed to a collision resistant ID. (CUID)"
ACCESS_DENIED = "Access denied"
_SFW = Filters(ratings=frozenset({Rating.SFW}))

routes = web.RouteTableDef()


def _file_url(request: web.Request, filename: str) -> str:
    return f"{request.app[SERVICES].settings.public_url}/img/{filename}"


@routes.get("/api/v2/random", name=f"{NAME}.random")
async def random_image(request: web.Request) -> web.Response:
    """One random approved SFW image's URL."""
    images = await request.app[SERVICES].images.random_files(_SFW, 1)
    if not images:
        raise NotFound("No images available")
    return json_response({"url": _file_url(request, images[0].filename)})


@routes.get("/api/v2/all", name=f"{NAME}.all")
async def all_images(request: web.Request) -> web.Response:
    """URLs of the approved SFW images, newest first (at most ALL_LIMIT)."""
    service = request.app[SERVICES].images
    urls: list[str] = []
    while len(urls) < ALL_LIMIT:
        page = await service.search(
            SearchQuery(ratings=frozenset({Rating.SFW}), skip=len(urls), limit=_PAGE),
            count_total=False,
        )
        urls.extend(_file_url(request, image.filename) for image in page.images)
        if len(page.images) < _PAGE:
            break
    return json_response({"message": ALL_MESSAGE, "files": urls[:ALL_LIMIT]})


@routes.post("/api/add", name=f"{NAME}.add", expect_handler=continue_when_read)
async def add_image(request: web.Request) -> web.Response:
    """Upload one jpg/png/gif (multipart field `image`, at most 5 MB)."""
    services = request.app[SERVICES]
    token = await authenticate(request, HeaderForm.BEARER)
    assert token is not None
    services.tokens.require(token, SCOPE_UPLOAD)
    # After the token check, and refused from Content-Length before any body is read.
    form = await read_form(
        request, upload_body_limit(services.settings.max_request_bytes, MAX_UPLOAD_BYTES)
    )
    upload = form.file("image")
    if upload is None:
        raise InvalidInput("No image provided (multipart field `image`)")
    if sniff_format(upload.data) not in ALLOWED_FORMATS:
        raise UnsupportedImage("Only .jpg, .png and .gif images are accepted")
    meta = IngestMetadata(original_filename=upload.filename, max_bytes=MAX_UPLOAD_BYTES)
    image = await services.images.ingest(
        upload.data,
        meta,
        User(token.owner_id, token.owner_name),
        trusted=trusted_uploader(token),
    )
    return json_response({"message": CUID_MESSAGE, "filename": image.filename, "cuid": image.id})


@routes.get("/img/{file}", name=f"{NAME}.file")
async def image_file(request: web.Request) -> web.StreamResponse:
    """An image's bytes by `<id>.<ext>` (the id decides; the extension is cosmetic)."""
    return await files.serve(request, request.match_info["file"].split(".", 1)[0])


def render_error(error: GazouError) -> web.Response:
    """Auth failures are the original's bare text `Access denied`; everything else is
    `{"message": ...}` with the error's status."""
    if isinstance(error, Unauthorized):
        return web.Response(status=401, text=ACCESS_DENIED, content_type="text/plain")
    if isinstance(error, Forbidden):
        return web.Response(status=403, text=ACCESS_DENIED, content_type="text/plain")
    body: dict[str, Any] = {"message": error.message}
    if isinstance(error, DuplicateImage):
        body["cuid"] = error.existing_id
    return json_response(body, status=error.status)


# ---- OpenAPI ---------------------------------------------------------------------

_MESSAGE = {
    "type": "object",
    "required": ["message"],
    "properties": {"message": {"type": "string"}, "cuid": {"type": "string"}},
    "additionalProperties": False,
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _MESSAGE}}}


_DENIED = {
    "description": "No token, or a bad one, or one without `image:upload`.",
    "content": {"text/plain": {"schema": {"const": ACCESS_DENIED}}},
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v2/random": {
        "get": {
            "summary": "A random image's URL (SFW)",
            "operationId": "miku.random",
            "responses": {
                "200": {
                    "description": "The URL.",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["url"],
                                "properties": {"url": {"type": "string", "format": "uri"}},
                                "additionalProperties": False,
                            }
                        }
                    },
                },
                "404": _error("The collection has no SFW image yet."),
            },
        }
    },
    "/api/v2/all": {
        "get": {
            "summary": f"URLs of all SFW images (newest {ALL_LIMIT})",
            "operationId": "miku.all",
            "responses": {
                "200": {
                    "description": "The URLs.",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["message", "files"],
                                "properties": {
                                    "message": {"type": "string"},
                                    "files": {
                                        "type": "array",
                                        "maxItems": ALL_LIMIT,
                                        "items": {"type": "string", "format": "uri"},
                                    },
                                },
                                "additionalProperties": False,
                            }
                        }
                    },
                },
            },
        }
    },
    "/api/add": {
        "post": {
            "summary": "Upload an image (jpg, png or gif, at most 5 MB)",
            "operationId": "miku.add",
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
                                "required": ["message", "filename", "cuid"],
                                "properties": {
                                    "message": {"const": CUID_MESSAGE},
                                    "filename": {"type": "string"},
                                    "cuid": {"type": "string"},
                                },
                                "additionalProperties": False,
                            }
                        }
                    },
                },
                "400": _error("No image, not an image, or not a jpg/png/gif."),
                "401": _DENIED,
                "403": _DENIED,
                "409": _error("These exact bytes are already stored (`cuid` names them)."),
                "413": _error("Larger than 5 MB (or than the server's request limit)."),
            },
        }
    },
    "/img/{file}": {
        "get": files.file_operation(
            "An image's bytes",
            "miku.file",
            [{"name": "file", "in": "path", "required": True, "schema": {"type": "string"}}],
            ("image/jpeg", "image/png", "image/gif", "image/webp"),
            _error("No such image (or it was rejected, or has expired)."),
        )
    },
}

DIALECT = Dialect(
    name=NAME,
    routes=list(routes),
    render_error=render_error,
    prefixes=("/api/v2", "/api/add", "/img"),
    # MikuAPI publishes no limit; uploads get one so a token can't flood the
    # moderation queue (ShareX users upload a few a minute at most).
    rate_limits={f"{NAME}.add": RateLimit(10, 60.0, reset="seconds")},
    openapi_paths=OPENAPI_PATHS,
)
