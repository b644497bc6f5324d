"""The leaderboard: top uploaders and most liked images, of the last week and of all
time (shown by /stats; plain dataclasses, for any transport)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.errors import NotFound
from core.images import ImageService
from core.importer import IMPORTER
from core.models import Image, Rating, User

WEEK = timedelta(days=7)
LEADERBOARD_SIZE = 5


@dataclass(frozen=True, slots=True)
class UploaderRank:
    """A member and how many of their uploads are approved (in the period)."""

    user: User
    images: int


@dataclass(frozen=True, slots=True)
class LikedImage:
    """An image and the likes it got (in the period)."""

    image: Image
    likes: int


@dataclass(frozen=True, slots=True)
class Ranking:
    """Top uploaders and most liked images of one period."""

    uploaders: tuple[UploaderRank, ...]
    liked: tuple[LikedImage, ...]


@dataclass(frozen=True, slots=True)
class Leaderboard:
    """The rankings of the last `WEEK` (up to `at`) and of all time."""

    week: Ranking
    all_time: Ranking
    at: datetime


async def ranking(
    images: ImageService,
    since: datetime | None,
    *,
    limit: int = LEADERBOARD_SIZE,
    ratings: frozenset[Rating] = frozenset(),
) -> Ranking:
    """Top uploaders (bulk imports left out: they are nobody's uploads) and the images
    (of `ratings`; empty: any) most liked since `since` (None: ever)."""
    repo = images.repo
    uploaders = await repo.top_uploaders(since, limit, exclude=(IMPORTER.id,))
    liked = []
    for image_id, likes in await repo.most_liked(since, limit, ratings):
        try:
            # The same visibility rule as every read: an expired image is left out.
            image = await images.get(image_id)
        except NotFound:
            continue  # removed (or expired) since it was ranked
        liked.append(LikedImage(image, likes))
    return Ranking(tuple(UploaderRank(user, n) for user, n in uploaders), tuple(liked))


async def leaderboard(
    images: ImageService,
    *,
    limit: int = LEADERBOARD_SIZE,
    ratings: frozenset[Rating] = frozenset(),
    now: datetime | None = None,
) -> Leaderboard:
    """The week's and all time's rankings (see `ranking`)."""
    at = now or datetime.now(UTC)
    return Leaderboard(
        week=await ranking(images, at - WEEK, limit=limit, ratings=ratings),
        all_time=await ranking(images, None, limit=limit, ratings=ratings),
        at=at,
    )
