"""Drawing from a small known set without repeats until it is used up (a member's
favourites): the same cycle `random_images(seen_by=...)` keeps over the `seen` table,
decided here once for both backends."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence


def favourites_key(kind: str, filter_key: str) -> str:
    """The `seen` table's key for draws from a member's `kind` (likes) under a filter
    (Filters.key()): apart from /random's, whose keys start with `t=`."""
    return f"{kind}s:{filter_key}"


def pick_unseen(
    rng: random.Random, seqs: Sequence[int], seen: Iterable[int], count: int
) -> tuple[list[int], bool]:
    """Up to `count` distinct seqs of `seqs` drawn uniformly, those not `seen` first;
    and whether the cycle ended (the caller forgets what was seen and remembers only
    this draw, so its rest can't repeat within the new cycle)."""
    seen_set = set(seen)
    unseen = [s for s in seqs if s not in seen_set]
    if len(unseen) >= count:
        return rng.sample(unseen, count), False
    picks = rng.sample(unseen, len(unseen))
    taken = set(picks)
    rest = [s for s in seqs if s not in taken]
    return picks + rng.sample(rest, min(count - len(picks), len(rest))), True
