"""Moderation: pending uploads (from Discord or HTTP) go to the owners by DM, or to
MODERATION_CHANNEL_ID, with persistent Approve / Reject buttons; the uploader hears the
outcome by DM when their DMs are open. Past a few uploads a minute, the owners get one
digest instead, whose button walks the whole queue."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import discord
from discord.ext import commands

from cogs.client import GazouBot, report_error
from cogs.shared import (
    age_restricted,
    discord_user_id,
    image_embed,
    member,
    public_image_url,
    require_owner,
    show_image,
    upload_limit,
)
from core import events as ev
from core.errors import Conflict, NotFound
from core.models import Image, Rating, SearchQuery, Sort, Status, User

log = logging.getLogger("gazou.bot.moderation")

PENDING_CONTENT = "New upload waiting for review"
BACKLOG_LIMIT = 25  # pending uploads posted at start-up that were never posted before
# At shutdown, posts in flight get this long to finish before they are cancelled (a
# cancelled post's outbox entry stays unacknowledged: the next start delivers it again).
SHUTDOWN_DRAIN_SECONDS = 5.0
# Review posts per minute (each goes to every owner); past it, pending uploads are
# announced by one digest whose button walks the queue, so every upload stays reachable.
REVIEW_POSTS_PER_MINUTE = 5
DIGEST_DELAY = 10.0  # seconds a digest waits, so that a burst of uploads makes one update
# A digest is edited with the new count while it is this young; after that the next
# burst sends a new one (an edit notifies nobody).
DIGEST_RENEW = timedelta(hours=1)
DIGEST_KEY = "discord:moderation:digest"
# Where each upload's review was posted, to update those posts on the decision.
POSTS_WHILE_PENDING = timedelta(days=30)  # past it, the next start posts it again
POSTS_AFTER_DECISION = timedelta(days=1)


def _posts_key(image_id: str) -> str:
    return f"discord:moderation:{image_id}"


def _told_key(image_id: str) -> str:
    """Which verdict the uploader was DMed, so a redelivered decision DMs nobody."""
    return f"discord:moderation:{image_id}:told"


def _label(image: Image) -> str:
    return image.title or image.original_filename or image.id


def _refs(stored: str | None) -> list[list[Any]]:
    """[channel id, message id, attached file name or None] of each review post."""
    refs = json.loads(stored) if stored else []
    return [[*r, None][:3] for r in refs]  # entries from before file names were kept


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
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
    ) -> ModerationDecision:
        return cls(match["action"], match["id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
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


class ReviewQueue(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"mod:queue:(?P<index>[0-9]{1,6})"
):
    """Show the pending upload at `index` (oldest first) for review: the digest's way
    into the queue, and the Skip of each upload shown through it (persistent)."""

    def __init__(self, index: int) -> None:
        super().__init__(
            discord.ui.Button(
                label="Review the queue" if index == 0 else "Skip",
                style=discord.ButtonStyle.primary if index == 0 else discord.ButtonStyle.secondary,
                custom_id=f"mod:queue:{index}",
            )
        )
        self.index = index

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
    ) -> ReviewQueue:
        return cls(int(match["index"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        bot: GazouBot = interaction.client  # discord.py's signature takes any client
        try:
            cog = bot.get_cog("Moderation")
            assert isinstance(cog, Moderation)
            await cog.show_queue(interaction, self.index)
        except Exception as exc:
            await report_error(interaction, exc)


def moderation_view(image_id: str, queue_index: int | None = None) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ModerationDecision("approve", image_id))
    view.add_item(ModerationDecision("reject", image_id))
    if queue_index is not None:
        view.add_item(ReviewQueue(queue_index + 1))
    return view


def digest_view() -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ReviewQueue(0))
    return view


class Moderation(commands.Cog):
    """Posts pending uploads to the owners and tells uploaders the outcome."""

    def __init__(self, bot: GazouBot) -> None:
        self.bot = bot
        self._posting: set[str] = set()
        self._backlog: asyncio.Task[None] | None = None
        self._closing = False
        self._recent_posts: deque[float] = deque()  # when review posts went out
        self._digest: asyncio.Task[None] | None = None
        self._digest_stale = False

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(ModerationDecision, ReviewQueue)
        events = self.bot.services.events
        events.subscribe(ev.IMAGE_PENDING, self.on_image_pending)
        events.subscribe(ev.IMAGE_DECIDED, self.on_image_decided)
        self._backlog = asyncio.create_task(self._start_announcing())

    async def cog_unload(self) -> None:
        self._closing = True
        # The client closes after this: let the post in flight use it first, or it fails
        # on a closed session (a traceback at every Ctrl-C during a review DM). Its
        # outbox entry is acknowledged only once it is done, so one cut short by the
        # grace period is delivered again at the next start.
        await self.bot.services.outbox.stop(grace=SHUTDOWN_DRAIN_SECONDS)
        events = self.bot.services.events
        events.unsubscribe(ev.IMAGE_PENDING, self.on_image_pending)
        events.unsubscribe(ev.IMAGE_DECIDED, self.on_image_decided)
        self.bot.remove_dynamic_items(ModerationDecision, ReviewQueue)
        if self._digest is not None:
            self._digest.cancel()  # its uploads stay pending: the next start announces them
            with contextlib.suppress(asyncio.CancelledError):
                await self._digest
        await events.drain(grace=SHUTDOWN_DRAIN_SECONDS)
        if self._backlog is not None and not self._backlog.done():
            if not self.bot.is_ready():
                self._backlog.cancel()  # still waiting for READY: it has written nothing
            # Otherwise let it finish the post in hand rather than cut a write short.
            with contextlib.suppress(asyncio.CancelledError):
                await self._backlog

    # ---- posting pending uploads -------------------------------------------------

    async def _start_announcing(self) -> None:
        """Once ready: post the backlog, then deliver the outbox (core/outbox.py), one
        after the other so that they never post one upload at the same time."""
        await self.bot.wait_until_ready()
        await self._post_backlog()
        if not self._closing:
            self.bot.services.outbox.start()

    async def _post_backlog(self) -> None:
        """Post pending uploads never posted before: a safety net beside the outbox, for
        uploads older than the outbox (or than its KEEP_UNHANDLED), stored by
        `bulk_load`, or whose post reached no owner."""
        try:
            for image in await self.bot.services.images.pending(BACKLOG_LIMIT):
                if self._closing:
                    break
                await self.on_image_pending(image)
        except ev.Undelivered:
            pass  # closing: the next start posts the rest
        except Exception:
            log.exception("could not post the pending uploads backlog")

    async def on_image_pending(self, image: Image) -> None:
        """Post a pending upload for review, once (a redelivered event posts nothing);
        past REVIEW_POSTS_PER_MINUTE, count it in the digest instead."""
        if not self.bot.is_ready() or self.bot.is_closed() or self._closing:
            raise ev.Undelivered("the bot is not connected")
        if image.id in self._posting:
            return
        # Marked before the first await: the backlog and the outbox may both hand it over.
        self._posting.add(image.id)
        try:
            if await self.bot.services.kv.kv_get(_posts_key(image.id)):
                return
            if not self._take_post_slot():
                self._announce_in_digest()
                return
            sent = await self._post(image)
            if sent:
                await self._remember_posts(image.id, sent)
            else:
                log.warning("pending upload %s could not be posted to any owner", image.id)
        finally:
            self._posting.discard(image.id)

    def _take_post_slot(self) -> bool:
        """Whether another review post fits in the last minute's budget (and count it)."""
        now = time.monotonic()
        while self._recent_posts and now - self._recent_posts[0] >= 60:
            self._recent_posts.popleft()
        if len(self._recent_posts) >= REVIEW_POSTS_PER_MINUTE:
            return False
        self._recent_posts.append(now)
        return True

    async def _remember_posts(self, image_id: str, sent: list[tuple[discord.Message, Any]]) -> None:
        repo = self.bot.services.kv
        refs = _refs(await repo.kv_get(_posts_key(image_id)))
        refs += [[m.channel.id, m.id, filename] for m, filename in sent]
        await repo.kv_set(_posts_key(image_id), json.dumps(refs), expires_in=POSTS_WHILE_PENDING)

    # ---- the digest and the queue ------------------------------------------------

    def _announce_in_digest(self) -> None:
        self._digest_stale = True
        if self._digest is None or self._digest.done():
            self._digest = asyncio.create_task(self._keep_digest_current())

    async def _keep_digest_current(self) -> None:
        # Uploads announced while a digest is being sent make one more round.
        while self._digest_stale:
            await asyncio.sleep(DIGEST_DELAY)  # gather the rest of the burst
            self._digest_stale = False
            try:
                await self.send_digest()
            except Exception:
                log.exception("could not send the review digest")

    async def _pending_count(self) -> str:
        page = await self.bot.services.images.search(
            SearchQuery(statuses=frozenset({Status.PENDING}), limit=1)
        )
        return f"{page.total}{'' if page.total_exact else '+'}"

    async def send_digest(self) -> None:
        """Tell the owners how many uploads wait, with a button that walks the queue:
        the recent digest is edited, else a new one is sent."""
        repo = self.bot.services.kv
        count = await self._pending_count()
        if count == "0":
            return
        content = (
            f"**{count} uploads are waiting for review.** They came faster than "
            f"{REVIEW_POSTS_PER_MINUTE} a minute, so not all were posted one by one; "
            "the button shows them oldest first."
        )
        recent = await repo.kv_get(DIGEST_KEY)
        if recent:
            await self.bot.edit_messages([tuple(r) for r in json.loads(recent)], content=content)
            return

        async def build(place: object) -> tuple[dict[str, Any], None]:
            return {"content": content, "view": digest_view()}, None

        sent = await self.send_to_reviewers(build)
        if sent:
            refs = [[m.channel.id, m.id] for m, _ in sent]
            await repo.kv_set(DIGEST_KEY, json.dumps(refs), expires_in=DIGEST_RENEW)

    async def show_queue(self, interaction: discord.Interaction[GazouBot], index: int) -> None:
        """Post the pending upload at `index` (oldest first) for review, with Skip."""
        await require_owner(self.bot, interaction.user)
        page = await self.bot.services.images.search(
            SearchQuery(statuses=frozenset({Status.PENDING}), sort=Sort.OLDEST, skip=index, limit=1)
        )
        if not page.images:
            text = (
                "Nothing is waiting for review."
                if page.total == 0
                else f"That was the last one; {page.total} uploads wait (Review the queue "
                "starts again from the oldest)."
            )
            await interaction.response.send_message(text, ephemeral=True)
            return
        image = page.images[0]
        await interaction.response.defer(thinking=True)
        message, filename = await self.review_message(image, interaction.channel, queue=index)
        message["content"] = f"Waiting for review: {index + 1} of {page.total}"
        posted = await interaction.followup.send(**message, wait=True)
        await self._remember_posts(image.id, [(posted, filename)])

    async def _post(self, image: Image) -> list[tuple[discord.Message, str | None]]:
        async def build(channel: object) -> tuple[dict[str, Any], str | None]:
            return await self.review_message(image, channel)

        return await self.send_to_reviewers(build)

    async def send_to_reviewers(
        self, build: Callable[[object], Awaitable[tuple[dict[str, Any], Any]]]
    ) -> list[tuple[discord.Message, Any]]:
        """Send `await build(place)` (a message and a note on it) to MODERATION_CHANNEL_ID,
        or else to every owner by DM; the messages sent, each with its note."""
        channel_id = self.bot.services.settings.moderation_channel_id
        if channel_id:
            try:
                channel = self.bot.get_channel(channel_id) or await self.bot.fetch_channel(
                    channel_id
                )
                assert isinstance(channel, discord.abc.Messageable)
                message, note = await build(channel)
                return [(await channel.send(**message), note)]
            except (discord.HTTPException, AssertionError) as exc:
                log.error(
                    "cannot post to MODERATION_CHANNEL_ID %s (%s); DMing the owners",
                    channel_id,
                    exc,
                )
        sent = []
        for user_id in sorted(await self.bot.owner_user_ids()):
            message, note = await build(None)  # files can't be sent twice: build anew
            posted = await self.bot.send_dm(user_id, **message)
            if posted is not None:
                sent.append((posted, note))
        return sent

    def review_embed(
        self, image: Image, heading: str, filename: str | None, channel: object
    ) -> discord.Embed:
        """The review post's embed: the image (when `filename` is attached), its metadata
        and who uploaded it, titled `heading: name`."""
        embed = image_embed(image, title=f"{heading}: {_label(image)}"[:256])
        uploader = image.uploader
        if uploader is not None:
            uid = discord_user_id(uploader)
            embed.add_field(
                name="Uploaded by", value=f"<@{uid}> ({uploader.name})" if uid else uploader.name
            )
        if image.near_duplicate_of:
            embed.add_field(name="Looks like", value=f"`{image.near_duplicate_of}`")
        if filename:
            embed.set_image(url=f"attachment://{filename}")
        elif image.rating is not Rating.SFW and not age_restricted(channel):
            embed.add_field(
                name="Image",
                inline=False,
                value=(
                    f"Not shown: rated {image.rating}, and this is not an age-restricted "
                    "channel. Set MODERATION_CHANNEL_ID to an age-restricted channel to see "
                    "such uploads here."
                ),
            )
        return embed

    async def review_message(
        self, image: Image, channel: object, *, queue: int | None = None
    ) -> tuple[dict[str, Any], str | None]:
        """The review post (the image unless it is above sfw and the place isn't
        age-restricted; its metadata; the buttons, and Skip when shown from the queue
        at `queue`) and the name of the file it attaches."""
        files: list[discord.File] = []
        if image.rating is Rating.SFW or age_restricted(channel):
            # Discord can't fetch a pending image from gazou: always attach the file.
            files = await show_image(
                self.bot, image, discord.Embed(), limit=upload_limit(None, channel), attach=True
            )
        filename = files[0].filename if files else None
        message = {
            "content": PENDING_CONTENT,
            "embed": self.review_embed(image, "Pending", filename, channel),
            "files": files,
            "view": moderation_view(image.id, queue),
        }
        return message, filename

    # ---- decisions -----------------------------------------------------------------

    async def on_image_decided(self, image: Image, approved: bool, by: User) -> None:
        """Update every review post (its text, its title, no buttons) and tell the
        uploader, once: a redelivered event edits the posts to the same text and DMs
        nobody again."""
        if self.bot.is_closed():
            raise ev.Undelivered("the bot is closed")
        verdict = "Approved" if approved else "Rejected"
        repo = self.bot.services.kv
        refs = _refs(await repo.kv_get(_posts_key(image.id)))
        for channel_id, message_id, filename in refs:
            channel = self.bot.get_channel(channel_id)
            # A rejected image is shown to nobody any more, the owners included.
            shown = filename if approved else None
            changes: dict[str, Any] = {
                "content": f"{verdict} by {by.name}",
                "embed": self.review_embed(image, verdict, shown, channel),
                "view": None,
            }
            if not approved:
                changes["attachments"] = []
            await self.bot.edit_messages([(channel_id, message_id)], **changes)
        if refs:
            await repo.kv_set(
                _posts_key(image.id), json.dumps(refs), expires_in=POSTS_AFTER_DECISION
            )
        uid = discord_user_id(image.uploader)
        told_key = _told_key(image.id)
        if uid is None or await repo.kv_get(told_key) == verdict:
            return
        if image.uploader is not None and by.id == image.uploader.id:
            return  # approved at upload (an owner's own): nothing they don't know
        name = (
            f"“{image.title}”"
            if image.title
            else (f"“{image.original_filename}”" if image.original_filename else "")
        )
        if approved:
            link = public_image_url(self.bot, image)
            text = (
                f"Your upload {name} (id `{image.id}`) was approved and is now in the "
                f"collection{f': {link}' if link else '.'}"
            )
        else:
            text = f"Your upload {name} (id `{image.id}`) was rejected by the owners."
        await self.bot.send_dm(uid, content=text.replace("  ", " "))
        await repo.kv_set(told_key, verdict, expires_in=POSTS_AFTER_DECISION)


async def setup(bot: GazouBot) -> None:
    await bot.add_cog(Moderation(bot))
