"""Shared fixtures: real SQLite stores in temporary folders, real images made with
Pillow, the production app factory behind aiohttp's test client."""

from __future__ import annotations

import io
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image as PILImage

from api.app import create_app
from core.models import User
from core.services import Services, open_services
from core.settings import Settings, ensure_signing_secret, load_settings

OWNER = User(id="100", name="owner")
MEMBER = User(id="200", name="member")


def make_settings(data_dir: Path, **env: str) -> Settings:
    """Settings as the environment would give them, data under `data_dir`."""
    base = {"DATA_DIR": str(data_dir), "PUBLIC_URL": "http://gazou.test", "IMAGE_WORKERS": "2"}
    return ensure_signing_secret(load_settings({**base, **env}))


def make_image(
    fmt: str = "PNG",
    size: tuple[int, int] = (64, 48),
    seed: int = 0,
    mode: str = "RGB",
    **save: object,
) -> bytes:
    """A real, distinct image: a seeded pattern, so different seeds differ in content
    and in perceptual hash."""
    rng = random.Random(seed)
    w, h = size
    img = PILImage.new(mode, size)
    # Blocks of random colours: distinct seeds give clearly different pictures.
    block = max(1, min(w, h) // 8)
    for y in range(0, h, block):
        for x in range(0, w, block):
            colour = tuple(rng.randrange(256) for _ in range(len(mode)))
            img.paste(colour if len(colour) > 1 else colour[0], (x, y, x + block, y + block))
    buf = io.BytesIO()
    if fmt.upper() in ("JPEG", "JPG") and mode != "RGB":
        img = img.convert("RGB")
    img.save(buf, fmt, **save)
    return buf.getvalue()


@pytest.fixture
def image_factory() -> Callable[..., bytes]:
    return make_image


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data", RATE_LIMITS="off")


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with open_services(settings) as opened:
        yield opened


@pytest.fixture
async def client(services: Services) -> AsyncIterator[TestClient]:
    """The production app over a real store, on a loopback port."""
    async with TestClient(TestServer(create_app(services), host="127.0.0.1")) as test_client:
        yield test_client
