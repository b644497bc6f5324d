"""Lenient request-body reading shared by the upload routes: multipart, urlencoded
or JSON, with files told apart from text fields and the size capped while reading."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import CIMultiDictProxy

from core.errors import ImageTooLarge, InvalidInput


@dataclass(frozen=True, slots=True)
class Upload:
    """One file part."""

    filename: str | None
    content_type: str | None
    data: bytes


@dataclass(slots=True)
class Form:
    """Text fields and file parts by name (a name may repeat)."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, list[Upload]] = field(default_factory=dict)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first text value of `name`."""
        values = self.fields.get(name)
        return values[0] if values else default

    def getall(self, name: str) -> list[str]:
        """Every text value of `name`."""
        return list(self.fields.get(name, []))

    def file(self, name: str) -> Upload | None:
        """The first file part named `name`."""
        files = self.files.get(name)
        return files[0] if files else None

    def getfiles(self, name: str) -> list[Upload]:
        """Every file part named `name`."""
        return list(self.files.get(name, []))


def _too_large(limit: int) -> ImageTooLarge:
    return ImageTooLarge(f"Request body is larger than {limit // (1024 * 1024)} MB", limit=limit)


def _is_file_part(headers: CIMultiDictProxy[str], filename: str | None) -> bool:
    if filename is not None:
        return True
    ctype = headers.get("Content-Type", "text/plain").split(";")[0].strip().lower()
    return not (ctype.startswith("text/") or ctype in ("", "application/x-www-form-urlencoded"))


async def read_form(request: web.Request, max_bytes: int) -> Form:
    """Read the body as a form. Multipart parts with a file name (or a non-text type)
    are files; JSON objects become fields (lists kept as repeated values)."""
    form = Form()
    if request.content_length is not None and request.content_length > max_bytes:
        raise _too_large(max_bytes)
    ctype = request.content_type
    if ctype.startswith("multipart/"):
        try:
            reader = await request.multipart()
            total = 0
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader) or part.name is None:
                    continue  # nested multipart or nameless part: nothing a client means
                chunks = []
                while chunk := await part.read_chunk(64 * 1024):
                    total += len(chunk)
                    if total > max_bytes:
                        raise _too_large(max_bytes)
                    chunks.append(chunk)
                data = b"".join(chunks)
                if _is_file_part(part.headers, part.filename):
                    form.files.setdefault(part.name, []).append(
                        Upload(part.filename, part.headers.get("Content-Type"), data)
                    )
                else:
                    charset = part.get_charset(default="utf-8")
                    form.fields.setdefault(part.name, []).append(
                        data.decode(charset, errors="replace")
                    )
        except (ValueError, AssertionError, LookupError, HttpProcessingError) as exc:
            # HttpProcessingError: a part's headers are malformed (e.g. control bytes).
            raise InvalidInput(f"Malformed multipart body: {exc}") from None
        return form
    body = await _read_capped(request, max_bytes)
    if ctype == "application/x-www-form-urlencoded":
        from urllib.parse import parse_qsl

        for key, value in parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True):
            form.fields.setdefault(key, []).append(value)
        return form
    if body.strip():
        data = parse_json_object(body)
        for key, value in data.items():
            values = value if isinstance(value, list) else [value]
            form.fields[key] = [v if isinstance(v, str) else json.dumps(v) for v in values]
    return form


async def _read_capped(request: web.Request, max_bytes: int) -> bytes:
    chunks, total = [], 0
    while chunk := await request.content.read(64 * 1024):
        total += len(chunk)
        if total > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json_object(body: bytes) -> dict:
    """A JSON object from `body`; InvalidInput for anything else."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidInput("Body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidInput("Body must be a JSON object")
    return data


async def read_json_object(request: web.Request, max_bytes: int) -> dict:
    """The body as a JSON object whatever the declared Content-Type (some clients omit
    it); an empty body is {}."""
    body = await _read_capped(request, max_bytes)
    return parse_json_object(body) if body.strip() else {}
