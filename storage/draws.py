"""Uniform random draws over the pools, written once for every SQL backend.

A backend provides the queries (`_rids`, `_pool_sizes`, `_accept`, `_scan`,
`_images_by_seq`, `_mark_seen`, `transaction`); this mixin plans a draw from the
filters, picks uniform slots over the union of the smallest implying pools, checks
them in one query per round and falls back to an exact scan, so every match is
equally likely (docs/architecture.md, "Pools"). Conditions are SQL fragments with
`?` placeholders over the alias `i` (images), valid in SQLite and PostgreSQL alike.
Both repos inherit it (storage/sqlite/random.py, storage/postgres/repo.py)."""

from __future__ import annotations

import random as _random
from dataclasses import dataclass, replace
from typing import Any

from core.models import Filters, Image, Rating

# Rows a draw may look at through rejection before falling back to an exact scan.
DRAW_ROUNDS = 4
# The share of a pool an orientation filter is expected to pass (three orientations;
# a first guess only: a draw's later rounds go by the share that passed).
ORIENTATION_SHARE = 1 / 3


@dataclass(frozen=True, slots=True)
class Plan:
    """How a random draw finds its matches: the pools whose union holds them all (by
    name, with every pool's id and size), the SQL conditions that narrow the union to
    exactly the matches, and the share of the union expected to pass them."""

    pools: list[str]
    sizes: dict[str, tuple[int, int]]
    where: list[str]
    params: list[Any]
    passing: float


class PoolDraws:
    """`random_images` and the draw planner over a backend's pool queries."""

    _rng: _random.Random
    # Candidates drawn beyond the expected need when conditions reject some: more make
    # a second round rarer, fewer make each round cheaper. A round trip costs more on
    # a server than a few index probes do; each candidate costs a few probes.
    OVERDRAW_SLACK = 8

    # ---- what the backend provides ----------------------------------------------

    async def _rids(self, table: str, keys: list[str]) -> list[int | None]:
        raise NotImplementedError

    async def _pool_sizes(self, names: Any) -> dict[str, tuple[int, int]]:
        raise NotImplementedError

    async def _accept(
        self,
        picks: list[tuple[int, int]],
        where: list[str],
        params: list[Any],
        rows: dict[int, Any] | None = None,
        need: int = 0,
    ) -> list[int]:
        """The seqs at `picks` that pass `where`, in pick order; a backend may also put
        the rows of the first `need` accepted images in `rows`, saving the query that
        would load them."""
        raise NotImplementedError

    async def _scan(
        self, pool_names: list[str], where: list[str], params: list[Any], exclude: set[int]
    ) -> list[int]:
        raise NotImplementedError

    async def _images_by_seq(
        self, seqs: list[int], rows: dict[int, Any] | None = None
    ) -> list[Image]:
        raise NotImplementedError

    async def _mark_seen(self, tx: Any, user_id: str, key: str, seqs: list[int]) -> None:
        raise NotImplementedError

    def transaction(self, *, touches_images: bool = True, durable: bool = False) -> Any:
        raise NotImplementedError

    # ---- planning and drawing ------------------------------------------------------

    async def _filter_plan(self, filters: Filters) -> Plan | None:
        """Pools whose union holds every match, the SQL conditions (on alias i) that
        narrow it to exactly the matches, and how many drawn candidates are expected to
        pass them; None if nothing can match."""
        # Each condition: (sql, params, pools that imply it or None, pools estimating
        # how many pass it, whether those pools hold the ones that fail instead).
        conditions: list[tuple[str, list[Any], list[str] | None, list[str], bool]] = []
        rids = await self._rids("tags", [*filters.tags, *filters.exclude_tags])
        include_rids, exclude_rids = rids[: len(filters.tags)], rids[len(filters.tags) :]
        for rid in include_rids:
            if rid is None:
                return None
            pool = f"tag:{rid}"
            conditions.append(
                (
                    "EXISTS (SELECT 1 FROM image_tags WHERE tag_rid = ? AND seq = i.seq)",
                    [rid],
                    [pool],
                    [pool],
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
            pool = f"artist:{rid}"
            conditions.append(("i.artist_rid = ?", [rid], [pool], [pool], False))
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
                    [str(r) for r in ratings],
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
        return Plan(best, sizes, where, params, passing)

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
        rows: dict[int, Any] = {}
        seqs = await self._draw(plan, count, rows)
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
                seqs += await self._draw(plan, count - len(seqs), rows)
            if seqs:
                async with self.transaction(touches_images=False) as tx:
                    await self._mark_seen(tx, seen_by, seen_key, seqs)
        return await self._images_by_seq(seqs, rows)

    async def _draw(self, plan: Plan, count: int, rows: dict[int, Any] | None = None) -> list[int]:
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
                want = int(need / max(passing, 0.01) * 1.25) + self.OVERDRAW_SLACK
            picks = self._pick_slots(pools, total, min(untried, want), tried)
            tried.update(picks)
            seqs = await self._accept(picks, plan.where, plan.params, rows, need)
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
        pair = (0, 0)
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
