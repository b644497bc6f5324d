"""Moderation: pending uploads (from Discord or HTTP) go to the owners by DM, or to
MODERATION_CHANNEL_ID, with persistent Approve / Reject buttons; the uploader hears the
outcome by DM when their DMs are open."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import discord
from discord.ext import commands

from cogs.client import GazouBot, report_error
from cogs.shared import (
    age_restricted,
    discord_user_id,
    image_embed,
    image_url,
    member,
    require_owner,
    show_image,
    upload_limit,
)
from core import events as ev
from core.errors import Conflict, NotFound
from core.models import Image, Rating, Status, User

log = logging.getLogger("gazou.bot.moderation")

PENDING_CONTENT = "New upload waiting for review"
BACKLOG_LIMIT = 25  # pending uploads posted at start-up that were never posted before
# At shutdown, posts in flight get this long to finish before they are cancelled (a
# cancelled post is made again by the next start's backlog, as it left no record).
SHUTDOWN_DRAIN_SECONDS = 5.0


def _posts_key(image_id: str) -> str:
    return f"discord:moderation:{image_id}"


class ModerationDecision(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"mod:(?P<action>approve|reject):(?P<id>[0-9a-f-]{36})",
):
    """Approve or Reject on a pending upload's message (persistent)."""

    def __init__(self, action: str, image_id: str) -> None:
        approve = action == "approve"
        super().__init__(
            discord.ui.Button(
                label="Approve" if approve else "Reject",
                style=discord.ButtonStyle.success if approve else discord.ButtonStyle.danger,
                custom_id=f"mod:{action}:{image_id}",
            )
        )
        self.action = action
        self.image_id = image_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Button[Any], match: Any
    ) -> ModerationDecision:
        return cls(match["action"], match["id"])

    async def callback(self, interaction: discord.Interaction[GazouBot]) -> None:
        try:
            await self.decide(interaction)
        except Exception as exc:
            await report_error(interaction, exc)

    async def decide(self, interaction: discord.Interaction[GazouBot]) -> None:
        bot = interaction.client
        await require_owner(bot, interaction.user)
        images = bot.services.images
        try:
            image = await images.get(self.image_id, include_pending=True)
        except NotFound:
            raise Conflict("This upload was already rejected (or deleted).") from None
        if image.status is not Status.PENDING:
            by = f" by {image.approver.name}" if image.approver else ""
            raise Conflict(f"This upload was already {image.status}{by}.")
        await interaction.response.defer()
        owner = member(interaction.user)
        if self.action == "approve":
            await images.approve(self.image_id, owner)
        else:
            await images.reject(self.image_id, owner)
        # Every copy (this one included) is updated by the IMAGE_DECIDED handler.


def moderation_view(image_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ModerationDecision("approve", image_id))
    view.add_item(ModerationDecision("reject", image_id))
    return view


class Moderation(commands.Cog):
    """Posts pending uploads to the owners and tells uploaders the outcome."""

    def __init__(self, bot: GazouBot) -> None:
        self.bot = bot
        self._posting: set[str] = set()
        self._backlog: asyncio.Task[None] | None = None
        self._closing = False

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(ModerationDecision)
        events = self.bot.services.events
        events.subscribe(ev.IMAGE_PENDING, self.on_image_pending)
        events.subscribe(ev.IMAGE_DECIDED, self.on_image_decided)
        self._backlog = asyncio.create_task(self._post_backlog())

    async def cog_unload(self) -> None:
        events = self.bot.services.events
        events.unsubscribe(ev.IMAGE_PENDING, self.on_image_pending)
        events.unsubscribe(ev.IMAGE_DECIDED, self.on_image_decided)
        self.bot.remove_dynamic_items(ModerationDecision)
        self._closing = True
        # The client closes after this: let posts in flight use it first, or they fail
        # on a closed session (a traceback at every Ctrl-C during a review DM).
        await events.drain(grace=SHUTDOWN_DRAIN_SECONDS)
        if self._backlog is not None and not self._backlog.done():
            if not self.bot.is_ready():
                self._backlog.cancel()  # still waiting for READY: it has written nothing
            # Otherwise let it finish the post in hand rather than cut a write short.
            with contextlib.suppress(asyncio.CancelledError):
                await self._backlog

    # ---- posting pending uploads -------------------------------------------------

    async def _post_backlog(self) -> None:
        """Post pending uploads that arrived while the bot was away (once ready)."""
        await self.bot.wait_until_ready()
        try:
            for image in await self.bot.services.images.pending(BACKLOG_LIMIT):
                if self._closing:
                    break
                await self.on_image_pending(image)
        except Exception:
            log.exception("could not post the pending uploads backlog")

    async def on_image_pending(self, image: Image) -> None:
        """Post a pending upload for review, once."""
        if not self.bot.is_ready() or self.bot.is_closed() or self._closing:
            return  # the backlog posts it when the bot is (again) ready
        repo = self.bot.services.storage.repo
        if image.id in self._posting or await repo.kv_get(_posts_key(image.id)):
            return
        self._posting.add(image.id)
        try:
            sent = await self._post(image)
            if sent:
                refs = [(m.channel.id, m.id) for m in sent]
                await repo.kv_set(_posts_key(image.id), json.dumps(refs))
            else:
                log.warning("pending upload %s could not be posted to any owner", image.id)
        finally:
            self._posting.discard(image.id)

    async def _post(self, image: Image) -> list[discord.Message]:
        channel_id = self.bot.services.settings.moderation_channel_id
        if channel_id:
            try:
                channel = self.bot.get_channel(channel_id) or await self.bot.fetch_channel(
                    channel_id
                )
                assert isinstance(channel, discord.abc.Messageable)
                return [await channel.send(**await self.review_message(image, channel))]
            except (discord.HTTPException, AssertionError) as exc:
                log.error(
                    "cannot post to MODERATION_CHANNEL_ID %s (%s); DMing the owners",
                    channel_id,
                    exc,
                )

        async def build() -> dict[str, Any]:
            return await self.review_message(image, None)

        return await self.bot.dm_each(await self.bot.owner_user_ids(), build)

    async def review_message(self, image: Image, channel: object) -> dict[str, Any]:
        """The review post: the image (unless it is above sfw and the place isn't
        age-restricted), its metadata and the buttons."""
        label = image.title or image.original_filename or image.id
        embed = image_embed(image, title=f"Pending: {label}"[:256])
        uploader = image.uploader
        if uploader is not None:
            uid = discord_user_id(uploader)
            embed.add_field(
                name="Uploaded by", value=f"<@{uid}> ({uploader.name})" if uid else uploader.name
            )
        if image.near_duplicate_of:
            embed.add_field(name="Looks like", value=f"`{image.near_duplicate_of}`")
        files: list[discord.File] = []
        if image.rating is Rating.SFW or age_restricted(channel):
            # Pending images are not served over HTTP, so always attach the file.
            files = await show_image(
                self.bot, image, embed, limit=upload_limit(None, channel), attach=True
            )
        else:
            embed.add_field(
                name="Image",
                inline=False,
                value=(
                    f"Not shown: rated {image.rating}, and this is not an age-restricted "
                    "channel. Set MODERATION_CHANNEL_ID to an age-restricted channel to see "
                    "such uploads here."
                ),
            )
        return {
            "content": PENDING_CONTENT,
            "embed": embed,
            "files": files,
            "view": moderation_view(image.id),
        }

    # ---- decisions -----------------------------------------------------------------

    async def on_image_decided(self, image: Image, approved: bool, by: User) -> None:
        """Update every review post and tell the uploader."""
        if self.bot.is_closed():
            return
        verdict = "Approved" if approved else "Rejected"
        stored = await self.bot.services.storage.repo.kv_get(_posts_key(image.id))
        if stored:
            await self.bot.edit_messages(
                [tuple(r) for r in json.loads(stored)], content=f"{verdict} by {by.name}", view=None
            )
        uid = discord_user_id(image.uploader)
        if uid is None:
            return
        name = (
            f"“{image.title}”"
            if image.title
            else (f"“{image.original_filename}”" if image.original_filename else "")
        )
        if approved:
            text = (
                f"Your upload {name} (id `{image.id}`) was approved and is now in the "
                f"collection: {image_url(self.bot, image)}"
            )
        else:
            text = f"Your upload {name} (id `{image.id}`) was rejected by the owners."
        await self.bot.send_dm(uid, content=text.replace("  ", " "))


async def setup(bot: GazouBot) -> None:
    await bot.add_cog(Moderation(bot))
