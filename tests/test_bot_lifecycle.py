"""Start-up and restarts: command sync only when the commands changed, the invite link,
and persistent buttons that keep working on a new bot over the same store."""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from tests import botkit
from tests.botkit import EXTRA_OWNER_ID, bot_settings, embed_image_id, store_image
from tests.discord_standin import DiscordStandIn, connected_bot

# isort: split
import discord

from cogs.client import GazouBot
from core.models import User
from core.services import Services, open_services

settings = botkit.settings
services = botkit.services
standin = botkit.standin

COMMANDS = {
    "random",
    "search",
    "favourites",
    "upload",
    "stats",
    "token",
    "gallery",
    "blacklist",
    "announce",
}


def new_bot(services: Services) -> GazouBot:
    return GazouBot(services, guild_ready_timeout=0.05)


async def test_commands_sync_globally_once_and_not_again_on_restart(
    standin: DiscordStandIn, services: Services
) -> None:
    async with connected_bot(standin, new_bot(services)):
        pass
    async with connected_bot(standin, new_bot(services)) as second:
        assert not second.synced_commands
    [sync] = standin.command_syncs
    assert sync.guild_id is None
    assert set(sync.names) == COMMANDS


async def test_changed_commands_are_synced_on_the_next_start(
    standin: DiscordStandIn, services: Services
) -> None:
    async with connected_bot(standin, new_bot(services)):
        pass
    key = f"discord:commands:{standin.application_id}:global"
    await services.storage.repo.kv_set(key, "the hash of an older command set")
    async with connected_bot(standin, new_bot(services)) as second:
        assert second.synced_commands
    assert len(standin.command_syncs) == 2


async def test_commands_sync_to_the_dev_guild_when_set(
    standin: DiscordStandIn, tmp_path: Path
) -> None:
    settings = bot_settings(tmp_path / "data", DEV_GUILD_ID=str(standin.guild.id))
    async with open_services(settings) as services:
        async with connected_bot(standin, new_bot(services)):
            pass
    [sync] = standin.command_syncs
    assert sync.guild_id == standin.guild.id
    assert {c["name"] for c in standin.registered_commands(standin.guild)} == COMMANDS


async def test_failed_sync_is_logged_and_the_bot_still_runs(
    standin: DiscordStandIn, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = bot_settings(tmp_path / "data", DEV_GUILD_ID="1190000000000000999")
    async with open_services(settings) as services:
        async with connected_bot(standin, new_bot(services)) as bot:
            assert not bot.synced_commands
            key = f"discord:commands:{standin.application_id}:guild:1190000000000000999"
            assert await services.storage.repo.kv_get(key) is None
    assert "could not sync slash commands" in caplog.text


async def test_invite_link_is_logged_at_start(
    standin: DiscordStandIn, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gazou.bot")
    async with connected_bot(standin, new_bot(services)):
        pass
    assert (
        f"https://discord.com/oauth2/authorize?client_id={standin.application_id}"
        "&scope=bot+applications.commands&permissions=52224"
    ) in caplog.text


async def test_token_buttons_keep_working_after_a_restart(
    standin: DiscordStandIn, services: Services
) -> None:
    async with connected_bot(standin, new_bot(services)):
        inter = await standin.invoke_command("token request", {"purpose": "after restart"})
        await standin.wait_for_followup(inter)
        dm = await standin.wait_for_dm(standin.owner)
    async with connected_bot(standin, new_bot(services)):
        approve = next(i for i in dm.custom_ids() if i.startswith("token:approve:"))
        await standin.click(dm, approve)
        delivered = await standin.wait_for_dm(standin.user)
    secret = delivered.content.split("```\n")[1].split("\n")[0]
    token = await services.tokens.verify(secret)
    assert token.purpose == "after restart"


async def test_moderation_buttons_keep_working_after_a_restart(
    standin: DiscordStandIn, services: Services
) -> None:
    async with connected_bot(standin, new_bot(services)):
        image = await store_image(
            services, 1, trusted=False, uploader=User(str(standin.user.id), "alice")
        )
        dm = await standin.wait_for_dm(standin.owner)
    async with connected_bot(standin, new_bot(services)):
        await standin.click(dm, f"mod:approve:{image.id}")
        await standin.wait_for_dm(standin.user)
    assert (await services.images.get(image.id)).status == "approved"


async def test_random_buttons_keep_working_after_a_restart(
    standin: DiscordStandIn, services: Services
) -> None:
    images = {(await store_image(services, seed)).id for seed in (1, 2)}
    async with connected_bot(standin, new_bot(services)):
        inter = await standin.invoke_command("random")
        first = await standin.wait_for_followup(inter)
    async with connected_bot(standin, new_bot(services)):
        again = next(i for i in first.custom_ids() if i.startswith("img:again:"))
        click = await standin.click(first, again)
        second = await standin.wait_for_followup(click)
        like = await standin.click(first, f"img:like:{embed_image_id(first)}")
        liked = await standin.wait_for_reply(like)
    assert {embed_image_id(first), embed_image_id(second)} == images
    assert liked.content == "You like this image (1 like)."


async def test_upload_pending_while_the_bot_was_away_is_posted_at_start(
    standin: DiscordStandIn, services: Services
) -> None:
    image = await store_image(services, 1, trusted=False)
    async with connected_bot(standin, new_bot(services)):
        dm = await standin.wait_for_dm(standin.owner)
        assert f"mod:approve:{image.id}" in dm.custom_ids()
    async with connected_bot(standin, new_bot(services)) as second:
        await second.get_cog("Moderation")._backlog  # type: ignore[union-attr]
    assert len(standin.dms(standin.owner)) == 1  # not posted twice


async def test_bot_asks_for_no_privileged_intents(
    standin: DiscordStandIn, services: Services
) -> None:
    async with connected_bot(standin, new_bot(services)):
        pass
    intents = discord.Intents._from_value(standin.identifies[-1]["intents"])
    assert not intents.members and not intents.presences and not intents.message_content


async def test_bot_py_runs_the_bot_with_the_configured_token(
    standin: DiscordStandIn, tmp_path: Path
) -> None:
    import bot as composition_root

    settings = bot_settings(tmp_path / "data", DISCORD_TOKEN=standin.token)
    async with open_services(settings) as services:
        with standin.patch_discord():
            task = asyncio.create_task(composition_root.run_bot(services))
            try:
                await standin.wait_until(lambda: standin.command_syncs, what="a sync")
                await standin.wait_until(lambda: standin.connected, what="the gateway")
                reply = await standin.wait_for_reply(await standin.invoke_command("stats"))
                assert reply.data["embeds"][0]["title"] == "Collection"
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    assert standin.identifies[-1]["token"] == standin.token


async def test_leaving_dev_guild_mode_removes_the_guild_copies(
    standin: DiscordStandIn, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    dev = bot_settings(data, DEV_GUILD_ID=str(standin.guild.id))
    async with open_services(dev) as services:
        async with connected_bot(standin, new_bot(services)):
            pass
    async with open_services(bot_settings(data)) as services:
        async with connected_bot(standin, new_bot(services)):
            pass
    assert standin.registered_commands(standin.guild) == []
    assert {c["name"] for c in standin.registered_commands()} == COMMANDS


async def test_review_dm_in_flight_at_shutdown_is_finished_without_an_error(
    standin: DiscordStandIn, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    gate = standin.hold("POST", r"/channels/\d+/messages")

    bot = new_bot(services)

    async def run_bot() -> None:  # as bot.py's run_bot, without the 2 s wait for guilds
        async with bot:
            await bot.start(standin.token)

    with standin.patch_discord():
        # Run as `bot.py serve` runs the bot, and stop it as Ctrl-C does: by cancelling it.
        task = asyncio.create_task(run_bot())
        try:
            await standin.wait_until(bot.is_ready, what="the bot ready")
            await bot.get_cog("Moderation")._backlog  # type: ignore[union-attr]
            image = await store_image(services, 1, trusted=False)
            await asyncio.wait_for(gate.arrived.wait(), 5)
            task.cancel()
            # The DM goes through only once the bot is shutting down.
            await standin.wait_until(lambda: services.outbox.stopping, what="shutting down")
            gate.release()
        finally:
            await asyncio.gather(task, return_exceptions=True)
    owners = (standin.owner, EXTRA_OWNER_ID)
    for owner in owners:
        [dm] = standin.dms(owner)
        assert dm.custom_ids() == [f"mod:approve:{image.id}", f"mod:reject:{image.id}"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text


async def test_review_dm_still_stuck_at_shutdown_is_cancelled_and_posted_at_the_next_start(
    standin: DiscordStandIn,
    services: Services,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = standin.hold("POST", r"/channels/\d+/messages")
    async with connected_bot(standin, new_bot(services)):
        # The extension's module as the bot loaded it (5 s in production).
        monkeypatch.setattr(sys.modules["cogs.moderation"], "SHUTDOWN_DRAIN_SECONDS", 0.05)
        image = await store_image(services, 1, trusted=False)
        await asyncio.wait_for(gate.arrived.wait(), 5)
    assert "cancelling an outbox delivery still running at shutdown" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert await services.storage.repo.kv_get(f"discord:moderation:{image.id}") is None
    gate.release()
    async with connected_bot(standin, new_bot(services)) as second:
        await second.get_cog("Moderation")._backlog  # type: ignore[union-attr]
    assert await services.storage.repo.kv_get(f"discord:moderation:{image.id}") is not None


async def test_search_pages_keep_turning_after_a_restart(
    standin: DiscordStandIn, services: Services
) -> None:
    stored = [await store_image(services, seed) for seed in range(3)]
    async with connected_bot(standin, new_bot(services)):
        inter = await standin.invoke_command("search", {"sort": "oldest"})
        message = await standin.wait_for_followup(inter)
    async with connected_bot(standin, new_bot(services)):
        click = next(i for i in message.custom_ids() if i.startswith("search:next:"))
        assert (await standin.wait_for_reply(await standin.click(message, click))).type == 6
        await standin.wait_until(lambda: message.content == "Page 2 of 3", what="page 2")
    assert embed_image_id(message) == stored[1].id


async def test_expired_bot_state_is_deleted_at_start(
    standin: DiscordStandIn, services: Services
) -> None:
    repo = services.storage.repo
    await repo.kv_set("discord:random:0123456789abcdef", "{}", expires_in=timedelta(seconds=-1))
    await repo.kv_set("discord:search:0123456789abcdef", "{}", expires_in=timedelta(days=1))
    async with connected_bot(standin, new_bot(services)) as bot:
        await standin.wait_until(lambda: bot.state_purges, what="a purge")
    keys = [r[0] for r in await repo._all("SELECT key FROM kv WHERE key LIKE 'discord:%:0%'")]
    assert keys == ["discord:search:0123456789abcdef"]


async def test_every_per_message_state_the_bot_keeps_has_an_end(
    standin: DiscordStandIn, services: Services
) -> None:
    await store_image(services, 1)
    image = await store_image(services, 2, trusted=False)
    async with connected_bot(standin, new_bot(services)):
        await standin.wait_for_followup(await standin.invoke_command("random"))
        await standin.wait_for_followup(await standin.invoke_command("search"))
        await standin.wait_for_followup(
            await standin.invoke_command("token request", {"purpose": "a bot"})
        )
        dm = await standin.wait_for_dm(standin.owner)
        assert f"mod:approve:{image.id}" in dm.custom_ids()
    rows = await services.storage.repo._all("SELECT key, expires_at FROM kv")
    kinds = {key.split(":")[1] for key, _ in rows}
    assert {"random", "search", "moderation", "token-request"} <= kinds
    lasting = {key for key, expires_at in rows if expires_at is None}
    assert {k.split(":")[1] for k in lasting} <= {"commands", "dev-guild"}, lasting
