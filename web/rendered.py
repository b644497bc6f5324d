"""Listings' HTML kept while their search result is: rendering the 24-tile grid with
Jinja was three quarters of a listing's server time, and the service's page cache
hands out the very same result object to every request of a query for as long as it
keeps it (1 s, dropped at once by a change)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class RenderedListings:
    """HTML by key, valid only for the exact result object it was rendered from: an
    entry whose `source` is not the object the service answers with now is stale (the
    page cache dropped or replaced it), so this cache never outlives the page cache's
    entry, and needs no invalidation of its own."""

    def __init__(self, max_entries: int = 128) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[object, bytes]] = OrderedDict()

    def get(self, key: Hashable, source: object) -> bytes | None:
        """The HTML kept under `key` if it was rendered from `source` itself."""
        entry = self._entries.get(key)
        if entry is None or entry[0] is not source:
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: Hashable, source: object, html: bytes) -> None:
        """Keep `html`, rendered from `source` (held, so its identity is not reused)."""
        self._entries[key] = (source, html)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
