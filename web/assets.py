"""The gallery's static files (stylesheet, scripts, vendored htmx), read once at start
and served from memory with a content hash in their URLs, so browsers keep them for
good and a new version is a new URL."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).parent / "static"
_TYPES = {
    ".css": "text/css",
    ".js": "text/javascript",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}


@dataclass(frozen=True, slots=True)
class Asset:
    """One static file: its bytes, gzipped bytes, type and content hash."""

    body: bytes
    gzipped: bytes
    content_type: str
    version: str


class Assets:
    """Every servable file under web/static (not the docs beside them)."""

    def __init__(self, folder: Path = STATIC_DIR) -> None:
        self.files: dict[str, Asset] = {}
        for path in sorted(folder.iterdir()):
            content_type = _TYPES.get(path.suffix)
            if content_type is None or not path.is_file():
                continue
            body = path.read_bytes()
            self.files[path.name] = Asset(
                body=body,
                gzipped=gzip.compress(body, 9, mtime=0),
                content_type=content_type,
                version=hashlib.sha256(body).hexdigest()[:12],
            )

    def url(self, name: str) -> str:
        """The versioned path of a static file (KeyError for an unknown one)."""
        return f"/static/{name}?v={self.files[name].version}"

    async def handler(self, request: web.Request) -> web.Response:
        """Serve one file; a URL with the current version is cacheable for good."""
        asset = self.files.get(request.match_info["name"])
        if asset is None:
            raise web.HTTPNotFound()
        etag = f'"{asset.version}"'
        versioned = request.rel_url.query.get("v") == asset.version
        headers = {
            "ETag": etag,
            "Cache-Control": "public, max-age=31536000, immutable"
            if versioned
            else "public, max-age=300",
            "Vary": "Accept-Encoding",
        }
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        body = asset.body
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            body = asset.gzipped
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, content_type=asset.content_type, headers=headers)
