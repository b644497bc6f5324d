"""The aiohttp application factory: every dialect on one host, errors rendered in
each dialect's own shape, never a traceback."""

from __future__ import annotations

import logging
import os
import warnings

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.multipart import BadContentDispositionParam
from aiohttp.typedefs import Handler, Middleware

from api.app_errors import plain_error
from api.dialect import Dialect, RateLimit, json_response
from api.files import FILE_CACHE, ByteCache
from api.keys import SERVICES
from api.openapi import openapi_handler
from api.ratelimit import (
    RATE_LIMITER,
    FixedWindowLimiter,
    add_rate_limit_headers,
    collect_limits,
    rate_limit_middleware,
)
from core.errors import GazouError
from core.services import Services
from web import Site, build_site

log = logging.getLogger(__name__)


class InternalError(GazouError):
    """Something unexpected broke; the details go to the log, not the client."""

    status = 500
    code = "internal"


class _MalformedRequestFilter(logging.Filter):
    """aiohttp logs a request it cannot parse (bad request line, bad header bytes) as
    "Error handling request" with a traceback at ERROR; anyone on the network can send
    one, so it becomes one INFO line naming the peer and the problem."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError) or not str(record.msg).startswith(
            "Error handling request"
        ):
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.INFO):
            return False
        problem = " ".join(str(exc.message).split())[:200]
        record.msg = "malformed HTTP request from %s: %s: %s"
        record.args = (*(record.args or ("?",)), type(exc).__name__, problem)
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.INFO, "INFO"
        return True


_MALFORMED_REQUESTS = _MalformedRequestFilter()


def _dialects() -> list[Dialect]:
    """Every dialect module's Dialect. Routes are matched by path, so order only
    matters for error shapes of unmatched paths (longest prefix wins)."""
    from api import chevereto, discord_images, miku, nekosapi, nekosmoe

    return [m.DIALECT for m in (miku, nekosmoe, discord_images, nekosapi, chevereto)]


def _as_dialect(site: Site) -> Dialect:
    """The web gallery (web/) as the error middleware and the rate limiter see it: its
    routes are named `gallery.<page>`, so they find its HTML error page and limits the
    way they find a dialect's. It is left out of /openapi.json: pages, not an API."""
    return Dialect(
        name=site.name,
        routes=site.routes,
        render_error=site.render_error,
        prefixes=site.prefixes,
        rate_limits={
            route: RateLimit(limit, window, reset="seconds")
            for route, (limit, window) in site.rate_limits.items()
        },
    )


def _dialect_for(request: web.Request, dialects: list[Dialect]) -> Dialect | None:
    route = request.match_info.route
    name = route.name or ""
    if "." in name:
        prefix = name.split(".", 1)[0]
        for dialect in dialects:
            if dialect.name == prefix:
                return dialect
    # Unmatched paths: the longest registered path prefix decides the error shape.
    best: tuple[int, Dialect] | None = None
    for dialect in dialects:
        for prefix in dialect.prefixes:
            if request.path.startswith(prefix) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), dialect)
    return best[1] if best else None


def _error_middleware(dialects: list[Dialect]) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except GazouError as error:
            dialect = _dialect_for(request, dialects)
            return (dialect.render_error if dialect else plain_error)(error)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            dialect = _dialect_for(request, dialects)
            http_error = GazouError(exc.reason)
            http_error.status = exc.status
            http_error.code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
                exc.status, "http_error"
            )
            response = (dialect.render_error if dialect else plain_error)(http_error)
            if exc.status == 405 and "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
            return response
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            dialect = _dialect_for(request, dialects)
            internal = InternalError("Internal server error")
            return (dialect.render_error if dialect else plain_error)(internal)

    return middleware


async def healthz(request: web.Request) -> web.Response:
    """Liveness and a cheap store check."""
    services = request.app[SERVICES]
    await services.images.check_store_answers()
    response = json_response({"status": "ok"})
    # Which process answered: with several web workers, how to see each one is alive.
    response.headers["X-Gazou-Worker"] = str(os.getpid())
    return response


def create_app(services: Services) -> web.Application:
    """Build the whole HTTP API over `services` (the production factory, also used
    by the tests)."""
    dialects = _dialects()
    # Once per process, whichever runner serves the app (addFilter ignores repeats).
    logging.getLogger("aiohttp.server").addFilter(_MALFORMED_REQUESTS)
    # aiohttp warns on stderr about a malformed `filename*` in a part and goes on
    # without it: a client's mistake, not a warning about our code.
    warnings.filterwarnings("ignore", category=BadContentDispositionParam)
    limited = services.settings.rate_limits
    # The gallery is a transport of its own (it never imports api/); this factory is
    # where the process's one HTTP app is composed, so it mounts it here.
    gallery = build_site(services)
    served = [*dialects, _as_dialect(gallery)]
    app = web.Application(
        client_max_size=services.settings.max_request_bytes,
        # The limiter sits inside the error middleware, so a 429 is rendered in the
        # dialect's own shape; with RATE_LIMITS=off it is left out altogether.
        middlewares=[_error_middleware(served)]
        + ([rate_limit_middleware(collect_limits(served))] if limited else []),
    )
    app[SERVICES] = services
    app[RATE_LIMITER] = FixedWindowLimiter(services.rate_counter)
    app[FILE_CACHE] = ByteCache()
    if limited:
        app.on_response_prepare.append(add_rate_limit_headers)
    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/openapi.json", openapi_handler(dialects), name="openapi")
    for dialect in served:
        app.router.add_routes(dialect.routes)
        app.on_startup.extend(dialect.on_startup)
        for name, rendering in dialect.renderings.items():
            services.images.add_rendering(name, rendering.render, members=rendering.members)
    gallery.install(app)
    return app
