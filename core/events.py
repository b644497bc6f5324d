"""A tiny in-process event bus so the transports can react to what the core does
(e.g. the bot posts a pending upload to the moderators) without the core knowing
about them.

IMAGE_PENDING and IMAGE_DECIDED are not emitted where they happen: the store writes
them to its durable outbox in the same transaction as the change, and the bot
process's `core.outbox.OutboxConsumer` delivers them here, whichever process made the
change (see core/outbox.py). The process that made it only emits OUTBOX_WRITTEN, which
wakes a consumer in the same process at once."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[None]]

IMAGE_PENDING = "image_pending"  # (image: Image)
IMAGE_DECIDED = "image_decided"  # (image: Image, approved: bool, by: User)
IMAGE_REPORTED = "image_reported"  # (image: Image, report: Report)
OUTBOX_WRITTEN = "outbox_written"  # (): this process wrote to the outbox


class Undelivered(Exception):
    """Raised by a handler that cannot act now (e.g. the bot is not connected yet): the
    outbox delivers the event again later instead of counting it handled."""


class Events:
    """Subscribe coroutine handlers; `emit` runs them as tasks and logs their errors."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = defaultdict(list)
        self._tasks: set[asyncio.Task[None]] = set()

    def subscribe(self, name: str, handler: Handler) -> None:
        """Call `handler(*args)` on every `emit(name, *args)`."""
        self._handlers[name].append(handler)

    def unsubscribe(self, name: str, handler: Handler) -> None:
        """Stop calling `handler`."""
        if handler in self._handlers[name]:
            self._handlers[name].remove(handler)

    def emit(self, name: str, *args: Any) -> None:
        """Run every handler of `name` in the background."""
        for handler in list(self._handlers[name]):
            task = asyncio.create_task(self._run(name, handler, args))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def deliver(self, name: str, *args: Any) -> bool:
        """Run every handler of `name` now, one after another; whether there was at
        least one and all of them succeeded (a failure is logged, unless it is
        `Undelivered`)."""
        handlers = list(self._handlers[name])
        ok = bool(handlers)
        for handler in handlers:
            try:
                await handler(*args)
            except Undelivered as exc:
                log.info("handler for %s will be retried: %s", name, exc)
                ok = False
            except Exception:
                log.exception("handler for %s failed", name)
                ok = False
        return ok

    @staticmethod
    async def _run(name: str, handler: Handler, args: tuple[Any, ...]) -> None:
        try:
            await handler(*args)
        except Exception:
            log.exception("handler for %s failed", name)

    async def drain(self, grace: float | None = None) -> None:
        """Wait for running handlers (used at shutdown and in tests); past `grace`
        seconds, cancel those still running and wait for them to end."""
        loop = asyncio.get_running_loop()
        deadline = None if grace is None else loop.time() + grace
        while self._tasks:
            tasks = list(self._tasks)
            if deadline is None:
                await asyncio.gather(*tasks, return_exceptions=True)
                continue
            _, late = await asyncio.wait(tasks, timeout=max(deadline - loop.time(), 0))
            if late:
                log.warning("cancelling %d event handler(s) still running at shutdown", len(late))
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
