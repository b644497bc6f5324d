"""Similar images by perceptual hash: the store's nearest-by-distance lookup on both
backends (checked against a brute-force answer), and the service over it."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from core.images import SIMILAR_BITS
from core.models import IngestMetadata, Rating, Status
from core.services import Services
from storage.rows import quarter_neighbours, quarters
from tests.conftest import ALL_BACKENDS, OWNER, make_image
from tests.test_store import Repo, row

BACKENDS = ALL_BACKENDS

CENTRE = 0x9E37_79B9_7F4A_7C15
TAGGED = IngestMetadata(tags=("t",))


@pytest.fixture
def repo(services: Services) -> Repo:
    """The store's repo itself (its bulk load writes rows with chosen hashes)."""
    return services.storage.repo  # type: ignore[return-value]


def flip(phash: int, bits: list[int]) -> int:
    """`phash` with the given bit positions flipped."""
    for bit in bits:
        phash ^= 1 << bit
    return phash


def spread(per_quarter: tuple[int, int, int, int]) -> int:
    """CENTRE with that many bits flipped in each of its quarters (high quarter first)."""
    bits = [48 + b for b in range(per_quarter[0])]
    bits += [32 + b for b in range(per_quarter[1])]
    bits += [16 + b for b in range(per_quarter[2])]
    bits += list(range(per_quarter[3]))
    return flip(CENTRE, bits)


def test_quarter_neighbours_are_every_value_within_the_radius() -> None:
    for radius in range(4):
        found = quarter_neighbours(0xBEEF, radius)
        wanted = [v for v in range(1 << 16) if (v ^ 0xBEEF).bit_count() <= radius]
        assert found[0] == 0xBEEF
        assert sorted(found) == wanted


async def test_similar_images_are_the_nearest_first_within_the_distance(repo: Repo) -> None:
    # Distances 0 (another image with the same hash), 2, 5, 10 spread so that no quarter
    # matches exactly, 11 and 32: the last two are too far.
    hashes = [
        CENTRE,
        flip(CENTRE, [0, 63]),
        flip(CENTRE, [1, 17, 33, 49, 50]),
        spread((3, 3, 2, 2)),
        spread((3, 3, 3, 2)),
        CENTRE ^ 0xFFFF_FFFF_0000_0000,
    ]
    rows = [replace(row(n), phash=h) for n, h in enumerate(hashes)]
    await repo.bulk_load(rows)
    found = await repo.similar_images(CENTRE, 10, SIMILAR_BITS)
    assert [i.id for i in found] == [r.id for r in rows[:4]]
    # Excluding the image asked about; and a smaller count keeps the nearest.
    found = await repo.similar_images(CENTRE, 2, SIMILAR_BITS, exclude_id=rows[0].id)
    assert [i.id for i in found] == [rows[1].id, rows[2].id]
    # Eleven bits spread 3, 3, 3, 2 are found when eleven are allowed.
    found = await repo.similar_images(CENTRE, 10, 11)
    assert rows[4].id in {i.id for i in found}


async def test_similar_images_ties_are_newest_first(repo: Repo) -> None:
    rows = [replace(row(n), phash=flip(CENTRE, [n])) for n in range(4)]
    await repo.bulk_load(rows)
    found = await repo.similar_images(CENTRE, 10, SIMILAR_BITS)
    assert [i.id for i in found] == [r.id for r in reversed(rows)]


async def test_similar_images_are_only_approved_and_of_the_ratings_asked(repo: Repo) -> None:
    rows = [
        replace(row(0), phash=flip(CENTRE, [1])),
        replace(row(1, status=Status.PENDING), phash=flip(CENTRE, [2])),
        replace(row(2, status=Status.REJECTED), phash=flip(CENTRE, [3])),
        replace(row(3, rating=Rating.NSFW), phash=flip(CENTRE, [4])),
        replace(row(4, rating=Rating.QUESTIONABLE), phash=flip(CENTRE, [5])),
    ]
    await repo.bulk_load(rows)
    found = await repo.similar_images(CENTRE, 10, SIMILAR_BITS)
    assert {i.id for i in found} == {rows[0].id, rows[3].id, rows[4].id}
    sfw = await repo.similar_images(CENTRE, 10, SIMILAR_BITS, ratings=frozenset({Rating.SFW}))
    assert [i.id for i in sfw] == [rows[0].id]
    two = frozenset({Rating.SFW, Rating.NSFW})
    found = await repo.similar_images(CENTRE, 10, SIMILAR_BITS, ratings=two)
    assert {i.id for i in found} == {rows[0].id, rows[3].id}


async def test_similar_images_match_a_brute_force_search(repo: Repo) -> None:
    rng = random.Random(11)
    hashes = []
    for _ in range(300):
        # Most near the centre (0 to 14 bits away), some anywhere.
        if rng.random() < 0.8:
            hashes.append(flip(CENTRE, rng.sample(range(64), rng.randrange(15))))
        else:
            hashes.append(rng.getrandbits(64))
    rows = [replace(row(n), phash=h) for n, h in enumerate(hashes)]
    await repo.bulk_load(rows)
    for max_distance in (3, 7, SIMILAR_BITS, 13):
        distances = [(CENTRE ^ h).bit_count() for h in hashes]
        ranked = sorted(
            (d, -n) for n, d in enumerate(distances) if d <= max_distance
        )  # nearest first, newest first among equals
        wanted = [rows[-n].id for _, n in ranked[:40]]
        found = await repo.similar_images(CENTRE, 40, max_distance)
        assert [i.id for i in found] == wanted, max_distance


async def test_similar_images_of_nothing_near_is_empty(repo: Repo) -> None:
    await repo.bulk_load([replace(row(0), phash=~CENTRE & (1 << 64) - 1)])
    assert await repo.similar_images(CENTRE, 10, SIMILAR_BITS) == []
    assert await repo.similar_images(CENTRE, 0, SIMILAR_BITS) == []


async def test_the_service_finds_a_resized_copy_but_not_another_picture(
    services: Services,
) -> None:
    images = services.images
    original = await images.ingest(make_image(size=(96, 96), seed=5), TAGGED, OWNER, trusted=True)
    # The same picture, larger and as JPEG: other bytes, (nearly) the same hash; stored
    # as a near-duplicate, then approved.
    copy = await images.ingest(
        make_image("JPEG", size=(192, 192), seed=5, quality=90), TAGGED, OWNER, trusted=True
    )
    other = await images.ingest(make_image(size=(96, 96), seed=6), TAGGED, OWNER, trusted=True)
    assert (original.phash ^ copy.phash).bit_count() <= SIMILAR_BITS
    found = await images.similar(original)
    assert [i.id for i in found] == [copy.id]
    assert other.id not in {i.id for i in await images.similar(copy)}


def test_quarters_of_the_centre_differ() -> None:
    # The brute-force test above needs a centre whose quarters are not all alike.
    assert len(set(quarters(CENTRE))) == 4
