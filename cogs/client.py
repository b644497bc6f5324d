"""The Discord client: gazou's bot, its command tree (every command error is rendered
here, once), owner lookup, DMs that tolerate closed inboxes, and command syncing that
only talks to Discord when the commands changed."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from core.errors import GazouError
from core.owners import application_owner_ids, is_owner
from core.services import Services

log = logging.getLogger("gazou.bot")

EXTENSIONS = (
    "cogs.images",
    "cogs.tokens",
    "cogs.moderation",
    "cogs.gallery",
    "cogs.blacklist",
    "cogs.reports",
    "cogs.announce",
)
# Creating the bot's messages needs no more than this; interaction replies need none.
INVITE_PERMISSIONS = discord.Permissions(
    view_channel=True, send_messages=True, embed_links=True, attach_files=True
)
INVITE_SCOPES = ("bot", "applications.commands")
GENERIC_FAILURE = "Something went wrong on our side; it has been logged. Please try again later."
# How often the bot deletes its expired state (what buttons re-run, where posts went).
STATE_PURGE_SECONDS = 3600.0


def error_message(error: BaseException) -> str | None:
    """The short text a member sees for `error`, or None for an unexpected failure."""
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, GazouError):
        return error.message
    if isinstance(error, app_commands.CommandSignatureMismatch | app_commands.CommandNotFound):
        return "This command has changed since Discord last heard of it; try again shortly."
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"Slow down: try again in {error.retry_after:.0f} s."
    if isinstance(error, app_commands.CheckFailure | app_commands.TransformerError):
        return str(error) or "You can't use this command here."
    return None


async def report_error(interaction: discord.Interaction[Any], error: BaseException) -> None:
    """Tell the member what went wrong, ephemerally; log unexpected errors in full."""
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    text = error_message(error)
    if interaction.type is discord.InteractionType.autocomplete:
        # Suggestions can't carry a message; an empty list is what the member sees.
        log.error(
            "autocomplete failed for user %s:\n%s",
            interaction.user.id,
            "".join(traceback.format_exception(error)),
        )
        return
    if text is None:
        command = interaction.command.qualified_name if interaction.command else None
        custom_id = interaction.data.get("custom_id") if interaction.data else None
        log.error(
            "interaction failed (command %s, component %s, user %s):\n%s",
            command,
            custom_id,
            interaction.user.id,
            "".join(traceback.format_exception(error)),
        )
        text = GENERIC_FAILURE
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(text, ephemeral=True)
            return
        if interaction.extras.pop("public_loading", False):
            # A public "thinking..." message would turn the error public: replace it.
            await interaction.delete_original_response()
        await interaction.followup.send(text, ephemeral=True)
    except discord.HTTPException:
        log.warning(
            "could not tell user %s about an error (interaction expired?)", interaction.user.id
        )


async def defer_public(interaction: discord.Interaction[Any]) -> None:
    """Defer with a public "thinking..." message that an error may still replace."""
    await interaction.response.defer(thinking=True)
    interaction.extras["public_loading"] = True


async def send_public(interaction: discord.Interaction[Any], **kwargs: Any) -> None:
    """Fill the public deferred message."""
    await interaction.followup.send(**kwargs)
    interaction.extras.pop("public_loading", None)


def quiet_discord_payload_logs() -> None:
    """Keep discord.py's REST and gateway loggers at INFO or above: at DEBUG they log
    whole request and event bodies, and those carry the token secrets gazou DMs."""
    for name in ("discord.http", "discord.gateway"):
        logger = logging.getLogger(name)
        if logger.level < logging.INFO:
            logger.setLevel(logging.INFO)


class GazouTree(app_commands.CommandTree["GazouBot"]):
    """The command tree: one place where command errors become ephemeral replies."""

    async def on_error(
        self, interaction: discord.Interaction[GazouBot], error: app_commands.AppCommandError, /
    ) -> None:
        await report_error(interaction, error)


class GazouBot(commands.Bot):
    """gazou's Discord bot: slash commands over the shared services."""

    def __init__(
        self, services: Services, *, guild_ready_timeout: float | None = None, **options: Any
    ) -> None:
        if guild_ready_timeout is not None:
            options["guild_ready_timeout"] = guild_ready_timeout
        # No privileged intents: slash commands and DMs need neither members nor content.
        intents = discord.Intents.default()
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            tree_cls=GazouTree,
            help_command=None,
            **options,
        )
        quiet_discord_payload_logs()
        self.services = services
        self.synced_commands = False
        self.state_purges = 0  # completed passes of the purge of expired state
        self._purging: asyncio.Task[None] | None = None

    async def setup_hook(self) -> None:
        self._purging = asyncio.create_task(self._purge_expired_state())
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        app_id = self.application_id
        if app_id is not None:
            url = discord.utils.oauth_url(
                app_id, permissions=INVITE_PERMISSIONS, scopes=INVITE_SCOPES
            )
            log.info("invite gazou to a server with %s", url)
        self.synced_commands = await self.sync_commands()

    async def close(self) -> None:
        if self._purging is not None:
            self._purging.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purging
        await super().close()

    async def _purge_expired_state(self) -> None:
        """Delete expired key/value state at start and every STATE_PURGE_SECONDS: the
        bot writes some for every /random, /search and review post."""
        while True:
            try:
                removed = await self.services.kv.kv_purge_expired()
                if removed:
                    log.info("deleted %d expired bot state entries", removed)
            except Exception:
                log.exception("could not delete expired bot state; will retry")
            self.state_purges += 1
            await asyncio.sleep(STATE_PURGE_SECONDS)

    # ---- commands ------------------------------------------------------------------

    def _command_scope(self) -> discord.Object | None:
        guild_id = self.services.settings.dev_guild_id
        return discord.Object(guild_id) if guild_id else None

    async def sync_commands(self) -> bool:
        """Register the slash commands (with DEV_GUILD_ID: in that guild only, at once)
        unless the same commands were registered before; True if it synced."""
        guild = self._command_scope()
        if guild is not None:
            self.tree.copy_global_to(guild=guild)
        payload = [c.to_dict(self.tree) for c in self.tree.get_commands(guild=guild)]
        scope = f"guild:{guild.id}" if guild else "global"
        key = f"discord:commands:{self.application_id}:{scope}"
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        repo = self.services.kv
        if await repo.kv_get(key) == digest:
            log.info("slash commands unchanged since the last sync (%s); not syncing", scope)
            return False
        try:
            synced = await self.tree.sync(guild=guild)
        except discord.HTTPException as exc:
            # The bot still answers commands registered earlier; retried on next start.
            log.error("could not sync slash commands (%s): %s", scope, exc)
            return False
        await repo.kv_set(key, digest)
        log.info("synced %d slash commands (%s)", len(synced), scope)
        await self._retire_former_dev_guild(guild)
        return True

    async def _retire_former_dev_guild(self, current: discord.Object | None) -> None:
        """Remove the commands from a guild that was DEV_GUILD_ID before, so members
        there don't see every command twice (its copy and the global one)."""
        repo = self.services.kv
        key = f"discord:dev-guild:{self.application_id}"
        former = await repo.kv_get(key)
        if former and (current is None or int(former) != current.id):
            try:
                await self.tree.sync(guild=discord.Object(int(former)))  # no commands there
                await repo.kv_set(f"discord:commands:{self.application_id}:guild:{former}", "")
                log.info("removed the slash commands from the former DEV_GUILD_ID %s", former)
            except discord.HTTPException as exc:
                log.warning("could not remove the commands from guild %s: %s", former, exc)
        await repo.kv_set(key, str(current.id) if current else "")

    # ---- owners --------------------------------------------------------------------

    async def owner_user_ids(self) -> set[int]:
        """The application's owner (or its team's admins and developers) plus OWNER_IDS."""
        app = self.application or await self.application_info()
        team = [(m.id, m.role.value) for m in app.team.members] if app.team else None
        owners = application_owner_ids(app.owner.id if app.owner else None, team)
        return set(self.services.settings.owner_ids) | owners

    async def is_gazou_owner(self, user: discord.abc.User) -> bool:
        """Whether `user` may use owner commands (core/owners.py decides, as for the web)."""
        return await is_owner(user.id, self.services.settings.owner_ids, self.owner_user_ids)

    # ---- DMs -----------------------------------------------------------------------

    async def send_dm(self, user_id: int, **message: Any) -> discord.Message | None:
        """DM a user; None when they can't be reached (closed DMs, unknown user)."""
        try:
            channel = await self.create_dm(discord.Object(user_id))
            return await channel.send(**message)
        except discord.Forbidden as exc:
            # 50007: closed DMs, or the user blocked the bot; an everyday case.
            log.info("cannot DM user %s (code %s): %s", user_id, exc.code, exc.text)
        except discord.HTTPException as exc:
            log.warning(
                "cannot DM user %s (HTTP %s, code %s): %s", user_id, exc.status, exc.code, exc.text
            )
        return None

    async def dm_each(
        self, user_ids: set[int], build: Callable[[], Awaitable[dict[str, Any]]]
    ) -> list[discord.Message]:
        """DM every user a freshly built message (files can't be sent twice)."""
        sent = []
        for user_id in sorted(user_ids):
            message = await self.send_dm(user_id, **await build())
            if message is not None:
                sent.append(message)
        return sent

    async def edit_messages(self, refs: list[tuple[int, int]], **changes: Any) -> None:
        """Edit messages the bot sent earlier, by (channel id, message id); missing ones
        are skipped."""
        for channel_id, message_id in refs:
            partial = self.get_partial_messageable(channel_id).get_partial_message(message_id)
            try:
                await partial.edit(**changes)
            except discord.HTTPException as exc:
                log.info("could not edit message %s in %s: %s", message_id, channel_id, exc)
