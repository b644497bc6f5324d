"""Random draws served from a short-lived buffer of pre-drawn images (and, alike,
search pages from a short-lived cache).

An anonymous random request (MikuAPI, nekos.moe, NekosAPI) costs several store round
trips; drawing a batch at once and handing it out costs the same round trips per
batch instead of per request. Each batch is a uniform random sample without
replacement, handed out in random order, so every request still gets a uniformly
random image. Batches live at most `ttl` seconds and are dropped whenever anything
that changes what may be served happens (approve, reject, delete, upload, like):
nothing rejected or deleted is handed out after the call that removed it returns.

A filter's batch size follows its demand: it doubles (up to `batch`) whenever a
batch runs low within its life, and halves when one expires mostly unused. A busy
filter is drawn in large batches, the next drawn while the last is handed out, so
requests rarely wait for the store; a rarely asked filter costs small draws, so
asking for many different filters cannot make the store draw many large batches."""

from __future__ import annotations

import asyncio
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from core.models import Filters

# Refills a caller waits for before drawing on its own: enough for a cold filter's
# batches to grow to the size a burst of callers needs.
_ROUNDS = 6


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


# Images, or anything else with an `id` (e.g. ImageFile).
T = TypeVar("T", bound=_HasId)

Draw = Callable[[Filters, int], Awaitable[list[T]]]


@dataclass(slots=True)
class _Batch(Generic[T]):
    drawn_at: float
    generation: int
    size: int  # how many were asked for
    images: list[T]  # still to hand out (a large match set)
    whole: list[T] | None  # the whole match set, when smaller than a batch
    # The first `older` of `images` are left from an earlier draw and are handed out
    # only until `older_until`: no image is served more than `ttl` after it was drawn,
    # however busy the filter (a write by another process is seen within `ttl`).
    older: int = 0
    older_until: float = 0.0


class DrawBuffer(Generic[T]):
    """Per-filter batches of random images; `take` is `draw` with fewer round trips."""

    def __init__(
        self,
        draw: Draw[T],
        *,
        batch: int = 256,
        min_batch: int = 8,
        ttl: float = 1.0,
        max_filters: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._draw = draw
        self.batch = batch
        self.min_batch = min(min_batch, batch)
        self.ttl = ttl
        self.max_filters = max_filters
        self._clock = clock
        self._rng = random.Random()
        self._batches: OrderedDict[str, _Batch[T]] = OrderedDict()
        self._sizes: OrderedDict[str, int] = OrderedDict()  # next batch size, by filter
        self._refills: dict[str, asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.generation = 0
        self.draws = 0  # round trips to the store, for tests and benchmarks
        # Filters.key() of recent filters: a handler asks for the same few each time.
        self._keys: dict[Filters, str] = {}

    def invalidate(self) -> None:
        """Forget every batch (what may be served has changed)."""
        self.generation += 1
        self._batches.clear()

    def _fresh(self, key: str) -> _Batch[T] | None:
        batch = self._batches.get(key)
        if batch is None or batch.generation != self.generation:
            return None
        now = self._clock()
        if now - batch.drawn_at >= self.ttl:
            if len(batch.images) > batch.size // 2:  # mostly unused: draw less next time
                self._sizes[key] = max(self.min_batch, batch.size // 2)
            del self._batches[key]
            return None
        if batch.older and now >= batch.older_until:
            del batch.images[: batch.older]
            batch.older = 0
        return batch

    async def take(self, filters: Filters, count: int) -> list[T]:
        """Up to `count` distinct random images matching `filters`."""
        if count > self.batch // 2:
            self.draws += 1
            return await self._draw(filters, count)
        key = self._keys.get(filters)
        if key is None:
            if len(self._keys) >= self.max_filters:
                self._keys.clear()
            key = self._keys[filters] = filters.key()
        for _ in range(_ROUNDS):
            batch = self._fresh(key)
            if batch is not None:
                if batch.whole is not None:
                    return self._rng.sample(batch.whole, min(count, len(batch.whole)))
                if len(batch.images) >= count:
                    taken = batch.images[:count]
                    del batch.images[:count]
                    batch.older = max(0, batch.older - count)
                    if len(batch.images) < batch.size // 2:
                        # Used within its life: draw the next, larger batch while this
                        # one is still being handed out, so callers rarely wait.
                        self._start_refill(key, filters, count, grow=True)
                    return taken
                await asyncio.shield(self._start_refill(key, filters, count, grow=True))
                continue
            await asyncio.shield(self._start_refill(key, filters, count))
        # Invalidated while drawing again and again, or emptied by other callers each
        # time: draw directly rather than wait.
        self.draws += 1
        return await self._draw(filters, count)

    def _start_refill(
        self, key: str, filters: Filters, count: int, *, grow: bool = False
    ) -> asyncio.Future[None]:
        """The in-flight draw of the next batch for `key`, started if there is none:
        room for two takes of `count` at least, twice the last batch when `grow` (it
        ran low within its life)."""
        done = self._refills.get(key)
        if done is None:
            size = self._sizes.get(key, self.min_batch)
            if grow:
                size *= 2
            size = min(self.batch, max(size, 2 * count))
            self._sizes[key] = size
            self._sizes.move_to_end(key)
            while len(self._sizes) > self.max_filters:
                self._sizes.popitem(last=False)
            done = asyncio.get_running_loop().create_future()
            self._refills[key] = done
            task = asyncio.create_task(self._refill(key, filters, size, done))
            self._tasks.add(task)
            task.add_done_callback(self._finished)
        return done

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        # A failed draw is retried (and its error surfaces) in the caller's own draw.
        if not task.cancelled():
            task.exception()

    async def _refill(
        self, key: str, filters: Filters, size: int, done: asyncio.Future[None]
    ) -> None:
        try:
            generation = self.generation
            self.draws += 1
            images = await self._draw(filters, size)
            if generation == self.generation:  # else it may hold something just removed
                self._store(key, generation, size, images)
        finally:
            del self._refills[key]
            if not done.done():
                done.set_result(None)

    def _store(self, key: str, generation: int, size: int, images: list[T]) -> None:
        if len(images) < size:  # the whole match set
            self._batches[key] = _Batch(self._clock(), generation, size, [], images)
        else:
            current = self._fresh(key)
            if current is not None and current.whole is None:
                # Hand out what is left first (until its own time is up); skip new
                # images already in it.
                left = {i.id for i in current.images}
                if current.images:
                    until = current.drawn_at + self.ttl
                    if current.older:
                        until = min(until, current.older_until)
                    current.older, current.older_until = len(current.images), until
                current.images.extend(i for i in images if i.id not in left)
                current.drawn_at = self._clock()
                current.size = size
            else:
                self._batches[key] = _Batch(self._clock(), generation, size, images, None)
        self._batches.move_to_end(key)
        while len(self._batches) > self.max_filters:
            self._batches.popitem(last=False)

    async def aclose(self) -> None:
        """Cancel draws in flight (before the store closes)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()


class PageCache:
    """Search pages by query for at most `ttl` seconds, dropped on every change (like
    the draw buffers): a popular query asked by many clients at once reaches the store
    once. Concurrent misses of one query share a single store call."""

    def __init__(
        self,
        *,
        ttl: float = 1.0,
        max_entries: int = 512,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._pages: OrderedDict[Any, tuple[float, int, Any]] = OrderedDict()
        self._pending: dict[Any, asyncio.Future[Any]] = {}
        self.generation = 0
        self.misses = 0

    def invalidate(self) -> None:
        """Forget every page."""
        self.generation += 1
        self._pages.clear()

    async def get(self, key: Any, load: Callable[[], Awaitable[Any]]) -> Any:
        """The page for `key`, from the cache or from `load()`."""
        cached = self._pages.get(key)
        if (
            cached is not None
            and cached[1] == self.generation
            and self._clock() - cached[0] < self.ttl
        ):
            return cached[2]
        pending = self._pending.get(key)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise  # this caller was cancelled
                return await load()  # the caller loading it was: load it here
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        generation = self.generation
        try:
            self.misses += 1
            page = await load()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # the waiters (if any) get it; nobody else must
            raise
        finally:
            del self._pending[key]
        future.set_result(page)
        if generation == self.generation:  # else it may show something just removed
            self._pages[key] = (self._clock(), generation, page)
            self._pages.move_to_end(key)
            while len(self._pages) > self.max_entries:
                self._pages.popitem(last=False)
        return page
