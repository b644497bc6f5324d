"""The metadata repo on SQLite (aiosqlite): WAL, foreign keys, forward migrations.

One connection writes (serialised by a lock, each change in one transaction);
another reads, so reads never queue behind a write under WAL. SQLiteRepo is one
mixin per storage contract (core/contracts.py) over SQLiteBase (connection.py),
which owns the connections, the lock and the read cache; the reads both SQL repos
share (storage/draws.py, storage/queries.py) come last, after SQLiteBase."""

from __future__ import annotations

from storage.queries import SharedQueries
from storage.sqlite.catalogue import CatalogueMixin
from storage.sqlite.connection import SQLiteBase
from storage.sqlite.kv import KeyValueMixin
from storage.sqlite.members import MembersMixin
from storage.sqlite.outbox import OutboxMixin
from storage.sqlite.random import RandomMixin
from storage.sqlite.reports import ReportsMixin
from storage.sqlite.tokens import TokensMixin

__all__ = ["CATALOGUE_CAP", "TOTAL_CAP", "SQLiteBase", "SQLiteRepo"]

# Limits the mixins read from this module when they run (not when imported), so
# that this is the one place to change them (the tests lower them here).
# Totals past this are reported as "at least" so a count never walks a huge set.
TOTAL_CAP = 10_000
# Tags, artists and characters kept by the read cache before it starts over.
CATALOGUE_CAP = 50_000


class SQLiteRepo(
    ReportsMixin,
    RandomMixin,
    CatalogueMixin,
    MembersMixin,
    TokensMixin,
    KeyValueMixin,
    OutboxMixin,
    SharedQueries,
):
    """All metadata: images, tags, artists, characters, albums, tokens, requests."""

    # SharedQueries' fragments as SQLite writes them: names compare under NOCASE (the
    # indexes' collation), and a unary + keeps a column's index out of a plan.
    _UPLOADER_IS = "(i.uploader_id = ? OR i.uploader_name = ? COLLATE NOCASE)"
    _ARTIST_NAME_LIKE = "i.artist_rid IN (SELECT rid FROM artists WHERE name LIKE ? ESCAPE '\\')"
    _NO_INDEX = "+"
    _APPROVED_CREATED = " INDEXED BY images_approved_created"

    def _total_cap(self) -> int:
        """TOTAL_CAP as this module has it now (tests lower it)."""
        return TOTAL_CAP
