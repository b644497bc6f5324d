"""The leaderboard: top uploaders and most liked images, all time or since a moment."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from core.models import Rating, User
from storage.sqlite.connection import SQLiteBase


class LeaderboardMixin(SQLiteBase):
    """core.contracts.LeaderboardRepo."""

    async def top_uploaders(
        self, since: datetime | None, limit: int, exclude: Iterable[str] = ()
    ) -> list[tuple[User, int]]:
        """Uploaders of the most approved images created at or after `since`."""
        left_out = tuple(exclude)
        not_in = f"AND uploader_id NOT IN ({', '.join('?' * len(left_out))}) " if left_out else ""
        # All time: images_status_uploader, counted in its order; a period: the
        # period's range of images_status_created.
        period = "AND created_at >= ? " if since else ""
        rows = await self._all(
            "SELECT uploader_id, COUNT(*) AS n FROM images "
            f"WHERE status = 'approved' {period}AND uploader_id IS NOT NULL "
            f"{not_in}GROUP BY uploader_id ORDER BY n DESC, uploader_id LIMIT ?",
            (*([since.timestamp()] if since else []), *left_out, limit),
        )
        out = []
        for uploader_id, count in rows:
            # The name of their latest upload (images_uploader: one index probe).
            name = await self._one(
                "SELECT uploader_name FROM images WHERE uploader_id = ? ORDER BY seq DESC LIMIT 1",
                (uploader_id,),
            )
            out.append((User(uploader_id, (name[0] if name else None) or ""), count))
        return out

    async def most_liked(
        self, since: datetime | None, limit: int, ratings: frozenset[Rating] = frozenset()
    ) -> list[tuple[str, int]]:
        """(image id, likes) of the approved images most liked at or after `since`."""
        rated = sorted(r.value for r in ratings)
        only = f"AND {{}}rating IN ({', '.join('?' * len(rated))}) " if rated else ""
        if since is None:
            # images_status_likes, read backwards: the first `limit` entries.
            rows = await self._all(
                "SELECT id, likes FROM images WHERE status = 'approved' AND likes > 0 "
                f"{only.format('')}ORDER BY likes DESC, seq DESC LIMIT ?",
                (*rated, limit),
            )
        else:
            # likes_kind_created: the period's likes only, counted per image.
            rows = await self._all(
                "SELECT i.id, l.n FROM (SELECT seq, COUNT(*) AS n FROM likes "
                "WHERE kind = 'like' AND created_at >= ? GROUP BY seq) l "
                "JOIN images i ON i.seq = l.seq WHERE i.status = 'approved' "
                f"{only.format('i.')}ORDER BY l.n DESC, l.seq DESC LIMIT ?",
                (since.timestamp(), *rated, limit),
            )
        return [(image_id, likes) for image_id, likes in rows]
