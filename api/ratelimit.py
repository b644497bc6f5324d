"""Per-client rate limits in fixed windows, as the original services count them.

A dialect declares `rate_limits = {"<dialect>.<route>": RateLimit(limit, window)}`;
`rate_limit_middleware` enforces every declared limit, whatever the dialect. The
client is its token when it presents a valid one (in any dialect's header form, or
Chevereto's `key` query parameter), else its address: a token's allowance is its own,
never shared with anonymous calls from the same address, while a bad token is counted
against the address. A key sent only in a Chevereto body counts as its address (the
limit answers before a body is read). The address is the connection's, or behind
TRUSTED_PROXIES the one those proxies put in X-Forwarded-For (`client_address`).
Tokens with the `admin` scope are exempt; RATE_LIMITS=off disables it all. Refusals
raise RateLimited, which each dialect renders in its own shape; the X-RateLimit-* and
Retry-After headers are added to every limited response."""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from api.auth import token_in_any_header
from api.dialect import Dialect, RateLimit
from api.keys import SERVICES
from core.contracts import WindowCounter
from core.errors import RateLimited, Unauthorized
from core.settings import IPNetwork
from core.tokens import SCOPE_ADMIN


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
    length, so a client that stays within `limit` per `window` is never refused. The
    counts live in the services' WindowCounter: this process's memory, or one count
    shared by every worker (shared memory, Redis)."""

    def __init__(self, counter: WindowCounter, clock: Callable[[], float] = time.time) -> None:
        self.counter = counter
        self.clock = clock
        # A LocalWindowCounter answers synchronously: no coroutine on the hot path.
        self._count: Callable[[str, float, float], int] | None = getattr(counter, "count", None)

    async def hit(self, route: str, client: str, rule: RateLimit) -> WindowState:
        """Count one request and say where the client stands."""
        now = self.clock()
        key = f"{route} {client}"
        if self._count is not None:
            count = self._count(key, rule.window, now)
        else:
            count = await self.counter.hit(key, rule.window, now)
        end = (math.floor(now / rule.window) + 1) * rule.window
        return WindowState(rule, count, end, now)


# The app's limiter (tests may set its `clock`).
RATE_LIMITER = web.AppKey("rate_limiter", FixedWindowLimiter)


def collect_limits(dialects: Iterable[Dialect]) -> dict[str, RateLimit]:
    """Every dialect's limits by route name."""
    limits: dict[str, RateLimit] = {}
    for dialect in dialects:
        limits.update(dialect.rate_limits)
    return limits


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    # A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d.
    return (address.ipv4_mapped or address) if address.version == 6 else address


def _trusted(address: object, proxies: tuple[IPNetwork, ...]) -> bool:
    return any(address in network for network in proxies)


def client_address(request: web.Request) -> str:
    """The client's address. Without TRUSTED_PROXIES, or when the peer is not one of
    them, the connection's own (X-Forwarded-For is then the client's to write, so it is
    ignored). Behind them, X-Forwarded-For is walked from the right, past the hops
    trusted proxies added, to the first address they did not: the client's."""
    peer = request.remote or "unknown"
    proxies = request.app[SERVICES].settings.trusted_proxies
    if not proxies:
        return peer
    address = _address(peer)
    if address is None or not _trusted(address, proxies):
        return peer
    hops = [h for v in request.headers.getall("X-Forwarded-For", ()) for h in v.split(",")]
    for hop in reversed(hops):
        forwarded = _address(hop)
        if forwarded is None:
            break  # a proxy wrote no address ("unknown"): the nearest known hop it is
        address = forwarded
        if not _trusted(address, proxies):
            break
    return str(address)


async def _client_key(request: web.Request) -> str | None:
    """`token:<id>` for a valid token, `addr:<ip>` otherwise; None for an exempt
    (admin) token."""
    try:
        token = await token_in_any_header(request)
        if token is None and (key := request.query.get("key", "").strip()):
            token = await request.app[SERVICES].tokens.verify(key)  # Chevereto's ?key=
    except Unauthorized:
        token = None  # a bad token is counted against the address; the handler says 401
    if token is None:
        return f"addr:{client_address(request)}"
    return None if SCOPE_ADMIN in token.scopes else f"token:{token.id}"


def rate_limit_middleware(limits: dict[str, RateLimit]) -> Middleware:
    """Enforce `limits` (route name -> RateLimit) with the app's RATE_LIMITER. Place it
    inside the error middleware so a refusal is rendered in the dialect's shape."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        name = request.match_info.route.name
        rule = limits.get(name) if name else None
        if name is None or rule is None or not request.app[SERVICES].settings.rate_limits:
            return await handler(request)
        client = await _client_key(request)
        if client is None:
            return await handler(request)
        state = await request.app[RATE_LIMITER].hit(name, client, rule)
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
