"""Tags, artists, characters and albums (core.contracts.CatalogueRepo)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from core.errors import InvalidInput
from core.models import Album, Artist, Character, Tag, new_id
from storage.sqlite.connection import SQLiteBase
from storage.sqlite.rows import (
    _ARTIST_COLUMNS,
    _CHARACTER_COLUMNS,
    _TAG_COLUMNS,
    _artist,
    _at,
    _character,
    _tag,
)


class CatalogueMixin(SQLiteBase):
    """The named things images belong to."""

    async def unknown_tags(self, names: Iterable[str]) -> list[str]:
        """Which of `names` name no tag."""
        names = list(names)
        rids = await self._rids("tags", names)
        return [n for n, r in zip(names, rids, strict=True) if r is None]

    # ---- tags, artists, characters, albums --------------------------------------

    async def _named_list(
        self, table: str, alias: str, columns: str, pattern: str | None, offset: int, limit: int
    ) -> tuple[list[sqlite3.Row], int]:
        where, params = "", []
        if pattern is not None:
            where, params = f"WHERE {alias}.name LIKE ?", [pattern]
        rows = await self._all(
            f"SELECT {columns} FROM {table} {alias} {where} ORDER BY {alias}.name LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        (total,) = await self._one(f"SELECT COUNT(*) FROM {table} {alias} {where}", params)
        return rows, total

    async def list_tags(
        self, pattern: str | None = None, offset: int = 0, limit: int = 25
    ) -> tuple[list[Tag], int]:
        """Tags whose name is LIKE `pattern` (None = all), by name, with the total."""
        rows, total = await self._named_list("tags", "t", _TAG_COLUMNS, pattern, offset, limit)
        return [_tag(r) for r in rows], total

    async def list_artists(
        self, pattern: str | None = None, offset: int = 0, limit: int = 25
    ) -> tuple[list[Artist], int]:
        """Artists whose name is LIKE `pattern`, by name, with the total."""
        rows, total = await self._named_list(
            "artists", "a", _ARTIST_COLUMNS, pattern, offset, limit
        )
        return [_artist(r) for r in rows], total

    async def list_characters(
        self, pattern: str | None = None, offset: int = 0, limit: int = 25
    ) -> tuple[list[Character], int]:
        """Characters whose name is LIKE `pattern`, by name, with the total."""
        rows, total = await self._named_list(
            "characters", "c", _CHARACTER_COLUMNS, pattern, offset, limit
        )
        return [_character(r) for r in rows], total

    async def get_tag(self, key: str) -> Tag | None:
        """A tag by id or name."""
        row = await self._one(
            f"SELECT {_TAG_COLUMNS} FROM tags t WHERE t.id = ? OR t.name = ?", (key, key)
        )
        return _tag(row) if row else None

    async def get_artist(self, key: str) -> Artist | None:
        """An artist by id or name."""
        row = await self._one(
            f"SELECT {_ARTIST_COLUMNS} FROM artists a WHERE a.id = ? OR a.name = ?", (key, key)
        )
        return _artist(row) if row else None

    async def get_character(self, key: str) -> Character | None:
        """A character by id or name."""
        row = await self._one(
            f"SELECT {_CHARACTER_COLUMNS} FROM characters c WHERE c.id = ? OR c.name = ?",
            (key, key),
        )
        return _character(row) if row else None

    async def upsert_tag(self, name: str, description: str = "", nsfw: bool = False) -> Tag:
        """Create a tag, or update its description and nsfw flag."""
        async with self.transaction() as tx:
            rid = await self._get_or_create(tx, "tags", name)
            await tx.execute(
                "UPDATE tags SET description = ?, nsfw = ? WHERE rid = ?",
                (description, int(nsfw), rid),
            )
        tag = await self.get_tag(name)
        assert tag is not None
        return tag

    async def upsert_artist(self, name: str, url: str | None = None) -> Artist:
        """Create an artist, or update their URL."""
        async with self.transaction() as tx:
            rid = await self._get_or_create(tx, "artists", name)
            await tx.execute("UPDATE artists SET url = ? WHERE rid = ?", (url, rid))
        artist = await self.get_artist(name)
        assert artist is not None
        return artist

    async def upsert_character(self, name: str, **fields: Any) -> Character:
        """Create a character, or update the given descriptive fields."""
        allowed = {
            "description",
            "source",
            "gender",
            "ages",
            "birth_date",
            "nationality",
            "occupations",
        }
        unknown = set(fields) - allowed
        if unknown:
            raise InvalidInput(f"Unknown character fields: {', '.join(sorted(unknown))}")
        async with self.transaction() as tx:
            rid = await self._get_or_create(tx, "characters", name)
            for key, value in fields.items():
                if key in ("ages", "occupations"):
                    value = json.dumps(list(value))
                await tx.execute(f"UPDATE characters SET {key} = ? WHERE rid = ?", (value, rid))
        character = await self.get_character(name)
        assert character is not None
        return character

    async def create_album(self, name: str, owner_id: str | None) -> Album:
        """A new album."""
        album_id, now = new_id(), time.time()
        async with self.transaction() as tx:
            await tx.execute(
                "INSERT INTO albums (id, name, owner_id, created_at) VALUES (?, ?, ?, ?)",
                (album_id, name, owner_id, now),
            )
        return Album(album_id, name, owner_id, _at(now))

    async def get_album(self, album_id: str) -> Album | None:
        """An album by id."""
        row = await self._one(
            "SELECT id, name, owner_id, created_at FROM albums WHERE id = ?", (album_id,)
        )
        if row is None:
            return None
        album_id, name, owner_id, created_at = row
        return Album(album_id, name, owner_id, _at(created_at))
