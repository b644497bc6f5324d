"""Pending uploads reach the owners with Approve / Reject buttons; the uploader hears
the outcome. Real discord.py against the Discord stand-in, real ingest."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from tests import botkit
from tests.botkit import EXTRA_OWNER_ID, bot_settings, embed_image_id, store_image
from tests.discord_standin import DiscordStandIn, SentMessage, connected_bot

# isort: split
from cogs.client import GazouBot
from cogs.moderation import PENDING_CONTENT
from core.errors import NotFound
from core.models import Image, Rating, User
from core.services import Services, open_services
from tests.conftest import ALL_BACKENDS

# The Discord smoke test of PostgreSQL: moderation is the bot's heaviest use of the
# store (status changes, kv with expiry, the pending backlog).
BACKENDS = ALL_BACKENDS

settings = botkit.settings
services = botkit.services
standin = botkit.standin
bot = botkit.bot


async def http_style_upload(
    services: Services, standin: DiscordStandIn, seed: int = 1, rating: Rating = Rating.SFW
) -> Image:
    """A pending upload as the HTTP API makes it: untrusted, by a token owner whose id
    is the Discord id it was issued to."""
    uploader = User(id=str(standin.user.id), name="alice")
    return await store_image(
        services, seed, trusted=False, uploader=uploader, title="Sunset", rating=rating
    )


def button(message: SentMessage, action: str) -> str:
    return next(i for i in message.custom_ids() if i.startswith(f"mod:{action}:"))


async def test_pending_upload_is_dmed_to_every_owner_with_the_image(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    image = await http_style_upload(services, standin)
    for owner in (standin.owner.id, EXTRA_OWNER_ID):
        dm = await standin.wait_for_dm(owner)
        assert dm.content == PENDING_CONTENT
        assert dm.embeds[0]["title"] == "Pending: Sunset"
        assert dm.files[0].data == await services.images.read_bytes(image)
        assert set(dm.custom_ids()) == {f"mod:approve:{image.id}", f"mod:reject:{image.id}"}


async def test_approve_makes_the_image_public_and_dms_the_uploader(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    image = await http_style_upload(services, standin)
    dm = await standin.wait_for_dm(standin.owner)
    click = await standin.click(dm, button(dm, "approve"))
    assert (await standin.wait_for_reply(click)).type == 6
    told = await standin.wait_for_dm(standin.user)
    # PUBLIC_URL is on loopback here: a link would lead nowhere, so there is none.
    assert told.content == (
        f"Your upload “Sunset” (id `{image.id}`) was approved and is now in the collection."
    )
    approved = await services.images.get(image.id)
    assert approved.approver == User(str(standin.owner.id), "owner")


async def test_approval_dm_links_the_image_when_public_url_is_public(
    standin: DiscordStandIn, tmp_path: Path
) -> None:
    settings = bot_settings(tmp_path / "data", PUBLIC_URL="https://img.example.org")
    async with open_services(settings) as services:
        async with connected_bot(standin, GazouBot(services, guild_ready_timeout=0.05)):
            image = await http_style_upload(services, standin)
            dm = await standin.wait_for_dm(standin.owner)
            await standin.click(dm, button(dm, "approve"))
            told = await standin.wait_for_dm(standin.user)
    assert told.content == (
        f"Your upload “Sunset” (id `{image.id}`) was approved and is now in the "
        f"collection: https://img.example.org/image/{image.id}"
    )


async def test_decision_is_shown_on_every_owners_copy(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    await http_style_upload(services, standin)
    mine = await standin.wait_for_dm(standin.owner)
    other = await standin.wait_for_dm(EXTRA_OWNER_ID)
    await standin.click(mine, button(mine, "reject"))
    await standin.wait_until(lambda: mine.edits and other.edits, what="both copies edited")
    for message in (mine, other):
        assert message.content == "Rejected by owner"
        assert message.embeds[0]["title"] == "Rejected: Sunset"
        assert message.components == []
        # A rejected image is shown to nobody any more, the owners included.
        assert "image" not in message.embeds[0] and message["attachments"] == []


async def test_approved_review_post_is_titled_approved_and_keeps_the_image(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    image = await http_style_upload(services, standin)
    dm = await standin.wait_for_dm(standin.owner)
    await standin.click(dm, button(dm, "approve"))
    await standin.wait_until(lambda: dm.edits, what="the review post edited")
    [embed] = dm.embeds
    assert embed["title"] == "Approved: Sunset"
    assert embed["image"]["url"] == f"attachment://{image.filename}"
    assert [a["filename"] for a in dm["attachments"]] == [image.filename]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Uploaded by"] == f"<@{standin.user.id}> (alice)"


async def test_reject_keeps_the_image_private_and_tells_the_uploader(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    image = await http_style_upload(services, standin)
    dm = await standin.wait_for_dm(standin.owner)
    await standin.click(dm, button(dm, "reject"))
    told = await standin.wait_for_dm(standin.user)
    assert told.content == f"Your upload “Sunset” (id `{image.id}`) was rejected by the owners."
    with pytest.raises(NotFound):
        await services.images.get(image.id, include_pending=True)


async def test_uploader_with_closed_dms_is_skipped_quietly(
    standin: DiscordStandIn, bot: GazouBot, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    image = await http_style_upload(services, standin)
    standin.close_dms(standin.user)
    dm = await standin.wait_for_dm(standin.owner)
    await standin.click(dm, button(dm, "approve"))
    await standin.wait_until(lambda: dm.edits, what="the review post edited")
    await services.outbox.catch_up()  # waits for the delivery in hand (the DM) to end
    assert (await services.images.get(image.id)).status == "approved"
    assert standin.requests_to("POST", r"/channels/\d+/messages")[-1].status == 403
    assert "cannot DM user" in caplog.text and "Traceback" not in caplog.text


async def test_deciding_an_already_decided_upload_says_so(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    image = await http_style_upload(services, standin)
    dm = await standin.wait_for_dm(standin.owner)
    await services.images.approve(image.id, User("100", "someone"))
    reply = await standin.wait_for_reply(await standin.click(dm, button(dm, "reject")))
    assert reply.ephemeral and reply.content == "This upload was already approved by someone."
    assert (await services.images.get(image.id)).status == "approved"


async def test_nsfw_upload_is_described_but_not_shown_in_dms(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    await http_style_upload(services, standin, rating=Rating.NSFW)
    dm = await standin.wait_for_dm(standin.owner)
    assert dm.files == []
    assert "image" not in dm.embeds[0]
    assert any(f["value"].startswith("Not shown: rated nsfw") for f in dm.embeds[0]["fields"])


async def test_moderation_channel_gets_the_post_instead_of_dms(
    standin: DiscordStandIn, tmp_path: Path
) -> None:
    settings = bot_settings(tmp_path / "data", MODERATION_CHANNEL_ID=str(standin.nsfw_channel.id))
    async with open_services(settings) as services:
        async with connected_bot(standin, GazouBot(services)):
            image = await http_style_upload(services, standin, rating=Rating.NSFW)
            post = await standin.wait_for_message(standin.nsfw_channel)
            assert post.files[0].data == await services.images.read_bytes(image)
            assert standin.dms(standin.owner) == []


async def test_members_cannot_decide_uploads_in_the_moderation_channel(
    standin: DiscordStandIn, tmp_path: Path
) -> None:
    settings = bot_settings(tmp_path / "data", MODERATION_CHANNEL_ID=str(standin.channel.id))
    async with open_services(settings) as services:
        async with connected_bot(standin, GazouBot(services)):
            image = await http_style_upload(services, standin)
            post = await standin.wait_for_message(standin.channel)
            click = await standin.click(post, f"mod:approve:{image.id}", user=standin.user)
            reply = await standin.wait_for_reply(click)
            assert reply.ephemeral and reply.content == "Only the bot's owners can do that."
            assert (await services.images.get(image.id, include_pending=True)).status == "pending"


def is_digest(message: SentMessage) -> bool:
    return "mod:queue:0" in message.custom_ids()


async def test_past_five_uploads_a_minute_owners_get_one_digest_instead(
    standin: DiscordStandIn, bot: GazouBot, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.modules["cogs.moderation"], "DIGEST_DELAY", 0.0)  # 10 s
    for seed in range(8):
        await http_style_upload(services, standin, seed)
    for owner in (standin.owner.id, EXTRA_OWNER_ID):
        digest = await standin.wait_until(
            lambda o=owner: next((m for m in standin.dms(o) if is_digest(m)), None),
            what="the digest",
        )
        await standin.wait_until(
            lambda d=digest: d.content.startswith("**8 uploads are waiting for review.**"),
            what="the digest counting all eight",
        )
        dms = standin.dms(owner)
        assert [m.content for m in dms].count(PENDING_CONTENT) == 5
        assert len(dms) == 6  # five reviews, one digest (edited, not sent again)


async def test_the_digest_walks_every_pending_upload_oldest_first(
    standin: DiscordStandIn, bot: GazouBot, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.modules["cogs.moderation"], "DIGEST_DELAY", 0.0)
    uploads = [await http_style_upload(services, standin, seed) for seed in range(7)]
    digest = await standin.wait_until(
        lambda: next((m for m in standin.dms(standin.owner) if is_digest(m)), None)
    )
    shown = []
    click = await standin.click(digest, "mod:queue:0")
    for n in range(len(uploads)):
        message = await standin.wait_for_followup(click)
        assert message.content == f"Waiting for review: {n + 1} of 7"
        assert message.files and message.embeds[0]["title"] == "Pending: Sunset"
        shown.append(embed_image_id(message))
        click = await standin.click(message, f"mod:queue:{n + 1}")
    assert shown == [u.id for u in uploads]
    end = await standin.wait_for_reply(click)
    assert end.ephemeral and end.content.startswith("That was the last one; 7 uploads wait")


async def test_an_upload_reviewed_from_the_queue_is_decided_there(
    standin: DiscordStandIn, bot: GazouBot, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.modules["cogs.moderation"], "DIGEST_DELAY", 0.0)
    uploads = [await http_style_upload(services, standin, seed) for seed in range(6)]
    digest = await standin.wait_until(
        lambda: next((m for m in standin.dms(standin.owner) if is_digest(m)), None)
    )
    message = await standin.wait_for_followup(await standin.click(digest, "mod:queue:0"))
    for n in range(1, 6):  # skip to the sixth, the one no review post was sent for
        message = await standin.wait_for_followup(await standin.click(message, f"mod:queue:{n}"))
    assert embed_image_id(message) == uploads[5].id
    await standin.click(message, button(message, "approve"))
    await standin.wait_until(
        lambda: message.content == "Approved by owner", what="the queue's post edited"
    )
    assert message.components == [] and message.embeds[0]["title"] == "Approved: Sunset"
    assert (await services.images.get(uploads[5].id)).status == "approved"
    assert (await standin.wait_for_dm(standin.user)).content.startswith("Your upload")


async def test_members_cannot_walk_the_queue(
    standin: DiscordStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = bot_settings(tmp_path / "data", MODERATION_CHANNEL_ID=str(standin.channel.id))
    async with open_services(settings) as services:
        async with connected_bot(standin, GazouBot(services)):
            monkeypatch.setattr(sys.modules["cogs.moderation"], "DIGEST_DELAY", 0.0)
            for seed in range(6):
                await http_style_upload(services, standin, seed)
            digest = await standin.wait_until(
                lambda: next(
                    (m for m in standin.sent_messages(standin.channel) if is_digest(m)), None
                )
            )
            click = await standin.click(digest, "mod:queue:0", user=standin.user)
            reply = await standin.wait_for_reply(click)
            assert reply.ephemeral and reply.content == "Only the bot's owners can do that."
