"""The random-draw buffer over a real store: fewer round trips, still uniform, never
serving what was just rejected or deleted."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from core.drawbuffer import DrawBuffer, PageCache
from core.models import Filters, Image, IngestMetadata, Rating, SearchQuery, Status
from core.services import Services
from tests.conftest import OWNER, make_image


async def _approved(
    services: Services, n: int, rating: Rating = Rating.SFW, first_seed: int = 0
) -> list[Image]:
    return [
        await services.images.ingest(
            make_image(seed=first_seed + k), IngestMetadata(rating=rating), OWNER, trusted=True
        )
        for k in range(n)
    ]


def _buffer(services: Services, **kw: object) -> DrawBuffer:
    repo = services.storage.repo
    return DrawBuffer(lambda f, n: repo.random_images(f, n), **kw)  # type: ignore[arg-type]


async def test_one_round_trip_serves_a_whole_batch(services: Services) -> None:
    await _approved(services, 12)
    buffer = _buffer(services, batch=8)
    taken = [(await buffer.take(Filters(), 1))[0].id for _ in range(6)]
    assert buffer.draws == 1
    assert len(set(taken)) == 6  # a batch is drawn without replacement
    await buffer.aclose()


async def test_next_batch_is_drawn_before_the_buffer_runs_dry(services: Services) -> None:
    await _approved(services, 20)
    buffer = _buffer(services, batch=8)
    for _ in range(7):  # leaves 1 of 8: below half, so the next draw starts
        await buffer.take(Filters(), 1)
    await asyncio.sleep(0.2)  # the store answers the prefetch meanwhile
    assert buffer.draws == 2
    taken = await buffer.take(Filters(), 4)
    assert len({i.id for i in taken}) == 4  # leftover and new batch never repeat
    assert buffer.draws == 2
    await buffer.aclose()


async def test_leftovers_are_not_handed_out_past_their_own_ttl(services: Services) -> None:
    """A busy filter's refills keep the batch alive; what was left from an earlier draw
    must still go once its own life is over (another process may have removed it)."""
    await _approved(services, 40)
    now = [0.0]
    buffer = _buffer(services, batch=8, min_batch=8, ttl=1.0, clock=lambda: now[0])
    await buffer.take(Filters(), 1)  # draws 8 at 0 s, hands out 1
    for _ in range(3):
        await buffer.take(Filters(), 1)
    leftovers = {i.id for i in buffer._batches[Filters().key()].images}
    now[0] = 0.5
    await buffer.take(Filters(), 1)  # 3 left of 8: below half, the next batch is drawn
    await asyncio.sleep(0.2)  # and lands at 0.5 s, living until 1.5 s...
    assert buffer.draws == 2
    leftovers -= {i.id for i in buffer._batches[Filters().key()].images[3:]}
    assert len(leftovers) >= 2
    now[0] = 1.2  # ...but the leftovers, drawn at 0 s, are past their life
    taken = {i.id for i in await buffer.take(Filters(), 3)}
    assert not taken & leftovers
    assert buffer.draws == 2
    await buffer.aclose()


async def test_aclose_cancels_draws_in_flight(services: Services) -> None:
    gate = asyncio.Event()

    async def stuck(filters: Filters, count: int) -> list[Image]:
        await gate.wait()
        return []

    buffer = DrawBuffer(stuck)
    taking = asyncio.create_task(buffer.take(Filters(), 1))
    await asyncio.sleep(0.05)
    taking.cancel()
    await asyncio.gather(taking, return_exceptions=True)
    assert len(buffer._tasks) == 1  # the draw outlives its cancelled caller...
    await buffer.aclose()
    assert buffer._tasks == set()  # ...until the buffer is closed
    assert not gate.is_set()


async def test_small_match_sets_are_sampled_without_new_draws(services: Services) -> None:
    images = await _approved(services, 3)
    buffer = _buffer(services, batch=8)
    seen = Counter([(await buffer.take(Filters(), 1))[0].id for _ in range(300)])
    assert buffer.draws == 1
    assert set(seen) == {i.id for i in images}
    assert min(seen.values()) > 60  # each of three is drawn about 100 times


async def test_large_sets_stay_uniform_across_batches(services: Services) -> None:
    images = await _approved(services, 10)
    buffer = _buffer(services, batch=4)
    seen = Counter([(await buffer.take(Filters(), 1))[0].id for _ in range(1000)])
    assert set(seen) == {i.id for i in images}
    assert min(seen.values()) > 60 and max(seen.values()) < 150  # ~100 each


async def test_filters_are_buffered_apart(services: Services) -> None:
    sfw = await _approved(services, 2)
    nsfw = await _approved(services, 2, Rating.NSFW, first_seed=10)
    buffer = _buffer(services)
    only_nsfw = Filters(ratings=frozenset({Rating.NSFW}))
    for _ in range(20):
        assert (await buffer.take(only_nsfw, 1))[0].id in {i.id for i in nsfw}
        assert (await buffer.take(Filters(ratings=frozenset({Rating.SFW})), 1))[0].id in {
            i.id for i in sfw
        }


async def test_batches_expire_after_ttl(services: Services) -> None:
    await _approved(services, 2)
    now = [0.0]
    buffer = _buffer(services, ttl=1.0, clock=lambda: now[0])
    await buffer.take(Filters(), 1)
    now[0] = 0.5
    await buffer.take(Filters(), 1)
    assert buffer.draws == 1
    now[0] = 1.0
    await buffer.take(Filters(), 1)
    assert buffer.draws == 2


async def test_concurrent_takes_share_draws(services: Services) -> None:
    await _approved(services, 70)
    buffer = _buffer(services, batch=64, min_batch=8)
    results = await asyncio.gather(*(buffer.take(Filters(), 1) for _ in range(32)))
    assert buffer.draws == 3  # batches of 8, 16 and 32 serve the 32 callers
    assert [len(r) for r in results] == [1] * 32


async def test_batches_grow_with_demand_and_shrink_when_unused(services: Services) -> None:
    await _approved(services, 40)
    sizes: list[int] = []
    repo = services.storage.repo

    async def draw(filters: Filters, count: int) -> list[Image]:
        sizes.append(count)
        return await repo.random_images(filters, count)

    now = [0.0]
    buffer = DrawBuffer(draw, batch=32, min_batch=4, clock=lambda: now[0])
    for _ in range(60):  # a busy filter: each batch runs low within its life
        await buffer.take(Filters(), 1)
        await asyncio.sleep(0)
    await asyncio.sleep(0.1)
    assert sizes[:4] == [4, 8, 16, 32] and set(sizes[4:]) == {32}
    # Quiet now: each batch expires mostly unused, and the next one is smaller.
    for _ in range(3):
        now[0] += 2.0
        await buffer.take(Filters(), 1)
    assert sizes[-3:] == [16, 8, 4]


async def test_a_large_count_is_served_by_one_draw(services: Services) -> None:
    await _approved(services, 60)
    buffer = _buffer(services, batch=64, min_batch=4)
    assert len(await buffer.take(Filters(), 20)) == 20
    assert buffer.draws == 1  # a batch of 40, not 4, 8, 16...


async def test_counts_above_half_a_batch_go_to_the_store(services: Services) -> None:
    await _approved(services, 40)
    buffer = _buffer(services, batch=16)
    assert len(await buffer.take(Filters(), 9)) == 9
    assert len(await buffer.take(Filters(), 9)) == 9
    assert buffer.draws == 2


async def test_empty_match_set_returns_nothing(services: Services) -> None:
    buffer = _buffer(services)
    assert await buffer.take(Filters(), 1) == []
    assert await buffer.take(Filters(), 1) == []
    assert buffer.draws == 1


async def test_rejected_image_is_never_drawn_again(services: Services) -> None:
    [image] = await _approved(services, 1)
    assert [i.id for i in await services.images.random(Filters(), 1)] == [image.id]
    await services.images.reject(image.id, OWNER)
    assert await services.images.random(Filters(), 1) == []


async def test_deleted_image_is_never_drawn_again(services: Services) -> None:
    [image] = await _approved(services, 1)
    await services.images.random(Filters(), 1)
    await services.images.delete(image.id)
    assert await services.images.random(Filters(), 1) == []


async def test_new_approved_upload_is_drawable_at_once(services: Services) -> None:
    assert await services.images.random(Filters(), 1) == []
    [image] = await _approved(services, 1)
    assert [i.id for i in await services.images.random(Filters(), 1)] == [image.id]


async def test_likes_are_fresh_after_a_like(services: Services) -> None:
    [image] = await _approved(services, 1)
    await services.images.random(Filters(), 1)
    await services.images.set_like(image.id, OWNER)
    assert (await services.images.random(Filters(), 1))[0].likes == 1


async def test_draw_racing_a_rejection_is_discarded(services: Services) -> None:
    [image] = await _approved(services, 1)
    repo = services.storage.repo
    gate = asyncio.Event()

    async def slow_draw(filters: Filters, count: int) -> list[Image]:
        drawn = await repo.random_images(filters, count)
        await gate.wait()  # the rejection lands while this draw is in flight
        return drawn

    buffer = DrawBuffer(slow_draw)
    taking = asyncio.create_task(buffer.take(Filters(), 1))
    await asyncio.sleep(0.05)
    await repo.set_status(image.id, image.status.REJECTED, OWNER)
    buffer.invalidate()
    gate.set()
    assert await taking == []


async def test_random_files_names_approved_matches_only(services: Services) -> None:
    sfw = await _approved(services, 3)
    await _approved(services, 2, Rating.NSFW, first_seed=10)
    await services.images.ingest(make_image(seed=50), IngestMetadata(), OWNER)  # pending
    only_sfw = Filters(ratings=frozenset({Rating.SFW}))
    drawn = {f.filename for _ in range(30) for f in await services.images.random_files(only_sfw)}
    assert drawn == {i.filename for i in sfw}


async def test_random_files_forget_a_rejected_image(services: Services) -> None:
    [image] = await _approved(services, 1)
    assert [f.id for f in await services.images.random_files(Filters())] == [image.id]
    await services.images.reject(image.id, OWNER)
    assert await services.images.random_files(Filters()) == []


# ---- search pages ----------------------------------------------------------------------


async def test_repeated_search_reaches_the_store_once(services: Services) -> None:
    await _approved(services, 3)
    cache = services.images.page_cache
    assert cache is not None
    first = await services.images.search(SearchQuery())
    second = await services.images.search(SearchQuery())
    assert first == second and cache.misses == 1


async def test_concurrent_identical_searches_share_one_store_call(services: Services) -> None:
    await _approved(services, 3)
    cache = services.images.page_cache
    assert cache is not None
    pages = await asyncio.gather(*(services.images.search(SearchQuery()) for _ in range(10)))
    assert all(p == pages[0] for p in pages) and cache.misses == 1


async def test_search_sees_a_rejection_at_once(services: Services) -> None:
    [image] = await _approved(services, 1)
    assert [i.id for i in (await services.images.search(SearchQuery())).images] == [image.id]
    await services.images.reject(image.id, OWNER)
    assert (await services.images.search(SearchQuery())).images == []


async def test_uploaders_listing_sees_a_new_pending_upload_at_once(services: Services) -> None:
    mine = SearchQuery(uploader=OWNER.id, statuses=frozenset(Status))
    assert (await services.images.search(mine)).images == []
    await services.images.ingest(make_image(seed=5), IngestMetadata(), OWNER)
    assert len((await services.images.search(mine)).images) == 1


async def test_search_pages_expire_after_ttl(services: Services) -> None:
    await _approved(services, 1)
    now = [0.0]
    cache = PageCache(ttl=1.0, clock=lambda: now[0])
    load = lambda: services.images.repo.search(SearchQuery())  # noqa: E731
    await cache.get("k", load)
    now[0] = 0.9
    await cache.get("k", load)
    now[0] = 1.0
    await cache.get("k", load)
    assert cache.misses == 2


async def test_a_failed_load_is_not_cached(services: Services) -> None:
    cache = PageCache()
    calls = []

    async def failing() -> None:
        calls.append(1)
        raise RuntimeError("store unavailable")

    for _ in range(2):
        with pytest.raises(RuntimeError):
            await cache.get("k", failing)
    assert len(calls) == 2
