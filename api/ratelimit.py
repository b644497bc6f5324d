"""Per-client rate limits in fixed windows, as the original services count them.

A dialect declares `rate_limits = {"<dialect>.<route>": RateLimit(limit, window)}`;
`rate_limit_middleware` enforces every declared limit, whatever the dialect. The
client is its token when it presents a valid one (in any dialect's header form), else
its address. Tokens with the `admin` scope are exempt; RATE_LIMITS=off disables it
all. Refusals raise RateLimited, which each dialect renders in its own shape; the
X-RateLimit-* and Retry-After headers are added to every limited response."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiohttp import web

from api.auth import token_in_any_header
from api.dialect import Dialect, RateLimit
from api.keys import SERVICES
from core.errors import RateLimited, Unauthorized
from core.tokens import SCOPE_ADMIN

# Past this many tracked (route, client) windows, expired ones are swept out.
_SWEEP_AT = 10_000


@dataclass(slots=True)
class WindowState:
    """Where a client stands in its current window (what the headers report)."""

    rule: RateLimit
    count: int
    reset_at: float  # unix time the window ends
    now: float  # when the request was counted

    @property
    def remaining(self) -> int:
        return max(0, self.rule.limit - self.count)

    @property
    def refused(self) -> bool:
        return self.count > self.rule.limit


_STATE = web.RequestKey("ratelimit", WindowState)


class FixedWindowLimiter:
    """Counts hits per (route, client) in windows aligned to multiples of the window
    length, so a client that stays within `limit` per `window` is never refused."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        # (route, client) -> (end of the current window, requests counted in it)
        self._windows: dict[tuple[str, str], tuple[float, int]] = {}

    def hit(self, route: str, client: str, rule: RateLimit) -> WindowState:
        """Count one request and say where the client stands."""
        now = self.clock()
        end = (math.floor(now / rule.window) + 1) * rule.window
        key = (route, client)
        seen = self._windows.get(key)
        count = seen[1] + 1 if seen is not None and seen[0] == end else 1
        if len(self._windows) >= _SWEEP_AT and key not in self._windows:
            # Forget windows that are over, so memory follows the live clients only.
            self._windows = {k: v for k, v in self._windows.items() if v[0] > now}
        self._windows[key] = (end, count)
        return WindowState(rule, count, end, now)

    def __len__(self) -> int:
        return len(self._windows)


# The app's limiter (tests may set its `clock`).
RATE_LIMITER = web.AppKey("rate_limiter", FixedWindowLimiter)


def collect_limits(dialects: Iterable[Dialect]) -> dict[str, RateLimit]:
    """Every dialect's limits by route name."""
    limits: dict[str, RateLimit] = {}
    for dialect in dialects:
        limits.update(dialect.rate_limits)
    return limits


async def _client_key(request: web.Request) -> str | None:
    """`token:<id>` for a valid token, `addr:<ip>` otherwise; None for an exempt
    (admin) token."""
    try:
        token = await token_in_any_header(request)
    except Unauthorized:
        token = None  # a bad token is counted against the address; the handler says 401
    if token is None:
        return f"addr:{request.remote or 'unknown'}"
    return None if SCOPE_ADMIN in token.scopes else f"token:{token.id}"


def rate_limit_middleware(limits: dict[str, RateLimit]) -> web.middleware:
    """Enforce `limits` (route name -> RateLimit) with the app's RATE_LIMITER. Place it
    inside the error middleware so a refusal is rendered in the dialect's shape."""

    @web.middleware
    async def middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
        name = request.match_info.route.name
        rule = limits.get(name) if name else None
        if rule is None or not request.app[SERVICES].settings.rate_limits:
            return await handler(request)
        client = await _client_key(request)
        if client is None:
            return await handler(request)
        state = request.app[RATE_LIMITER].hit(name, client, rule)
        request[_STATE] = state
        if state.refused:
            retry_after = max(0.0, state.reset_at - state.now)
            raise RateLimited(
                "Too many requests", retry_after=retry_after, limit=rule.limit, reset=state.reset_at
            )
        return await handler(request)

    return middleware


async def add_rate_limit_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: X-RateLimit-* on every limited response, Retry-After on
    refusals (whatever the handler or error renderer returned)."""
    state: WindowState | None = request.get(_STATE)
    if state is None:
        return
    now = state.now
    response.headers["X-RateLimit-Limit"] = str(state.rule.limit)
    response.headers["X-RateLimit-Remaining"] = str(state.remaining)
    if state.rule.reset == "seconds":
        response.headers["X-RateLimit-Reset"] = str(max(0, math.ceil(state.reset_at - now)))
    else:
        response.headers["X-RateLimit-Reset"] = str(int(state.reset_at * 1000))
    if state.refused:
        response.headers["Retry-After"] = str(max(1, math.ceil(state.reset_at - now)))
