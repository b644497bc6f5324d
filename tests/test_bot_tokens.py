"""Token requests decided by the owners in DMs, and the owner-only token commands,
through the real discord.py against the Discord stand-in."""

from __future__ import annotations

import copy
import logging
import re
from pathlib import Path

import pytest

from tests import botkit
from tests.botkit import EXTRA_OWNER_ID, bot_settings
from tests.discord_standin import DiscordStandIn, SentMessage, UserSpec, connected_bot

# isort: split
from cogs.client import GazouBot
from core.errors import Unauthorized
from core.models import User
from core.services import Services, open_services

settings = botkit.settings
services = botkit.services
standin = botkit.standin
bot = botkit.bot


def secret_in(text: str) -> str:
    """The token inside a ``` block."""
    found = re.search(r"```\n([0-9A-Za-z]+)\n```", text)
    assert found, text
    return found.group(1)


async def request_token(standin: DiscordStandIn, purpose: str = "my art bot") -> str:
    """/token request as standin.user; returns the bot's (ephemeral) answer."""
    inter = await standin.invoke_command("token request", {"purpose": purpose})
    reply = await standin.wait_for_reply(inter)
    assert reply.type == 5 and reply.ephemeral
    followup = await standin.wait_for_followup(inter)
    assert followup.ephemeral
    return followup.content


def decision_button(dm: SentMessage, action: str) -> str:
    return next(i for i in dm.custom_ids() if i.startswith(f"token:{action}:"))


async def test_token_request_is_dmed_to_every_owner_with_buttons(
    standin: DiscordStandIn, bot: GazouBot
) -> None:
    answer = await request_token(standin)
    assert answer.startswith("Your request was sent to the owners.")
    for owner in (standin.owner.id, EXTRA_OWNER_ID):
        dm = await standin.wait_for_dm(owner)
        assert dm.embeds[0]["description"] == "my art bot"
        assert {i.split(":")[1] for i in dm.custom_ids()} == {"approve", "deny"}


async def test_approved_request_dms_the_token_to_the_requester_once(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    await request_token(standin)
    dm = await standin.wait_for_dm(standin.owner)
    click = await standin.click(dm, decision_button(dm, "approve"))
    assert (await standin.wait_for_reply(click)).type == 6
    delivered = await standin.wait_for_dm(standin.user)
    token = await services.tokens.verify(secret_in(delivered.content))
    assert token.owner_id == str(standin.user.id)
    assert token.scopes == services.settings.default_token_scopes
    assert token.purpose == "my art bot"
    assert len(standin.dms(standin.user)) == 1


async def test_decision_is_shown_on_every_owners_copy(
    standin: DiscordStandIn, bot: GazouBot
) -> None:
    await request_token(standin)
    mine = await standin.wait_for_dm(standin.owner)
    other = await standin.wait_for_dm(EXTRA_OWNER_ID)
    await standin.click(mine, decision_button(mine, "approve"))
    await standin.wait_until(lambda: other.edits, what="the other owner's copy edited")
    for message in (mine, other):
        status = {f["name"]: f["value"] for f in message.embeds[0]["fields"]}["Status"]
        assert status == "approved by owner"  # the name, not the raw user id
        assert message.components == []


async def test_denied_request_tells_the_requester(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    await request_token(standin)
    dm = await standin.wait_for_dm(standin.owner)
    await standin.click(dm, decision_button(dm, "deny"))
    told = await standin.wait_for_dm(standin.user)
    assert told.content == "Your API token request (my art bot) was denied by the owners."
    assert await services.tokens.list_tokens() == []


async def test_second_pending_request_is_refused(standin: DiscordStandIn, bot: GazouBot) -> None:
    await request_token(standin)
    answer = await request_token(standin, "another")
    assert answer == "You already have a token request waiting for an owner."


async def test_approving_twice_says_who_decided_first(
    standin: DiscordStandIn, bot: GazouBot
) -> None:
    await request_token(standin)
    mine = await standin.wait_for_dm(standin.owner)
    other = await standin.wait_for_dm(EXTRA_OWNER_ID)
    approve = decision_button(other, "approve")
    stale = copy.deepcopy(other["components"])
    await standin.click(mine, decision_button(mine, "approve"))
    await standin.wait_until(lambda: other.edits, what="the other owner's copy edited")
    other["components"] = stale  # the second owner clicks before their copy refreshed
    late = await standin.click(other, approve)
    reply = await standin.wait_for_followup(late)
    assert reply.ephemeral
    assert reply.content == "This request was already approved by owner"
    assert len(standin.dms(standin.user)) == 1


async def test_requester_with_closed_dms_gets_no_live_token(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    await request_token(standin)
    standin.close_dms(standin.user)
    dm = await standin.wait_for_dm(standin.owner)
    click = await standin.click(dm, decision_button(dm, "approve"))
    note = await standin.wait_for_followup(click)
    assert note.ephemeral and "DMs are closed" in note.content
    [token] = await services.tokens.list_tokens()
    assert token.revoked_at is not None


async def test_request_when_no_owner_accepts_dms_is_withdrawn(
    standin: DiscordStandIn, bot: GazouBot
) -> None:
    standin.close_dms(standin.owner)
    standin.close_dms(EXTRA_OWNER_ID)
    answer = await request_token(standin)
    assert answer.startswith("No owner can be reached by DM right now")
    standin.close_dms(standin.owner, closed=False)
    assert (await request_token(standin)).startswith("Your request was sent")


async def test_owner_issue_dms_the_token_and_answers_ephemerally(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    inter = await standin.invoke_command(
        "token issue",
        {"user": standin.user, "scopes": "image:upload", "expires": 30, "purpose": "ci"},
        user=standin.owner,
    )
    answer = await standin.wait_for_followup(inter)
    assert answer.ephemeral and "sent to them by DM" in answer.content
    token = await services.tokens.verify(
        secret_in((await standin.wait_for_dm(standin.user)).content)
    )
    assert token.scopes == ("image:upload",)
    assert token.expires_at is not None
    assert secret_in((await standin.wait_for_dm(standin.user)).content) not in answer.content


async def test_owner_from_owner_ids_may_issue(standin: DiscordStandIn, bot: GazouBot) -> None:
    inter = await standin.invoke_command(
        "token issue", {"user": standin.user, "scopes": "image:list"}, user=EXTRA_OWNER_ID
    )
    answer = await standin.wait_for_followup(inter)
    assert "Issued token" in answer.content


@pytest.mark.parametrize(
    "command, options",
    [
        ("token issue", {"scopes": "image:upload"}),
        ("token revoke", {"id": "0123456789"}),
        ("token list", {}),
    ],
)
async def test_owner_commands_are_refused_to_members(
    standin: DiscordStandIn, bot: GazouBot, services: Services, command: str, options: dict
) -> None:
    if command == "token issue":
        options = {"user": standin.user, **options}
    reply = await standin.wait_for_reply(await standin.invoke_command(command, options))
    assert reply.type == 4 and reply.ephemeral
    assert reply.content == "Only the bot's owners can do that."
    assert await services.tokens.list_tokens() == []


async def test_owner_revokes_a_token(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    issued = await services.tokens.issue(User("1", "someone"), issued_by="test")
    reply = await standin.wait_for_reply(
        await standin.invoke_command(
            "token revoke", {"id": issued.token.id[:8]}, user=standin.owner
        )
    )
    assert reply.ephemeral
    assert reply.content == f"Revoked token `{issued.token.id}` of someone."
    with pytest.raises(Unauthorized):
        await services.tokens.verify(issued.secret)


async def test_owner_lists_tokens_without_secrets(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    issued = await services.tokens.issue(User("1", "someone"), purpose="gallery", issued_by="test")
    reply = await standin.wait_for_reply(
        await standin.invoke_command("token list", {}, user=standin.owner)
    )
    assert reply.ephemeral
    listing = reply.data["embeds"][0]["description"]
    assert f"`{issued.token.id[:8]}` **someone** active" in listing
    assert "gallery" in listing and issued.secret not in listing


async def test_secret_never_reaches_a_log_or_a_channel(
    standin: DiscordStandIn, bot: GazouBot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await request_token(standin)
    dm = await standin.wait_for_dm(standin.owner)
    await standin.click(dm, decision_button(dm, "approve"))
    secret = secret_in((await standin.wait_for_dm(standin.user)).content)
    public = [
        m
        for m in standin.sent_messages()
        if not m.ephemeral and m.channel_id != standin.dm_channel_id(standin.user)
    ]
    assert all(secret not in str(dict(m)) for m in public)
    assert secret not in caplog.text


async def test_issue_to_a_member_with_closed_dms_shows_the_owner_the_secret_ephemerally(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    standin.close_dms(standin.user)
    inter = await standin.invoke_command(
        "token issue", {"user": standin.user, "scopes": "image:list"}, user=standin.owner
    )
    answer = await standin.wait_for_followup(inter)
    assert answer.ephemeral and "doesn't accept DMs" in answer.content
    token = await services.tokens.verify(secret_in(answer.content))
    assert token.owner_id == str(standin.user.id)


async def test_team_admins_and_developers_receive_requests(tmp_path: Path) -> None:
    lead, dev, viewer = (
        UserSpec(1_190_000_000_000_000_100 + n, name)
        for n, name in enumerate(("lead", "dev", "viewer"))
    )
    standin = DiscordStandIn(team_members=[lead, (dev, "developer"), (viewer, "read_only")])
    async with standin, open_services(bot_settings(tmp_path / "data", OWNER_IDS="")) as services:
        async with connected_bot(standin, GazouBot(services)):
            await request_token(standin)
            await standin.wait_for_dm(lead)
            await standin.wait_for_dm(dev)
            assert standin.dms(viewer) == []
            assert standin.dms(standin.owner) == []
