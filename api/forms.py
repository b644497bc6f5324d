"""Lenient request-body reading shared by the upload routes: multipart, urlencoded
or JSON, with files told apart from text fields and the size capped while reading."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import BodyPartReader, HttpVersion11, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import CIMultiDictProxy

from core.errors import ImageTooLarge, InvalidInput

# No client nests request JSON more than a few levels; deeper input is refused before
# anything walks it recursively (orjson alone stops at 1024, past the recursion limit of
# the stdlib's json.dumps that re-encodes nested form values).
MAX_JSON_DEPTH = 32


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


_CONTINUE_SENT = web.RequestKey("continue_sent", bool)


async def continue_when_read(request: web.Request) -> None:
    """The upload routes' Expect handler: no "100 Continue" yet. aiohttp's default sends
    it before the handler runs, so a client told to go on sends a body the handler then
    refuses unread (no token, too large); here a refusal is the final answer and the
    client never sends it. `read_form` and friends send the 100 once they read."""
    expect = request.headers.get(hdrs.EXPECT, "")
    if request.version == HttpVersion11 and expect.lower() != "100-continue":
        raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expect}")


async def _continue(request: web.Request) -> None:
    """Tell a client waiting with `Expect: 100-continue` to send its body, once."""
    if (
        request.version == HttpVersion11
        and request.headers.get(hdrs.EXPECT, "").lower() == "100-continue"
        and not request.get(_CONTINUE_SENT)
    ):
        request[_CONTINUE_SENT] = True
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # as aiohttp's own handler: the body is yet to come


# Room for a form's text fields and multipart headers around its file.
FORM_OVERHEAD = 64 * 1024


def upload_body_limit(max_request_bytes: int, file_bytes: int) -> int:
    """The most an upload route reads of a body carrying one file of `file_bytes`:
    the file and the form around it, never past MAX_REQUEST_MB."""
    return min(max_request_bytes, file_bytes + FORM_OVERHEAD)


def _too_large(limit: int) -> ImageTooLarge:
    return ImageTooLarge(f"Request body is larger than {limit // (1024 * 1024)} MB", limit=limit)


def _is_file_part(headers: CIMultiDictProxy[str], filename: str | None) -> bool:
    if filename is not None:
        return True
    ctype = headers.get("Content-Type", "text/plain").split(";")[0].strip().lower()
    return not (ctype.startswith("text/") or ctype in ("", "application/x-www-form-urlencoded"))


def _names(part: BodyPartReader) -> tuple[str | None, str | None]:
    """The part's field name and file name, storable."""
    filename = part.filename
    return part.name, None if filename is None else storable_text(filename)


async def read_form(request: web.Request, max_bytes: int) -> Form:
    """Read the body as a form. Multipart parts with a file name (or a non-text type)
    are files; JSON objects become fields (lists kept as repeated values)."""
    form = Form()
    if request.content_length is not None and request.content_length > max_bytes:
        raise _too_large(max_bytes)
    await _continue(request)
    ctype = request.content_type
    if ctype.startswith("multipart/"):
        try:
            reader = await request.multipart()
            # Counted on the body as received (de-chunked, decompressed), so what the
            # reader skips (a preamble, nameless parts) counts too.
            received = request.content
            while (part := await reader.next()) is not None:
                if received.total_bytes > max_bytes:
                    raise _too_large(max_bytes)
                if not isinstance(part, BodyPartReader):
                    continue  # nested multipart: nothing a client means
                name, filename = _names(part)
                if name is None:
                    continue  # a nameless part
                chunks = []
                while chunk := await part.read_chunk(64 * 1024):
                    if received.total_bytes > max_bytes:
                        raise _too_large(max_bytes)
                    chunks.append(chunk)
                data = b"".join(chunks)
                if _is_file_part(part.headers, filename):
                    form.files.setdefault(name, []).append(
                        Upload(filename, part.headers.get("Content-Type"), data)
                    )
                else:
                    charset = part.get_charset(default="utf-8")
                    form.fields.setdefault(name, []).append(data.decode(charset, errors="replace"))
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
        obj = parse_json_object(body)
        for key, value in obj.items():
            values = value if isinstance(value, list) else [value]
            form.fields[key] = [v if isinstance(v, str) else json.dumps(v) for v in values]
    return form


async def _read_capped(request: web.Request, max_bytes: int) -> bytes:
    if request.content_length is not None and request.content_length > max_bytes:
        raise _too_large(max_bytes)
    await _continue(request)
    chunks, total = [], 0
    while chunk := await request.content.read(64 * 1024):
        total += len(chunk)
        if total > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def storable_text(text: str) -> str:
    """`text` with whatever is not valid UTF-8 replaced by U+FFFD: aiohttp keeps the
    non-UTF-8 bytes of a part's headers (its file name) as lone surrogates, which no
    store can encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogateescape" if _escaped_only(text) else "surrogatepass")
        return raw.decode("utf-8", "replace")
    return text


def _escaped_only(text: str) -> bool:
    # surrogateescape gives back the original bytes, but only for U+DC80-U+DCFF.
    return all(not 0xD800 <= ord(c) <= 0xDFFF or 0xDC80 <= ord(c) <= 0xDCFF for c in text)


def _too_deep(value: Any, limit: int) -> bool:
    """Whether `value` nests arrays or objects more than `limit` levels (iteratively)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        elif not isinstance(item, list):
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in item if isinstance(child, dict | list))
    return False


def parse_json(data: bytes | str, what: str = "Body") -> Any:
    """Request JSON, parsed safely: InvalidInput naming `what` for anything that is not
    strict JSON (NaN, numbers past a double, lone surrogates, bad UTF-8 included) or
    that nests more than MAX_JSON_DEPTH levels; never a RecursionError."""
    if isinstance(data, bytes) and data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a UTF-8 byte order mark, which some Windows clients write
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):
            raise InvalidInput(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep") from None
        raise InvalidInput(f"{what} is not valid JSON ({exc})") from None
    if _too_deep(value, MAX_JSON_DEPTH):
        raise InvalidInput(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep")
    return value


def parse_json_object(body: bytes) -> dict:
    """A JSON object from `body`; InvalidInput for anything else."""
    data = parse_json(body)
    if not isinstance(data, dict):
        raise InvalidInput("Body must be a JSON object")
    return data


async def read_json_object(request: web.Request, max_bytes: int) -> dict:
    """The body as a JSON object whatever the declared Content-Type (some clients omit
    it); an empty body is {}."""
    body = await _read_capped(request, max_bytes)
    return parse_json_object(body) if body.strip() else {}
