"""Image commands: /random, /search, /upload, /stats, with autocomplete from the store."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from cogs.client import GazouBot, defer_public, report_error, send_public
from cogs.shared import (
    allowed_ratings,
    image_embed,
    image_url,
    member,
    show_image,
    split_list,
    upload_limit,
)
from core.errors import DuplicateImage, GazouError, ImageTooLarge, NotFound
from core.models import Filters, Image, IngestMetadata, Rating, SearchQuery, Sort, Status
from core.visibility import trusted_uploader

log = logging.getLogger("gazou.bot.images")

RatingName = Literal["sfw", "questionable", "nsfw"]
SortName = Literal["newest", "oldest", "likes", "relevance"]
SEARCH_TIMEOUT = 600.0  # a /search result answers its member's buttons for 10 minutes
AUTOCOMPLETE_MAX = 25


# ---- /random's buttons: persistent, so they keep working across restarts ------------


@dataclass(frozen=True, slots=True)
class RandomAsk:
    """What a member asked /random for; re-rolls re-apply it in the current channel."""

    tags: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    rating: str | None = None
    artist: str | None = None
    character: str | None = None

    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @classmethod
    def from_json(cls, text: str) -> RandomAsk:
        data = json.loads(text)
        return cls(
            tags=tuple(data["tags"]),
            exclude=tuple(data["exclude"]),
            rating=data["rating"],
            artist=data["artist"],
            character=data["character"],
        )


def _kv_key(ask_key: str) -> str:
    return f"discord:random:{ask_key}"


class AnotherButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"img:again:(?P<key>[0-9a-f]{16})"
):
    """Re-roll /random with the filters of the message it sits on."""

    def __init__(self, key: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Another",
                emoji="\N{GAME DIE}",
                style=discord.ButtonStyle.primary,
                custom_id=f"img:again:{key}",
            )
        )
        self.key = key

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Button[Any], match: Any
    ) -> AnotherButton:
        return cls(match["key"])

    async def callback(self, interaction: discord.Interaction[GazouBot]) -> None:
        try:
            stored = await interaction.client.services.storage.repo.kv_get(_kv_key(self.key))
            if stored is None:
                raise NotFound("These filters are no longer known; run /random again.")
            await post_random(interaction, RandomAsk.from_json(stored))
        except Exception as exc:
            await report_error(interaction, exc)


class LikeButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"img:like:(?P<id>[0-9a-f-]{36})"
):
    """Like or unlike the image of the message it sits on."""

    def __init__(self, image_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Like",
                emoji="\N{HEAVY BLACK HEART}",
                style=discord.ButtonStyle.secondary,
                custom_id=f"img:like:{image_id}",
            )
        )
        self.image_id = image_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Button[Any], match: Any
    ) -> LikeButton:
        return cls(match["id"])

    async def callback(self, interaction: discord.Interaction[GazouBot]) -> None:
        try:
            liked, count = await interaction.client.services.images.toggle_like(
                self.image_id, member(interaction.user)
            )
            text = "You like this image" if liked else "You no longer like this image"
            await interaction.response.send_message(
                f"{text} ({count} like{'s' if count != 1 else ''}).", ephemeral=True
            )
        except Exception as exc:
            await report_error(interaction, exc)


def random_view(image: Image, ask_key: str) -> discord.ui.View:
    """Another, Source (a link, when the image has one) and Like."""
    view = discord.ui.View(timeout=None)
    view.add_item(AnotherButton(ask_key))
    if image.source_url and image.source_url.startswith(("http://", "https://")):
        view.add_item(discord.ui.Button(label="Source", url=image.source_url[:512]))
    view.add_item(LikeButton(image.id))
    return view


async def post_random(interaction: discord.Interaction[GazouBot], ask: RandomAsk) -> None:
    """Answer with one random image matching `ask`, never one above sfw outside an
    age-restricted channel, and not one this member saw under the same filters."""
    bot = interaction.client
    ratings = allowed_ratings(interaction.channel, ask.rating)
    filters = Filters(
        tags=ask.tags,
        exclude_tags=ask.exclude,
        ratings=ratings,
        artist=ask.artist,
        character=ask.character,
    )
    found = await bot.services.images.random(filters, 1, seen_by=str(interaction.user.id))
    if not found:
        await interaction.response.send_message("No image matches those filters.", ephemeral=True)
        return
    image = found[0]
    key = ask.key()
    await bot.services.storage.repo.kv_set(_kv_key(key), json.dumps(asdict(ask)))
    embed = image_embed(image)
    files = await show_image(bot, image, embed, limit=upload_limit(interaction))
    # Defer only once everything that may fail is done, so failures stay ephemeral; the
    # upload to Discord itself may outlast the 3 s an answer is allowed.
    await defer_public(interaction)
    await send_public(interaction, embed=embed, files=files, view=random_view(image, key))


# ---- /search's paginator -------------------------------------------------------------


class JumpModal(discord.ui.Modal, title="Go to page"):
    """Ask for a page number."""

    page: discord.ui.TextInput[Any] = discord.ui.TextInput(
        label="Page", placeholder="a page number", max_length=6
    )

    def __init__(self, pages: SearchPages) -> None:
        super().__init__(timeout=SEARCH_TIMEOUT)
        self.pages = pages

    async def on_submit(self, interaction: discord.Interaction[GazouBot]) -> None:
        text = self.page.value.strip()
        if not text.isdigit() or int(text) < 1:
            await interaction.response.send_message(
                "Give a page number (1, 2, ...).", ephemeral=True
            )
            return
        await self.pages.show(interaction, int(text) - 1)

    async def on_error(self, interaction: discord.Interaction[Any], error: Exception) -> None:
        await report_error(interaction, error)


class SearchPages(discord.ui.View):
    """One image per page; only the member who searched can turn the pages."""

    def __init__(
        self,
        bot: GazouBot,
        query: SearchQuery,
        owner_id: int,
        origin: discord.Interaction[GazouBot],
    ) -> None:
        super().__init__(timeout=SEARCH_TIMEOUT)
        self.bot = bot
        self.query = query
        self.owner_id = owner_id
        self.origin = origin
        self.index = 0
        self.total = 0
        self.exact = True
        self.limit = 0

    def page_label(self) -> str:
        if self.exact:
            return f"Page {self.index + 1} of {self.total}"
        return f"Page {self.index + 1} of {max(self.total, self.index + 1)}+"

    def _refresh_buttons(self) -> None:
        self.previous.disabled = self.index == 0
        self.next.disabled = self.exact and self.index + 1 >= self.total

    async def render(self, index: int) -> tuple[dict[str, Any], bool]:
        """The message for page `index` (0-based); False when that page is empty."""
        page = await self.bot.services.images.search(replace(self.query, skip=index, limit=1))
        self.total, self.exact = page.total, page.total_exact
        if not page.images:
            return {}, False
        self.index = index
        self._refresh_buttons()
        image = page.images[0]
        embed = image_embed(image)
        files = await show_image(self.bot, image, embed, limit=self.limit)
        return {
            "content": self.page_label(),
            "embed": embed,
            "attachments": files,
            "view": self,
        }, True

    async def show(self, interaction: discord.Interaction[GazouBot], index: int) -> None:
        """Turn to page `index`, editing the results message."""
        self.limit = upload_limit(interaction)
        message, found = await self.render(index)
        if not found:
            last = f"{self.total}{'' if self.exact else '+'}"
            await interaction.response.send_message(
                f"There is no page {index + 1}; the results have {last} pages.", ephemeral=True
            )
            return
        # Acknowledge first: uploading the page's file may outlast Discord's 3 s.
        await interaction.response.defer()
        await interaction.edit_original_response(**message)

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        if interaction.user.id == self.owner_id:
            return True
        await interaction.response.send_message(
            "These results belong to the member who searched; run /search yourself.", ephemeral=True
        )
        return False

    async def on_timeout(self) -> None:
        for item in self.children:
            if isinstance(item, discord.ui.Button):
                item.disabled = True
        try:
            await self.origin.edit_original_response(view=self)
        except discord.HTTPException:
            pass  # the message is gone or the interaction expired: nothing to tidy

    async def on_error(
        self, interaction: discord.Interaction[Any], error: Exception, item: discord.ui.Item[Any]
    ) -> None:
        await report_error(interaction, error)

    @discord.ui.button(
        label="Previous", emoji="\N{BLACK LEFT-POINTING TRIANGLE}", custom_id="search:previous"
    )
    async def previous(
        self, interaction: discord.Interaction[GazouBot], button: discord.ui.Button[Any]
    ) -> None:
        await self.show(interaction, max(self.index - 1, 0))

    @discord.ui.button(label="Go to page…", custom_id="search:jump")
    async def jump(
        self, interaction: discord.Interaction[GazouBot], button: discord.ui.Button[Any]
    ) -> None:
        await interaction.response.send_modal(JumpModal(self))

    @discord.ui.button(
        label="Next", emoji="\N{BLACK RIGHT-POINTING TRIANGLE}", custom_id="search:next"
    )
    async def next(
        self, interaction: discord.Interaction[GazouBot], button: discord.ui.Button[Any]
    ) -> None:
        await self.show(interaction, self.index + 1)


# ---- the cog -------------------------------------------------------------------------


class Images(commands.Cog):
    """Browse, search and upload images."""

    def __init__(self, bot: GazouBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(AnotherButton, LikeButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(AnotherButton, LikeButton)

    # ---- autocomplete --------------------------------------------------------------

    async def complete_tags(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        """Complete the last item of a comma-separated tag list."""
        head, comma, last = current.rpartition(",")
        prefix = ", ".join(split_list(head)) + ", " if comma and split_list(head) else ""
        tags, _ = await self.bot.services.images.tags(f"%{last.strip()}%", 0, AUTOCOMPLETE_MAX)
        earlier = {t.lower() for t in split_list(head)}
        choices = []
        for tag in tags:
            value = prefix + tag.name
            if tag.name.lower() not in earlier and len(value) <= 100:
                choices.append(app_commands.Choice(name=value, value=value))
        return choices

    async def complete_artists(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        artists, _ = await self.bot.services.images.artists(
            f"%{current.strip()}%", 0, AUTOCOMPLETE_MAX
        )
        return [app_commands.Choice(name=a.name[:100], value=a.name[:100]) for a in artists]

    async def complete_characters(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        found, _ = await self.bot.services.images.characters(
            f"%{current.strip()}%", 0, AUTOCOMPLETE_MAX
        )
        return [app_commands.Choice(name=c.name[:100], value=c.name[:100]) for c in found]

    # ---- commands ------------------------------------------------------------------

    @app_commands.command(name="random")
    @app_commands.describe(
        tags="comma-separated tags the image must all have",
        exclude="comma-separated tags the image must not have",
        rating="sfw, questionable or nsfw (above sfw only in age-restricted channels)",
        artist="the artist's name",
        character="a character's name",
    )
    async def random(
        self,
        interaction: discord.Interaction[GazouBot],
        tags: str | None = None,
        exclude: str | None = None,
        rating: RatingName | None = None,
        artist: str | None = None,
        character: str | None = None,
    ) -> None:
        """Show a random image (none you've seen under the same filters until all are)."""
        ask = RandomAsk(
            tags=split_list(tags),
            exclude=split_list(exclude),
            rating=rating,
            artist=(artist or "").strip() or None,
            character=(character or "").strip() or None,
        )
        await post_random(interaction, ask)

    @app_commands.command(name="search")
    @app_commands.describe(
        tags="comma-separated tags the images must all have",
        exclude="comma-separated tags the images must not have",
        artist="part of the artist's name",
        character="a character's name",
        sort="the order of the results (default: newest first)",
    )
    async def search(
        self,
        interaction: discord.Interaction[GazouBot],
        tags: str | None = None,
        exclude: str | None = None,
        artist: str | None = None,
        character: str | None = None,
        sort: SortName = "newest",
    ) -> None:
        """Search the collection and page through the results."""
        query = SearchQuery(
            tags=split_list(tags),
            exclude_tags=split_list(exclude),
            ratings=allowed_ratings(interaction.channel, None),
            artist=(artist or "").strip() or None,
            character=(character or "").strip() or None,
            sort=Sort(sort),
        )
        pages = SearchPages(self.bot, query, interaction.user.id, interaction)
        pages.limit = upload_limit(interaction)
        first = await self.bot.services.images.search(replace(query, limit=1))
        if not first.images:
            await interaction.response.send_message("No image matches that search.", ephemeral=True)
            return
        message, found = await pages.render(0)
        if not found:  # deleted between the two reads
            raise NotFound("No image matches that search.")
        message["files"] = message.pop("attachments")
        await defer_public(interaction)
        await send_public(interaction, **message)

    @app_commands.command(name="upload")
    @app_commands.describe(
        image="the image file (JPEG, PNG, GIF or WebP)",
        tags="comma-separated tags",
        artist="who made it",
        source="where it comes from (a link or a name)",
        rating="sfw (default), questionable or nsfw",
        title="a title",
    )
    async def upload(
        self,
        interaction: discord.Interaction[GazouBot],
        image: discord.Attachment,
        tags: str,
        artist: str,
        source: str | None = None,
        rating: RatingName = "sfw",
        title: str | None = None,
    ) -> None:
        """Add an image to the collection (members' uploads wait for an owner's review)."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        services = self.bot.services
        limit = services.images.max_bytes
        if image.size > limit:
            raise ImageTooLarge(
                f"Upload refused: the file is larger than {limit // (1024 * 1024)} MB."
            )
        data = await image.read()
        source = (source or "").strip()
        is_link = source.startswith(("http://", "https://"))
        meta = IngestMetadata(
            tags=split_list(tags),
            rating=Rating(rating),
            artist=artist,
            title=title or "",
            source_url=source if is_link else None,
            source_name=None if is_link or not source else source,
            original_filename=image.filename,
        )
        trusted = trusted_uploader(owner=await self.bot.is_gazou_owner(interaction.user))
        try:
            stored = await services.images.ingest(
                data, meta, member(interaction.user), trusted=trusted
            )
        except DuplicateImage as dup:
            await interaction.followup.send(
                await self._duplicate_text(dup.existing_id), ephemeral=True
            )
            return
        except GazouError as exc:
            await interaction.followup.send(f"Upload refused: {exc.message}", ephemeral=True)
            return
        if stored.status is Status.APPROVED:
            text = f"Added to the collection: {image_url(self.bot, stored)} (id `{stored.id}`)."
        else:
            text = (
                f"Thanks! Your image (id `{stored.id}`) is pending: an owner will review "
                "it, and you'll get a DM with the outcome if your DMs are open."
            )
        await interaction.followup.send(text, ephemeral=True)

    async def _duplicate_text(self, existing_id: str) -> str:
        try:
            existing = await self.bot.services.images.get(existing_id, include_pending=True)
        except NotFound:
            return f"Duplicate: this image was uploaded before (id `{existing_id}`)."
        if existing.status is Status.APPROVED:
            return (
                f"Duplicate: this image is already in the collection: "
                f"{image_url(self.bot, existing)} (id `{existing.id}`)."
            )
        return (
            f"Duplicate: this image was already uploaded and is {existing.status} "
            f"(id `{existing.id}`)."
        )

    @app_commands.command(name="stats")
    async def stats(self, interaction: discord.Interaction[GazouBot]) -> None:
        """How many images, by rating and orientation, and the artists, characters, tags."""
        stats = await self.bot.services.images.stats()
        embed = discord.Embed(title="Collection", colour=discord.Colour.blurple())
        embed.add_field(name="Images", value=str(stats.images))
        embed.add_field(name="Pending review", value=str(stats.pending))
        embed.add_field(
            name="By rating", value="\n".join(f"{name}: {n}" for name, n in stats.by_rating.items())
        )
        embed.add_field(
            name="By orientation",
            value="\n".join(f"{name}: {n}" for name, n in stats.by_orientation.items()),
        )
        embed.add_field(name="Artists", value=str(stats.artists))
        embed.add_field(name="Characters", value=str(stats.characters))
        embed.add_field(name="Tags", value=str(stats.categories))
        await interaction.response.send_message(embed=embed)

    # autocomplete wiring (decorators need the functions defined above)
    random.autocomplete("tags")(complete_tags)
    random.autocomplete("exclude")(complete_tags)
    random.autocomplete("artist")(complete_artists)
    random.autocomplete("character")(complete_characters)
    search.autocomplete("tags")(complete_tags)
    search.autocomplete("exclude")(complete_tags)
    search.autocomplete("artist")(complete_artists)
    search.autocomplete("character")(complete_characters)
    upload.autocomplete("tags")(complete_tags)
    upload.autocomplete("artist")(complete_artists)


async def setup(bot: GazouBot) -> None:
    await bot.add_cog(Images(bot))
