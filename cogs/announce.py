"""Announcements: `/announce channel` (owners) picks a channel of this server where
each newly approved image is posted with its uploader and tags; images above sfw only
when that channel is age-restricted. Driven by the outbox's decisions, so each image
is announced once, whichever process approved it."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from cogs.client import GazouBot
from cogs.images import LikeButton
from cogs.reports import ReportButton
from cogs.shared import (
    age_restricted,
    discord_user_id,
    image_embed,
    require_owner,
    show_image,
    upload_limit,
)
from core import events as ev
from core.errors import InvalidInput
from core.models import Image, Rating, Status, User

log = logging.getLogger("gazou.bot.announce")

CHANNELS_KEY = "discord:announce:channels"  # {guild id: channel id}
# Which channels an image was announced in, so a redelivered decision posts nothing twice.
ANNOUNCED_KEEP = timedelta(days=8)
NOT_AGE_RESTRICTED = " It is not age-restricted, so images rated above sfw are not posted there."


def _announced_key(image_id: str) -> str:
    return f"discord:announce:{image_id}"


def announce_view(image: Image) -> discord.ui.View:
    """Like and Report under an announced image."""
    view = discord.ui.View(timeout=None)
    view.add_item(LikeButton(image.id))
    view.add_item(ReportButton(image.id))
    return view


class Announce(commands.Cog):
    """Posts newly approved images to each server's announcement channel."""

    announce = app_commands.Group(
        name="announce", description="Where newly approved images are posted (owners only)"
    )

    def __init__(self, bot: GazouBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.services.events.subscribe(ev.IMAGE_DECIDED, self.on_image_decided)

    async def cog_unload(self) -> None:
        self.bot.services.events.unsubscribe(ev.IMAGE_DECIDED, self.on_image_decided)

    async def _channels(self) -> dict[str, int]:
        return dict(json.loads(await self.bot.services.kv.kv_get(CHANNELS_KEY) or "{}"))

    @announce.command(name="channel")
    @app_commands.describe(channel="the channel newly approved images are posted in")
    async def channel(
        self, interaction: discord.Interaction[GazouBot], channel: discord.TextChannel
    ) -> None:
        """Post each newly approved image in this channel."""
        await require_owner(self.bot, interaction.user)
        if interaction.guild_id is None:
            raise InvalidInput("Pick a channel of a server: run this in that server.")
        channels = await self._channels()
        channels[str(interaction.guild_id)] = channel.id
        await self.bot.services.kv.kv_set(CHANNELS_KEY, json.dumps(channels))
        place = self.bot.get_channel(channel.id) or channel
        note = "" if age_restricted(place) else NOT_AGE_RESTRICTED
        await interaction.response.send_message(
            f"Newly approved images will be posted in <#{channel.id}>.{note}", ephemeral=True
        )

    @announce.command(name="off")
    async def off(self, interaction: discord.Interaction[GazouBot]) -> None:
        """Stop posting newly approved images in this server."""
        await require_owner(self.bot, interaction.user)
        channels = await self._channels()
        had = channels.pop(str(interaction.guild_id), None)
        await self.bot.services.kv.kv_set(CHANNELS_KEY, json.dumps(channels))
        text = "Announcements are off here." if had else "Announcements were not on here."
        await interaction.response.send_message(text, ephemeral=True)

    async def on_image_decided(self, image: Image, approved: bool, by: User) -> None:
        """Post an approved image in every announcement channel that may show it, once
        per channel (marked in kv, so a redelivered decision posts nothing again)."""
        if not approved or image.status is not Status.APPROVED:
            return
        channels = await self._channels()
        if not channels:
            return
        if not self.bot.is_ready() or self.bot.is_closed():
            raise ev.Undelivered("the bot is not connected")
        kv = self.bot.services.kv
        done: list[int] = json.loads(await kv.kv_get(_announced_key(image.id)) or "[]")
        for channel_id in channels.values():
            if channel_id in done:
                continue
            try:
                channel = self.bot.get_channel(channel_id) or await self.bot.fetch_channel(
                    channel_id
                )
                if image.rating is Rating.SFW or age_restricted(channel):
                    assert isinstance(channel, discord.abc.Messageable)
                    await channel.send(**await self.announcement(image, channel))
            except (discord.HTTPException, AssertionError) as exc:
                # A deleted channel or lost permission: tell the log, keep the others.
                log.error("cannot announce in channel %s: %s", channel_id, exc)
            done.append(channel_id)
            await kv.kv_set(_announced_key(image.id), json.dumps(done), expires_in=ANNOUNCED_KEEP)

    async def announcement(self, image: Image, channel: object) -> dict[str, Any]:
        """The post of a newly approved image: its embed with the uploader, the image."""
        embed = image_embed(image, title=f"New: {image.title or 'image'}"[:256])
        uploader = image.uploader
        if uploader is not None:
            uid = discord_user_id(uploader)
            embed.add_field(
                name="Uploaded by", value=f"<@{uid}> ({uploader.name})" if uid else uploader.name
            )
        files = await show_image(self.bot, image, embed, limit=upload_limit(None, channel))
        return {"embed": embed, "files": files, "view": announce_view(image)}


async def setup(bot: GazouBot) -> None:
    await bot.add_cog(Announce(bot))
