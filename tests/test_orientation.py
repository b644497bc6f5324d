"""Orientation (landscape, portrait, square) as a search and random filter on both
backends: exactly the matches, drawn uniformly, checked like any other filter."""

from __future__ import annotations

from collections import Counter

import pytest

from core.errors import InvalidInput
from core.models import Filters, Image, IngestMetadata, Rating, SearchQuery
from core.services import Services
from tests.conftest import ALL_BACKENDS, OWNER, make_image
from tests.test_random import chi_square, chi_square_critical

BACKENDS = ALL_BACKENDS

SIZES = {"landscape": (64, 40), "portrait": (40, 64), "square": (48, 48)}
# (orientation, tags, rating) per image, in upload order.
SPECS = [
    ("landscape", ("cat",), Rating.SFW),
    ("portrait", ("cat",), Rating.SFW),
    ("square", ("cat",), Rating.NSFW),
    ("landscape", ("dog",), Rating.SFW),
    ("portrait", ("cat", "dog"), Rating.SFW),
    ("portrait", ("dog",), Rating.QUESTIONABLE),
    ("landscape", ("cat",), Rating.NSFW),
    ("square", ("dog",), Rating.SFW),
    ("portrait", (), Rating.SFW),
    ("landscape", ("cat", "dog"), Rating.SFW),
]


@pytest.fixture
async def collection(services: Services) -> list[Image]:
    out = []
    for n, (orientation, tags, rating) in enumerate(SPECS):
        data = make_image(size=SIZES[orientation], seed=700 + n)
        meta = IngestMetadata(tags=tags, rating=rating)
        out.append(await services.images.ingest(data, meta, OWNER, trusted=True))
    return out


def wanted(
    images: list[Image], orientation: str, tag: str | None = None, rating: Rating | None = None
) -> list[str]:
    """Matching ids, newest first, from SPECS alone."""
    return [
        image.id
        for image, (o, tags, r) in reversed(list(zip(images, SPECS, strict=True)))
        if o == orientation and (tag is None or tag in tags) and (rating is None or r is rating)
    ]


async def test_stored_orientation_follows_the_size(collection: list[Image]) -> None:
    assert [i.orientation for i in collection] == [s[0] for s in SPECS]


@pytest.mark.parametrize("orientation", list(SIZES))
async def test_search_by_orientation_finds_exactly_its_images(
    services: Services, collection: list[Image], orientation: str
) -> None:
    page = await services.images.search(SearchQuery(orientation=orientation, limit=50))
    assert [i.id for i in page.images] == wanted(collection, orientation)
    assert page.total == len(wanted(collection, orientation))


async def test_search_by_orientation_with_a_tag_and_a_rating(
    services: Services, collection: list[Image]
) -> None:
    query = SearchQuery(
        orientation="landscape", tags=("cat",), ratings=frozenset({Rating.SFW}), limit=50
    )
    page = await services.images.search(query)
    assert [i.id for i in page.images] == wanted(collection, "landscape", "cat", Rating.SFW)
    assert len(page.images) == 2


async def test_search_by_orientation_pages_with_an_exact_total(
    services: Services, collection: list[Image]
) -> None:
    first = await services.images.search(SearchQuery(orientation="portrait", limit=2))
    second = await services.images.search(SearchQuery(orientation="portrait", skip=2, limit=2))
    assert first.total == second.total == 4
    assert [i.id for i in first.images + second.images] == wanted(collection, "portrait")


@pytest.mark.parametrize(("orientation", "tag"), [("portrait", None), ("landscape", "cat")])
async def test_random_by_orientation_draws_exactly_the_matches(
    services: Services, collection: list[Image], orientation: str, tag: str | None
) -> None:
    filters = Filters(tags=(tag,) if tag else (), orientation=orientation)
    batch = await services.images.random(filters, count=len(SPECS))
    assert sorted(i.id for i in batch) == sorted(wanted(collection, orientation, tag))


async def test_random_by_orientation_is_uniform(
    services: Services, collection: list[Image]
) -> None:
    filters = Filters(orientation="landscape")
    categories = wanted(collection, "landscape")
    counts: Counter[str] = Counter()
    for _ in range(1200):
        (image,) = await services.storage.repo.random_images(filters, 1)
        counts[image.id] += 1
    assert set(counts) <= set(categories)
    assert chi_square(counts, categories) < chi_square_critical(len(categories) - 1)


async def test_random_by_orientation_with_no_match_is_empty(
    services: Services, collection: list[Image]
) -> None:
    filters = Filters(tags=("dog",), ratings=frozenset({Rating.NSFW}), orientation="square")
    assert await services.images.random(filters, count=5) == []


@pytest.mark.parametrize("make", [Filters, SearchQuery])
async def test_an_unknown_orientation_is_refused(services: Services, make: type) -> None:
    with pytest.raises(InvalidInput) as caught:
        if make is Filters:
            await services.images.random(Filters(orientation="diagonal"))
        else:
            await services.images.search(SearchQuery(orientation="diagonal"))
    assert caught.value.details.get("field") == "orientation"


def test_a_filters_key_without_orientation_is_as_before() -> None:
    # Members' seen images are kept under these keys: adding the field must not move them.
    assert Filters(tags=("a",)).key() == "t=a&x=&r=&a=&c="
    assert Filters(orientation="square").key() != Filters().key()
