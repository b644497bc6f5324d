"""Reads written once for both SQL repos: search, similar images, the leaderboard,
a member's liked images, tokens, token requests and reports.

Their SQL is the same text on SQLite and PostgreSQL (`?` placeholders, `IN (...)`
lists, which the PostgreSQL repo numbers) but for the few fragments each backend
names as class attributes (case-insensitive names, index hints); each repo supplies
the plumbing (`_all`, `_one`, names and pools) and the draw planner (storage/draws.py)
they ride on. Both repos list this mixin after their own classes, so its stubs never
shadow what they define."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from core.models import (
    Filters,
    Image,
    Rating,
    Report,
    SearchPage,
    SearchQuery,
    Sort,
    Status,
    Token,
    TokenRequest,
    User,
)
from storage.draws import PoolDraws
from storage.rows import (
    REPORT_COLUMNS,
    REQUEST_COLUMNS,
    SIMILAR_CANDIDATES,
    TOKEN_COLUMNS,
    fold,
    like_pattern,
    nearest_by_phash,
    quarter_neighbours,
    quarters,
    report_of,
    request_of,
    token_of,
)
from storage.seen_cycle import favourites_key, pick_unseen
from storage.uploader_counts import TOP


class SharedQueries(PoolDraws):
    """search and similar_images (core.contracts.ImageRepo), core.contracts.LeaderboardRepo,
    the liked-images half of MemberMemory and the reads of TokenRepo and ReportRepo."""

    # ---- what the backend provides ----------------------------------------------

    async def _all(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        raise NotImplementedError

    async def _one(self, sql: str, params: Iterable[Any] = ()) -> Any:
        raise NotImplementedError

    async def get_image(self, image_id: str) -> Image | None:
        raise NotImplementedError

    async def pool_size(self, name: str) -> int:
        raise NotImplementedError

    def _total_cap(self) -> int:
        """Totals past this are reported as "at least" (read when used: tests lower it)."""
        raise NotImplementedError

    # An uploader by id or by name (ASCII case folded: the name parameter comes folded).
    _UPLOADER_IS = "(i.uploader_id = ? OR lower(i.uploader_name) = ?)"
    # Artists whose name holds a LIKE pattern (the pattern comes folded).
    _ARTIST_NAME_LIKE = (
        "i.artist_rid IN (SELECT rid FROM artists WHERE lower(name) LIKE ? ESCAPE '\\')"
    )
    # Put before a column to keep its index out of a query's plan (SQLite's unary +).
    _NO_INDEX = ""
    # The week's uploads read from images_approved_created (SQLite's planner would take
    # images_status_created, which reads every row, unless the index is named).
    _APPROVED_CREATED = ""

    def _one_of(self, column: str, values: list[Any], sql_type: str) -> tuple[str, list[Any]]:
        """`column` is one of `values` (of SQL type `sql_type`): SQL and its parameters.
        An IN list here; PostgreSQL binds one array instead (its plans for `= ANY` of an
        array measured faster in the capped count than for an IN list)."""
        return f"{column} IN ({','.join('?' * len(values))})", list(values)

    # ---- search ----------------------------------------------------------------

    async def search(self, query: SearchQuery, *, count_total: bool = True) -> SearchPage:
        """Filter, sort and page images with indexed queries; totals past the cap
        are lower bounds."""
        if query.image_id is not None:
            image = await self.get_image(query.image_id)
            found = [image] if image and image.status in query.statuses else []
            return SearchPage(found, len(found), True, query.skip, query.limit)
        sql, params = self._one_of("i.status", sorted(s.value for s in query.statuses), "text")
        where = [sql]
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
        ratings = sorted(r.value for r in query.ratings)
        if ratings and len(ratings) < len(Rating):
            sql, values = self._one_of("i.rating", ratings, "text")
            where.append(sql)
            params.extend(values)
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
            where.append(self._ARTIST_NAME_LIKE)
            params.append(fold(like_pattern(query.artist)))
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
                self._UPLOADER_IS,
                [query.uploader, fold(query.uploader)] if query.uploader else None,
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
                cap = self._total_cap()
                (total,) = await self._one(
                    f"SELECT COUNT(*) FROM (SELECT 1 FROM {source} WHERE {cond} LIMIT ?) AS m",
                    [*params, cap + 1],
                )
                exact = total <= cap
                total = min(total, cap)
        return SearchPage(images, total, exact, query.skip, query.limit)

    # ---- similar images ----------------------------------------------------------

    async def similar_images(
        self,
        phash: int,
        count: int,
        max_distance: int,
        *,
        ratings: frozenset[Rating] = frozenset(),
        exclude_id: str | None = None,
    ) -> list[Image]:
        """Up to `count` approved images within `max_distance` bits of `phash`, nearest
        first (core/contracts.py), found through the quarter indexes."""
        if count <= 0 or max_distance < 0:
            return []
        terms = []
        params: list[Any] = []
        for k, quarter in enumerate(quarters(phash)):
            sql, values = self._one_of(
                f"ph{k}", quarter_neighbours(quarter, max_distance // 4), "int"
            )
            terms.append(sql)
            params.extend(values)
        where: list[str] = [f"({' OR '.join(terms)})"]
        skip_index = self._NO_INDEX
        if ratings and len(ratings) < len(Rating):
            sql, values = self._one_of(
                f"{skip_index}rating", sorted(r.value for r in ratings), "text"
            )
            where.append(sql)
            params.extend(values)
        if exclude_id is not None:
            where.append("id <> ?")
            params.append(exclude_id)
        rows = await self._all(
            # The quarter indexes (a multi-index OR) drive, never the status one.
            f"SELECT seq, phash FROM images WHERE {skip_index}status = 'approved' "
            f"AND {' AND '.join(where)} LIMIT ?",
            [*params, SIMILAR_CANDIDATES],
        )
        return await self._images_by_seq(
            nearest_by_phash(phash, ((seq, ph) for seq, ph in rows), count, max_distance)
        )

    # ---- leaderboard -------------------------------------------------------------

    async def top_uploaders(
        self, since: datetime | None, limit: int, exclude: Iterable[str] = ()
    ) -> list[tuple[User, int]]:
        """Uploaders of the most approved images created at or after `since`."""
        left_out = sorted(exclude)
        not_in = ""
        params: list[Any] = []
        if left_out:
            sql, params = self._one_of("uploader_id", left_out, "text")
            not_in = f" AND NOT {sql}"
        if since is None:
            # uploader_counts_rank, read in its order: as cheap at 1M images as at 1k.
            rows = await self._all(TOP.format(not_in=not_in), (*params, limit))
        else:
            # The period's range of images_approved_created (covering: no row is read):
            # its cost is the period's uploads, not the collection's.
            rows = await self._all(
                f"SELECT uploader_id, COUNT(*) AS n FROM images{self._APPROVED_CREATED} "
                "WHERE status = 'approved' AND created_at >= ? AND uploader_id IS NOT NULL"
                f"{not_in} GROUP BY uploader_id ORDER BY n DESC, uploader_id LIMIT ?",
                (since.timestamp(), *params, limit),
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
        in_pools, pools = self._one_of("p.name", plan.pools, "text")
        cond = "".join(f" AND {w}" for w in plan.where)
        sql = (
            "FROM likes l JOIN images i ON i.seq = l.seq "
            "WHERE l.user_id = ? AND l.kind = ? AND EXISTS (SELECT 1 FROM pool_slots s "
            f"JOIN pools p ON p.pool = s.pool WHERE s.seq = i.seq AND {in_pools}){cond}"
        )
        return sql, [user_id, kind, *pools, *plan.params]

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
        self,
        user_id: str,
        filters: Filters,
        count: int,
        kind: str = "like",
        *,
        remember: bool = False,
    ) -> list[Image]:
        """Up to `count` of the member's liked images matching `filters`, uniformly;
        with `remember`, not one given before in this cycle (storage/seen_cycle.py)."""
        found = await self._liked_from(user_id, filters, kind)
        if found is None or count <= 0:
            return []
        sql, params = found
        # A member's likes are few next to the collection: read them all, pick exactly.
        if not remember:
            seqs = [r[0] for r in await self._all(f"SELECT i.seq {sql}", params)]
            return await self._images_by_seq(self._rng.sample(seqs, min(count, len(seqs))))
        key = favourites_key(kind, filters.key())
        rows = await self._all(
            "SELECT i.seq, EXISTS (SELECT 1 FROM seen s WHERE s.user_id = ? "
            f"AND s.filter_key = ? AND s.seq = i.seq) {sql}",
            [user_id, key, *params],
        )
        picks, ended = pick_unseen(
            self._rng, [r[0] for r in rows], [r[0] for r in rows if r[1]], count
        )
        if picks:
            async with self.transaction(touches_images=False) as tx:
                if ended:
                    await tx.execute(
                        "DELETE FROM seen WHERE user_id = ? AND filter_key = ?", (user_id, key)
                    )
                await self._mark_seen(tx, user_id, key, picks)
        return await self._images_by_seq(picks)

    # ---- tokens and token requests: reads -------------------------------------------

    async def token_by_hash(self, secret_sha256: bytes) -> tuple[Token, bytes] | None:
        """The token whose secret hashes to `secret_sha256`, with the stored hash."""
        row = await self._one(
            f"SELECT {TOKEN_COLUMNS}, secret_sha256 FROM tokens WHERE secret_sha256 = ?",
            (secret_sha256,),
        )
        return (token_of(row), bytes(row[-1])) if row else None  # secret_sha256 follows

    async def get_token(self, token_id: str) -> Token | None:
        """A token by id."""
        row = await self._one(f"SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?", (token_id,))
        return token_of(row) if row else None

    async def list_tokens(self, owner_id: str | None = None) -> list[Token]:
        """Every token (or one owner's), newest first."""
        if owner_id is None:
            rows = await self._all(f"SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at DESC")
        else:
            rows = await self._all(
                f"SELECT {TOKEN_COLUMNS} FROM tokens WHERE owner_id = ? ORDER BY created_at DESC",
                (owner_id,),
            )
        return [token_of(r) for r in rows]

    async def get_token_request(self, request_id: str) -> TokenRequest | None:
        """A request by id."""
        row = await self._one(
            f"SELECT {REQUEST_COLUMNS} FROM token_requests WHERE id = ?", (request_id,)
        )
        return request_of(row) if row else None

    async def list_token_requests(self, status: str | None = "pending") -> list[TokenRequest]:
        """Requests (pending by default), oldest first."""
        if status is None:
            rows = await self._all(
                f"SELECT {REQUEST_COLUMNS} FROM token_requests ORDER BY created_at"
            )
        else:
            rows = await self._all(
                f"SELECT {REQUEST_COLUMNS} FROM token_requests WHERE status = ? "
                "ORDER BY created_at",
                (status,),
            )
        return [request_of(r) for r in rows]

    # ---- reports: reads ------------------------------------------------------------

    async def get_report(self, report_id: int) -> Report | None:
        """A report by id."""
        row = await self._one(f"SELECT {REPORT_COLUMNS} FROM reports WHERE id = ?", (report_id,))
        return report_of(row) if row else None

    async def reports_of(self, image_id: str) -> list[Report]:
        """Every report of an image, oldest first."""
        rows = await self._all(
            f"SELECT {REPORT_COLUMNS} FROM reports WHERE image_id = ? ORDER BY id", (image_id,)
        )
        return [report_of(r) for r in rows]
