"""random(): every filter, distinctness, moderation states, pools kept dense through
churn, statistical uniformity, and the per-member memory of what was shown."""

from __future__ import annotations

import math
import random
import sqlite3
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from core.errors import Conflict
from core.models import Filters, Image, IngestMetadata, Rating, Rendition, Status, User
from core.services import Services, open_services
from core.settings import Settings
from storage.postgres import PostgresRepo
from storage.sqlite import SQLiteRepo
from tests.conftest import ALL_BACKENDS, MEMBER, OWNER, make_image

BACKENDS = ALL_BACKENDS

# Chance that a correct implementation fails one uniformity test.
FALSE_FAILURE = 1e-6


def chi_square_sf(x: float, df: int) -> float:
    """P(X > x) for X ~ chi-square(df): one minus the regularised lower incomplete
    gamma function, summed as its power series."""
    if x <= 0:
        return 1.0
    a, y = df / 2, x / 2
    term = total = 1 / a
    n = 1
    while term > total * 1e-16:
        term *= y / (a + n)
        total += term
        n += 1
    return 1 - total * math.exp(-y + a * math.log(y) - math.lgamma(a))


def chi_square_critical(df: int, p: float = FALSE_FAILURE) -> float:
    """The x with P(X > x) = p for X ~ chi-square(df), by bisection."""
    low, high = 0.0, df + 100.0 * math.sqrt(df) + 100.0
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if chi_square_sf(middle, df) > p else (low, middle)
    return (low + high) / 2


def chi_square(counts: Counter[str], categories: Sequence[str]) -> float:
    """Pearson's statistic of `counts` against a uniform spread over `categories`."""
    n = sum(counts.values())
    expected = n / len(categories)
    return sum((counts.get(c, 0) - expected) ** 2 / expected for c in categories)


def pool_problems(db: Path) -> list[str]:
    """Check, with plain SQL on the file, that every pool numbers its members 0..size-1
    and holds exactly the approved images of its set; empty when consistent."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        problems = []
        for name, size, count, low, high in conn.execute(
            "SELECT p.name, p.size, COUNT(s.slot), MIN(s.slot), MAX(s.slot) "
            "FROM pools p LEFT JOIN pool_slots s ON s.pool = p.pool GROUP BY p.pool"
        ):
            # (pool, slot) is the primary key, so count == size with slots in
            # [0, size-1] means exactly the slots 0..size-1.
            if count != size or (size and (low != 0 or high != size - 1)):
                problems.append(f"{name}: size {size}, {count} slots in [{low}, {high}]")
        orphan_slots = conn.execute(
            "SELECT COUNT(*) FROM pool_slots WHERE pool NOT IN (SELECT pool FROM pools)"
        ).fetchone()[0]
        if orphan_slots:
            problems.append(f"{orphan_slots} slot(s) of no pool")
        held = Counter(
            conn.execute("SELECT p.name, s.seq FROM pool_slots s JOIN pools p ON p.pool = s.pool")
        )
        wanted = Counter(
            conn.execute(
                """SELECT 'all', seq FROM images WHERE status = 'approved'
               UNION ALL SELECT 'rating:' || rating, seq FROM images WHERE status = 'approved'
               UNION ALL SELECT 'artist:' || artist_rid, seq FROM images
                   WHERE status = 'approved' AND artist_rid IS NOT NULL
               UNION ALL SELECT 'tag:' || t.tag_rid, t.seq FROM image_tags t
                   JOIN images i ON i.seq = t.seq WHERE i.status = 'approved'
               UNION ALL SELECT 'character:' || c.character_rid, c.seq FROM image_characters c
                   JOIN images i ON i.seq = c.seq WHERE i.status = 'approved'"""
            )
        )
        for (name, seq), n in sorted((held - wanted).items()):
            problems.append(f"{name} holds seq {seq} {n} time(s) too many")
        for (name, seq), n in sorted((wanted - held).items()):
            problems.append(f"{name} lacks seq {seq} ({n})")
        return problems
    finally:
        conn.close()


async def store_pool_problems(repo: object) -> list[str]:
    """`pool_problems` of a repo, whatever its backend."""
    if isinstance(repo, PostgresRepo):
        return await repo.pool_problems()
    assert isinstance(repo, SQLiteRepo)
    return pool_problems(repo.path)


@dataclass(frozen=True)
class Spec:
    tags: tuple[str, ...]
    rating: Rating = Rating.SFW
    artist: str | None = None
    characters: tuple[str, ...] = ()


# A small known collection: every filter has a few matches and a few near misses.
SPECS = [
    Spec(("cat", "cute"), Rating.SFW, "Alice", ("Neko",)),
    Spec(("cat",), Rating.SFW, "Alice"),
    Spec(("cat", "dog"), Rating.QUESTIONABLE, "Bob", ("Neko", "Inu")),
    Spec(("dog",), Rating.NSFW, "Bob", ("Inu",)),
    Spec(("cat", "cute", "dog"), Rating.NSFW, None, ("Neko",)),
    Spec(("cute",), Rating.SFW, "Carol"),
    Spec(("cat",), Rating.QUESTIONABLE, "Carol", ("Inu",)),
    Spec((), Rating.SFW, None),
    Spec(("cat", "cute"), Rating.SFW, "Alice"),
    Spec(("dog", "cute"), Rating.SFW, "Alice", ("Inu",)),
]


async def ingest_specs(
    services: Services, specs: Sequence[Spec], seed0: int = 0, trusted: bool = True
) -> list[Image]:
    """Ingest one real image per spec."""
    out = []
    for n, spec in enumerate(specs):
        meta = IngestMetadata(
            tags=spec.tags, rating=spec.rating, artist=spec.artist, characters=spec.characters
        )
        out.append(
            await services.images.ingest(make_image(seed=seed0 + n), meta, OWNER, trusted=trusted)
        )
    return out


def expected_ids(images: Sequence[Image], specs: Sequence[Spec], filters: Filters) -> set[str]:
    """The ids matching `filters`, computed from the specs alone."""
    out = set()
    for image, spec in zip(images, specs, strict=True):
        tags = {t.lower() for t in spec.tags}
        if not all(t.lower() in tags for t in filters.tags):
            continue
        if any(t.lower() in tags for t in filters.exclude_tags):
            continue
        if filters.ratings and spec.rating not in filters.ratings:
            continue
        if filters.artist and (spec.artist or "").lower() != filters.artist.lower():
            continue
        if filters.character and filters.character.lower() not in {
            c.lower() for c in spec.characters
        }:
            continue
        out.add(image.id)
    return out


async def drawn_ids(services: Services, filters: Filters, draws: int) -> set[str]:
    """Every id seen over `draws` single draws."""
    seen: set[str] = set()
    for _ in range(draws):
        seen.update(i.id for i in await services.images.random(filters))
    return seen


@pytest.fixture
async def collection(services: Services) -> list[Image]:
    return await ingest_specs(services, SPECS)


FILTERS = {
    "no filter": Filters(),
    "one tag": Filters(tags=("cat",)),
    "all of two tags": Filters(tags=("cat", "cute")),
    "tag case-insensitively": Filters(tags=("CAT",)),
    "excluded tag": Filters(exclude_tags=("dog",)),
    "tag and excluded tag": Filters(tags=("cat",), exclude_tags=("cute",)),
    "one rating": Filters(ratings=frozenset({Rating.NSFW})),
    "two ratings": Filters(ratings=frozenset({Rating.QUESTIONABLE, Rating.NSFW})),
    "every rating": Filters(ratings=frozenset(Rating)),
    "artist": Filters(artist="Alice"),
    "artist case-insensitively": Filters(artist="bob"),
    "character": Filters(character="Inu"),
    "everything at once": Filters(
        tags=("cute",),
        exclude_tags=("dog",),
        ratings=frozenset({Rating.SFW}),
        artist="Alice",
        character="Neko",
    ),
}


@pytest.mark.parametrize("name", FILTERS)
async def test_random_draws_exactly_the_matches_of_each_filter(
    services: Services, collection: list[Image], name: str
) -> None:
    filters = FILTERS[name]
    wanted = expected_ids(collection, SPECS, filters)
    assert wanted, "each filter case must have matches"
    # Asking for more than exist returns every match once.
    batch = await services.images.random(filters, count=len(SPECS))
    assert {i.id for i in batch} == wanted
    assert len(batch) == len(wanted)


async def test_random_by_artist_and_character_id(
    services: Services, collection: list[Image]
) -> None:
    artist = await services.images.artist("Carol")
    character = await services.images.character("Neko")
    by_artist = await services.images.random(Filters(artist=artist.id), count=20)
    by_character = await services.images.random(Filters(character=character.id), count=20)
    assert {i.id for i in by_artist} == expected_ids(collection, SPECS, Filters(artist="Carol"))
    assert {i.id for i in by_character} == expected_ids(
        collection, SPECS, Filters(character="Neko")
    )


@pytest.mark.parametrize(
    "filters",
    [
        Filters(tags=("nope",)),
        Filters(tags=("cat", "nope")),
        Filters(artist="Nobody"),
        Filters(character="Nobody"),
        Filters(tags=("cute",), exclude_tags=("cute",)),
    ],
    ids=[
        "unknown tag",
        "known and unknown tag",
        "unknown artist",
        "unknown character",
        "tag also excluded",
    ],
)
async def test_random_with_no_possible_match_is_empty(
    services: Services, collection: list[Image], filters: Filters
) -> None:
    assert await services.images.random(filters, count=5) == []


async def test_random_ignores_an_unknown_excluded_tag(
    services: Services, collection: list[Image]
) -> None:
    batch = await services.images.random(Filters(exclude_tags=("nope",)), count=20)
    assert {i.id for i in batch} == {i.id for i in collection}


async def test_random_count_returns_distinct_images(
    services: Services, collection: list[Image]
) -> None:
    for _ in range(30):
        batch = await services.images.random(Filters(), count=4)
        assert len(batch) == 4
        assert len({i.id for i in batch}) == 4


async def test_random_never_draws_pending_or_rejected_images(services: Services) -> None:
    approved = await ingest_specs(services, SPECS[:3], seed0=0)
    pending = await ingest_specs(services, SPECS[3:6], seed0=10, trusted=False)
    rejected = await ingest_specs(services, SPECS[6:9], seed0=20, trusted=False)
    for image in rejected:
        await services.images.reject(image.id, OWNER)
    seen = await drawn_ids(services, Filters(), 60)
    seen |= {i.id for i in await services.images.random(Filters(), count=50)}
    assert seen == {i.id for i in approved}
    assert not seen & {i.id for i in pending + rejected}


async def test_random_no_longer_draws_an_unapproved_or_deleted_image(
    services: Services, collection: list[Image]
) -> None:
    await services.images.reject(collection[0].id, OWNER)
    await services.images.delete(collection[1].id)
    batch = await services.images.random(Filters(tags=("cat",)), count=20)
    wanted = expected_ids(collection, SPECS, Filters(tags=("cat",))) - {
        collection[0].id,
        collection[1].id,
    }
    assert {i.id for i in batch} == wanted


async def test_pools_stay_dense_and_exact_through_random_moderation_churn(
    services: Services, settings: Settings
) -> None:
    rng = random.Random(7)
    specs = [SPECS[n % len(SPECS)] for n in range(40)]
    images = await ingest_specs(services, specs, seed0=100, trusted=False)
    alive = {i.id for i in images}
    repo = services.storage.repo
    for step in range(240):
        image_id = rng.choice(sorted(alive))
        action = rng.choices(["approve", "reject", "delete"], [5, 3, 1])[0]
        if action == "approve":
            current = await services.storage.repo.get_image(image_id)
            assert current is not None
            if current.status == Status.REJECTED:
                # A rejected image's files are gone: it can't come back.
                with pytest.raises(Conflict):
                    await services.images.approve(image_id, OWNER)
            else:
                await services.images.approve(image_id, OWNER)
        elif action == "reject":
            await services.images.reject(image_id, OWNER)
        else:
            await services.images.delete(image_id)
            alive.discard(image_id)
        if step % 20 == 19:
            assert await store_pool_problems(repo) == [], f"after step {step}"
    assert await store_pool_problems(repo) == []
    approved = {i.id for i in await services.images.random(Filters(), count=100)}
    for image_id in alive:
        image = await services.storage.repo.get_image(image_id)
        assert image is not None
        assert (image_id in approved) == (image.status == "approved")


# Uniformity is checked where the sampling happens (the store's pools), through the
# service, which may hand out pre-drawn batches, and through kept renderings (drawn by
# the store with their bodies, buffered by the service like images).
LAYERS = ["store", "service", "rendition"]


@pytest.mark.parametrize("layer", LAYERS)
async def test_random_is_uniform_over_the_whole_collection(
    services: Services, collection: list[Image], layer: str
) -> None:
    await assert_uniform(services, layer, collection, Filters(), draws=3000)


@pytest.mark.parametrize("layer", LAYERS)
async def test_random_is_uniform_over_one_tag(
    services: Services, collection: list[Image], layer: str
) -> None:
    await assert_uniform(services, layer, collection, Filters(tags=("cat",)), draws=2000)


@pytest.mark.parametrize("layer", LAYERS)
async def test_random_is_uniform_over_tag_minus_excluded_tag(
    services: Services, collection: list[Image], layer: str
) -> None:
    # The exclusion is checked per drawn row (rejection), not implied by a pool.
    await assert_uniform(
        services, layer, collection, Filters(tags=("cute",), exclude_tags=("cat",)), draws=1000
    )


@pytest.mark.parametrize("layer", LAYERS)
async def test_random_is_uniform_over_a_union_of_ratings(
    services: Services, collection: list[Image], layer: str
) -> None:
    await assert_uniform(
        services,
        layer,
        collection,
        Filters(ratings=frozenset({Rating.QUESTIONABLE, Rating.NSFW})),
        draws=2000,
    )


@pytest.mark.parametrize("layer", LAYERS)
async def test_random_is_uniform_when_few_rows_pass_the_check(
    services: Services, layer: str
) -> None:
    # 3 matches among 30 candidates of the chosen pool: draws often fall back to a scan.
    specs = [Spec(("common", "noise")) for _ in range(27)] + [Spec(("common",))] * 3
    images = await ingest_specs(services, specs, seed0=300)
    await assert_uniform(
        services,
        layer,
        images,
        Filters(tags=("common",), exclude_tags=("noise",)),
        draws=900,
        specs=specs,
    )


async def assert_uniform(
    services: Services,
    layer: str,
    images: Sequence[Image],
    filters: Filters,
    draws: int,
    specs: Sequence[Spec] = SPECS,
) -> None:
    """Chi-square goodness of fit of `draws` single draws against uniform."""
    categories = sorted(expected_ids(images, specs, filters))
    assert len(categories) >= 2
    draw: Callable[[Filters], Awaitable[Sequence[Image] | Sequence[Rendition]]]
    if layer == "service":
        draw = services.images.random
    elif layer == "rendition":
        services.images.add_rendering("ids", lambda image: image.id.encode())
        draw = partial(services.images.random_renditions, "ids")
    else:
        draw = partial(services.storage.repo.random_images, count=1)
    counts: Counter[str] = Counter()
    for _ in range(draws):
        (image,) = await draw(filters)
        counts[image.id] += 1
    assert set(counts) <= set(categories)
    statistic = chi_square(counts, categories)
    critical = chi_square_critical(len(categories) - 1)
    assert statistic < critical, (statistic, critical, counts)


def test_chi_square_helpers_match_closed_forms() -> None:
    # With 2 and 4 degrees of freedom the tail has a closed form.
    for x in (0.5, 3.0, 20.0, 40.0):
        assert chi_square_sf(x, 2) == pytest.approx(math.exp(-x / 2), rel=1e-9)
        assert chi_square_sf(x, 4) == pytest.approx(math.exp(-x / 2) * (1 + x / 2), rel=1e-9)
    assert chi_square_critical(2) == pytest.approx(-2 * math.log(FALSE_FAILURE), rel=1e-9)


def test_chi_square_critical_grows_with_degrees_of_freedom() -> None:
    values = [chi_square_critical(df) for df in (2, 5, 9, 29)]
    assert values == sorted(values)
    for df, value in zip((2, 5, 9, 29), values, strict=True):
        assert chi_square_sf(value, df) == pytest.approx(FALSE_FAILURE, rel=1e-6)


async def test_seen_by_shows_every_match_once_before_any_repeat(
    services: Services, collection: list[Image]
) -> None:
    filters = Filters(tags=("cat",))
    matches = expected_ids(collection, SPECS, filters)
    shown = []
    for _ in range(len(matches)):
        (image,) = await services.images.random(filters, seen_by=MEMBER.id)
        shown.append(image.id)
    assert sorted(shown) == sorted(matches)
    # The cycle starts again once everything has been shown.
    (again,) = await services.images.random(filters, seen_by=MEMBER.id)
    assert again.id in matches


async def test_seen_by_fills_a_page_across_the_end_of_a_cycle_without_repeats(
    services: Services, collection: list[Image]
) -> None:
    filters = Filters(tags=("cat",))
    matches = expected_ids(collection, SPECS, filters)
    assert len(matches) >= 4
    count = len(matches) - 1
    first = [i.id for i in await services.images.random(filters, count, seen_by=MEMBER.id)]
    # One match is left in this cycle: the page takes it, then the next cycle's.
    second = [i.id for i in await services.images.random(filters, count, seen_by=MEMBER.id)]
    assert len(second) == count and len(set(second)) == count
    [left] = set(matches) - set(first)
    assert left in second
    # The new cycle began with this page: what it showed does not come back until the
    # rest of the matches have.
    rest = set(matches) - set(second)
    third = [i.id for i in await services.images.random(filters, len(rest), seen_by=MEMBER.id)]
    assert set(third) == rest


async def test_seen_by_page_larger_than_the_matches_shows_each_once(
    services: Services, collection: list[Image]
) -> None:
    filters = Filters(tags=("cat",))
    matches = expected_ids(collection, SPECS, filters)
    await services.images.random(filters, 1, seen_by=MEMBER.id)
    page = [i.id for i in await services.images.random(filters, 50, seen_by=MEMBER.id)]
    assert sorted(page) == sorted(matches)


async def test_seen_by_is_kept_per_member(services: Services, collection: list[Image]) -> None:
    filters = Filters(artist="Alice")
    matches = expected_ids(collection, SPECS, filters)
    other = User("300", "other")
    first = [
        (await services.images.random(filters, seen_by=MEMBER.id))[0].id
        for _ in range(len(matches) - 1)
    ]
    # Another member's draws neither see nor disturb MEMBER's memory.
    for _ in range(len(matches)):
        await services.images.random(filters, seen_by=other.id)
    (last,) = await services.images.random(filters, seen_by=MEMBER.id)
    assert sorted([*first, last.id]) == sorted(matches)


async def test_seen_by_survives_reopening_the_store(settings: Settings) -> None:
    filters = Filters(tags=("cute",))
    async with open_services(settings) as services:
        images = await ingest_specs(services, SPECS)
        matches = expected_ids(images, SPECS, filters)
        half = len(matches) // 2
        shown = [
            (await services.images.random(filters, seen_by=MEMBER.id))[0].id for _ in range(half)
        ]
    async with open_services(settings) as services:
        shown += [
            (await services.images.random(filters, seen_by=MEMBER.id))[0].id
            for _ in range(len(matches) - half)
        ]
    assert sorted(shown) == sorted(matches)
