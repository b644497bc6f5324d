"""What every dialect module provides, and the helpers they share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import orjson
from aiohttp import web

from core.errors import GazouError
from core.models import Image, Rendition

# Renders a domain error (or an unexpected one, as a 500) in a dialect's own shape.
ErrorRenderer = Callable[[GazouError], web.Response]


@dataclass(frozen=True, slots=True)
class RateLimit:
    """`limit` requests per `window` seconds per client, in fixed windows.

    `reset` is how X-RateLimit-Reset is written: "epoch_ms" (nekos.moe: the unix time
    in milliseconds the window ends) or "seconds" (whole seconds until it ends).
    Enforced by api/ratelimit.py for every route named in a Dialect's `rate_limits`."""

    limit: int
    window: float
    reset: str = "epoch_ms"


@dataclass(frozen=True, slots=True)
class Rendering:
    """A shape of image objects the store keeps ready (core ImageService.add_rendering):
    `render(image)` is run once per change of the image, and a random draw hands out
    its bytes. The name it is kept under must change whenever the shape does (e.g. a
    version suffix), so that no body of an older shape is served."""

    render: Callable[[Image], bytes]
    members: bool = False


@dataclass(slots=True)
class Dialect:
    """One public API's dialect: its routes, its error shape, its limits, its docs.

    Route names are `<dialect name>.<route>`; the error middleware finds the dialect
    of a request from that prefix (or, for unmatched paths, from `prefixes`)."""

    name: str
    routes: Sequence[web.AbstractRouteDef]  # a RouteTableDef, or RouteDefs
    render_error: ErrorRenderer
    prefixes: tuple[str, ...] = ()
    rate_limits: dict[str, RateLimit] = field(default_factory=dict)  # route name -> limit
    openapi_paths: dict[str, Any] = field(default_factory=dict)
    on_startup: list[Callable[[web.Application], Awaitable[None]]] = field(default_factory=list)
    renderings: dict[str, Rendering] = field(default_factory=dict)  # kept name -> rendering


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON response with the plain `application/json` content type."""
    return web.Response(
        body=orjson.dumps(data),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def json_body_response(body: bytes) -> web.Response:
    """A response of JSON already encoded (e.g. joined from kept renderings)."""
    return web.Response(body=body, content_type="application/json")


def bodies(found: list[Rendition]) -> list[bytes]:
    """The kept bodies of drawn renditions (every one has its body once drawn)."""
    return [r.body for r in found if r.body is not None]


def iso_ms(when: datetime) -> str:
    """ISO-8601 in UTC with milliseconds and a Z, as JavaScript's toISOString()."""
    if when.tzinfo is not UTC:
        when = when.astimezone(UTC)
    return when.isoformat(timespec="milliseconds")[:-6] + "Z"


T = TypeVar("T")


class Rendered(Generic[T]):
    """`render(obj)` remembered by the object's identity, for the frozen objects the
    store and the core share: the images of pages and random batches carry the same
    Tag, Artist and Character objects until something changes, and a popular search
    page is one object for a second, so each is shaped once. An entry keeps its object
    alive, so its id can't be reused while it is here. Callers must treat what is
    returned as read-only: it is shared."""

    def __init__(self, render: Callable[[T], Any], max_entries: int = 8192) -> None:
        self._render = render
        self.max_entries = max_entries
        self._entries: dict[int, tuple[T, Any]] = {}

    def __call__(self, obj: T) -> Any:
        entry = self._entries.get(id(obj))
        if entry is not None and entry[0] is obj:
            return entry[1]
        value = self._render(obj)
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[id(obj)] = (obj, value)
        return value
