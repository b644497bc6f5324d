"""What the cogs share: age-restriction rules, owner checks, and how an image becomes
an embed (with its file attached when gazou's own URL is not reachable by Discord)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import discord

from core.errors import Forbidden
from core.models import Image, Rating, User

if TYPE_CHECKING:
    from cogs.client import GazouBot

# Discord's upload limit for a message outside a boosted guild.
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
MAX_UPLOAD_LIMIT = 25 * 1024 * 1024
NSFW_REFUSAL = (
    "Images rated above sfw are only posted in age-restricted channels; "
    "ask here for sfw, or use an age-restricted channel."
)


def age_restricted(channel: object) -> bool:
    """Whether `channel` is age-restricted; DMs and unknown channels count as not."""
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False


def allowed_ratings(channel: object, asked: str | None) -> frozenset[Rating]:
    """The ratings a command may show in `channel` (empty = any); Forbidden when a
    member asks for a rating above sfw outside an age-restricted channel."""
    nsfw_ok = age_restricted(channel)
    if asked:
        rating = Rating(asked)
        if rating is not Rating.SFW and not nsfw_ok:
            raise Forbidden(NSFW_REFUSAL)
        return frozenset({rating})
    return frozenset() if nsfw_ok else frozenset({Rating.SFW})


def member(user: discord.abc.User) -> User:
    """The core's view of a Discord user: its snowflake as the id."""
    return User(id=str(user.id), name=user.name)


def discord_user_id(user: User | None) -> int | None:
    """The Discord id behind a core user, when it is one (a snowflake)."""
    if user is None or not user.id.isdigit() or not 15 <= len(user.id) <= 21:
        return None
    return int(user.id)


async def require_owner(bot: GazouBot, user: discord.abc.User) -> None:
    """Forbidden unless `user` is an owner (checked in code, not by permissions)."""
    if not await bot.is_gazou_owner(user):
        raise Forbidden("Only the bot's owners can do that.")


def split_list(text: str | None) -> tuple[str, ...]:
    """`a, b ,c` -> ('a', 'b', 'c')."""
    return tuple(p.strip() for p in (text or "").split(",") if p.strip())


def upload_limit(interaction: discord.Interaction[Any] | None, channel: object = None) -> int:
    """How many bytes a file in a message may have where we are posting."""
    if interaction is not None:
        return min(interaction.filesize_limit, MAX_UPLOAD_LIMIT)
    guild = getattr(channel, "guild", None)
    return min(guild.filesize_limit, MAX_UPLOAD_LIMIT) if guild else DEFAULT_UPLOAD_LIMIT


def image_url(bot: GazouBot, image: Image) -> str:
    """The image's address on gazou's HTTP API (nekos.moe's file path)."""
    return f"{bot.services.settings.public_url}/image/{image.id}"


def public_image_url(bot: GazouBot, image: Image) -> str | None:
    """`image_url` when members can open it, None when PUBLIC_URL is private (loopback
    or a LAN address: a link there would lead nowhere)."""
    return image_url(bot, image) if bot.services.settings.public_url_is_public else None


def _human_size(size: int) -> str:
    amount = float(size)
    for unit in ("B", "KiB", "MiB"):
        if amount < 1024 or unit == "MiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount} B"


def image_embed(image: Image, *, title: str | None = None) -> discord.Embed:
    """An image's metadata as an embed coloured by its dominant colour (no image set)."""
    embed = discord.Embed(
        title=title or image.title or "Image", colour=discord.Colour.from_str(image.dominant_color)
    )
    if image.description:
        embed.description = image.description[:2000]  # embeds total 6000
    embed.add_field(name="Artist", value=image.artist.name if image.artist else "unknown")
    if image.characters:
        embed.add_field(name="Characters", value=", ".join(c.name for c in image.characters)[:1024])
    embed.add_field(name="Size", value=f"{image.width}×{image.height} · {_human_size(image.size)}")
    if image.source_url:
        name = (image.source_name or image.source_url)[:200]
        embed.add_field(name="Source", value=f"[{name}]({image.source_url})"[:1024])
    elif image.source_name:
        embed.add_field(name="Source", value=image.source_name[:1024])
    embed.add_field(name="Likes", value=str(image.likes))
    embed.add_field(name="Tags", value=", ".join(image.tag_names)[:1024] or "none", inline=False)
    embed.set_footer(text=f"{image.id} · {image.rating}")
    return embed


async def show_image(
    bot: GazouBot, image: Image, embed: discord.Embed, *, limit: int, attach: bool | None = None
) -> list[discord.File]:
    """Point `embed` at the image: its public URL when Discord can fetch it, else a file
    to attach (the thumbnail when the original is over `limit` bytes)."""
    if attach is None:
        attach = not bot.services.settings.public_url_is_public
    if not attach:
        embed.set_image(url=image_url(bot, image))
        return []
    thumbnail = image.size > limit
    data = await bot.services.images.read_bytes(image, thumbnail=thumbnail)
    filename = f"{image.id}-thumbnail.jpg" if thumbnail else image.filename
    embed.set_image(url=f"attachment://{filename}")
    return [discord.File(io.BytesIO(data), filename=filename)]
