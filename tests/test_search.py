"""search(): every filter and sort against a known collection, whose expected results
the tests compute on their own from the collection's description."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest

from core.errors import InvalidInput
from core.models import Image, IngestMetadata, Rating, SearchQuery, Sort, Status, User
from core.services import Services
from tests.conftest import ALL_BACKENDS, OWNER, make_image

BACKENDS = ALL_BACKENDS

ALICE = User("501", "Alice")
BOB = User("502", "bob")


@dataclass(frozen=True)
class Entry:
    tags: tuple[str, ...]
    rating: Rating = Rating.SFW
    artist: str | None = None
    characters: tuple[str, ...] = ()
    uploader: User = ALICE
    status: Status = Status.APPROVED
    likes: int = 0
    favorites: int = 0


# The known collection, in upload order.
ENTRIES = [
    Entry(("cat", "cute"), Rating.SFW, "Mika Tanaka", ("Neko",), ALICE, likes=3),
    Entry(("cat",), Rating.QUESTIONABLE, "Tanaka Jr", (), BOB, likes=1, favorites=4),
    Entry(("dog", "cute"), Rating.NSFW, "Ren", ("Inu",), ALICE, likes=5),
    Entry(("cat", "dog"), Rating.SFW, None, ("Neko", "Inu"), BOB, favorites=1),
    Entry(("cute",), Rating.SFW, "Ren", (), ALICE, likes=2, favorites=2),
    Entry(("cat", "cute", "dog"), Rating.NSFW, "Mika Tanaka", ("Neko",), BOB, likes=4),
    Entry(("cat",), Rating.SFW, "50%_off", (), ALICE),
    Entry(("cat", "cute"), Rating.QUESTIONABLE, "Ren", ("Inu",), BOB, likes=3),
    Entry(("cat",), Rating.SFW, "Mika Tanaka", (), ALICE, status=Status.PENDING),
    Entry(("cat", "cute"), Rating.SFW, "Ren", ("Neko",), BOB, status=Status.REJECTED),
    Entry((), Rating.SFW, None, (), ALICE, likes=1),
    Entry(("dog",), Rating.QUESTIONABLE, "Ren", (), BOB, status=Status.PENDING),
]


@dataclass
class Known:
    """The stored collection: each entry with the image it became (by upload order)."""

    entries: list[Entry]
    images: list[Image]

    def ids(
        self,
        keep: Callable[[Entry, Image], bool],
        statuses: frozenset[Status] = frozenset({Status.APPROVED}),
    ) -> list[str]:
        """Ids of matching entries, newest upload first."""
        pairs = [
            (e, i)
            for e, i in zip(self.entries, self.images, strict=True)
            if e.status in statuses and keep(e, i)
        ]
        return [i.id for e, i in sorted(pairs, key=lambda p: p[1].created_at, reverse=True)]


@pytest.fixture
async def known(services: Services) -> Known:
    images = []
    for n, entry in enumerate(ENTRIES):
        meta = IngestMetadata(
            tags=entry.tags, rating=entry.rating, artist=entry.artist, characters=entry.characters
        )
        image = await services.images.ingest(
            make_image(seed=1000 + n),
            meta,
            entry.uploader,
            trusted=entry.status is not Status.PENDING,
        )
        if entry.status is Status.REJECTED:
            await services.images.reject(image.id, OWNER)
        for k in range(entry.likes):
            await services.storage.repo.set_like(image.id, f"liker{k}", "like", True)
        for k in range(entry.favorites):
            await services.storage.repo.set_like(image.id, f"fan{k}", "favorite", True)
        images.append(image)
    return Known(ENTRIES, images)


async def search_ids(services: Services, **query: object) -> list[str]:
    page = await services.images.search(SearchQuery(limit=100, **query))
    return [i.id for i in page.images]


async def test_search_without_filters_returns_approved_images_newest_first(
    services: Services, known: Known
) -> None:
    assert await search_ids(services) == known.ids(lambda e, i: True)


@pytest.mark.parametrize("tags", [("cat",), ("cat", "cute"), ("CUTE", "dog")])
async def test_search_by_tags_returns_images_with_all_of_them(
    services: Services, known: Known, tags: tuple[str, ...]
) -> None:
    wanted = {t.lower() for t in tags}
    assert await search_ids(services, tags=tags) == known.ids(lambda e, i: wanted <= set(e.tags))


async def test_search_excluding_tags_drops_images_with_any_of_them(
    services: Services, known: Known
) -> None:
    assert await search_ids(services, exclude_tags=("dog", "cute")) == known.ids(
        lambda e, i: not {"dog", "cute"} & set(e.tags)
    )


async def test_search_with_tags_and_excluded_tags(services: Services, known: Known) -> None:
    assert await search_ids(services, tags=("cat",), exclude_tags=("dog",)) == known.ids(
        lambda e, i: "cat" in e.tags and "dog" not in e.tags
    )


async def test_search_by_unknown_tag_is_empty(services: Services, known: Known) -> None:
    page = await services.images.search(SearchQuery(tags=("cat", "nope")))
    assert page.images == [] and page.total == 0 and page.total_exact


async def test_search_by_artist_substring_is_case_insensitive(
    services: Services, known: Known
) -> None:
    assert await search_ids(services, artist="tanaka") == known.ids(
        lambda e, i: e.artist is not None and "tanaka" in e.artist.lower()
    )


async def test_search_by_artist_treats_like_wildcards_literally(
    services: Services, known: Known
) -> None:
    assert await search_ids(services, artist="%_") == known.ids(
        lambda e, i: e.artist is not None and "%_" in e.artist
    )
    assert await search_ids(services, artist="5_%") == []


async def test_search_by_artist_id(services: Services, known: Known) -> None:
    artist = await services.images.artist("Ren")
    assert await search_ids(services, artist_id=artist.id) == known.ids(
        lambda e, i: e.artist == "Ren"
    )


@pytest.mark.parametrize("key", ["name", "id"])
async def test_search_by_character_name_or_id(services: Services, known: Known, key: str) -> None:
    character = await services.images.character("Inu")
    value = character.name if key == "name" else character.id
    assert await search_ids(services, character=value) == known.ids(
        lambda e, i: "Inu" in e.characters
    )


@pytest.mark.parametrize("value", [BOB.id, BOB.name, "BOB"], ids=["id", "name", "name case"])
async def test_search_by_uploader_id_or_name(services: Services, known: Known, value: str) -> None:
    assert await search_ids(services, uploader=value) == known.ids(lambda e, i: e.uploader == BOB)


@pytest.mark.parametrize(
    "ratings",
    [
        frozenset({Rating.SFW}),
        frozenset({Rating.QUESTIONABLE, Rating.NSFW}),
        frozenset({Rating.NSFW}),
        frozenset(Rating),
    ],
)
async def test_search_by_ratings(
    services: Services, known: Known, ratings: frozenset[Rating]
) -> None:
    assert await search_ids(services, ratings=ratings) == known.ids(
        lambda e, i: e.rating in ratings
    )


async def test_search_by_id_finds_one_approved_image(services: Services, known: Known) -> None:
    target = known.images[3]
    assert await search_ids(services, image_id=target.id) == [target.id]


async def test_search_by_id_of_a_pending_image_finds_it_only_among_pending(
    services: Services, known: Known
) -> None:
    pending = known.images[8]
    assert await search_ids(services, image_id=pending.id) == []
    assert await search_ids(
        services, image_id=pending.id, statuses=frozenset({Status.PENDING})
    ) == [pending.id]


async def test_search_posted_before_and_after_are_strict(services: Services, known: Known) -> None:
    middle = known.images[5].created_at
    assert await search_ids(services, posted_before=middle) == known.ids(
        lambda e, i: i.created_at < middle
    )
    assert await search_ids(services, posted_after=middle) == known.ids(
        lambda e, i: i.created_at > middle
    )
    assert await search_ids(
        services,
        posted_after=middle - timedelta(microseconds=1),
        posted_before=middle + timedelta(microseconds=1),
    ) == [known.images[5].id]


async def test_search_sorted_oldest_first(services: Services, known: Known) -> None:
    assert await search_ids(services, sort=Sort.OLDEST) == list(
        reversed(known.ids(lambda e, i: True))
    )


async def test_search_sorted_by_likes_breaks_ties_newest_first(
    services: Services, known: Known
) -> None:
    newest = known.ids(lambda e, i: True)
    likes = {i.id: e.likes for e, i in zip(known.entries, known.images, strict=True)}
    # sorted() is stable: equal likes keep the newest-first order.
    wanted = sorted(newest, key=lambda image_id: -likes[image_id])
    assert await search_ids(services, sort=Sort.LIKES) == wanted


async def test_search_sorted_by_relevance_counts_likes_and_favourites(
    services: Services, known: Known
) -> None:
    newest = known.ids(lambda e, i: True)
    score = {i.id: e.likes + e.favorites for e, i in zip(known.entries, known.images, strict=True)}
    wanted = sorted(newest, key=lambda image_id: -score[image_id])
    assert await search_ids(services, sort=Sort.RELEVANCE) == wanted


@pytest.mark.parametrize("sort", list(Sort))
async def test_search_pages_are_slices_of_the_full_order(
    services: Services, known: Known, sort: Sort
) -> None:
    full = await search_ids(services, sort=sort)
    for skip in range(0, len(full) + 2, 3):
        page = await services.images.search(SearchQuery(sort=sort, skip=skip, limit=3))
        assert [i.id for i in page.images] == full[skip : skip + 3]


async def test_search_total_is_exact_for_every_filter_combination_below_the_cap(
    services: Services, known: Known
) -> None:
    queries: list[tuple[dict[str, object], Callable[[Entry, Image], bool]]] = [
        ({}, lambda e, i: True),
        ({"tags": ("cat",)}, lambda e, i: "cat" in e.tags),
        ({"tags": ("cat", "cute")}, lambda e, i: {"cat", "cute"} <= set(e.tags)),
        ({"ratings": frozenset({Rating.SFW})}, lambda e, i: e.rating is Rating.SFW),
        ({"uploader": ALICE.id}, lambda e, i: e.uploader == ALICE),
        (
            {"tags": ("cute",), "exclude_tags": ("dog",)},
            lambda e, i: "cute" in e.tags and "dog" not in e.tags,
        ),
    ]
    for query, keep in queries:
        page = await services.images.search(SearchQuery(limit=1, **query))
        assert (page.total, page.total_exact) == (len(known.ids(keep)), True), query


async def test_search_total_past_the_cap_is_a_lower_bound(
    services: Services, known: Known, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.modules[type(services.storage.repo).__module__], "TOTAL_CAP", 3)
    # Two non-pooled constraints: the total must be counted, and the count stops.
    matches = known.ids(lambda e, i: e.uploader == ALICE and "dog" not in e.tags)
    assert len(matches) > 3
    page = await services.images.search(
        SearchQuery(uploader=ALICE.id, exclude_tags=("dog",), limit=1)
    )
    assert (page.total, page.total_exact) == (3, False)


async def test_search_total_from_a_pool_is_exact_past_the_cap(
    services: Services, known: Known, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.modules[type(services.storage.repo).__module__], "TOTAL_CAP", 3)
    page = await services.images.search(SearchQuery(tags=("cat",), limit=1))
    assert (page.total, page.total_exact) == (len(known.ids(lambda e, i: "cat" in e.tags)), True)


async def test_search_without_count_total_reports_a_lower_bound(
    services: Services, known: Known
) -> None:
    page = await services.images.search(SearchQuery(limit=2), count_total=False)
    assert len(page.images) == 2
    assert (page.total, page.total_exact) == (2, False)


async def test_search_past_the_end_is_empty_with_the_true_total(
    services: Services, known: Known
) -> None:
    page = await services.images.search(SearchQuery(skip=50, limit=5))
    assert page.images == []
    assert (page.total, page.total_exact) == (len(known.ids(lambda e, i: True)), True)


async def test_search_without_count_total_past_the_end_reports_the_true_total(
    services: Services, known: Known
) -> None:
    everything = len(known.ids(lambda e, i: True))
    page = await services.images.search(SearchQuery(skip=50, limit=5), count_total=False)
    assert page.images == []
    assert (page.total, page.total_exact) == (everything, True)
    # Counted rows too, not only the pools' sizes.
    cats = len(known.ids(lambda e, i: "cat" in e.tags and "dog" not in e.tags))
    query = SearchQuery(tags=("cat",), exclude_tags=("dog",), skip=50, limit=5)
    page = await services.images.search(query, count_total=False)
    assert (page.images, page.total, page.total_exact) == ([], cats, True)


@pytest.mark.parametrize("status", [Status.PENDING, Status.REJECTED])
async def test_search_by_status(services: Services, known: Known, status: Status) -> None:
    statuses = frozenset({status})
    assert await search_ids(services, statuses=statuses) == known.ids(
        lambda e, i: True, statuses=statuses
    )


async def test_search_over_several_statuses_with_filters(services: Services, known: Known) -> None:
    statuses = frozenset({Status.APPROVED, Status.PENDING})
    page = await services.images.search(SearchQuery(tags=("cat",), statuses=statuses, limit=100))
    wanted = known.ids(lambda e, i: "cat" in e.tags, statuses=statuses)
    assert [i.id for i in page.images] == wanted
    assert (page.total, page.total_exact) == (len(wanted), True)


@pytest.mark.parametrize(
    "query",
    [SearchQuery(limit=0), SearchQuery(limit=101), SearchQuery(skip=-1)],
    ids=["limit 0", "limit 101", "skip -1"],
)
async def test_search_refuses_bad_paging(services: Services, query: SearchQuery) -> None:
    with pytest.raises(InvalidInput):
        await services.images.search(query)
