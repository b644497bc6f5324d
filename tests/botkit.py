"""Fixtures and helpers for the bot tests: the real GazouBot over a real temporary store,
connected to the local Discord stand-in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.discord_standin import DiscordStandIn, connected_bot

# isort: split
# discord.py after the stand-in: it silences discord.py's import-time audioop warning.
from cogs.client import GazouBot
from core.models import Image, IngestMetadata, Rating, User
from core.services import Services, open_services
from core.settings import Settings
from tests.conftest import make_image, make_settings

# A second owner, named only by OWNER_IDS (the application owner is standin.owner).
EXTRA_OWNER_ID = 1_190_000_000_000_000_001


def bot_settings(data_dir: Path, **env: str) -> Settings:
    """Settings as a newcomer has them: PUBLIC_URL on loopback, so images are attached."""
    base = {
        "RATE_LIMITS": "off",
        "PUBLIC_URL": "http://127.0.0.1:8080",
        "OWNER_IDS": str(EXTRA_OWNER_ID),
    }
    return make_settings(data_dir, **{**base, **env})


@pytest.fixture
def settings(tmp_path: Path, backend_env: dict[str, str]) -> Settings:
    return bot_settings(tmp_path / "data", **backend_env)


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with open_services(settings) as opened:
        yield opened


@pytest.fixture
async def standin() -> AsyncIterator[DiscordStandIn]:
    # Discord's rule: an interaction unanswered after 3 s is gone.
    async with DiscordStandIn(interaction_deadline=3.0) as s:
        s.add_user("second-owner", user_id=EXTRA_OWNER_ID)
        yield s


@pytest.fixture
async def bot(standin: DiscordStandIn, services: Services) -> AsyncIterator[GazouBot]:
    async with connected_bot(standin, GazouBot(services, guild_ready_timeout=0.05)) as b:
        yield b  # type: ignore[misc]


async def store_image(
    services: Services,
    seed: int,
    *,
    tags: tuple[str, ...] = ("cat",),
    rating: Rating = Rating.SFW,
    artist: str | None = "someone",
    trusted: bool = True,
    uploader: User | None = None,
    title: str = "",
    source_url: str | None = None,
) -> Image:
    """Ingest a real Pillow image through the real pipeline."""
    meta = IngestMetadata(
        tags=tags, rating=rating, artist=artist, title=title, source_url=source_url
    )
    return await services.images.ingest(
        make_image(seed=seed, size=(80, 60)),
        meta,
        uploader or User("100", "owner"),
        trusted=trusted,
    )


def embed_image_id(message: dict) -> str:
    """The image id an embed shows (gazou puts it first in the footer)."""
    return message["embeds"][0]["footer"]["text"].split(" · ")[0]
