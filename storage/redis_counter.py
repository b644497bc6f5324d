"""The window counter for several machines (core.contracts.WindowCounter) in Redis:
one key per (window, key), `gazou:rl:<window start ms>:<key>`, counted with INCR and
given an expiry on its first hit by one Lua script (one round trip a hit).

If Redis cannot be reached, the hit is counted in this process instead (the limit then
holds per process until Redis is back: low, never high, so no client within its limits
is refused and the API stays up), with a warning at most every WARN_EVERY seconds;
after a failure Redis is tried again RETRY_AFTER seconds later, so an outage costs one
timeout per second, not one per request."""

from __future__ import annotations

import logging
import math
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from storage.window_counters import MemoryWindowCounter

log = logging.getLogger(__name__)

# INCR, and on the first hit PEXPIREAT: atomic in Redis, one round trip.
_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIREAT', KEYS[1], ARGV[1]) end
return n
"""
# A key outlives its window by this much, so a machine whose clock runs a little behind
# still finds the count (instead of recreating a key that expires at once).
SKEW_MS = 5_000
TIMEOUT = 0.5  # seconds to connect or answer: a limiter must not hold a request up
RETRY_AFTER = 1.0
CONNECTIONS = 16  # per process
WARN_EVERY = 60.0


class RedisWindowCounter:
    """Counts in the Redis at `url` (redis://host:port/db), shared by every process and
    machine that uses it."""

    def __init__(self, url: str) -> None:
        self.url = url
        # A bounded pool that makes a hit wait (up to TIMEOUT) for a free connection:
        # a burst of requests shares CONNECTIONS instead of opening one each. No
        # retries: a failed hit falls back at once (see the module docstring).
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=CONNECTIONS,
            timeout=TIMEOUT,
            socket_connect_timeout=TIMEOUT,
            socket_timeout=TIMEOUT,
            retry=None,
        )
        self._redis = aioredis.Redis(connection_pool=pool)
        self._script = self._redis.register_script(_HIT)
        self._local = MemoryWindowCounter()
        self._down_until = -math.inf
        self._warned_at = -math.inf

    async def hit(self, key: str, window: float, now: float) -> int:
        """Count one hit of `key` and return its count in the current window, across
        every process that uses this Redis (this process's own while it is down)."""
        if time.monotonic() >= self._down_until:
            start = math.floor(now / window) * window
            name = f"gazou:rl:{round(start * 1000)}:{key}"
            expire_at = round((start + window) * 1000) + SKEW_MS
            try:
                return int(await self._script(keys=[name], args=[expire_at]))
            except (RedisError, OSError) as exc:
                self._failed(exc)
        return self._local.count(key, window, now)

    def _failed(self, exc: BaseException) -> None:
        clock = time.monotonic()
        self._down_until = clock + RETRY_AFTER
        if clock - self._warned_at >= WARN_EVERY:
            self._warned_at = clock
            reason = " ".join(str(exc).split())[:200] or type(exc).__name__
            log.warning("rate limits: Redis unreachable (%s); counting per process", reason)

    async def close(self) -> None:
        """Close the connections."""
        await self._redis.aclose(close_connection_pool=True)
