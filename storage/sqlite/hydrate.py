"""Images from rows: their tags, artist and characters from the read cache."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from core.models import Image
from storage.rows import rid_list
from storage.sqlite.connection import SQLiteBase
from storage.sqlite.rows import (
    _ARTIST_RID,
    _CHARACTER_RIDS,
    _IMAGE_COLUMNS,
    _IMAGE_FROM,
    _MEMBERS,
    _NOCASE,
    _SEQ,
    _TAG_RIDS,
    _image,
)


class HydrateMixin(SQLiteBase):
    """Reads image rows into Image models."""

    async def _hydrate(self, rows: Sequence[Sequence[Any]]) -> list[Image]:
        """Images from rows of _IMAGE_COLUMNS; their tags, characters and artist come
        from the read cache (one query for whatever it lacks)."""
        if not rows:
            return []
        artists = await self._members("artists", [r[_ARTIST_RID] for r in rows])
        tags = await self._members("tags", [r[_TAG_RIDS] for r in rows])
        characters = await self._members("characters", [r[_CHARACTER_RIDS] for r in rows])
        return [_image(*found) for found in zip(rows, artists, tags, characters, strict=True)]

    async def _members(self, kind: str, keys: Sequence[str | int | None]) -> list[tuple[Any, ...]]:
        """For each key (a rid, or a comma-separated list of rids from group_concat, or
        None for none), the tags, artists or characters it names, sorted by name as
        SQLite's NOCASE sorts. Served from the read cache; what it lacks is read in one
        query and kept unless a write committed meanwhile."""
        cache = await self._fresh_cache()
        generation = cache.generation
        sets = cache.sets[kind]
        out = [sets.get(key) for key in keys]
        missing = {key for key, found in zip(keys, out, strict=True) if found is None}
        if not missing:
            return cast(list[tuple[Any, ...]], out)  # every key was found
        known = cache.objects[kind]
        rid_lists = {key: rid_list(key) for key in missing if key is not None}
        unknown = {rid for rids in rid_lists.values() for rid in rids if rid not in known}
        fetched: dict[int, Any] = {}
        if unknown:
            alias, columns, build = _MEMBERS[kind]
            marks = ",".join("?" * len(unknown))
            for rid, *fields in await self._all(
                f"SELECT {alias}.rid, {columns} FROM {kind} {alias} WHERE {alias}.rid IN ({marks})",
                unknown,
            ):
                fetched[rid] = build(fields)
        built: dict[str | int | None, tuple[Any, ...]] = {None: ()}
        for key, rids in rid_lists.items():
            # A member deleted since the image row was read is left out.
            found = [m for m in (known.get(rid) or fetched.get(rid) for rid in rids) if m]
            found.sort(key=lambda member: member.name.translate(_NOCASE))
            built[key] = tuple(found)
        if generation == cache.generation:
            cache.keep(kind, fetched, built)
        return [
            found if found is not None else built[key] for key, found in zip(keys, out, strict=True)
        ]

    async def _images_by_seq(
        self, seqs: Sequence[int], rows: dict[int, Any] | None = None
    ) -> list[Image]:
        """Images for `seqs`, in that order (those gone left out); rows already read
        are in `rows`."""
        if not seqs:
            return []
        by_seq = dict(rows or {})
        if missing := [s for s in seqs if s not in by_seq]:
            marks = ",".join("?" * len(missing))
            for r in await self._all(
                f"SELECT {_IMAGE_COLUMNS} {_IMAGE_FROM} WHERE i.seq IN ({marks})", missing
            ):
                by_seq[r[_SEQ]] = r
        return await self._hydrate([by_seq[s] for s in seqs if s in by_seq])
