"""Tag blacklists: `/blacklist add|remove|list` for a member's own tags, and
`/blacklist server add|remove|list` for the owners' list that applies to everyone in a
server's channels. Kept and applied by core/blacklist.py; every command that shows
images reads them (cogs/images.py)."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from cogs.client import GazouBot
from cogs.shared import require_owner, split_list
from core import blacklist as blacklists
from core.errors import InvalidInput

AUTOCOMPLETE_MAX = 25


def _names(tags: list[str] | tuple[str, ...]) -> str:
    return ", ".join(f"`{t}`" for t in tags)


class Blacklists(commands.Cog):
    """Tags a member (or, set by the owners, a whole server) never wants shown."""

    blacklist = app_commands.Group(
        name="blacklist", description="Tags whose images you never want to be shown"
    )
    server = app_commands.Group(
        name="server",
        description="Owners: tags whose images nobody is shown in this server",
        parent=blacklist,
    )

    def __init__(self, bot: GazouBot) -> None:
        self.bot = bot

    # ---- autocomplete --------------------------------------------------------------

    async def complete_known_tags(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        """Complete the last item of a comma-separated list from the store's tags."""
        head, comma, last = current.rpartition(",")
        earlier = split_list(head)
        prefix = ", ".join(earlier) + ", " if comma and earlier else ""
        tags, _ = await self.bot.services.images.tags(f"%{last.strip()}%", 0, AUTOCOMPLETE_MAX)
        taken = {t.lower() for t in earlier}
        return [
            app_commands.Choice(name=prefix + t.name, value=prefix + t.name)
            for t in tags
            if t.name.lower() not in taken and len(prefix + t.name) <= 100
        ]

    async def _complete_from(self, key: str, current: str) -> list[app_commands.Choice[str]]:
        typed = current.strip().lower()
        listed = await blacklists.read_list(self.bot.services.kv, key)
        return [
            app_commands.Choice(name=t[:100], value=t[:100]) for t in listed if typed in t.lower()
        ][:AUTOCOMPLETE_MAX]

    async def complete_mine(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        """Complete from the member's own blacklist."""
        return await self._complete_from(blacklists.member_key(interaction.user.id), current)

    async def complete_server(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        """Complete from this server's blacklist."""
        if interaction.guild_id is None:
            return []
        return await self._complete_from(blacklists.guild_key(interaction.guild_id), current)

    # ---- a member's own list -------------------------------------------------------

    @blacklist.command(name="add")
    @app_commands.describe(tags="comma-separated tags never to show you")
    async def add(self, interaction: discord.Interaction[GazouBot], tags: str) -> None:
        """Never show you images with these tags (anywhere the bot shows images)."""
        key = blacklists.member_key(interaction.user.id)
        await self._add(interaction, key, tags, "your blacklist")

    @blacklist.command(name="remove")
    @app_commands.describe(tags="comma-separated tags to show you again")
    async def remove(self, interaction: discord.Interaction[GazouBot], tags: str) -> None:
        """Take tags off your blacklist."""
        key = blacklists.member_key(interaction.user.id)
        await self._remove(interaction, key, tags, "your blacklist")

    @blacklist.command(name="list")
    async def list_(self, interaction: discord.Interaction[GazouBot]) -> None:
        """The tags on your blacklist (and this server's, if it has one)."""
        found = await blacklists.effective(
            self.bot.services.kv, interaction.user.id, interaction.guild_id
        )
        lines = [
            f"Your blacklist ({len(found.member)}/{blacklists.MAX_TAGS}): "
            f"{_names(found.member) or 'empty'}."
        ]
        if found.guild:
            lines.append(f"This server's blacklist, set by the owners: {_names(found.guild)}.")
        await interaction.response.send_message("\n".join(lines), ephemeral=True)

    # ---- a server's list (owners) --------------------------------------------------

    async def _server_key(self, interaction: discord.Interaction[GazouBot]) -> str:
        await require_owner(self.bot, interaction.user)
        if interaction.guild_id is None:
            raise InvalidInput("A server's blacklist is set in one of that server's channels.")
        return blacklists.guild_key(interaction.guild_id)

    @server.command(name="add")
    @app_commands.describe(tags="comma-separated tags nobody is shown in this server")
    async def server_add(self, interaction: discord.Interaction[GazouBot], tags: str) -> None:
        """Owners: never show images with these tags in this server's channels."""
        key = await self._server_key(interaction)
        await self._add(interaction, key, tags, "this server's blacklist")

    @server.command(name="remove")
    @app_commands.describe(tags="comma-separated tags to show in this server again")
    async def server_remove(self, interaction: discord.Interaction[GazouBot], tags: str) -> None:
        """Owners: take tags off this server's blacklist."""
        key = await self._server_key(interaction)
        await self._remove(interaction, key, tags, "this server's blacklist")

    @server.command(name="list")
    async def server_list(self, interaction: discord.Interaction[GazouBot]) -> None:
        """Owners: the tags on this server's blacklist."""
        key = await self._server_key(interaction)
        listed = await blacklists.read_list(self.bot.services.kv, key)
        await interaction.response.send_message(
            f"This server's blacklist ({len(listed)}/{blacklists.MAX_TAGS}): "
            f"{_names(listed) or 'empty'}.",
            ephemeral=True,
        )

    # ---- shared --------------------------------------------------------------------

    async def _add(
        self, interaction: discord.Interaction[GazouBot], key: str, text: str, where: str
    ) -> None:
        tags = split_list(text)
        if not tags:
            raise InvalidInput("Name at least one tag (comma-separated).")
        added, listed = await blacklists.add_tags(self.bot.services.kv, key, tags)
        if added:
            answer = f"Added {_names(added)} to {where} ({len(listed)}/{blacklists.MAX_TAGS})."
        else:
            answer = f"{_names(tags)} {'is' if len(tags) == 1 else 'are'} already on {where}."
        await interaction.response.send_message(answer, ephemeral=True)

    async def _remove(
        self, interaction: discord.Interaction[GazouBot], key: str, text: str, where: str
    ) -> None:
        tags = split_list(text)
        if not tags:
            raise InvalidInput("Name at least one tag (comma-separated).")
        removed, listed = await blacklists.remove_tags(self.bot.services.kv, key, tags)
        if removed:
            answer = f"Removed {_names(removed)} from {where} ({len(listed)} left)."
        else:
            answer = f"{_names(tags)} {'is' if len(tags) == 1 else 'are'} not on {where}."
        await interaction.response.send_message(answer, ephemeral=True)

    # autocomplete wiring (decorators need the functions defined above)
    add.autocomplete("tags")(complete_known_tags)
    remove.autocomplete("tags")(complete_mine)
    server_add.autocomplete("tags")(complete_known_tags)
    server_remove.autocomplete("tags")(complete_server)


async def setup(bot: GazouBot) -> None:
    await bot.add_cog(Blacklists(bot))
