"""Reports: the Report button on image messages, each reason, one report per member,
the owners' post with Re-rate / Remove / Dismiss, and the store's report contract on
every backend. Real discord.py against the Discord stand-in, real ingest."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests import botkit
from tests.botkit import EXTRA_OWNER_ID, bot_settings, store_image
from tests.discord_standin import DiscordStandIn, SentMessage, connected_bot

# isort: split
from api.app import create_app
from cogs.client import GazouBot
from cogs.reports import ASK_REASON, REPORT_CONTENT
from core.contracts import image_key, thumbnail_key
from core.errors import Conflict, InvalidInput, NotFound
from core.models import Filters, Image, Rating, ReportReason, Status, User
from core.services import Services, open_services
from tests.conftest import ALL_BACKENDS

BACKENDS = ALL_BACKENDS

settings = botkit.settings
services = botkit.services
standin = botkit.standin
bot = botkit.bot

MEMBER = User("200000000000000001", "member")
OWNER = User("100", "owner")


async def random_message(standin: DiscordStandIn) -> SentMessage:
    inter = await standin.invoke_command("random")
    assert (await standin.wait_for_reply(inter)).type == 5
    return await standin.wait_for_followup(inter)


async def report_through_discord(
    standin: DiscordStandIn, message: SentMessage, image: Image, reason: str, text: str = ""
) -> str:
    """Click Report, choose `reason` (and fill the modal for other); the member's answer."""
    click = await standin.click(message, f"img:report:{image.id}")
    ask = await standin.wait_for_reply(click)
    assert ask.type == 4 and ask.ephemeral and ask.data["content"] == ASK_REASON
    choice = await standin.select(ask.message, f"report:reason:{image.id}", [reason])
    answer = await standin.wait_for_reply(choice)
    if reason != "other":
        assert answer.type == 7  # the question is edited into the thanks
        return answer.data["content"]
    assert answer.type == 9
    [row] = answer.data["components"]
    [field] = row["components"]
    submit = await standin.submit_modal(choice, {field["custom_id"]: text})
    done = await standin.wait_for_reply(submit)
    assert done.ephemeral
    return done.data["content"]


# ---- the store's contract (both backends) ---------------------------------------------


async def test_a_member_reports_an_image_once(services: Services) -> None:
    image = await store_image(services, 1)
    repo = services.storage.repo
    first = await repo.add_report(image.id, MEMBER, "duplicate", "")
    assert first is not None and first.reason is ReportReason.DUPLICATE
    assert await repo.add_report(image.id, MEMBER, "other", "again") is None
    assert [r.id for r in await repo.reports_of(image.id)] == [first.id]


async def test_a_report_is_written_with_its_outbox_entry(services: Services) -> None:
    image = await store_image(services, 1)
    repo = services.storage.repo
    before = await repo.outbox_after(0)
    report = await repo.add_report(image.id, MEMBER, "wrong_rating", "")
    assert report is not None
    [entry] = [e for e in await repo.outbox_after(0) if e not in before]
    assert (entry.kind, entry.image_id, entry.payload) == (
        "image_reported",
        image.id,
        {"report": report.id},
    )


async def test_resolving_marks_only_open_reports_and_is_idempotent(services: Services) -> None:
    image = await store_image(services, 1)
    repo = services.storage.repo
    await repo.add_report(image.id, MEMBER, "duplicate", "")
    await repo.add_report(image.id, User("300", "third"), "other", "meh")
    assert await repo.resolve_reports(image.id, "dismissed", OWNER) == 2
    assert await repo.resolve_reports(image.id, "removed", OWNER) == 0
    reports = await repo.reports_of(image.id)
    assert {(r.action, r.handled_by) for r in reports} == {("dismissed", OWNER)}


async def test_set_rating_moves_the_image_between_rating_pools(services: Services) -> None:
    image = await store_image(services, 1, rating=Rating.SFW)
    repo = services.storage.repo
    assert await repo.set_rating(image.id, Rating.NSFW) is Rating.SFW
    assert (await repo.pool_size("rating:sfw"), await repo.pool_size("rating:nsfw")) == (0, 1)
    sfw = await services.images.random(Filters(ratings=frozenset({Rating.SFW})), 5)
    nsfw = await services.images.random(Filters(ratings=frozenset({Rating.NSFW})), 5)
    assert (sfw, [i.id for i in nsfw]) == ([], [image.id])
    assert await repo.set_rating("00000000-0000-4000-8000-000000000000", Rating.SFW) is None
    assert await repo.integrity_check() == []


# ---- the service ----------------------------------------------------------------------


@pytest.mark.backends("sqlite")
async def test_service_refuses_bad_reports(services: Services) -> None:
    image = await store_image(services, 1)
    reports = services.reports
    with pytest.raises(InvalidInput):
        await reports.report(image.id, MEMBER, "boring")
    with pytest.raises(InvalidInput):
        await reports.report(image.id, MEMBER, "other", "   ")
    with pytest.raises(InvalidInput):
        await reports.report(image.id, MEMBER, "other", "x" * 501)
    with pytest.raises(NotFound):
        await reports.report("00000000-0000-4000-8000-000000000000", MEMBER, "duplicate")
    await reports.report(image.id, MEMBER, "duplicate")
    with pytest.raises(Conflict):
        await reports.report(image.id, MEMBER, "wrong_rating")


# ---- through Discord --------------------------------------------------------------------


@pytest.mark.backends("sqlite")
@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("wrong_rating", "Wrong rating"),
        ("not_allowed", "Not allowed here"),
        ("duplicate", "Duplicate"),
        ("other", "Other"),
    ],
)
async def test_each_reason_reaches_every_owner_with_the_decisions(
    standin: DiscordStandIn, bot: GazouBot, services: Services, reason: str, label: str
) -> None:
    image = await store_image(services, 1, title="Nap")
    message = await random_message(standin)
    assert f"img:report:{image.id}" in message.custom_ids()
    text = "it is a screenshot" if reason == "other" else ""
    thanks = await report_through_discord(standin, message, image, reason, text)
    assert thanks == f"Thanks: reported as “{label}”. The owners will look at it."
    for owner in (standin.owner.id, EXTRA_OWNER_ID):
        dm = await standin.wait_for_dm(owner)
        assert dm.content == REPORT_CONTENT
        assert dm.embeds[0]["title"] == "Reported: Nap"
        fields = {f["name"]: f["value"] for f in dm.embeds[0]["fields"]}
        assert fields["Reason"] == label
        assert fields["Reported by"] == f"<@{standin.user.id}> (alice)"
        assert fields.get("Details", "") == text
        assert dm.files[0].data == await services.images.read_bytes(image)
        assert set(dm.custom_ids()) == {
            f"report:rate:{image.id}",
            f"report:remove:{image.id}",
            f"report:dismiss:{image.id}",
        }
    [report] = await services.storage.repo.reports_of(image.id)
    assert (report.reason.value, report.text, report.reporter.id) == (
        reason,
        text,
        str(standin.user.id),
    )


@pytest.mark.backends("sqlite")
async def test_a_second_report_by_the_same_member_is_refused(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    image = await store_image(services, 1)
    message = await random_message(standin)
    await report_through_discord(standin, message, image, "duplicate")
    await standin.wait_for_dm(standin.owner)
    again = await standin.click(message, f"img:report:{image.id}")
    reply = await standin.wait_for_reply(again)
    assert reply.ephemeral
    assert reply.data["content"] == "You already reported this image; the owners have it."
    assert len(await services.storage.repo.reports_of(image.id)) == 1


@pytest.mark.backends("sqlite")
async def test_report_button_sits_under_search_results(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    image = await store_image(services, 1)
    inter = await standin.invoke_command("search", {"tags": "cat"})
    await standin.wait_for_reply(inter)
    message = await standin.wait_for_followup(inter)
    assert f"img:report:{image.id}" in message.custom_ids()


async def owner_report_post(
    standin: DiscordStandIn, services: Services, image: Image
) -> tuple[SentMessage, SentMessage]:
    """A member's report, and its post in each owner's DM."""
    await services.reports.report(image.id, MEMBER, "wrong_rating")
    return await standin.wait_for_dm(standin.owner), await standin.wait_for_dm(EXTRA_OWNER_ID)


@pytest.mark.backends("sqlite")
async def test_rerate_changes_the_rating_everywhere_and_updates_every_copy(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    image = await store_image(services, 1, title="Nap")
    mine, other = await owner_report_post(standin, services, image)
    choice = await standin.select(mine, f"report:rate:{image.id}", ["nsfw"])
    assert (await standin.wait_for_reply(choice)).type == 6
    await standin.wait_until(lambda: mine.edits and other.edits, what="both copies edited")
    for message in (mine, other):
        assert message.content == "Re-rated as nsfw by owner"
        assert message.components == []
        # Now above sfw, and a DM is not age-restricted: no longer shown there.
        assert "image" not in message.embeds[0] and message["attachments"] == []
    assert (await services.images.get(image.id)).rating is Rating.NSFW
    sfw = await services.images.random(Filters(ratings=frozenset({Rating.SFW})), 5)
    assert sfw == []
    assert {r.action for r in await services.storage.repo.reports_of(image.id)} == {"rerated:nsfw"}


@pytest.mark.backends("sqlite")
async def test_a_second_decision_is_refused_and_changes_nothing(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    image = await store_image(services, 1)
    mine, other = await owner_report_post(standin, services, image)
    first = await standin.click(mine, f"report:dismiss:{image.id}")
    assert (await standin.wait_for_reply(first)).type == 6
    # The other owner's copy, clicked before its edit arrived.
    late = await standin.click(other, f"report:remove:{image.id}", user=EXTRA_OWNER_ID)
    reply = await standin.wait_for_reply(late)
    assert reply.ephemeral
    assert reply.data["content"] == "These reports were already handled: Dismissed by owner."
    assert (await services.images.get(image.id)).status is Status.APPROVED


@pytest.mark.backends("sqlite")
async def test_dismiss_leaves_the_image_alone(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    image = await store_image(services, 1)
    mine, _ = await owner_report_post(standin, services, image)
    await standin.click(mine, f"report:dismiss:{image.id}")
    await standin.wait_until(lambda: mine.edits, what="the report post edited")
    assert mine.content == "Dismissed by owner"
    assert mine.components == []
    assert (await services.images.get(image.id)).rating is Rating.SFW


@pytest.mark.backends("sqlite")
async def test_reports_go_to_the_moderation_channel_where_only_owners_decide(
    standin: DiscordStandIn, tmp_path: Path
) -> None:
    settings = bot_settings(tmp_path / "data", MODERATION_CHANNEL_ID=str(standin.channel.id))
    async with open_services(settings) as services:
        async with connected_bot(standin, GazouBot(services, guild_ready_timeout=0.05)):
            image = await store_image(services, 1)
            await services.reports.report(image.id, MEMBER, "duplicate")
            post = await standin.wait_for_message(standin.channel)
            assert post.content == REPORT_CONTENT
            # A sfw image in a sfw channel: shown.
            assert post.files[0].data == await services.images.read_bytes(image)
            refused = await standin.click(post, f"report:remove:{image.id}", user=standin.user)
            reply = await standin.wait_for_reply(refused)
            assert reply.ephemeral and reply.data["content"] == "Only the bot's owners can do that."
            assert len(await services.reports.open_reports(image.id)) == 1
            done = await standin.click(post, f"report:dismiss:{image.id}", user=standin.owner)
            assert (await standin.wait_for_reply(done)).type == 6
            await standin.wait_until(lambda: post.edits, what="the report post edited")
            assert await services.reports.open_reports(image.id) == []


async def test_remove_makes_the_image_404_on_every_dialect_and_deletes_its_files(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    image = await store_image(services, 1, title="Nap")
    routes = [
        f"/api/v1/images/{image.id}",  # nekos.moe
        f"/image/{image.id}",  # nekos.moe file (and the bot's links)
        f"/thumbnail/{image.id}",
        f"/api/image/{image.id}",  # NekosAPI
        f"/v1/image/{image.id}",
    ]
    async with TestClient(TestServer(create_app(services), host="127.0.0.1")) as client:
        for route in routes:
            assert (await client.get(route)).status == 200, route
        mine, other = await owner_report_post(standin, services, image)
        click = await standin.click(mine, f"report:remove:{image.id}")
        assert (await standin.wait_for_reply(click)).type == 6
        await standin.wait_until(lambda: mine.edits and other.edits, what="both copies edited")
        for route in routes:
            assert (await client.get(route)).status == 404, route
    blobs = services.storage.blobs
    assert not await blobs.exists(image_key(image.id, image.extension))
    assert not await blobs.exists(thumbnail_key(image.id))
    for message in (mine, other):
        assert message.content == "Removed by owner"
        assert message.components == [] and message["attachments"] == []
    assert await services.images.random(Filters(), 5) == []
