"""Reads written once for both SQL repos: the leaderboard and a member's liked images.

Their SQL is the same text on SQLite and PostgreSQL (`?` placeholders, `IN (...)`
lists, which the PostgreSQL repo numbers); each repo supplies the plumbing (`_all`,
`_one`) and the draw planner (storage/draws.py) they ride on. Both repos list this
mixin after their own classes, so its stubs never shadow what they define."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from core.models import Filters, Image, Rating, SearchPage, User
from storage.draws import PoolDraws


class SharedQueries(PoolDraws):
    """core.contracts.LeaderboardRepo and the liked-images half of MemberMemory."""

    # ---- what the backend provides ----------------------------------------------

    async def _all(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        raise NotImplementedError

    async def _one(self, sql: str, params: Iterable[Any] = ()) -> Any:
        raise NotImplementedError

    # ---- leaderboard -------------------------------------------------------------

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

    # ---- favourites ----------------------------------------------------------------

    async def _liked_from(
        self, user_id: str, filters: Filters, kind: str
    ) -> tuple[str, list[Any]] | None:
        """FROM/WHERE over the member's likes of images a draw with `filters` could
        give (in the plan's pools, so approved, and passing its conditions)."""
        plan = await self._filter_plan(filters)
        if plan is None:
            return None
        marks = ",".join("?" * len(plan.pools))
        cond = "".join(f" AND {w}" for w in plan.where)
        sql = (
            "FROM likes l JOIN images i ON i.seq = l.seq "
            "WHERE l.user_id = ? AND l.kind = ? AND EXISTS (SELECT 1 FROM pool_slots s "
            f"JOIN pools p ON p.pool = s.pool WHERE s.seq = i.seq AND p.name IN ({marks})){cond}"
        )
        return sql, [user_id, kind, *plan.pools, *plan.params]

    async def liked_images(
        self, user_id: str, filters: Filters, skip: int, limit: int, kind: str = "like"
    ) -> SearchPage:
        """The member's liked images matching `filters`, newest like first."""
        found = await self._liked_from(user_id, filters, kind)
        if found is None:
            return SearchPage([], 0, True, skip, limit)
        sql, params = found
        rows = await self._all(
            f"SELECT i.seq {sql} ORDER BY l.created_at DESC, l.seq DESC LIMIT ? OFFSET ?",
            [*params, limit, skip],
        )
        (total,) = await self._one(f"SELECT COUNT(*) {sql}", params)
        return SearchPage(await self._images_by_seq([r[0] for r in rows]), total, True, skip, limit)

    async def random_liked(
        self, user_id: str, filters: Filters, count: int, kind: str = "like"
    ) -> list[Image]:
        """Up to `count` of the member's liked images matching `filters`, uniformly."""
        found = await self._liked_from(user_id, filters, kind)
        if found is None or count <= 0:
            return []
        sql, params = found
        # A member's likes are few next to the collection: read them all, pick exactly.
        seqs = [r[0] for r in await self._all(f"SELECT i.seq {sql}", params)]
        return await self._images_by_seq(self._rng.sample(seqs, min(count, len(seqs))))
