"""A member's liked images: paged newest like first, and drawn uniformly."""

from __future__ import annotations

from typing import Any

from core.models import Filters, Image, SearchPage
from storage.sqlite.random import RandomMixin


class FavouritesMixin(RandomMixin):
    """liked_images and random_liked (core.contracts.MemberMemory), through a draw's plan
    so only approved images passing the same filters appear."""

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
