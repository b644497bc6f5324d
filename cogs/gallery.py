"""The web gallery from Discord: `/gallery` answers privately with a one-time link
that signs the member in (core/sessions.py), as an owner when they are one."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import discord
from discord import app_commands
from discord.ext import commands

from cogs.client import GazouBot
from cogs.shared import member
from core.sessions import SIGN_IN_TTL, SessionService


class Gallery(commands.Cog):
    """Sign-in links to the web gallery."""

    def __init__(self, bot: GazouBot) -> None:
        self.bot = bot
        self.sessions = SessionService(bot.services.kv, bot.services.tokens)

    @app_commands.command(name="gallery")
    async def gallery(self, interaction: discord.Interaction[Any]) -> None:
        """Get a private link that signs you in to the web gallery."""
        owner = await self.bot.is_gazou_owner(interaction.user)
        secret = await self.sessions.issue_link(member(interaction.user), owner=owner)
        url = f"{self.bot.services.settings.public_url}/login/link?{urlencode({'t': secret})}"
        minutes = int(SIGN_IN_TTL.total_seconds() // 60)
        await interaction.response.send_message(
            f"Your sign-in link to the gallery (valid {minutes} minutes, once; "
            f"don't share it):\n{url}",
            ephemeral=True,
        )


async def setup(bot: GazouBot) -> None:
    await bot.add_cog(Gallery(bot))
