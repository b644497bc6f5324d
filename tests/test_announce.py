"""Announcements: /announce posts each newly approved image in the chosen channel (above
sfw only if it is age-restricted), once; WEBHOOK_URLS get one embed per approved image
from a consumer with its own durable cursor, retried after 500 and 429, never holding
up an upload. Real discord.py against the stand-in; a loopback webhook receiver."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests import botkit
from tests.botkit import store_image
from tests.discord_standin import DiscordStandIn, SentMessage

# isort: split
from api.webhooks import AiohttpPoster
from cogs.announce import NOT_AGE_RESTRICTED
from cogs.client import GazouBot
from core.announce import WebhookAnnouncer, deliver_webhooks
from core.importer import import_folder
from core.models import Image, IngestMetadata, Rating, User
from core.services import Services, open_services
from tests.conftest import make_image, make_settings

settings = botkit.settings
services = botkit.services
standin = botkit.standin
bot = botkit.bot

OWNER = User("100", "owner")
UPLOADER = User("200000000000000002", "bob")


async def pending(services: Services, seed: int, rating: Rating = Rating.SFW) -> Image:
    return await store_image(
        services, seed, trusted=False, uploader=UPLOADER, title=f"n{seed}", rating=rating
    )


async def choose(standin: DiscordStandIn, channel: Any) -> str:
    inter = await standin.invoke_command(
        "announce channel", {"channel": channel}, user=standin.owner
    )
    reply = await standin.wait_for_reply(inter)
    assert reply.ephemeral
    return reply.data["content"]


def announced(standin: DiscordStandIn, channel: Any) -> list[SentMessage]:
    """The announcements in `channel` (not the commands' ephemeral answers)."""
    return [m for m in standin.sent_messages(channel) if not m.ephemeral]


async def next_announcement(standin: DiscordStandIn, channel: Any, index: int = 0) -> SentMessage:
    found = await standin.wait_until(
        lambda: announced(standin, channel)[index:], what=f"announcement {index} in {channel}"
    )
    return found[0]


# ---- Discord -----------------------------------------------------------------------------


async def test_an_approved_image_is_announced_with_its_uploader_and_tags(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    text = await choose(standin, standin.channel)
    assert (
        text
        == f"Newly approved images will be posted in <#{standin.channel.id}>.{NOT_AGE_RESTRICTED}"
    )
    image = await pending(services, 1)
    await services.images.approve(image.id, OWNER)
    post = await next_announcement(standin, standin.channel)
    embed = post.embeds[0]
    assert embed["title"] == "New: n1"
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Uploaded by"] == f"<@{UPLOADER.id}> (bob)"
    assert fields["Tags"] == "cat"
    assert post.files[0].data == await services.images.read_bytes(image)
    assert set(post.custom_ids()) == {f"img:like:{image.id}", f"img:report:{image.id}"}
    # Delivered again (a crash before the acknowledgement): nothing is posted twice.
    # (load_extension imports cogs.announce afresh: the class is not this module's.)
    cog = bot.get_cog("Announce")
    assert cog is not None
    await cog.on_image_decided(await services.images.get(image.id), True, OWNER)
    assert len(announced(standin, standin.channel)) == 1


async def test_nsfw_images_are_announced_only_in_an_age_restricted_channel(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    await choose(standin, standin.channel)
    spicy = await pending(services, 1, Rating.NSFW)
    plain = await pending(services, 2)
    await services.images.approve(spicy.id, OWNER)
    await services.images.approve(plain.id, OWNER)
    # Entries are delivered in order: once the sfw one is posted, the nsfw one was handled.
    post = await next_announcement(standin, standin.channel)
    assert post.embeds[0]["title"] == "New: n2"
    assert len(announced(standin, standin.channel)) == 1

    text = await choose(standin, standin.nsfw_channel)
    assert text == f"Newly approved images will be posted in <#{standin.nsfw_channel.id}>."
    spicier = await pending(services, 3, Rating.NSFW)
    await services.images.approve(spicier.id, OWNER)
    post = await next_announcement(standin, standin.nsfw_channel)
    assert post.embeds[0]["title"] == "New: n3"


async def test_rejected_images_and_announce_off_post_nothing(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    await choose(standin, standin.channel)
    first = await pending(services, 1)
    await services.images.reject(first.id, OWNER)
    inter = await standin.invoke_command("announce off", user=standin.owner)
    assert (await standin.wait_for_reply(inter)).data["content"] == "Announcements are off here."
    second = await pending(services, 2)
    await services.images.approve(second.id, OWNER)
    # Every entry is handled once the consumer's durable cursor has passed them.
    last = (await services.storage.repo.outbox_after(0))[-1].seq
    await standin.wait_until(
        lambda: services.outbox.delivered >= 4, what="the four entries delivered"
    )
    assert await services.storage.repo.outbox_cursor("bot") == last
    assert announced(standin, standin.channel) == []


async def test_an_upload_approved_at_once_is_announced_once_and_its_owner_not_told(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    await choose(standin, standin.channel)
    owner = User(str(standin.owner.id), "owner")
    image = await store_image(services, 1, uploader=owner, title="mine")  # trusted
    post = await next_announcement(standin, standin.channel)
    assert post.embeds[0]["title"] == "New: mine"
    entries = await services.storage.repo.outbox_after(0)
    assert [(e.kind, e.image_id, e.payload) for e in entries] == [
        ("image_decided", image.id, {"approved": True, "by": [owner.id, owner.name]})
    ]
    await standin.wait_until(lambda: services.outbox.delivered >= 1, what="the entry handled")
    assert len(announced(standin, standin.channel)) == 1
    # The moderation cog saw the decision too, but tells nobody what they did themselves.
    assert standin.dms(standin.owner) == []


async def test_a_bulk_import_is_not_announced(
    standin: DiscordStandIn, bot: GazouBot, services: Services, tmp_path: Path
) -> None:
    await choose(standin, standin.channel)
    folder = tmp_path / "import"
    folder.mkdir()
    for n in range(3):
        (folder / f"{n}.png").write_bytes(make_image(seed=50 + n, size=(40, 30)))
    summary = await import_folder(services.images, folder, IngestMetadata(rating=Rating.SFW))
    assert summary.imported == 3
    assert await services.storage.repo.outbox_after(0) == []
    later = await pending(services, 9)
    await services.images.approve(later.id, OWNER)
    # Entries are delivered in order: once the approval is posted, nothing else came.
    post = await next_announcement(standin, standin.channel)
    assert post.embeds[0]["title"] == "New: n9"
    await standin.wait_until(lambda: services.outbox.delivered >= 2, what="both entries handled")
    assert len(announced(standin, standin.channel)) == 1


async def test_only_owners_pick_the_channel(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    inter = await standin.invoke_command("announce channel", {"channel": standin.channel})
    reply = await standin.wait_for_reply(inter)
    assert reply.ephemeral and reply.data["content"] == "Only the bot's owners can do that."


# ---- webhooks ------------------------------------------------------------------------------


class Receiver:
    """A loopback webhook: records each POST's JSON and answers from a script."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.script: list[tuple[int, dict[str, Any]]] = []
        self.gate: asyncio.Event | None = None
        self.arrived = asyncio.Event()
        app = web.Application()
        app.router.add_post("/hooks/{name}", self.handle)
        self.server = TestServer(app, host="127.0.0.1")

    async def handle(self, request: web.Request) -> web.Response:
        self.posts.append((request.match_info["name"], await request.json()))
        self.arrived.set()
        if self.gate is not None:
            await self.gate.wait()
        status, body = self.script.pop(0) if self.script else (204, {})
        if status == 204:
            return web.Response(status=204)
        return web.json_response(body, status=status)

    def url(self, name: str) -> str:
        return str(self.server.make_url(f"/hooks/{name}"))

    def images(self, name: str | None = None) -> list[str]:
        """The image id of each post (to `name`), in order."""
        return [
            body["embeds"][0]["footer"]["text"].split(" · ")[0]
            for to, body in self.posts
            if name is None or to == name
        ]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.server.start_server()
    try:
        yield r
    finally:
        if r.gate is not None:
            r.gate.set()
        await r.server.close()


@contextlib.asynccontextmanager
async def delivering(services: Services, urls: list[str], **kw: Any) -> AsyncIterator[None]:
    """deliver_webhooks running in the background over `services`' store."""
    async with aiohttp.ClientSession() as session:
        announcer = WebhookAnnouncer(
            services.storage.repo,
            urls,
            AiohttpPoster(session),
            "http://gazou.test",
            backoff=0.01,
            **kw,
        )
        task = asyncio.create_task(
            deliver_webhooks(
                services.storage.repo, announcer, wake=services.events, poll_seconds=0.05
            )
        )
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def until(predicate: Any, what: str) -> None:
    """Wait (bounded: 10 s) for `predicate()`."""
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def test_one_embed_per_approved_image(tmp_path: Path, receiver: Receiver) -> None:
    async with open_services(make_settings(tmp_path / "data")) as services:
        async with delivering(services, [receiver.url("a")]):
            first, second = await pending(services, 1), await pending(services, 2)
            rejected = await pending(services, 3)
            await services.images.approve(first.id, OWNER)
            await services.images.reject(rejected.id, OWNER)
            await services.images.approve(second.id, OWNER)
            await until(lambda: len(receiver.posts) >= 2, "two posts")
            # A trusted upload (an owner's): approved at once, announced as well.
            owners = await store_image(services, 4, title="n4")
            third = await pending(services, 5)
            await services.images.approve(third.id, OWNER)
            await until(lambda: len(receiver.posts) >= 4, "four posts")
    assert receiver.images() == [first.id, second.id, owners.id, third.id]
    embed = receiver.posts[0][1]["embeds"][0]
    assert embed["title"] == "n1"
    assert embed["url"] == f"http://gazou.test/image/{first.id}"
    assert embed["image"] == {"url": f"http://gazou.test/image/{first.id}"}
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert (fields["Uploaded by"], fields["Tags"]) == ("bob", "cat")
    assert receiver.posts[0][1]["allowed_mentions"] == {"parse": []}


async def test_retried_after_a_500_and_a_429(tmp_path: Path, receiver: Receiver) -> None:
    receiver.script = [(500, {}), (429, {"retry_after": 0.05, "global": False})]
    async with open_services(make_settings(tmp_path / "data")) as services:
        async with delivering(services, [receiver.url("a")]):
            image = await pending(services, 1)
            await services.images.approve(image.id, OWNER)
            await until(lambda: len(receiver.posts) >= 3, "three attempts")
    assert receiver.images() == [image.id] * 3
    assert receiver.script == []  # the 500, the 429, then taken


async def test_a_failing_second_url_does_not_repeat_the_first(
    tmp_path: Path, receiver: Receiver
) -> None:
    # b fails its only attempt of the first delivery; the outbox delivers the entry again.
    async with open_services(make_settings(tmp_path / "data")) as services:
        receiver.script = []
        async with delivering(services, [receiver.url("a"), receiver.url("b")], attempts=1):
            receiver.script = [(204, {}), (503, {})]
            image = await pending(services, 1)
            await services.images.approve(image.id, OWNER)
            await until(lambda: len(receiver.images("b")) >= 2, "b retried")
    assert receiver.images("a") == [image.id]
    assert receiver.images("b") == [image.id, image.id]


async def test_a_stuck_webhook_never_holds_up_an_upload(tmp_path: Path, receiver: Receiver) -> None:
    receiver.gate = asyncio.Event()
    async with open_services(make_settings(tmp_path / "data")) as services:
        async with delivering(services, [receiver.url("a")]):
            first = await pending(services, 1)
            await services.images.approve(first.id, OWNER)
            await asyncio.wait_for(receiver.arrived.wait(), 10)
            # The webhook holds its answer; uploads and decisions go on regardless.
            second = await asyncio.wait_for(pending(services, 2), 30)
            await asyncio.wait_for(services.images.approve(second.id, OWNER), 30)
            receiver.gate.set()
            await until(lambda: len(receiver.posts) >= 2, "both posts")
    assert receiver.images() == [first.id, second.id]


async def test_exactly_once_across_restarts_and_processes(
    tmp_path: Path, receiver: Receiver
) -> None:
    settings = make_settings(tmp_path / "data")
    url = receiver.url("a")
    async with open_services(settings) as one, open_services(settings) as two:
        first = await pending(one, 1)
        async with delivering(one, [url]):
            await one.images.approve(first.id, OWNER)
            await until(lambda: len(receiver.posts) >= 1, "the first post")
        # A restart: the durable cursor has passed the first approval.
        second = await pending(two, 2)
        async with delivering(one, [url]), delivering(two, [url]):
            await two.images.approve(second.id, OWNER)
            await until(lambda: len(receiver.posts) >= 2, "the second post")
            third = await pending(one, 3)
            await one.images.approve(third.id, OWNER)
            await until(lambda: len(receiver.posts) >= 3, "the third post")
            # A redelivered entry (a crash before its acknowledgement) posts nothing again.
            async with aiohttp.ClientSession() as session:
                again = WebhookAnnouncer(one.storage.repo, [url], AiohttpPoster(session), "x")
                await again.on_image_decided(await one.images.get(first.id), True, OWNER)
        assert await one.storage.repo.outbox_cursor("webhooks") > 0
    assert receiver.images() == [first.id, second.id, third.id]
