"""Tag blacklists (a member's own and a server's), through the real discord.py against
the Discord stand-in, and the core merge they rely on."""

from __future__ import annotations

import json

import pytest

from tests import botkit
from tests.botkit import embed_image_id, store_image
from tests.discord_standin import DiscordStandIn, SentMessage

# isort: split
from cogs.client import GazouBot
from core import blacklist as blacklists
from core.blacklist import Blacklist
from core.errors import InvalidInput
from core.models import Filters, SearchQuery
from core.services import Services

settings = botkit.settings
services = botkit.services
standin = botkit.standin
bot = botkit.bot

DRAWS = 200


async def ephemeral(standin: DiscordStandIn, name: str, options=None, **where) -> str:
    """Invoke a command answered privately; its text."""
    reply = await standin.wait_for_reply(await standin.invoke_command(name, options, **where))
    assert reply.type == 4 and reply.ephemeral, reply
    return reply.content


async def shown(standin: DiscordStandIn, name: str, options=None, **where) -> SentMessage:
    """Invoke a command that posts publicly; the message it posted."""
    inter = await standin.invoke_command(name, options, **where)
    reply = await standin.wait_for_reply(inter)
    assert reply.type == 5, reply.content
    return await standin.wait_for_followup(inter)


async def stock(services: Services) -> tuple[set[str], set[str]]:
    """Three images with `spider` (and one also `cat`) and three without; their ids."""
    bad = {
        (await store_image(services, seed, tags=tags)).id
        for seed, tags in ((1, ("spider",)), (2, ("spider", "cat")), (3, ("Spider", "dog")))
    }
    good = {
        (await store_image(services, seed, tags=tags)).id
        for seed, tags in ((4, ("cat",)), (5, ("dog",)), (6, ("cat", "dog")))
    }
    return bad, good


# ---- core ------------------------------------------------------------------------------


def test_apply_merges_both_lists_into_the_excluded_tags_sorted_and_once() -> None:
    found = Blacklist(member=("spider", "Gore"), guild=("gore", "blood"))
    filters = found.apply(Filters(tags=("cat",), exclude_tags=("dog", "SPIDER")))
    assert [t.lower() for t in filters.exclude_tags] == ["blood", "dog", "gore", "spider"]
    assert filters.tags == ("cat",)
    query = found.apply(SearchQuery(tags=("cat",)))
    assert [t.lower() for t in query.exclude_tags] == ["blood", "gore", "spider"]
    # The seen memory is kept per filter set, the blacklist included.
    assert found.apply(Filters()).key() != Filters().key()
    assert Blacklist().apply(Filters(tags=("cat",))) == Filters(tags=("cat",))


def test_refusal_names_the_list_the_tag_is_on() -> None:
    found = Blacklist(member=("spider",), guild=("gore",))
    assert found.refusal(("cat",)) is None
    assert found.refusal(("Spider",)) == (
        "`Spider` is on your blacklist, so no image with it is shown here."
    )
    assert "this server's blacklist" in (found.refusal(("gore",)) or "")
    assert "your blacklist or this server's" in (found.refusal(("spider", "gore")) or "")


async def test_lists_are_capped_and_kept_in_the_key_value_store(services: Services) -> None:
    key = blacklists.member_key(7)
    added, listed = await blacklists.add_tags(services.kv, key, ("a", "A", "b"))
    assert added == ["a", "b"] and listed == ["a", "b"]
    assert json.loads(await services.kv.kv_get("blacklist:user:7") or "") == ["a", "b"]
    many = tuple(f"t{n}" for n in range(blacklists.MAX_TAGS - 1))
    with pytest.raises(InvalidInput, match="at most 50 tags"):
        await blacklists.add_tags(services.kv, key, many)
    assert await blacklists.read_list(services.kv, key) == ("a", "b")  # nothing changed
    removed, rest = await blacklists.remove_tags(services.kv, key, ("B", "zzz"))
    assert removed == ["b"] and rest == ["a"]
    # In a DM (no guild) the server's list does not apply.
    await blacklists.add_tags(services.kv, blacklists.guild_key(9), ("gore",))
    assert (await blacklists.effective(services.kv, 7, 9)).tags == ("a", "gore")
    assert (await blacklists.effective(services.kv, 7, None)).tags == ("a",)


# ---- /blacklist add, remove, list, autocomplete ----------------------------------------


async def test_add_remove_and_list_answer_privately(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    text = await ephemeral(standin, "blacklist add", {"tags": "spider, gore"})
    assert text == "Added `spider`, `gore` to your blacklist (2/50)."
    assert await ephemeral(standin, "blacklist add", {"tags": "Spider"}) == (
        "`Spider` is already on your blacklist."
    )
    assert await ephemeral(standin, "blacklist list") == "Your blacklist (2/50): `spider`, `gore`."
    text = await ephemeral(standin, "blacklist remove", {"tags": "gore"})
    assert text == "Removed `gore` from your blacklist (1 left)."
    assert await ephemeral(standin, "blacklist remove", {"tags": "gore"}) == (
        "`gore` is not on your blacklist."
    )
    # Another member's list is their own.
    assert await ephemeral(standin, "blacklist list", user=standin.owner) == (
        "Your blacklist (0/50): empty."
    )


async def test_add_autocompletes_from_existing_tags_and_remove_from_the_list(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    await store_image(services, 1, tags=("spider", "spiderweb", "cat"))
    inter = await standin.autocomplete("blacklist add", {"tags": "gore, spi"}, focused="tags")
    reply = await standin.wait_for_reply(inter)
    assert [c["value"] for c in reply.data["choices"]] == ["gore, spider", "gore, spiderweb"]
    await ephemeral(standin, "blacklist add", {"tags": "spider, gore"})
    inter = await standin.autocomplete("blacklist remove", {"tags": "go"}, focused="tags")
    reply = await standin.wait_for_reply(inter)
    assert [c["value"] for c in reply.data["choices"]] == ["gore"]


# ---- what is shown -----------------------------------------------------------------------


async def test_a_blacklisted_tag_never_appears_in_200_random_draws_nor_another(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    bad, good = await stock(services)
    await ephemeral(standin, "blacklist add", {"tags": "spider"})
    seen: set[str] = set()
    message = await shown(standin, "random")
    seen.add(embed_image_id(message))
    again = next(i for i in message.custom_ids() if i.startswith("img:again:"))
    for n in range(DRAWS - 1):
        if n % 10 == 0:  # the Another button re-reads the clicker's blacklist
            click = await standin.click(message, again)
            await standin.wait_for_reply(click)
            seen.add(embed_image_id(await standin.wait_for_followup(click)))
        else:
            seen.add(embed_image_id(await shown(standin, "random")))
    assert seen == good
    # Without the blacklist the same command shows them (the test can fail).
    await ephemeral(standin, "blacklist remove", {"tags": "spider"})
    again_seen = {embed_image_id(await shown(standin, "random")) for _ in range(12)}
    assert again_seen & bad


async def test_no_search_page_shows_a_blacklisted_tag_nor_do_the_buttons(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    _, good = await stock(services)
    await ephemeral(standin, "blacklist add", {"tags": "spider"})
    message = await shown(standin, "search", {"sort": "oldest"})
    assert message.content == "Page 1 of 3"
    pages = [embed_image_id(message)]
    for _ in range(2):
        edits = len(message.edits)
        button = next(i for i in message.custom_ids() if i.startswith("search:next:"))
        await standin.wait_for_reply(await standin.click(message, button))
        await standin.wait_until(lambda e=edits: len(message.edits) > e, what="the next page")
        pages.append(embed_image_id(message))
    assert set(pages) == good and len(pages) == 3
    # A search with tags of its own keeps the blacklist too.
    message = await shown(standin, "search", {"tags": "dog"})
    assert message.content == "Page 1 of 2"


async def test_a_search_for_a_blacklisted_tag_is_refused_with_the_reason(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    await stock(services)
    await ephemeral(standin, "blacklist add", {"tags": "spider"})
    refusal = "`SPIDER` is on your blacklist, so no image with it is shown here."
    assert await ephemeral(standin, "search", {"tags": "cat, SPIDER"}) == refusal
    assert await ephemeral(standin, "random", {"tags": "cat, SPIDER"}) == refusal


async def test_the_server_list_applies_in_the_guild_and_not_in_dms(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    bad, good = await stock(services)
    text = await ephemeral(standin, "blacklist server add", {"tags": "spider"}, user=standin.owner)
    assert text == "Added `spider` to this server's blacklist (1/50)."
    in_guild = {embed_image_id(await shown(standin, "random")) for _ in range(9)}
    assert in_guild == good
    assert await ephemeral(standin, "search", {"tags": "spider"}) == (
        "`spider` is on this server's blacklist, so no image with it is shown here."
    )
    in_dm = {embed_image_id(await shown(standin, "random", dm=True)) for _ in range(12)}
    assert in_dm & bad
    assert "This server's blacklist, set by the owners: `spider`." in await ephemeral(
        standin, "blacklist list"
    )
    listed = await ephemeral(standin, "blacklist server list", user=standin.owner)
    assert listed == "This server's blacklist (1/50): `spider`."


async def test_only_owners_set_the_server_list_and_only_in_a_server(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    for name in ("blacklist server add", "blacklist server remove"):
        text = await ephemeral(standin, name, {"tags": "spider"})
        assert text == "Only the bot's owners can do that."
    assert await ephemeral(standin, "blacklist server list") == "Only the bot's owners can do that."
    assert await services.kv.kv_get(blacklists.guild_key(standin.guild.id)) is None
    text = await ephemeral(
        standin, "blacklist server add", {"tags": "x"}, user=standin.owner, dm=True
    )
    assert text == "A server's blacklist is set in one of that server's channels."
