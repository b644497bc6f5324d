"""Search: every filter and sort with indexed queries, capped totals."""

from __future__ import annotations

from typing import Any

from core.models import Rating, SearchPage, SearchQuery, Sort, Status
from storage import sqlite as _limits
from storage.rows import like_pattern
from storage.sqlite.images import ImagesMixin


class SearchMixin(ImagesMixin):
    """search (core.contracts.ImageRepo)."""

    # ---- search ----------------------------------------------------------------

    async def search(self, query: SearchQuery, *, count_total: bool = True) -> SearchPage:
        """Filter, sort and page images with indexed queries; totals past TOTAL_CAP
        are lower bounds."""
        if query.image_id is not None:
            image = await self.get_image(query.image_id)
            found = [image] if image and image.status in query.statuses else []
            return SearchPage(found, len(found), True, query.skip, query.limit)
        where = [f"i.status IN ({','.join('?' * len(query.statuses))})"]
        params: list[Any] = sorted(s.value for s in query.statuses)
        # Each constraint names the pool that holds exactly its matches, or None; a
        # query of approved images with at most one pooled constraint has an O(1) total.
        constraints: list[str | None] = []
        drive: tuple[int, int] | None = None  # (tag rid, pool size) to drive the scan from
        # Included and excluded tags are looked up together, in one query.
        rids = await self._rids("tags", [*query.tags, *query.exclude_tags])
        tag_rids = [r for r in rids[: len(query.tags)] if r is not None]
        exclude_rids = rids[len(query.tags) :]
        if len(tag_rids) < len(query.tags):  # an unknown tag matches nothing
            return SearchPage([], 0, True, query.skip, query.limit)
        sizes = await self._pool_sizes([f"tag:{r}" for r in tag_rids])
        for tag_rid in tag_rids:
            size = sizes.get(f"tag:{tag_rid}", (0, 0))[1]
            if drive is None or size < drive[1]:
                drive = (tag_rid, size)
            constraints.append(f"tag:{tag_rid}")
        for tag_rid in tag_rids:
            if drive and tag_rid != drive[0]:
                where.append(
                    "EXISTS (SELECT 1 FROM image_tags x WHERE x.tag_rid = ? AND x.seq = i.seq)"
                )
                params.append(tag_rid)
        for rid in exclude_rids:
            if rid is not None:
                where.append(
                    "NOT EXISTS (SELECT 1 FROM image_tags x WHERE x.tag_rid = ? AND x.seq = i.seq)"
                )
                params.append(rid)
                constraints.append(None)
        ratings = sorted(query.ratings)
        if ratings and len(ratings) < len(Rating):
            where.append(f"i.rating IN ({','.join('?' * len(ratings))})")
            params.extend(ratings)
            constraints.append(f"rating:{ratings[0]}" if len(ratings) == 1 else None)
        if query.orientation:
            where.append("i.orientation = ?")
            params.append(query.orientation)
            constraints.append(None)
        if query.artist_id:
            (rid,) = await self._rids("artists", [query.artist_id])
            if rid is None:
                return SearchPage([], 0, True, query.skip, query.limit)
            where.append("i.artist_rid = ?")
            params.append(rid)
            constraints.append(f"artist:{rid}")
        if query.artist:
            where.append("i.artist_rid IN (SELECT rid FROM artists WHERE name LIKE ? ESCAPE '\\')")
            params.append(like_pattern(query.artist))
            constraints.append(None)
        if query.character:
            (rid,) = await self._rids("characters", [query.character])
            if rid is None:
                return SearchPage([], 0, True, query.skip, query.limit)
            where.append(
                "EXISTS (SELECT 1 FROM image_characters x WHERE x.character_rid = ? "
                "AND x.seq = i.seq)"
            )
            params.append(rid)
            constraints.append(f"character:{rid}")
        for sql, value in (
            (
                "(i.uploader_id = ? OR i.uploader_name = ? COLLATE NOCASE)",
                [query.uploader, query.uploader] if query.uploader else None,
            ),
            (
                "i.album_rid = (SELECT rid FROM albums WHERE id = ?)",
                [query.album_id] if query.album_id else None,
            ),
            (
                "i.created_at < ?",
                [query.posted_before.timestamp()] if query.posted_before else None,
            ),
            ("i.created_at > ?", [query.posted_after.timestamp()] if query.posted_after else None),
        ):
            if value is not None:
                where.append(sql)
                params.extend(value)
                constraints.append(None)
        pool_exact: str | None = None
        if query.statuses == {Status.APPROVED} and len(constraints) <= 1:
            pool_exact = constraints[0] if constraints else "all"

        if drive is not None:
            source = "image_tags d JOIN images i ON i.seq = d.seq"
            where.insert(0, "d.tag_rid = ?")
            params.insert(0, drive[0])
            seq_col = "d.seq"
        else:
            source = "images i"
            seq_col = "i.seq"
        order = {
            Sort.NEWEST: f"{seq_col} DESC",
            Sort.OLDEST: f"{seq_col} ASC",
            Sort.LIKES: f"i.likes DESC, {seq_col} DESC",
            Sort.RELEVANCE: f"(i.likes + i.favorites) DESC, {seq_col} DESC",
        }[query.sort]
        cond = " AND ".join(where)
        rows = await self._all(
            f"SELECT {seq_col} FROM {source} WHERE {cond} ORDER BY {order} LIMIT ? OFFSET ?",
            [*params, query.limit, query.skip],
        )
        images = await self._images_by_seq([r[0] for r in rows])
        total, exact = query.skip + len(images), len(images) < query.limit
        # An empty page past the end says only that the total is at most `skip`: count it
        # even when not asked to (the OFFSET just walked those rows; it is no dearer).
        past_the_end = query.skip > 0 and not images
        if past_the_end or (count_total and len(images) == query.limit):
            if pool_exact is not None:
                total, exact = await self.pool_size(pool_exact), True
            else:
                (total,) = await self._one(
                    f"SELECT COUNT(*) FROM (SELECT 1 FROM {source} WHERE {cond} LIMIT ?)",
                    [*params, _limits.TOTAL_CAP + 1],
                )
                exact = total <= _limits.TOTAL_CAP
                total = min(total, _limits.TOTAL_CAP)
        return SearchPage(images, total, exact, query.skip, query.limit)
