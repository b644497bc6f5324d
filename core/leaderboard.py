"""The leaderboard: top uploaders and most liked images, of the last week and of all
time (shown by /stats; plain dataclasses, for any transport)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.errors import NotFound
from core.images import ImageService, carries_any
from core.importer import IMPORTER
from core.models import Image, Rating, User

WEEK = timedelta(days=7)
LEADERBOARD_SIZE = 5
# The deepest a ranking looks for images left out by a blacklist or a removal.
MAX_RANKED = 200


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
    exclude_tags: tuple[str, ...] = (),
) -> Ranking:
    """Top uploaders (bulk imports left out: they are nobody's uploads) and the images
    (of `ratings`; empty: any; none with one of `exclude_tags`, a member's blacklist)
    most liked since `since` (None: ever)."""
    repo = images.repo
    uploaders = await repo.top_uploaders(since, limit, exclude=(IMPORTER.id,))
    liked: list[LikedImage] = []
    window, seen = limit, 0
    while True:
        ranked = await repo.most_liked(since, window, ratings)
        for image_id, likes in ranked[seen:]:
            try:
                # The same visibility rule as every read: an expired image is left out.
                image = await images.get(image_id)
            except NotFound:
                continue  # removed (or expired) since it was ranked
            if not carries_any(image, exclude_tags):
                liked.append(LikedImage(image, likes))
        seen = len(ranked)
        # Left-out images leave room: rank further down, a window twice as deep each
        # time, until the list is full, the ranking ends, or MAX_RANKED were looked at.
        if len(liked) >= limit or len(ranked) < window or window >= MAX_RANKED:
            break
        window = min(window * 2, MAX_RANKED)
    return Ranking(tuple(UploaderRank(user, n) for user, n in uploaders), tuple(liked[:limit]))


async def leaderboard(
    images: ImageService,
    *,
    limit: int = LEADERBOARD_SIZE,
    ratings: frozenset[Rating] = frozenset(),
    exclude_tags: tuple[str, ...] = (),
    now: datetime | None = None,
) -> Leaderboard:
    """The week's and all time's rankings (see `ranking`)."""
    at = now or datetime.now(UTC)
    return Leaderboard(
        week=await ranking(
            images, at - WEEK, limit=limit, ratings=ratings, exclude_tags=exclude_tags
        ),
        all_time=await ranking(
            images, None, limit=limit, ratings=ratings, exclude_tags=exclude_tags
        ),
        at=at,
    )
