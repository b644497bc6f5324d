"""Serving image bytes: correct Content-Type, a strong ETag from the content hash,
caching headers, 304s, ranges and HEAD, for every dialect's file routes.

Who gets the bytes is core/visibility.py's rule: a file URL serves an approved or
pending image to whoever holds the link, with no token (the id is an unguessable
UUID); a rejected or expired one is 404 for everyone. Approved bytes never change, so
they are cached as immutable; a pending image's are `private, no-store`, kept out of
shared caches because it can still be rejected. A link that carries a signature
(api/links.py: NekosAPI's urls, Chevereto's older answers) must carry a valid,
unexpired one, else 403. Small files are kept in memory by content hash and sent as
FileResponse would send them; bigger ones go through FileResponse (sendfile) with our
ETag in place of its when the blob store has a local file, and are streamed from the
store otherwise (S3), with the same headers, ranges and HEAD answers.

With BLOB_REDIRECT=on, a store with direct URLs (S3's presigned GETs) serves approved
bytes itself: the answer is a 302 to a URL valid REDIRECT_SECONDS. Pending bytes are
never redirected: they are `private, no-store` and may be rejected within the URL's
lifetime, and a URL cannot be taken back. Validators (304, 412) are still answered
here, before any redirect."""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from pathlib import Path
from typing import Any

from aiohttp import hdrs, web
from multidict import CIMultiDict

from api.keys import SERVICES
from api.links import check_link_signature
from core.contracts import BlobStore
from core.errors import NotFound
from core.models import Image, ImageFile
from core.visibility import cacheable_by_anyone

IMMUTABLE = "public, max-age=31536000, immutable"
PRIVATE = "private, no-store"
# Files up to this size are served from memory, kept by content hash (so a cached copy
# is never stale), within MEMORY_BUDGET bytes; bigger ones go through sendfile.
MEMORY_MAX_FILE = 1024 * 1024
MEMORY_BUDGET = 64 * 1024 * 1024
# With BLOB_REDIRECT=on, how long the direct (presigned) URL of an approved image
# lives; the redirect itself may be cached for half of it, so a cached redirect never
# points at an expired URL.
REDIRECT_SECONDS = 3600


class _ImageFileResponse(web.FileResponse):
    """aiohttp's FileResponse (sendfile, ranges, HEAD) with our ETag in place of its
    mtime-and-size one: the bytes are named by their hash, which survives a restore
    from backup or a move to another disk."""

    def __init__(
        self,
        path: Path,
        etag: str,
        headers: dict[str, str],
        seen_request: web.BaseRequest | None = None,
    ) -> None:
        super().__init__(path, headers=headers)
        self._strong_etag = etag
        self._headers[hdrs.ETAG] = f'"{etag}"'
        # The request as FileResponse should see it (our validators already applied).
        self._seen_request = seen_request

    async def prepare(self, request: web.BaseRequest) -> Any:
        if self.prepared:
            return None
        return await super().prepare(self._seen_request or request)

    @property
    def etag(self) -> Any:
        return super().etag

    @etag.setter
    def etag(self, value: Any) -> None:
        # FileResponse writes its own validator while preparing; keep ours.
        self._headers[hdrs.ETAG] = f'"{self._strong_etag}"'


class ByteCache:
    """Bytes of small image files by content hash; least recently used go first."""

    def __init__(self, budget: int = MEMORY_BUDGET) -> None:
        self.budget = budget
        self.used = 0
        self._items: OrderedDict[str, bytes] = OrderedDict()

    def get(self, key: str) -> bytes | None:
        """The bytes cached under `key`, if any (now the most recently used)."""
        data = self._items.get(key)
        if data is not None:
            self._items.move_to_end(key)
        return data

    def put(self, key: str, data: bytes) -> None:
        """Keep `data` under `key`, dropping the least recently used to fit."""
        if len(data) > self.budget or key in self._items:
            return
        self._items[key] = data
        self.used += len(data)
        while self.used > self.budget:
            _, dropped = self._items.popitem(last=False)
            self.used -= len(dropped)


# The app's cache of small files (set by create_app).
FILE_CACHE = web.AppKey("file_cache", ByteCache)


def _etag_matches(header: str | None, etag: str, *, weak: bool) -> bool:
    """Whether an If-None-Match / If-Match / If-Range list names `etag` (or `*`)."""
    if header is None:
        return False
    for item in header.split(","):
        item = item.strip()
        if item == "*":
            return True
        is_weak = item.startswith("W/")
        if is_weak and not weak:
            continue
        if item.removeprefix("W/") == f'"{etag}"':
            return True
    return False


async def servable_image(request: web.Request, image_id: str) -> ImageFile:
    """The image behind a file route (core/visibility.py: approved or pending, not
    expired, whoever asks); NotFound otherwise, the same answer whether it is missing,
    rejected or expired. Forbidden for an altered or expired link signature."""
    # A signature is checked when present, so a signed link can't be stretched or
    # moved to another image; it opens nothing a plain link doesn't.
    check_link_signature(request)
    return await request.app[SERVICES].images.at_link(image_id)


async def image_response(
    request: web.Request, image: Image | ImageFile, *, thumbnail: bool = False
) -> web.StreamResponse:
    """The image's bytes (or its JPEG thumbnail) with validators and caching headers;
    304 on a matching If-None-Match, 206 for a Range, bodiless for HEAD."""
    services = request.app[SERVICES]
    etag = f"{image.sha256}-thumb" if thumbnail else image.sha256
    cache_control = IMMUTABLE if cacheable_by_anyone(image.status) else PRIVATE
    headers = {
        hdrs.CONTENT_TYPE: "image/jpeg" if thumbnail else image.mimetype,
        hdrs.CACHE_CONTROL: cache_control,
        # Bytes are sniffed and vetted at upload; browsers must not second-guess the type.
        "X-Content-Type-Options": "nosniff",
    }
    if _etag_matches(request.headers.get(hdrs.IF_NONE_MATCH), etag, weak=True):
        return web.Response(status=304, headers={**headers, hdrs.ETAG: f'"{etag}"'})
    if_match = request.headers.get(hdrs.IF_MATCH)
    if if_match is not None and not _etag_matches(if_match, etag, weak=False):
        return web.Response(
            status=412, headers={hdrs.ETAG: f'"{etag}"', hdrs.CACHE_CONTROL: cache_control}
        )
    # The validators above are ours; FileResponse would compare them with its own
    # mtime-based tag, so they are taken off the request it sees. An If-Range that
    # does not name these bytes means "send everything".
    drop = {hdrs.IF_NONE_MATCH, hdrs.IF_MATCH, hdrs.IF_RANGE}
    if_range = request.headers.get(hdrs.IF_RANGE)
    if if_range is not None and not _etag_matches(if_range, etag, weak=False):
        drop.add(hdrs.RANGE)
    seen = None
    if any(h in request.headers for h in drop):
        kept = CIMultiDict((k, v) for k, v in request.headers.items() if k not in drop)
        seen = request.clone(headers=kept)
    blobs = services.images.blobs
    key = services.images.blob_key(image, thumbnail=thumbnail)
    if services.settings.blob_redirect and cacheable_by_anyone(image.status):
        url = await blobs.direct_url(key, REDIRECT_SECONDS)
        if url is not None:
            # Only bytes that never change and that anyone may see leave for a URL we
            # cannot take back; pending ones could be rejected within its lifetime.
            return web.Response(
                status=302,
                headers={
                    hdrs.LOCATION: url,
                    hdrs.ETAG: f'"{etag}"',
                    hdrs.CACHE_CONTROL: f"public, max-age={REDIRECT_SECONDS // 2}",
                },
            )
    size = image.thumbnail_size if thumbnail else image.size
    file_cache = request.app.get(FILE_CACHE)
    if file_cache is not None and size <= MEMORY_MAX_FILE:
        data = file_cache.get(etag)
        if data is None:
            try:
                data = await services.images.read_bytes(image, thumbnail=thumbnail)
            except FileNotFoundError:
                raise NotFound("Image not found") from None
            file_cache.put(etag, data)
        return _bytes_response(seen or request, data, etag, headers)
    path = blobs.local_path(key)
    if path is not None:
        return _ImageFileResponse(path, etag, headers, seen)
    return await _stream_response(seen or request, blobs, key, size, etag, headers)


class _Unsatisfiable(Exception):
    """The Range header names no bytes of the file (416)."""


def _byte_range(request: web.BaseRequest, size: int) -> tuple[int, int] | None:
    """The one (start, count) asked for by the Range header, None for the whole file;
    _Unsatisfiable for a range outside it or several ranges (as FileResponse does)."""
    if hdrs.RANGE not in request.headers:
        return None
    try:
        rng = request.http_range
    except ValueError:
        raise _Unsatisfiable from None
    start, end = rng.start, rng.stop
    if start is None:
        return None
    if start < 0 and end is None:  # the last -start bytes
        start = max(0, start + size)
        count = size - start
    else:
        count = min(end if end is not None else size, size) - start
    if start >= size or count <= 0:
        raise _Unsatisfiable
    return start, count


def _bytes_response(
    request: web.BaseRequest, data: bytes, etag: str, headers: dict[str, str]
) -> web.Response:
    """`data` as FileResponse would send a file of it: whole, or the one byte range
    asked for (206), or 416 for a range outside it. Validators are already applied."""
    size = len(data)
    headers = {**headers, hdrs.ETAG: f'"{etag}"', hdrs.ACCEPT_RANGES: "bytes"}
    try:
        span = _byte_range(request, size)
    except _Unsatisfiable:
        return web.Response(status=416, headers={**headers, hdrs.CONTENT_RANGE: f"bytes */{size}"})
    if span is None:
        return web.Response(body=data, headers=headers)
    start, count = span
    headers[hdrs.CONTENT_RANGE] = f"bytes {start}-{start + count - 1}/{size}"
    return web.Response(status=206, body=data[start : start + count], headers=headers)


async def _stream_response(
    request: web.BaseRequest,
    blobs: BlobStore,
    key: str,
    size: int,
    etag: str,
    headers: dict[str, str],
) -> web.StreamResponse:
    """The bytes under `key` streamed from a store with no local file (S3), answering
    exactly as _bytes_response would: whole, one range (206), 416, HEAD without body.
    `size` is the stored size from the row, so no request is spent asking the store."""
    headers = {**headers, hdrs.ETAG: f'"{etag}"', hdrs.ACCEPT_RANGES: "bytes"}
    try:
        span = _byte_range(request, size)
    except _Unsatisfiable:
        return web.Response(status=416, headers={**headers, hdrs.CONTENT_RANGE: f"bytes */{size}"})
    start, count = span if span is not None else (0, size)
    status = 200
    if span is not None:
        status = 206
        headers[hdrs.CONTENT_RANGE] = f"bytes {start}-{start + count - 1}/{size}"
    if request.method == hdrs.METH_HEAD:
        if not await blobs.exists(key):
            raise NotFound("Image not found")
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = count
        await response.prepare(request)
        await response.write_eof()
        return response
    async with contextlib.aclosing(blobs.read(key, start, start + count)) as chunks:
        # The first chunk is read before the status goes out, so a missing object is
        # still a clean 404 rather than a cut 200.
        try:
            first = await anext(chunks, b"")
        except FileNotFoundError:
            raise NotFound("Image not found") from None
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = count
        await response.prepare(request)
        await response.write(first)
        async for chunk in chunks:
            await response.write(chunk)
    await response.write_eof()
    return response


async def serve(
    request: web.Request, image_id: str, *, thumbnail: bool = False
) -> web.StreamResponse:
    """Look up `image_id` and answer with its bytes (the usual file-route handler body)."""
    image = await servable_image(request, image_id)
    return await image_response(request, image, thumbnail=thumbnail)


# ---- OpenAPI ---------------------------------------------------------------------

_BINARY = {"type": "string", "contentMediaType": "application/octet-stream"}


def file_operation(
    summary: str,
    operation_id: str,
    params: list[dict[str, Any]],
    media_types: tuple[str, ...],
    error: dict[str, Any],
) -> dict[str, Any]:
    """An OpenAPI GET operation for a file route; `error` is the dialect's error
    response object for 404 (and the other error statuses)."""
    headers = {
        "ETag": {"schema": {"type": "string"}},
        "Cache-Control": {"schema": {"type": "string"}},
    }
    return {
        "summary": summary,
        "operationId": operation_id,
        "parameters": [
            *params,
            {
                "name": "Range",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "pattern": "^bytes=[0-9]*-[0-9]*$"},
            },
            {
                "name": "If-None-Match",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
            },
        ],
        "responses": {
            "200": {
                "description": "The bytes.",
                "headers": headers,
                "content": {m: {"schema": _BINARY} for m in media_types},
            },
            "206": {
                "description": "The requested byte range.",
                "headers": headers,
                "content": {m: {"schema": _BINARY} for m in media_types},
            },
            "304": {"description": "Not modified (If-None-Match named these bytes)."},
            "404": error,
            "412": {"description": "If-Match named other bytes."},
            "416": {"description": "The range lies outside the bytes."},
        },
    }
