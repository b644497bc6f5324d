"""The one place the gallery learns whose blacklist applies: the signed-in member's own
(core/blacklist.py, the same kv list the Discord /blacklist edits; the web is in no
server, so no server's list), resolved once per request. Every page that shows images
passes it to core (`Blacklist.apply` on the query, `exclude_tags` elsewhere)."""

from __future__ import annotations

from aiohttp import web

from core.blacklist import Blacklist, effective
from web.auth import current_session
from web.keys import BLACKLIST, SERVICES

NONE = Blacklist()


async def blacklist_of(request: web.Request) -> Blacklist:
    """The blacklist of whoever asks (none for a visitor)."""
    if BLACKLIST in request:
        found = request[BLACKLIST]
        if isinstance(found, Blacklist):
            return found
    session = await current_session(request)
    if session is None:
        blacklist = NONE
    else:
        blacklist = await effective(request.app[SERVICES].kv, session.user.id, None)
    request[BLACKLIST] = blacklist
    return blacklist
