"""Favourites: the store's reads of a member's liked images (on every backend), and
/favourites, /random from: favourites and the like count on embeds through the real
discord.py against the Discord stand-in."""

from __future__ import annotations

from tests import botkit
from tests.botkit import embed_image_id, store_image
from tests.conftest import ALL_BACKENDS
from tests.discord_standin import DiscordStandIn, SentMessage

# isort: split
from cogs.client import GazouBot
from core.blacklist import Blacklist
from core.models import Filters, Rating, SearchQuery, Sort, User
from core.services import Services

BACKENDS = ALL_BACKENDS

settings = botkit.settings
services = botkit.services
standin = botkit.standin
bot = botkit.bot

ALICE = User("102", "alice")
BOB = User("103", "bob")


# ---- the store ---------------------------------------------------------------------------


async def test_favourites_page_newest_like_first_with_filters_and_totals(
    services: Services,
) -> None:
    images = services.images
    a = await store_image(services, 1, tags=("cat",))
    b = await store_image(services, 2, tags=("dog",))
    c = await store_image(services, 3, tags=("cat", "spider"), rating=Rating.NSFW)
    d = await store_image(services, 4, tags=("cat",))
    for image in (b, a, c):
        await images.set_like(image.id, ALICE)
    await images.set_like(d.id, BOB)  # someone else's
    page = await images.favourites(ALICE, Filters(), 0, 2)
    assert [i.id for i in page.images] == [c.id, a.id]
    assert (page.total, page.total_exact) == (3, True)
    page = await images.favourites(ALICE, Filters(), 2, 2)
    assert [i.id for i in page.images] == [b.id]
    sfw = await images.favourites(ALICE, Filters(ratings=frozenset({Rating.SFW})), 0, 10)
    assert [i.id for i in sfw.images] == [a.id, b.id]
    cats = await images.favourites(ALICE, Filters(tags=("cat",)), 0, 10)
    assert [i.id for i in cats.images] == [c.id, a.id]
    kept = Blacklist(member=("spider",)).apply(Filters())
    assert [i.id for i in (await images.favourites(ALICE, kept, 0, 10)).images] == [a.id, b.id]
    assert (await images.favourites(ALICE, Filters(tags=("nope",)), 0, 10)).total == 0
    # Unliked, or no longer public: gone from the favourites at once.
    await images.set_like(a.id, ALICE, on=False)
    await images.reject(b.id, ALICE)
    page = await images.favourites(ALICE, Filters(), 0, 10)
    assert [i.id for i in page.images] == [c.id] and page.total == 1


async def test_random_favourites_draw_only_liked_matches_and_every_one_of_them(
    services: Services,
) -> None:
    images = services.images
    liked = [await store_image(services, seed, tags=("cat",)) for seed in range(4)]
    other = await store_image(services, 9, tags=("cat",))
    for image in liked:
        await images.set_like(image.id, ALICE)
    await images.set_like(other.id, BOB)
    everything = await images.random_favourites(ALICE, Filters(), 10)
    assert sorted(i.id for i in everything) == sorted(i.id for i in liked)
    drawn = {(await images.random_favourites(ALICE, Filters(), 1))[0].id for _ in range(60)}
    assert drawn == {i.id for i in liked}
    assert await images.random_favourites(BOB, Filters(tags=("dog",)), 1) == []
    assert await images.random_favourites(User("999", "nobody"), Filters(), 1) == []


async def test_remembered_favourite_draws_give_each_liked_image_once_per_cycle(
    services: Services,
) -> None:
    images = services.images
    liked = [await store_image(services, seed, tags=("cat",)) for seed in range(5)]
    for image in liked:
        await images.set_like(image.id, ALICE)
    every = {i.id for i in liked}
    for _ in range(2):  # two whole cycles: each a permutation of the likes
        cycle = [(await images.random_favourites(ALICE, Filters(), 1, remember=True))[0].id]
        for _ in range(4):
            cycle.append((await images.random_favourites(ALICE, Filters(), 1, remember=True))[0].id)
        assert sorted(cycle) == sorted(every)
    # A page that crosses the end of a cycle: the 2 unseen, then 1 of the others; the
    # new cycle begins with those 3, so the next page of 3 holds the 2 left and 1 more.
    first = await images.random_favourites(ALICE, Filters(), 3, remember=True)
    assert len({i.id for i in first}) == 3
    second = await images.random_favourites(ALICE, Filters(), 3, remember=True)
    ended = {i.id for i in first} | {i.id for i in second}
    assert len({i.id for i in second}) == 3 and ended == every
    third = await images.random_favourites(ALICE, Filters(), 3, remember=True)
    assert {i.id for i in second} | {i.id for i in third} == every
    # Each filter has its own memory; /random's is apart; without `remember`, none.
    cats = await images.random_favourites(ALICE, Filters(tags=("cat",)), 5, remember=True)
    assert {i.id for i in cats} == every
    drawn = await images.random(Filters(), 5, seen_by=ALICE.id)
    assert {i.id for i in drawn} == every
    assert len(await images.random_favourites(ALICE, Filters(), 5)) == 5


async def test_the_likes_sort_is_fed_by_the_like_button_count(services: Services) -> None:
    # nekos.moe's `likes` sort reads the same count (api/nekosmoe.py passes Sort.LIKES).
    images = services.images
    await store_image(services, 1)  # never liked: last
    a, b = await store_image(services, 3), await store_image(services, 4)
    await images.set_like(b.id, ALICE)
    await images.set_like(b.id, BOB)
    await images.set_like(a.id, ALICE)
    page = await images.search(SearchQuery(sort=Sort.LIKES, limit=2))
    assert [(i.id, i.likes) for i in page.images] == [(b.id, 2), (a.id, 1)]


# ---- Discord -----------------------------------------------------------------------------


async def shown(standin: DiscordStandIn, name: str, options=None, **where) -> SentMessage:
    inter = await standin.invoke_command(name, options, **where)
    reply = await standin.wait_for_reply(inter)
    assert reply.type == 5, reply.content
    return await standin.wait_for_followup(inter)


async def like(standin: DiscordStandIn, message: SentMessage) -> str:
    button = next(i for i in message.custom_ids() if i.startswith("img:like:"))
    return (await standin.wait_for_reply(await standin.click(message, button))).content


async def test_favourites_page_through_what_the_like_button_kept(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    stored = [await store_image(services, seed) for seed in range(3)]
    liked = []
    for _ in range(3):
        message = await shown(standin, "random")
        if embed_image_id(message) not in liked:
            assert (await like(standin, message)).startswith("You like this image")
            liked.append(embed_image_id(message))
    assert sorted(liked) == sorted(i.id for i in stored)
    message = await shown(standin, "favourites")
    assert message.content == "Page 1 of 3"
    pages = [embed_image_id(message)]
    fields = {f["name"]: f["value"] for f in message["embeds"][0]["fields"]}
    assert fields["Likes"] == "1"
    for _ in range(2):
        edits = len(message.edits)
        button = next(i for i in message.custom_ids() if i.startswith("search:next:"))
        await standin.wait_for_reply(await standin.click(message, button))
        await standin.wait_until(lambda e=edits: len(message.edits) > e, what="the next page")
        pages.append(embed_image_id(message))
    assert pages == liked[::-1]  # newest like first
    # Another member's favourites are their own.
    reply = await standin.wait_for_reply(
        await standin.invoke_command("favourites", user=standin.owner)
    )
    assert reply.ephemeral and reply.content.startswith("You have liked no image yet")


async def test_random_from_favourites_draws_only_liked_images_with_the_blacklist(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    user = User(str(standin.user.id), "alice")
    cat = await store_image(services, 1, tags=("cat",))
    spider = await store_image(services, 2, tags=("spider",))
    await store_image(services, 3, tags=("cat",))  # not liked
    for image in (cat, spider):
        await services.images.set_like(image.id, user)
    drawn = {
        embed_image_id(await shown(standin, "random", {"from": "favourites"})) for _ in range(12)
    }
    assert drawn == {cat.id, spider.id}
    await standin.wait_for_reply(await standin.invoke_command("blacklist add", {"tags": "spider"}))
    message = await shown(standin, "random", {"from": "favourites"})
    again = next(i for i in message.custom_ids() if i.startswith("img:again:"))
    drawn = {embed_image_id(message)}
    for _ in range(8):
        click = await standin.click(message, again)
        await standin.wait_for_reply(click)
        drawn.add(embed_image_id(await standin.wait_for_followup(click)))
    assert drawn == {cat.id}


async def test_random_from_favourites_does_not_repeat_until_all_were_shown(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    user = User(str(standin.user.id), "alice")
    liked = [await store_image(services, seed) for seed in range(4)]
    for image in liked:
        await services.images.set_like(image.id, user)
    message = await shown(standin, "random", {"from": "favourites"})
    again = next(i for i in message.custom_ids() if i.startswith("img:again:"))
    drawn = [embed_image_id(message)]
    for _ in range(3):
        click = await standin.click(message, again)
        await standin.wait_for_reply(click)
        drawn.append(embed_image_id(await standin.wait_for_followup(click)))
    assert sorted(drawn) == sorted(i.id for i in liked)


async def test_empty_favourites_say_how_to_fill_them(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    await store_image(services, 1)
    reply = await standin.wait_for_reply(await standin.invoke_command("favourites"))
    assert reply.ephemeral
    assert reply.content == (
        "You have liked no image yet: press Like under an image to keep it here."
    )
    reply = await standin.wait_for_reply(
        await standin.invoke_command("random", {"from": "favourites"})
    )
    assert reply.ephemeral
    assert reply.content == "None of the images you like matches those filters."
    # Liked, but only above sfw: in a sfw channel they are left out, and it says why.
    nsfw = await store_image(services, 2, rating=Rating.NSFW)
    await services.images.set_like(nsfw.id, User(str(standin.user.id), "alice"))
    reply = await standin.wait_for_reply(await standin.invoke_command("favourites"))
    assert reply.content.startswith("None of the images you like can be shown here")
