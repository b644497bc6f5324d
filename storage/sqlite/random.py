"""Random draws, exactly uniform over the dense pools, and the renderings kept for them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from core.models import Filters, Image, ImageFile, Rating, Rendition
from storage.draws import ORIENTATION_SHARE
from storage.sqlite.hydrate import HydrateMixin
from storage.sqlite.members import MembersMixin
from storage.sqlite.pools import PoolsMixin
from storage.sqlite.rows import _FILE_COLUMNS, _IMAGE_COLUMNS, _IMAGE_FROM, _SEQ, _image_file

# Rows a draw may look at through rejection before falling back to an exact scan.
DRAW_ROUNDS = 4


@dataclass(frozen=True, slots=True)
class _Plan:
    """How a random draw finds its matches: the pools whose union holds them all (by
    name, with every pool's id and size), the SQL conditions that narrow the union to
    exactly the matches, and the share of the union expected to pass them."""

    pools: list[str]
    sizes: dict[str, tuple[int, int]]
    where: list[str]
    params: list[Any]
    passing: float


class RandomMixin(PoolsMixin, HydrateMixin, MembersMixin):
    """random_images, random_files and the renditions."""

    async def _filter_plan(self, filters: Filters) -> _Plan | None:
        """Pools whose union holds every match, the SQL conditions (on alias i) that
        narrow it to exactly the matches, and how many drawn candidates are expected to
        pass them; None if nothing can match."""
        # Each condition: (sql, params, pools that imply it or None, pools estimating
        # how many pass it, whether those pools hold the ones that fail instead).
        conditions: list[tuple[str, list[Any], list[str] | None, list[str], bool]] = []
        # Included and excluded tags are looked up together, in one query.
        rids = await self._rids("tags", [*filters.tags, *filters.exclude_tags])
        include_rids, exclude_rids = rids[: len(filters.tags)], rids[len(filters.tags) :]
        for rid in include_rids:
            if rid is None:
                return None
            conditions.append(
                (
                    "EXISTS (SELECT 1 FROM image_tags WHERE tag_rid = ? AND seq = i.seq)",
                    [rid],
                    [f"tag:{rid}"],
                    [f"tag:{rid}"],
                    False,
                )
            )
        for rid in exclude_rids:
            if rid is not None:
                conditions.append(
                    (
                        "NOT EXISTS (SELECT 1 FROM image_tags WHERE tag_rid = ? AND seq = i.seq)",
                        [rid],
                        None,
                        [f"tag:{rid}"],
                        True,
                    )
                )
        if filters.artist:
            (rid,) = await self._rids("artists", [filters.artist])
            if rid is None:
                return None
            conditions.append(
                ("i.artist_rid = ?", [rid], [f"artist:{rid}"], [f"artist:{rid}"], False)
            )
        if filters.character:
            (rid,) = await self._rids("characters", [filters.character])
            if rid is None:
                return None
            pool = f"character:{rid}"
            conditions.append(
                (
                    "EXISTS (SELECT 1 FROM image_characters WHERE "
                    "character_rid = ? AND seq = i.seq)",
                    [rid],
                    [pool],
                    [pool],
                    False,
                )
            )
        ratings = sorted(filters.ratings)
        if ratings and len(ratings) < len(Rating):
            pools = [f"rating:{r}" for r in ratings]
            conditions.append(
                (
                    f"i.rating IN ({','.join('?' * len(ratings))})",
                    list(ratings),
                    pools,
                    pools,
                    False,
                )
            )
        sizes = await self._pool_sizes({n for c in conditions for n in c[3]} | {"all"})

        def size(names: list[str]) -> int:
            return sum(sizes.get(n, (0, 0))[1] for n in names)

        groups = [c[2] for c in conditions if c[2] is not None]
        best = min([*groups, ["all"]], key=size)
        # The chosen pools imply their own condition; only the others are checked, and
        # a candidate passes them about as often as an image of the whole collection
        # does (conditions taken as independent).
        where: list[str] = []
        params: list[Any] = []
        passing = 1.0
        everything = max(size(["all"]), 1)
        for sql, values, implied_by, estimate, negated in conditions:
            if implied_by is not best:
                where.append(sql)
                params.extend(values)
                share = min(size(estimate) / everything, 1.0)
                passing *= 1.0 - share if negated else share
        if filters.orientation:
            # No pool per orientation: checked on each drawn row (the draw stays uniform),
            # expecting ORIENTATION_SHARE to pass; the draw learns the true share as it goes.
            where.append("i.orientation = ?")
            params.append(filters.orientation)
            passing *= ORIENTATION_SHARE
        return _Plan(best, sizes, where, params, passing)

    async def random_files(self, filters: Filters, count: int) -> list[ImageFile]:
        """Up to `count` distinct approved images drawn uniformly from those matching
        `filters`, as ImageFile: `random_images` without loading their metadata."""
        plan = await self._filter_plan(filters)
        if plan is None or count <= 0:
            return []
        seqs = await self._draw(plan, count)
        if not seqs:
            return []
        marks = ",".join("?" * len(seqs))
        rows = await self._all(
            f"SELECT seq, {_FILE_COLUMNS} FROM images WHERE seq IN ({marks})", seqs
        )
        by_seq = {seq: _image_file(file) for seq, *file in rows}
        return [by_seq[s] for s in seqs if s in by_seq]

    async def random_renditions(
        self, filters: Filters, count: int, dialect: str, *, members: bool = False
    ) -> list[Rendition]:
        """`random_images` as kept renderings (core/contracts.py): one query for the
        drawn images' revs and current bodies, one more hydrating those without one."""
        plan = await self._filter_plan(filters)
        if plan is None or count <= 0:
            return []
        seqs = await self._draw(plan, count)
        if not seqs:
            return []
        marks = ",".join("?" * len(seqs))
        extra = ", r.artist_rid, r.tag_rids, r.character_rids" if members else ""
        rows = await self._all(
            f"SELECT i.seq, i.id, i.rev, r.body{extra} FROM images i LEFT JOIN rendered r "
            f"ON r.seq = i.seq AND r.dialect = ? AND r.rev = i.rev WHERE i.seq IN ({marks})",
            [dialect, *seqs],
        )
        # Each row: seq, id, rev, body (None: none kept for this rev), then with
        # `members` the member keys kept with the body (artist_rid, tag_rids, character_rids).
        by_seq = {seq: (seq, image_id, rev, body, keys) for seq, image_id, rev, body, *keys in rows}
        found = [by_seq[s] for s in seqs if s in by_seq]
        kept = [r for r in found if r[3] is not None]  # those with a body
        artists: list[tuple[Any, ...]] = []
        tags: list[tuple[Any, ...]] = []
        characters: list[tuple[Any, ...]] = []
        if members and kept:
            artists = await self._members("artists", [keys[0] for *_, keys in kept])
            tags = await self._members("tags", [keys[1] for *_, keys in kept])
            characters = await self._members("characters", [keys[2] for *_, keys in kept])
        out: dict[int, Rendition] = {}
        for n, (seq, image_id, rev, body, _keys) in enumerate(kept):
            if members:
                artist = artists[n][0] if artists[n] else None
                out[seq] = Rendition(image_id, rev, body, None, artist, tags[n], characters[n])
            else:
                out[seq] = Rendition(image_id, rev, body)
        missing = [seq for seq, _id, _rev, body, _keys in found if body is None]
        if missing:
            # The rev comes with the row it describes, in one statement.
            marks = ",".join("?" * len(missing))
            rows = await self._all(
                f"SELECT {_IMAGE_COLUMNS}, i.rev {_IMAGE_FROM} WHERE i.seq IN ({marks})", missing
            )
            for row, image in zip(rows, await self._hydrate(rows), strict=True):
                out[row[_SEQ]] = Rendition(
                    image.id, row[-1], None, image, image.artist, image.tags, image.characters
                )
        return [out[s] for s in seqs if s in out]

    async def unrendered(
        self, dialect: str, after: int, limit: int
    ) -> tuple[list[Rendition], int | None]:
        """Approved images without a current `dialect` rendering, in store order (a
        backfill): a chunk from cursor `after`, and the cursor of the next (None: done)."""
        rows = await self._all(
            f"SELECT {_IMAGE_COLUMNS}, i.rev {_IMAGE_FROM} WHERE i.status = 'approved' "
            "AND i.seq > ? AND NOT EXISTS (SELECT 1 FROM rendered r WHERE r.seq = i.seq "
            "AND r.dialect = ? AND r.rev = i.rev) ORDER BY i.seq LIMIT ?",
            (after, dialect, limit),
        )
        found = [
            Rendition(image.id, row[-1], None, image, image.artist, image.tags, image.characters)
            for row, image in zip(rows, await self._hydrate(rows), strict=True)
        ]
        return found, rows[-1][_SEQ] if len(rows) == limit else None

    async def put_renditions(self, dialect: str, bodies: Iterable[tuple[str, int, bytes]]) -> int:
        """Keep renderings made from each image's state at `rev`, where it still has it."""
        rows = [(dialect, body, image_id, rev) for image_id, rev, body in bodies]
        if not rows:
            return 0
        async with self.transaction(touches_images=False) as tx:
            # The member rids as `_IMAGE_COLUMNS` lists them (the read cache's keys).
            cur = await tx.conn.executemany(
                "INSERT OR REPLACE INTO rendered (seq, dialect, rev, body, artist_rid, "
                "tag_rids, character_rids) SELECT i.seq, ?, i.rev, ?, i.artist_rid, "
                "(SELECT group_concat(tag_rid) FROM image_tags WHERE seq = i.seq), "
                "(SELECT group_concat(character_rid) FROM image_characters WHERE seq = i.seq) "
                "FROM images i WHERE i.id = ? AND i.rev = ?",
                rows,
            )
            return max(cur.rowcount, 0)

    async def random_images(
        self, filters: Filters, count: int, seen_by: str | None = None
    ) -> list[Image]:
        """Up to `count` distinct approved images drawn uniformly from those matching
        `filters`. With `seen_by`, images that member has been shown under the same
        filters are skipped until none is left, then the cycle starts again."""
        plan = await self._filter_plan(filters)
        if plan is None or count <= 0:
            return []
        seen_key = filters.key()
        if seen_by is not None:
            # How many of the matches the member has seen is unknown: the draw learns it
            # from its first round.
            plan = replace(
                plan,
                where=[
                    *plan.where,
                    "NOT EXISTS (SELECT 1 FROM seen WHERE user_id = ? "
                    "AND filter_key = ? AND seq = i.seq)",
                ],
                params=[*plan.params, seen_by, seen_key],
            )
        seqs = await self._draw(plan, count)
        if seen_by is not None:
            if len(seqs) < count:
                # The cycle ends within this page: start a new one that begins with the
                # images drawn so far (so the rest of the page can't repeat them), and
                # fill the page from it.
                async with self.transaction(touches_images=False) as tx:
                    await tx.execute(
                        "DELETE FROM seen WHERE user_id = ? AND filter_key = ?",
                        (seen_by, seen_key),
                    )
                    await self._mark_seen(tx, seen_by, seen_key, seqs)
                seqs += await self._draw(plan, count - len(seqs))
            if seqs:
                async with self.transaction(touches_images=False) as tx:
                    await self._mark_seen(tx, seen_by, seen_key, seqs)
        return await self._images_by_seq(seqs)

    async def _draw(self, plan: _Plan, count: int) -> list[int]:
        sizes = plan.sizes
        pools = [sizes[n] for n in plan.pools if sizes.get(n, (0, 0))[1] > 0]
        total = sum(size for _, size in pools)
        if total == 0:
            return []
        chosen: list[int] = []
        chosen_set: set[int] = set()
        tried: set[tuple[int, int]] = set()
        passing = plan.passing
        for _ in range(DRAW_ROUNDS):
            need = count - len(chosen)
            untried = total - len(tried)
            if need <= 0 or untried <= 0:
                break
            want = need
            if plan.where:
                # Over-draw by the share expected to pass, so one round usually suffices.
                want = int(need / max(passing, 0.01) * 1.25) + 8
            picks = self._pick_slots(pools, total, min(untried, want), tried)
            tried.update(picks)
            seqs = await self._accept(picks, plan.where, plan.params)
            # The next round, if any, trusts the share that passed this one.
            passing = len(seqs) / len(picks)
            for s in seqs:
                if s not in chosen_set and len(chosen) < count:
                    chosen_set.add(s)
                    chosen.append(s)
            if not plan.where and len(tried) >= total:
                break
        if len(chosen) < count and len(tried) < total:
            # Few matches among many candidates: rejection is slow, scan exactly.
            rest = await self._scan(plan.pools, plan.where, plan.params, exclude=chosen_set)
            self._rng.shuffle(rest)
            # Keep the draw uniform: a rejected-pass survivor and a scanned one are alike.
            chosen.extend(rest[: count - len(chosen)])
        return chosen[:count]

    def _pick_slots(
        self, pools: list[tuple[int, int]], total: int, want: int, tried: set[tuple[int, int]]
    ) -> list[tuple[int, int]]:
        """`want` distinct (pool, slot) pairs not in `tried`, uniform over the union."""
        picks: list[tuple[int, int]] = []
        seen = set(tried)
        while len(picks) < want:
            k = self._rng.randrange(total)
            for pool, size in pools:
                if k < size:
                    pair = (pool, k)
                    break
                k -= size
            if pair not in seen:
                seen.add(pair)
                picks.append(pair)
        return picks

    async def _accept(
        self, picks: list[tuple[int, int]], where: list[str], params: list[Any]
    ) -> list[int]:
        """The seqs at `picks` that satisfy `where`, in pick order."""
        if not picks:
            return []
        values = ",".join("(?, ?, ?)" for _ in picks)
        flat = [x for n, (pool, slot) in enumerate(picks) for x in (n, pool, slot)]
        cond = "".join(f" AND {w}" for w in where)
        rows = await self._all(
            f"WITH p(n, pool, slot) AS (VALUES {values}) "
            f"SELECT s.seq FROM p JOIN pool_slots s ON s.pool = p.pool AND s.slot = p.slot "
            f"JOIN images i ON i.seq = s.seq WHERE 1{cond} ORDER BY p.n",
            [*flat, *params],
        )
        return [r[0] for r in rows]

    async def _scan(
        self, pool_names: list[str], where: list[str], params: list[Any], exclude: set[int]
    ) -> list[int]:
        marks = ",".join("?" * len(pool_names))
        cond = "".join(f" AND {w}" for w in where)
        rows = await self._all(
            f"SELECT s.seq FROM pools p JOIN pool_slots s ON s.pool = p.pool "
            f"JOIN images i ON i.seq = s.seq WHERE p.name IN ({marks}){cond}",
            [*pool_names, *params],
        )
        return [r[0] for r in rows if r[0] not in exclude]
