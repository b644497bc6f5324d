"""Random draws served from a short-lived buffer of pre-drawn images.

An anonymous random request (MikuAPI, nekos.moe, NekosAPI) costs several store round
trips; drawing a batch at once and handing it out costs the same round trips per
batch instead of per request. Each batch is a uniform random sample without
replacement, handed out in random order, so every request still gets a uniformly
random image. Batches live at most `ttl` seconds and are dropped whenever anything
that changes what may be served happens (approve, reject, delete, upload, like):
nothing rejected or deleted is handed out after the call that removed it returns."""

from __future__ import annotations

import asyncio
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core.models import Filters, Image

Draw = Callable[[Filters, int], Awaitable[list[Image]]]


@dataclass(slots=True)
class _Batch:
    drawn_at: float
    generation: int
    images: list[Image]  # still to hand out (a large match set)
    whole: list[Image] | None  # the whole match set, when smaller than a batch


class DrawBuffer:
    """Per-filter batches of random images; `take` is `draw` with fewer round trips."""

    def __init__(self, draw: Draw, *, batch: int = 64, ttl: float = 1.0,
                 max_filters: int = 256, clock: Callable[[], float] = time.monotonic) -> None:
        self._draw = draw
        self.batch = batch
        self.ttl = ttl
        self.max_filters = max_filters
        self._clock = clock
        self._rng = random.Random()
        self._batches: OrderedDict[str, _Batch] = OrderedDict()
        self._refills: dict[str, asyncio.Future[None]] = {}
        self.generation = 0
        self.draws = 0  # round trips to the store, for tests and benchmarks

    def invalidate(self) -> None:
        """Forget every batch (what may be served has changed)."""
        self.generation += 1
        self._batches.clear()

    def _fresh(self, key: str) -> _Batch | None:
        batch = self._batches.get(key)
        if batch is None or batch.generation != self.generation or \
                self._clock() - batch.drawn_at >= self.ttl:
            return None
        return batch

    async def take(self, filters: Filters, count: int) -> list[Image]:
        """Up to `count` distinct random images matching `filters`."""
        if count > self.batch // 2:
            self.draws += 1
            return await self._draw(filters, count)
        key = filters.key()
        for _ in range(2):
            batch = self._fresh(key)
            if batch is not None:
                if batch.whole is not None:
                    return self._rng.sample(batch.whole, min(count, len(batch.whole)))
                if len(batch.images) >= count:
                    taken = batch.images[:count]
                    del batch.images[:count]
                    return taken
            await self._refill(key, filters)
        # Invalidated while drawing twice in a row, or emptied by other callers: draw
        # directly rather than wait.
        self.draws += 1
        return await self._draw(filters, count)

    async def _refill(self, key: str, filters: Filters) -> None:
        waiting = self._refills.get(key)
        if waiting is not None:
            # Someone is already drawing this batch; share it.
            await waiting
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._refills[key] = done
        try:
            generation = self.generation
            self.draws += 1
            images = await self._draw(filters, self.batch)
            if generation == self.generation:  # else it may hold something just removed
                whole = images if len(images) < self.batch else None
                self._batches[key] = _Batch(self._clock(), generation,
                                            [] if whole is not None else images, whole)
                self._batches.move_to_end(key)
                while len(self._batches) > self.max_filters:
                    self._batches.popitem(last=False)
        finally:
            del self._refills[key]
            done.set_result(None)
