"""Images from rows: their tags, artist and characters from the read cache."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from core.models import Album, Image, User
from storage.rows import rid_list, unsigned64
from storage.sqlite.connection import SQLiteBase
from storage.sqlite.rows import (
    _IMAGE_COLUMNS,
    _IMAGE_FROM,
    _MEMBERS,
    _NOCASE,
    _RATING,
    _STATUS,
    _at,
    _dt,
)


class HydrateMixin(SQLiteBase):
    """Reads image rows into Image models."""

    async def _hydrate(self, rows: Sequence[Sequence[Any]]) -> list[Image]:
        """Images from rows of _IMAGE_COLUMNS; their tags, characters and artist come
        from the read cache (one query for whatever it lacks)."""
        if not rows:
            return []
        artists = await self._members("artists", [r[31] for r in rows])
        tags = await self._members("tags", [r[36] for r in rows])
        characters = await self._members("characters", [r[37] for r in rows])
        out = []
        for r, artist, tag_set, character_set in zip(rows, artists, tags, characters, strict=True):
            out.append(
                Image(
                    id=r[1],
                    sha256=r[2],
                    md5=r[3],
                    phash=unsigned64(r[4]),
                    mimetype=r[5],
                    extension=r[6],
                    size=r[7],
                    width=r[8],
                    height=r[9],
                    aspect_ratio=r[10],
                    orientation=r[11],
                    dominant_color=r[12],
                    animated=bool(r[13]),
                    thumbnail_size=r[14],
                    rating=_RATING[r[15]],
                    status=_STATUS[r[16]],
                    title=r[17],
                    description=r[18],
                    source_name=r[19],
                    source_url=r[20],
                    original_filename=r[21],
                    uploader=User(r[22], r[23] or "") if r[22] is not None else None,
                    approver=User(r[24], r[25] or "") if r[24] is not None else None,
                    likes=r[26],
                    favorites=r[27],
                    created_at=_at(r[28]),
                    expires_at=_dt(r[29]),
                    near_duplicate_of=r[30],
                    artist=artist[0] if artist else None,
                    album=Album(r[32], r[33], r[34], _at(r[35])) if r[32] is not None else None,
                    tags=tag_set,
                    characters=character_set,
                )
            )
        return out

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
            for row in await self._all(
                f"SELECT {alias}.rid, {columns} FROM {kind} {alias} WHERE {alias}.rid IN ({marks})",
                unknown,
            ):
                fetched[row[0]] = build(row[1:])
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

    async def _images_by_seq(self, seqs: Sequence[int]) -> list[Image]:
        """Images for `seqs`, in that order (those gone left out)."""
        if not seqs:
            return []
        marks = ",".join("?" * len(seqs))
        rows = await self._all(
            f"SELECT {_IMAGE_COLUMNS} {_IMAGE_FROM} WHERE i.seq IN ({marks})", seqs
        )
        by_seq = {r[0]: r for r in rows}
        return await self._hydrate([by_seq[s] for s in seqs if s in by_seq])
