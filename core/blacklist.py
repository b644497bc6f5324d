"""Tag blacklists: each member's own, and one per server set by the owners. Both are kept
in the KeyValue store (a capped JSON list per key, no table of their own), and every
place that shows images resolves the effective list once (member ∪ server) and merges
it into the draw's or search's excluded tags, so the store's own exclusion (exactly
uniform over what remains) does the rest."""

from __future__ import annotations

import json
import string
from dataclasses import dataclass, replace
from typing import TypeVar

from core.contracts import KeyValue
from core.errors import InvalidInput
from core.models import Filters, SearchQuery

MAX_TAGS = 50  # per list: each becomes one NOT EXISTS probe per candidate in a draw
MAX_TAG_LENGTH = 100

_Q = TypeVar("_Q", Filters, SearchQuery)
# Tag names compare as the store's do (SQLite's NOCASE): only ASCII letters fold.
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def member_key(user_id: str | int) -> str:
    """The kv key of a member's own blacklist."""
    return f"blacklist:user:{user_id}"


def guild_key(guild_id: str | int) -> str:
    """The kv key of a server's blacklist (owners set it)."""
    return f"blacklist:guild:{guild_id}"


def _fold(tag: str) -> str:
    return tag.strip().translate(_ASCII_LOWER)


async def read_list(kv: KeyValue, key: str) -> tuple[str, ...]:
    """The tags blacklisted under `key`, as they were added (empty when none)."""
    stored = await kv.kv_get(key)
    if not stored:
        return ()
    try:
        tags = json.loads(stored)
    except ValueError:
        return ()  # a damaged value reads as empty rather than failing every draw
    return tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else ()


async def add_tags(kv: KeyValue, key: str, tags: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Add `tags` to the list under `key`; (added, the whole list). InvalidInput past
    MAX_TAGS tags or for a tag longer than MAX_TAG_LENGTH, changing nothing."""
    current = list(await read_list(kv, key))
    known = {_fold(t) for t in current}
    added = []
    for tag in tags:
        tag = tag.strip()
        if len(tag) > MAX_TAG_LENGTH:
            raise InvalidInput(f"A tag is at most {MAX_TAG_LENGTH} characters long.")
        if tag and _fold(tag) not in known:
            known.add(_fold(tag))
            added.append(tag)
    if len(current) + len(added) > MAX_TAGS:
        raise InvalidInput(
            f"A blacklist holds at most {MAX_TAGS} tags; it has {len(current)}. Remove some first."
        )
    if added:
        current.extend(added)
        await kv.kv_set(key, json.dumps(current))
    return added, current


async def remove_tags(kv: KeyValue, key: str, tags: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Remove `tags` (case-insensitively) from the list under `key`; (removed, the rest)."""
    current = list(await read_list(kv, key))
    drop = {_fold(t) for t in tags}
    kept = [t for t in current if _fold(t) not in drop]
    removed = [t for t in current if _fold(t) in drop]
    if removed:
        await kv.kv_set(key, json.dumps(kept))
    return removed, kept


@dataclass(frozen=True, slots=True)
class Blacklist:
    """The tags kept from one member in one place: their own and the server's."""

    member: tuple[str, ...] = ()
    guild: tuple[str, ...] = ()

    @property
    def tags(self) -> tuple[str, ...]:
        """Both lists as one, without repeats (case-insensitively), in a stable order."""
        merged: dict[str, str] = {}
        for tag in (*self.member, *self.guild):
            merged.setdefault(_fold(tag), tag)
        return tuple(merged[k] for k in sorted(merged))

    def blocked(self, asked: tuple[str, ...]) -> list[str]:
        """Which of the `asked` tags are blacklisted."""
        folded = {_fold(t) for t in self.tags}
        return [t for t in asked if _fold(t) in folded]

    def refusal(self, asked: tuple[str, ...]) -> str | None:
        """What to answer a member who asked for blacklisted tags, or None if none is."""
        blocked = self.blocked(asked)
        if not blocked:
            return None
        mine = {_fold(t) for t in self.member}
        own = [t for t in blocked if _fold(t) in mine]
        names = ", ".join(f"`{t}`" for t in blocked)
        where = "your blacklist" if own else "this server's blacklist"
        if own and len(own) < len(blocked):
            where = "your blacklist or this server's"
        verb = "is" if len(blocked) == 1 else "are"
        return f"{names} {verb} on {where}, so no image with it is shown here."

    def apply(self, query: _Q) -> _Q:
        """`query` with the blacklisted tags added to its excluded tags."""
        if not self.member and not self.guild:
            return query
        merged: dict[str, str] = {}
        for tag in (*query.exclude_tags, *self.tags):
            merged.setdefault(_fold(tag), tag)
        # Sorted, so the same lists give the same seen-memory key (Filters.key()).
        return replace(query, exclude_tags=tuple(merged[k] for k in sorted(merged)))


async def effective(kv: KeyValue, user_id: str | int, guild_id: str | int | None) -> Blacklist:
    """The blacklist that applies to `user_id` in a place: their own, with the server's
    when the place is in a server (`guild_id`), none of the server's in DMs."""
    own = await read_list(kv, member_key(user_id))
    server = await read_list(kv, guild_key(guild_id)) if guild_id is not None else ()
    return Blacklist(own, server)
