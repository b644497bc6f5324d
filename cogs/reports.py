"""Reports: a Report button on every image message the bot posts. A member picks a
reason (Other asks for a text in a modal); the owners get the report by DM, or in
MODERATION_CHANNEL_ID, with Re-rate, Remove and Dismiss (core/reports.py decides)."""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta
from typing import Any

import discord
from discord.ext import commands

from cogs.client import GazouBot, report_error
from cogs.shared import (
    age_restricted,
    discord_user_id,
    member,
    require_owner,
    show_image,
    upload_limit,
)
from core import events as ev
from core.errors import NotFound
from core.models import Image, Rating, Report, ReportReason, Status
from core.reports import REASON_LABELS, REMOVED, Decision, action_text

log = logging.getLogger("gazou.bot.reports")

REPORT_CONTENT = "An image was reported"
ASK_REASON = "What is wrong with this image?"
# Where each image's report posts went (to update them all on a decision), and which
# reports were posted (so a redelivered outbox entry posts nothing again).
POSTS_KEEP = timedelta(days=30)


def _posts_key(image_id: str) -> str:
    return f"discord:report:{image_id}"


def _posted_key(report_id: int) -> str:
    return f"discord:report:posted:{report_id}"


class ReportButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"img:report:(?P<id>[0-9a-f-]{36})"
):
    """Report the image of the message it sits on (persistent)."""

    def __init__(self, image_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Report",
                emoji="\N{WARNING SIGN}",
                style=discord.ButtonStyle.secondary,
                custom_id=f"img:report:{image_id}",
            )
        )
        self.image_id = image_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
    ) -> ReportButton:
        return cls(match["id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        bot: GazouBot = interaction.client
        try:
            if await bot.services.reports.has_reported(self.image_id, member(interaction.user)):
                await interaction.response.send_message(
                    "You already reported this image; the owners have it.", ephemeral=True
                )
                return
            view = discord.ui.View(timeout=None)
            view.add_item(ReportReasonSelect(self.image_id))
            await interaction.response.send_message(ASK_REASON, view=view, ephemeral=True)
        except Exception as exc:
            await report_error(interaction, exc)


class ReportReasonSelect(
    discord.ui.DynamicItem[discord.ui.Select[Any]],
    template=r"report:reason:(?P<id>[0-9a-f-]{36})",
):
    """The reasons a member may give (persistent: the state is in the custom id)."""

    def __init__(self, image_id: str) -> None:
        super().__init__(
            discord.ui.Select(
                custom_id=f"report:reason:{image_id}",
                placeholder="Choose a reason",
                options=[
                    discord.SelectOption(label=label, value=reason.value)
                    for reason, label in REASON_LABELS.items()
                ],
            )
        )
        self.image_id = image_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
    ) -> ReportReasonSelect:
        return cls(match["id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        bot: GazouBot = interaction.client
        try:
            reason = ReportReason(self.item.values[0])
            if reason is ReportReason.OTHER:
                await interaction.response.send_modal(ReportModal(self.image_id))
                return
            await bot.services.reports.report(self.image_id, member(interaction.user), reason)
            await interaction.response.edit_message(content=_thanks(reason), view=None)
        except Exception as exc:
            await report_error(interaction, exc)


def _thanks(reason: ReportReason) -> str:
    return f"Thanks: reported as “{REASON_LABELS[reason]}”. The owners will look at it."


class ReportModal(discord.ui.Modal, title="Report this image"):
    """Other: say what is wrong."""

    details: discord.ui.TextInput[Any] = discord.ui.TextInput(
        label="What is wrong with it?",
        style=discord.TextStyle.paragraph,
        max_length=500,
        custom_id="report:details",
    )

    def __init__(self, image_id: str) -> None:
        super().__init__(timeout=600)
        self.image_id = image_id

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        bot: GazouBot = interaction.client
        await bot.services.reports.report(
            self.image_id, member(interaction.user), ReportReason.OTHER, self.details.value
        )
        await interaction.response.send_message(_thanks(ReportReason.OTHER), ephemeral=True)

    async def on_error(
        self,
        interaction: discord.Interaction[Any],
        error: Exception,
        item: discord.ui.Item[Any] | None = None,
        /,
    ) -> None:
        await report_error(interaction, error)


# ---- the owners' side ------------------------------------------------------------------


class ReportRerate(
    discord.ui.DynamicItem[discord.ui.Select[Any]],
    template=r"report:rate:(?P<id>[0-9a-f-]{36})",
):
    """Re-rate the reported image (persistent)."""

    def __init__(self, image_id: str) -> None:
        super().__init__(
            discord.ui.Select(
                custom_id=f"report:rate:{image_id}",
                placeholder="Re-rate as…",
                options=[discord.SelectOption(label=r.value, value=r.value) for r in Rating],
            )
        )
        self.image_id = image_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
    ) -> ReportRerate:
        return cls(match["id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        bot: GazouBot = interaction.client
        try:
            await require_owner(bot, interaction.user)
            rating = Rating(self.item.values[0])
            await _decided(
                interaction,
                await bot.services.reports.rerate(self.image_id, rating, member(interaction.user)),
            )
        except Exception as exc:
            await report_error(interaction, exc)


class ReportDecision(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"report:(?P<action>remove|dismiss):(?P<id>[0-9a-f-]{36})",
):
    """Remove the reported image, or dismiss its reports (persistent)."""

    def __init__(self, action: str, image_id: str) -> None:
        remove = action == "remove"
        super().__init__(
            discord.ui.Button(
                label="Remove" if remove else "Dismiss",
                style=discord.ButtonStyle.danger if remove else discord.ButtonStyle.secondary,
                custom_id=f"report:{action}:{image_id}",
            )
        )
        self.action = action
        self.image_id = image_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
    ) -> ReportDecision:
        return cls(match["action"], match["id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        bot: GazouBot = interaction.client
        try:
            await require_owner(bot, interaction.user)
            reports = bot.services.reports
            owner = member(interaction.user)
            if self.action == "remove":
                decision = await reports.remove(self.image_id, owner)
            else:
                decision = await reports.dismiss(self.image_id, owner)
            await _decided(interaction, decision)
        except Exception as exc:
            await report_error(interaction, exc)


def report_view(image_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ReportRerate(image_id))
    view.add_item(ReportDecision("remove", image_id))
    view.add_item(ReportDecision("dismiss", image_id))
    return view


async def _decided(interaction: discord.Interaction[GazouBot], decision: Decision) -> None:
    """Acknowledge the click, then show the decision on every copy of the report."""
    await interaction.response.defer()
    cog = interaction.client.get_cog("Reports")
    assert isinstance(cog, Reports)
    await cog.show_decision(decision)


class Reports(commands.Cog):
    """Members report images; the owners decide."""

    def __init__(self, bot: GazouBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(ReportButton, ReportReasonSelect, ReportRerate, ReportDecision)
        self.bot.services.events.subscribe(ev.IMAGE_REPORTED, self.on_image_reported)

    async def cog_unload(self) -> None:
        self.bot.services.events.unsubscribe(ev.IMAGE_REPORTED, self.on_image_reported)
        self.bot.remove_dynamic_items(
            ReportButton, ReportReasonSelect, ReportRerate, ReportDecision
        )

    def _moderation(self) -> Any:
        cog = self.bot.get_cog("Moderation")
        if cog is None:
            raise ev.Undelivered("the moderation cog is not loaded")
        return cog

    async def on_image_reported(self, image: Image, report: Report) -> None:
        """Post a report to the owners once (a redelivered entry posts nothing)."""
        if not self.bot.is_ready() or self.bot.is_closed():
            raise ev.Undelivered("the bot is not connected")
        kv = self.bot.services.kv
        if await kv.kv_get(_posted_key(report.id)):
            return
        moderation = self._moderation()

        async def build(place: object) -> tuple[dict[str, Any], str | None]:
            return await self.report_message(image, report, place)

        sent = await moderation.send_to_reviewers(build)
        if not sent:
            raise ev.Undelivered(f"report {report.id} reached no owner")
        refs = json.loads(await kv.kv_get(_posts_key(image.id)) or "[]")
        refs += [[m.channel.id, m.id, filename] for m, filename in sent]
        await kv.kv_set(_posts_key(image.id), json.dumps(refs), expires_in=POSTS_KEEP)
        await kv.kv_set(_posted_key(report.id), "1", expires_in=POSTS_KEEP)

    async def report_message(
        self, image: Image, report: Report, place: object
    ) -> tuple[dict[str, Any], str | None]:
        """The owners' post of a report: the image (unless above sfw outside an
        age-restricted place), the reason, who reported, and the decisions."""
        files: list[discord.File] = []
        if image.rating is Rating.SFW or age_restricted(place):
            files = await show_image(
                self.bot, image, discord.Embed(), limit=upload_limit(None, place), attach=True
            )
        filename = files[0].filename if files else None
        embed = self._moderation().review_embed(image, "Reported", filename, place)
        embed.add_field(name="Reason", value=REASON_LABELS[report.reason])
        uid = discord_user_id(report.reporter)
        name = report.reporter.name
        embed.add_field(name="Reported by", value=f"<@{uid}> ({name})" if uid else name)
        if report.text:
            embed.add_field(name="Details", value=report.text[:1024], inline=False)
        message = {
            "content": REPORT_CONTENT,
            "embed": embed,
            "files": files,
            "view": report_view(image.id),
        }
        return message, filename

    async def show_decision(self, decision: Decision) -> None:
        """Edit every post of the image's reports to the decision, without buttons."""
        kv = self.bot.services.kv
        refs = json.loads(await kv.kv_get(_posts_key(decision.image_id)) or "[]")
        try:
            image: Image | None = await self.bot.services.reports.image_of(decision.image_id)
        except NotFound:
            image = None
        heading = action_text(decision.action).split(" as ")[0]
        for channel_id, message_id, filename in refs:
            channel = self.bot.get_channel(channel_id)
            changes: dict[str, Any] = {
                "content": f"{action_text(decision.action)} by {decision.by.name}",
                "view": None,
            }
            if image is not None:
                keep = (
                    decision.action != REMOVED
                    and image.status is Status.APPROVED
                    and (image.rating is Rating.SFW or age_restricted(channel))
                )
                changes["embed"] = self._moderation().review_embed(
                    image, heading, filename if keep else None, channel
                )
                if not keep:
                    changes["attachments"] = []
            await self.bot.edit_messages([(channel_id, message_id)], **changes)


async def setup(bot: GazouBot) -> None:
    await bot.add_cog(Reports(bot))
