"""A lease in the store: one process at a time does a job (the Discord gateway and the
work that must happen once), whichever and however many processes share the store.

The holder claims a key for `ttl` and renews it every `ttl / 3`. A holder that stops
cleanly releases it; one that dies stops renewing, and the key lapses after `ttl`, so
a successor can take over. A holder that cannot renew for `ttl` (a store locked that
long, a suspended process) may have been replaced and must stop the job."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import time
import uuid
from datetime import timedelta

from core.contracts import KeyValue
from core.errors import GazouError

log = logging.getLogger(__name__)

# Long enough that a busy store or a slow event loop never loses it by accident,
# short enough that a successor after a crash waits half a minute at most.
LEASE_SECONDS = 30.0


class LeaseHeld(GazouError):
    """Another process holds the lease."""

    def __init__(self, what: str, holder: str | None) -> None:
        super().__init__(
            f"{what} is already running ({holder or 'another process'} holds its lease "
            f"in the store); stop that one first, or wait up to {LEASE_SECONDS:g} s for a "
            "stopped one's lease to lapse"
        )
        self.holder = holder


class LeaseLost(GazouError):
    """The lease could not be renewed in time; another process may hold it now."""


def gateway_lease_key(discord_token: str) -> str:
    """The lease key of the Discord gateway for one bot token (the token's hash, never
    the token itself: the store is no place for it)."""
    digest = hashlib.sha256(discord_token.encode()).hexdigest()[:16]
    return f"lease:discord-gateway:{digest}"


def new_holder() -> str:
    """A name for this process that no other process (here or on another machine) has."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """One key held by one holder: `acquire`, then `keep` (until lost or cancelled),
    then `release`."""

    def __init__(
        self,
        kv: KeyValue,
        key: str,
        *,
        what: str,
        holder: str | None = None,
        ttl: float = LEASE_SECONDS,
    ) -> None:
        self.kv = kv
        self.key = key
        self.what = what
        self.holder = holder or new_holder()
        self.ttl = ttl
        self._renewed = 0.0  # time.monotonic() of the last successful claim

    async def acquire(self) -> None:
        """Take the lease or raise `LeaseHeld` naming who holds it."""
        if not await self.kv.kv_claim(self.key, self.holder, timedelta(seconds=self.ttl)):
            raise LeaseHeld(self.what, await self.kv.kv_get(self.key))
        self._renewed = time.monotonic()
        log.info("holding the lease of %s as %s", self.what, self.holder)

    async def keep(self) -> None:
        """Renew every ttl/3 until cancelled; raise `LeaseLost` once the lease is gone
        (taken by another holder, or not renewed for a whole ttl)."""
        while True:
            await asyncio.sleep(self.ttl / 3)
            started = time.monotonic()
            try:
                claimed = await self.kv.kv_claim(self.key, self.holder, timedelta(seconds=self.ttl))
            except Exception as exc:  # a locked or unreachable store: try again soon
                if time.monotonic() - self._renewed < self.ttl:
                    log.warning("could not renew the lease of %s (%s); will retry", self.what, exc)
                    continue
                claimed = False
            # Renewed late (the claim itself took long): the old lease may have lapsed in
            # between and another holder may have come and gone; count from the start.
            if claimed and started - self._renewed < self.ttl:
                self._renewed = started
                continue
            holder = None
            with contextlib.suppress(Exception):
                holder = await self.kv.kv_get(self.key)
            taker = f" to {holder}" if holder and holder != self.holder else ""
            raise LeaseLost(f"lost the lease of {self.what}{taker}; stopping")

    async def release(self) -> None:
        """Let go of the lease (if still ours), so a successor can start at once."""
        try:
            if await self.kv.kv_release(self.key, self.holder):
                log.info("released the lease of %s", self.what)
        except Exception:
            log.exception("could not release the lease of %s; it lapses by itself", self.what)
