"""Delivering the store's durable outbox as in-process events, in the bot's process.

Why: an upload that goes pending in any process (a web worker, `bot.py import`,
another server on the same store) must reach the moderators, also when the bot was
down at that moment. The store appends an entry to its outbox in the same transaction
as the change (core/contracts.py `Outbox`); one consumer, run by the process that runs
the bot, reads the entries after its durable cursor, turns each into the event the
cogs subscribe to (IMAGE_PENDING, IMAGE_DECIDED) and acknowledges it once every
handler succeeded.

This is the only path these events take: the process that made the change emits
only OUTBOX_WRITTEN, which wakes a consumer in the same process at once, so a review
post is no slower there than a direct emit was. Elsewhere the consumer finds the entry
at its next poll (every POLL_SECONDS, one primary-key range read when there is nothing).

Delivery is at least once: a crash between a handler's work and the acknowledgement
delivers the entry again at the next start, so handlers must be idempotent (the
moderation cog records what it posted and told in kv before the entry is acknowledged).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta

from core import events as ev
from core.contracts import Repo
from core.models import OutboxEntry, Status, User

log = logging.getLogger(__name__)

CONSUMER = "bot"  # the cursor's name: the process running the Discord bot
POLL_SECONDS = 0.5
BATCH = 100  # entries read per query
# Failed deliveries of one entry (with back-off doubling from POLL_SECONDS up to
# MAX_BACKOFF) before it is skipped and logged, so one bad entry can't stop the rest.
# A skipped pending upload is still posted by the bot's start-up backlog.
ATTEMPTS = 8
MAX_BACKOFF = 60.0
# Acknowledged entries are kept this long (to look into), and entries no consumer
# acknowledged (no bot configured, or down that long) this long.
KEEP_HANDLED = timedelta(days=1)
KEEP_UNHANDLED = timedelta(days=7)
UNKNOWN_USER = User("unknown", "unknown")


async def prune(repo: Repo, now: datetime | None = None) -> int:
    """Delete outbox entries past KEEP_HANDLED (acknowledged) or KEEP_UNHANDLED."""
    now = now or datetime.now(UTC)
    return await repo.outbox_prune(now - KEEP_HANDLED, now - KEEP_UNHANDLED)


class OutboxConsumer:
    """Delivers outbox entries to `events` from the durable cursor `consumer`; `start`
    runs it in the background, `catch_up` once. With `kinds`, entries of other kinds are
    acknowledged without a call (a consumer with its own cursor that wants only some);
    `wake` is the bus whose OUTBOX_WRITTEN wakes it (default: `events`)."""

    def __init__(
        self,
        repo: Repo,
        events: ev.Events,
        *,
        consumer: str = CONSUMER,
        poll_seconds: float = POLL_SECONDS,
        kinds: frozenset[str] | None = None,
        wake: ev.Events | None = None,
    ) -> None:
        self.repo = repo
        self.events = events
        self.consumer = consumer
        self.poll_seconds = poll_seconds
        self.kinds = kinds
        self._cursor: int | None = None  # read from the store when (re)started
        self._failures: dict[int, int] = {}  # seq -> failed deliveries
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # one pass at a time: `catch_up` beside the loop
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.delivered = 0  # entries acknowledged by this process (for tests and logs)
        (wake or events).subscribe(ev.OUTBOX_WRITTEN, self._written)

    async def _written(self) -> None:
        self._wake.set()

    @property
    def running(self) -> bool:
        """Whether the background delivery runs."""
        return self._task is not None and not self._task.done()

    @property
    def stopping(self) -> bool:
        """Whether `stop` was called and no new entry is being taken."""
        return self._stopping

    def start(self) -> None:
        """Deliver in the background until `stop` (idempotent)."""
        if self.running:
            return
        self._stopping = False
        self._cursor = None
        self._task = asyncio.create_task(self._run())

    async def stop(self, grace: float) -> None:
        """Take no new entry; let the one in hand finish for `grace` seconds, then cancel
        it (it stays unacknowledged: the next start delivers it again)."""
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is None:
            return
        _, late = await asyncio.wait({task}, timeout=grace)
        if late:
            log.warning("cancelling an outbox delivery still running at shutdown")
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        delay = self.poll_seconds
        while not self._stopping:
            self._wake.clear()
            try:
                more, blocked = await self._pass(background=True)
            except Exception:
                log.exception("reading the outbox failed; will retry")
                more, blocked = False, True
            if more and not blocked:
                continue
            delay = min(delay * 2, MAX_BACKOFF) if blocked else self.poll_seconds
            if not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)

    async def catch_up(self) -> int:
        """Deliver every entry there is now (unless one fails); how many were handled."""
        before = self.delivered
        while True:
            more, blocked = await self._pass()
            if not more or blocked:
                return self.delivered - before

    async def _pass(self, *, background: bool = False) -> tuple[bool, bool]:
        """Deliver one batch (in the `background` loop: until `stop`): (whether the
        batch was full, whether an entry failed and must be retried later)."""
        async with self._lock:
            if self._cursor is None:
                self._cursor = await self.repo.outbox_cursor(self.consumer)
            entries = await self.repo.outbox_after(self._cursor, BATCH)
            for entry in entries:
                if background and self._stopping:
                    return False, False  # the rest waits for the next start
                if not await self._deliver_or_give_up(entry):
                    return True, True
                await self.repo.outbox_ack(self.consumer, entry.seq)
                self._cursor = entry.seq
                self.delivered += 1
            return len(entries) == BATCH, False

    async def _deliver_or_give_up(self, entry: OutboxEntry) -> bool:
        """Deliver `entry`; False if it should be tried again later."""
        try:
            if await self._deliver(entry):
                self._failures.pop(entry.seq, None)
                return True
        except Exception:
            log.exception("could not deliver outbox entry %s (%s)", entry.seq, entry.kind)
        failures = self._failures.get(entry.seq, 0) + 1
        self._failures[entry.seq] = failures
        if failures < ATTEMPTS:
            return False
        self._failures.pop(entry.seq, None)
        log.error(
            "gave up on outbox entry %s (%s of image %s) after %d attempts",
            entry.seq,
            entry.kind,
            entry.image_id,
            failures,
        )
        return True

    async def _deliver(self, entry: OutboxEntry) -> bool:
        if self.kinds is not None and entry.kind not in self.kinds:
            return True  # not this consumer's business
        image = await self.repo.get_image(entry.image_id)
        if image is None:
            return True  # deleted since: nothing left to announce
        if entry.kind == ev.IMAGE_PENDING:
            if image.status is not Status.PENDING:
                return True  # decided since: that decision is announced by its own entry
            return await self.events.deliver(ev.IMAGE_PENDING, image)
        if entry.kind == ev.IMAGE_DECIDED:
            by = entry.payload.get("by")
            approved = bool(entry.payload.get("approved"))
            user = User(str(by[0]), str(by[1])) if by else UNKNOWN_USER
            return await self.events.deliver(ev.IMAGE_DECIDED, image, approved, user)
        if entry.kind == ev.IMAGE_REPORTED:
            report = await self.repo.get_report(int(entry.payload["report"]))
            if report is None or report.action is not None or image.status is not Status.APPROVED:
                return True  # handled since (a decision on the image handles all its reports)
            return await self.events.deliver(ev.IMAGE_REPORTED, image, report)
        log.warning("skipping outbox entry %s of unknown kind %r", entry.seq, entry.kind)
        return True
