"""Image commands: /random, /search, /upload, /stats, with autocomplete from the store."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from typing import Any, ClassVar, Literal, Self

import discord
from discord import app_commands
from discord.ext import commands

from cogs.client import GazouBot, defer_public, report_error, send_public
from cogs.reports import ReportButton
from cogs.shared import (
    age_restricted,
    allowed_ratings,
    image_embed,
    member,
    public_image_url,
    show_image,
    split_list,
    upload_limit,
)
from core import blacklist as blacklists
from core.blacklist import Blacklist
from core.errors import DuplicateImage, GazouError, ImageTooLarge, NotFound
from core.leaderboard import Ranking, leaderboard
from core.models import (
    Filters,
    Image,
    IngestMetadata,
    Rating,
    SearchPage,
    SearchQuery,
    Sort,
    Status,
    User,
)
from core.visibility import trusted_uploader

log = logging.getLogger("gazou.bot.images")

RatingName = Literal["sfw", "questionable", "nsfw"]
SortName = Literal["newest", "oldest", "likes", "relevance"]
SourceName = Literal["everything", "favourites"]
# What a button re-runs is kept this long after its last use; then it asks for the
# command again (Another under /random, the page buttons under /search).
RANDOM_ASK_LIFETIME = timedelta(days=30)
SEARCH_LIFETIME = timedelta(days=7)
JUMP_TIMEOUT = 600.0  # the "Go to page" box waits this long for its page number
NSFW_HINT = "Images above sfw match, but they are only shown in age-restricted channels; try there."
AUTOCOMPLETE_MAX = 25


# ---- /random's buttons: persistent, so they keep working across restarts ------------


class _StoredAsk:
    """A command's arguments, kept in kv (as JSON) under a short hash of themselves so
    persistent buttons can re-run them."""

    __slots__ = ()

    def key(self) -> str:
        """The short hash the kv entry and the buttons' custom ids name it by."""
        text = json.dumps(asdict(self), sort_keys=True)  # type: ignore[call-overload]
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @classmethod
    def from_json(cls, text: str) -> Self:
        """The arguments back from their JSON (lists become the tuples they were)."""
        data = json.loads(text)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass(frozen=True, slots=True)
class RandomAsk(_StoredAsk):
    """What a member asked /random for; re-rolls re-apply it in the current channel."""

    tags: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    rating: str | None = None
    artist: str | None = None
    character: str | None = None
    favourites: bool = False  # draw from the liked images of whoever asks


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
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
    ) -> AnotherButton:
        return cls(match["key"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        bot: GazouBot = interaction.client  # discord.py's signature takes any client
        try:
            stored = await bot.services.kv.kv_get(_kv_key(self.key))
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
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
    ) -> LikeButton:
        return cls(match["id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        bot: GazouBot = interaction.client
        try:
            liked, count = await bot.services.images.toggle_like(
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
    view.add_item(ReportButton(image.id))
    return view


async def blacklist_of(interaction: discord.Interaction[GazouBot]) -> Blacklist:
    """The tags kept from this member here (theirs, and the server's in a server)."""
    return await blacklists.effective(
        interaction.client.services.kv, interaction.user.id, interaction.guild_id
    )


async def post_random(interaction: discord.Interaction[GazouBot], ask: RandomAsk) -> None:
    """Answer with one random image matching `ask`, never one above sfw outside an
    age-restricted channel, none with a tag on the blacklist that applies to this member
    here, and not one this member saw under the same filters."""
    bot = interaction.client
    ratings = allowed_ratings(interaction.channel, ask.rating)
    blacklist = await blacklist_of(interaction)
    refusal = blacklist.refusal(ask.tags)
    if refusal is not None:
        await interaction.response.send_message(refusal, ephemeral=True)
        return
    filters = blacklist.apply(
        Filters(
            tags=ask.tags,
            exclude_tags=ask.exclude,
            ratings=ratings,
            artist=ask.artist,
            character=ask.character,
        )
    )
    if ask.favourites:
        found = await bot.services.images.random_favourites(
            member(interaction.user), filters, 1, remember=True
        )
    else:
        found = await bot.services.images.random(filters, 1, seen_by=str(interaction.user.id))
    if not found:
        text = "No image matches those filters."
        if ask.favourites:
            text = "None of the images you like matches those filters."
        if ratings and not age_restricted(interaction.channel):
            # Only when nothing showable matched: one cheap draw without the rating.
            if not ask.favourites and await bot.services.images.random(
                replace(filters, ratings=frozenset()), 1
            ):
                text = f"No sfw image matches those filters. {NSFW_HINT}"
        await interaction.response.send_message(text, ephemeral=True)
        return
    image = found[0]
    key = ask.key()
    await bot.services.kv.kv_set(
        _kv_key(key), json.dumps(asdict(ask)), expires_in=RANDOM_ASK_LIFETIME
    )
    embed = image_embed(image)
    files = await show_image(bot, image, embed, limit=upload_limit(interaction))
    # Defer only once everything that may fail is done, so failures stay ephemeral; the
    # upload to Discord itself may outlast the 3 s an answer is allowed.
    await defer_public(interaction)
    await send_public(interaction, embed=embed, files=files, view=random_view(image, key))


# ---- /search's pages: persistent buttons over a query kept in the store -------------


@dataclass(frozen=True, slots=True)
class SearchAsk(_StoredAsk):
    """What a member searched for, with the ratings of the channel they searched in."""

    tags: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    ratings: tuple[str, ...] = ()
    artist: str | None = None
    character: str | None = None
    sort: str = Sort.NEWEST.value
    favourites: bool = False  # the searcher's liked images, newest like first

    def filters(self) -> Filters:
        """The search as a draw's filters (how favourites are read)."""
        return Filters(
            tags=self.tags,
            exclude_tags=self.exclude,
            ratings=frozenset(Rating(r) for r in self.ratings),
            artist=self.artist,
            character=self.character,
        )

    def query(self) -> SearchQuery:
        return SearchQuery(
            tags=self.tags,
            exclude_tags=self.exclude,
            ratings=frozenset(Rating(r) for r in self.ratings),
            artist=self.artist,
            character=self.character,
            sort=Sort(self.sort),
        )


def _search_key(ask_key: str) -> str:
    return f"discord:search:{ask_key}"


@dataclass(frozen=True, slots=True)
class SearchPlace:
    """Which results a page button turns (and whose they are), and the page it is on:
    all of it in the button's custom id, so pages turn after a restart too."""

    key: str
    owner_id: int
    index: int

    def custom_id(self, action: str) -> str:
        return f"search:{action}:{self.key}:{self.owner_id}:{self.index}"


class SearchButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"search:(?P<action>previous|jump|next):(?P<key>[0-9a-f]{16}):"
    r"(?P<owner>[0-9]{1,21}):(?P<index>[0-9]{1,6})",
):
    """Previous, Go to page… and Next under a /search result (persistent)."""

    LOOKS: ClassVar[dict[str, tuple[str, str | None]]] = {
        "previous": ("Previous", "\N{BLACK LEFT-POINTING TRIANGLE}"),
        "jump": ("Go to page…", None),
        "next": ("Next", "\N{BLACK RIGHT-POINTING TRIANGLE}"),
    }

    def __init__(self, action: str, place: SearchPlace, *, disabled: bool = False) -> None:
        label, emoji = self.LOOKS[action]
        super().__init__(
            discord.ui.Button(
                label=label,
                emoji=emoji,
                style=discord.ButtonStyle.secondary,
                custom_id=place.custom_id(action),
                disabled=disabled,
            )
        )
        self.action = action
        self.place = place

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
    ) -> SearchButton:
        place = SearchPlace(match["key"], int(match["owner"]), int(match["index"]))
        return cls(match["action"], place)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        try:
            await self.turn(interaction)
        except Exception as exc:
            await report_error(interaction, exc)

    async def turn(self, interaction: discord.Interaction[GazouBot]) -> None:
        place = self.place
        if interaction.user.id != place.owner_id:
            await interaction.response.send_message(
                "These results belong to the member who searched; run /search yourself.",
                ephemeral=True,
            )
            return
        ask = await load_search(interaction.client, place.key)
        if self.action == "jump":
            await interaction.response.send_modal(JumpModal(ask, place))
            return
        step = -1 if self.action == "previous" else 1
        await show_page(interaction, ask, replace(place, index=max(place.index + step, 0)))


async def load_search(bot: GazouBot, key: str) -> SearchAsk:
    """The search a page button belongs to; NotFound once it is no longer kept."""
    stored = await bot.services.kv.kv_get(_search_key(key))
    if stored is None:
        raise NotFound("These results are no longer kept; run /search again.")
    return SearchAsk.from_json(stored)


def search_view(place: SearchPlace, total: int, exact: bool) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(SearchButton("previous", place, disabled=place.index == 0))
    view.add_item(SearchButton("jump", place))
    view.add_item(SearchButton("next", place, disabled=exact and place.index + 1 >= total))
    return view


async def render_page(
    bot: GazouBot, ask: SearchAsk, place: SearchPlace, limit: int, blacklist: Blacklist
) -> tuple[dict[str, Any] | None, SearchPage]:
    """The message for page `place.index` (0-based, one image a page), or None when
    that page is empty, and the search page it came from; `blacklist`'s tags are left
    out of the results (it is read again for every page, so a change applies at once)."""
    images = bot.services.images
    if ask.favourites:
        owner = User(str(place.owner_id), "")
        page = await images.favourites(owner, blacklist.apply(ask.filters()), place.index, 1)
    else:
        page = await images.search(blacklist.apply(replace(ask.query(), skip=place.index, limit=1)))
    if not page.images:
        return None, page
    image = page.images[0]
    embed = image_embed(image)
    files = await show_image(bot, image, embed, limit=limit)
    if page.total_exact:
        label = f"Page {place.index + 1} of {page.total}"
    else:
        label = f"Page {place.index + 1} of {max(page.total, place.index + 1)}+"
    message = {
        "content": label,
        "embed": embed,
        "attachments": files,
        "view": search_view(place, page.total, page.total_exact).add_item(ReportButton(image.id)),
    }
    return message, page


async def show_page(
    interaction: discord.Interaction[GazouBot], ask: SearchAsk, place: SearchPlace
) -> None:
    """Turn the results message to `place`'s page."""
    blacklist = await blacklist_of(interaction)
    message, page = await render_page(
        interaction.client, ask, place, upload_limit(interaction), blacklist
    )
    if message is None:
        last = f"{page.total}{'' if page.total_exact else '+'}"
        await interaction.response.send_message(
            f"There is no page {place.index + 1}; the results have {last} pages.", ephemeral=True
        )
        return
    # Acknowledge first: uploading the page's file may outlast Discord's 3 s.
    await interaction.response.defer()
    await interaction.edit_original_response(**message)


async def post_search(interaction: discord.Interaction[GazouBot], ask: SearchAsk) -> None:
    """Answer with the first page of `ask` (a search, or the member's favourites), its
    page buttons, and the blacklist that applies to this member here left out."""
    bot = interaction.client
    blacklist = await blacklist_of(interaction)
    refusal = blacklist.refusal(ask.tags)
    if refusal is not None:
        await interaction.response.send_message(refusal, ephemeral=True)
        return
    place = SearchPlace(ask.key(), interaction.user.id, 0)
    message, _ = await render_page(bot, ask, place, upload_limit(interaction), blacklist)
    if message is None:
        if ask.favourites:
            liked = await bot.services.images.favourites(member(interaction.user), Filters(), 0, 1)
            text = (
                "None of the images you like can be shown here (this channel's rating or "
                "a blacklist leaves them out)."
                if liked.images
                else "You have liked no image yet: press Like under an image to keep it here."
            )
            await interaction.response.send_message(text, ephemeral=True)
            return
        text = "No image matches that search."
        if ask.ratings and not age_restricted(interaction.channel):
            # Only when nothing showable matched: one more page, without the rating.
            anything = blacklist.apply(replace(ask.query(), ratings=frozenset(), limit=1))
            if (await bot.services.images.search(anything, count_total=False)).images:
                text = f"No sfw image matches that search. {NSFW_HINT}"
        await interaction.response.send_message(text, ephemeral=True)
        return
    await bot.services.kv.kv_set(
        _search_key(place.key), json.dumps(asdict(ask)), expires_in=SEARCH_LIFETIME
    )
    message["files"] = message.pop("attachments")
    await defer_public(interaction)
    await send_public(interaction, **message)


class JumpModal(discord.ui.Modal, title="Go to page"):
    """Ask for a page number."""

    page: discord.ui.TextInput[Any] = discord.ui.TextInput(
        label="Page", placeholder="a page number", max_length=6
    )

    def __init__(self, ask: SearchAsk, place: SearchPlace) -> None:
        super().__init__(timeout=JUMP_TIMEOUT)
        self.ask = ask
        self.place = place

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        text = self.page.value.strip()
        if not text.isdigit() or int(text) < 1:
            await interaction.response.send_message(
                "Give a page number (1, 2, ...).", ephemeral=True
            )
            return
        await show_page(interaction, self.ask, replace(self.place, index=int(text) - 1))

    async def on_error(
        self,
        interaction: discord.Interaction[Any],
        error: Exception,
        item: discord.ui.Item[Any] | None = None,
        /,
    ) -> None:
        # discord.py calls a modal's on_error without the `item` its BaseView's takes (its
        # Modal overrides it so); accepting both keeps this sound for either signature.
        await report_error(interaction, error)


# ---- the cog -------------------------------------------------------------------------


class Images(commands.Cog):
    """Browse, search and upload images."""

    def __init__(self, bot: GazouBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(AnotherButton, LikeButton, SearchButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(AnotherButton, LikeButton, SearchButton)

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
        from_="everything (default) or favourites: only images you liked",
    )
    @app_commands.rename(from_="from")
    async def random(
        self,
        interaction: discord.Interaction[GazouBot],
        tags: str | None = None,
        exclude: str | None = None,
        rating: RatingName | None = None,
        artist: str | None = None,
        character: str | None = None,
        from_: SourceName = "everything",
    ) -> None:
        """Show a random image (none you've seen under the same filters until all are)."""
        ask = RandomAsk(
            tags=split_list(tags),
            exclude=split_list(exclude),
            rating=rating,
            artist=(artist or "").strip() or None,
            character=(character or "").strip() or None,
            favourites=from_ == "favourites",
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
        ratings = allowed_ratings(interaction.channel, None)
        ask = SearchAsk(
            tags=split_list(tags),
            exclude=split_list(exclude),
            ratings=tuple(sorted(ratings)),
            artist=(artist or "").strip() or None,
            character=(character or "").strip() or None,
            sort=Sort(sort).value,
        )
        await post_search(interaction, ask)

    @app_commands.command(name="favourites")
    async def favourites(self, interaction: discord.Interaction[GazouBot]) -> None:
        """Page through the images you liked, newest like first."""
        ratings = allowed_ratings(interaction.channel, None)
        ask = SearchAsk(ratings=tuple(sorted(ratings)), favourites=True)
        await post_search(interaction, ask)

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
            link = public_image_url(self.bot, stored)
            where = f": {link}" if link else ""  # a private PUBLIC_URL leads nowhere
            text = f"Added to the collection{where} (id `{stored.id}`)."
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
            link = public_image_url(self.bot, existing)
            where = f": {link}" if link else ""
            return (
                f"Duplicate: this image is already in the collection{where} (id `{existing.id}`)."
            )
        return (
            f"Duplicate: this image was already uploaded and is {existing.status} "
            f"(id `{existing.id}`)."
        )

    @app_commands.command(name="stats")
    async def stats(self, interaction: discord.Interaction[GazouBot]) -> None:
        """How many images, by rating and orientation, the artists, characters, tags, and
        the week's and all time's top uploaders and most liked images."""
        stats = await self.bot.services.images.stats()
        # Most liked images above sfw are named only where they could be posted.
        ratings = allowed_ratings(interaction.channel, None)
        board = await leaderboard(self.bot.services.images, ratings=ratings)
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
        for period, ranking in (("this week", board.week), ("all time", board.all_time)):
            embed.add_field(
                name=f"Top uploaders, {period}", value=self._uploaders(ranking), inline=False
            )
            embed.add_field(
                name=f"Most liked, {period}", value=self._most_liked(ranking), inline=False
            )
        await interaction.response.send_message(embed=embed)

    @staticmethod
    def _uploaders(ranking: Ranking) -> str:
        lines = [
            # A Discord member by mention (no ping: embeds never ping), others by name.
            f"{n}. {f'<@{r.user.id}>' if r.user.id.isdigit() else r.user.name} "
            f"({r.images} {'image' if r.images == 1 else 'images'})"
            for n, r in enumerate(ranking.uploaders, 1)
        ]
        return "\n".join(lines) or "nobody yet"

    def _most_liked(self, ranking: Ranking) -> str:
        lines = []
        for n, entry in enumerate(ranking.liked, 1):
            # Short names: an embed field holds 1024 characters, five entries with links.
            title = entry.image.title or entry.image.id[:8]
            name = discord.utils.escape_markdown(title if len(title) <= 60 else title[:59] + "…")
            link = public_image_url(self.bot, entry.image)
            shown = f"[{name}]({link})" if link else f"{name} (`{entry.image.id}`)"
            lines.append(f"{n}. {shown}: {entry.likes} {'like' if entry.likes == 1 else 'likes'}")
        return "\n".join(lines) or "no likes yet"

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
