"""Who owns gazou, decided once for every transport from plain ids: OWNER_IDS, plus
the Discord application's owner or, for a team-owned application, its team's admins
and developers (discord.py's `Bot.is_owner` rule). The bot reads the application from
discord.py's objects, the web's "Log in with Discord" from Discord's JSON; both hand
the ids and roles here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

# Team roles that count as owners (a read-only member does not).
OWNER_ROLES = frozenset({"admin", "developer"})


def application_owner_ids(owner_id: int | None, team: Iterable[tuple[int, str]] | None) -> set[int]:
    """The owners an application names: with a team (`(user id, role)` of each member),
    its admins and developers; without one, its owner."""
    if team is not None:
        return {user_id for user_id, role in team if role in OWNER_ROLES}
    return {owner_id} if owner_id is not None else set()


async def is_owner(
    user_id: int,
    configured: Iterable[int],
    application: Callable[[], Awaitable[Iterable[int]]],
) -> bool:
    """Whether `user_id` is one of gazou's owners: named in OWNER_IDS (`configured`),
    or by the application (`application()`, asked only when OWNER_IDS does not name
    them: it may cost a call to Discord)."""
    if user_id in set(configured):
        return True
    return user_id in set(await application())
