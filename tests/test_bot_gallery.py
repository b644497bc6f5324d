"""/gallery through the real discord.py against the Discord stand-in: a private
one-time link that signs the member in to the web gallery served by the same app."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from aiohttp.test_utils import TestClient, TestServer

from tests import botkit
from tests.discord_standin import DiscordStandIn

# isort: split
from api.app import create_app
from cogs.client import GazouBot
from core.services import Services
from tests.conftest import ALL_BACKENDS

BACKENDS = ALL_BACKENDS

settings = botkit.settings
services = botkit.services
standin = botkit.standin
bot = botkit.bot


async def link_from(standin: DiscordStandIn, **who: object) -> str:
    inter = await standin.invoke_command("gallery", **who)  # type: ignore[arg-type]  # user=
    reply = await standin.wait_for_reply(inter)
    assert reply.type == 4 and reply.ephemeral
    found = re.search(r"(http://\S+/login/link\?t=[\w-]+)", reply.data["content"])
    assert found, reply.data["content"]
    assert found.group(1).startswith("http://127.0.0.1:8080/")  # PUBLIC_URL
    parts = urlsplit(found.group(1))
    return f"{parts.path}?{parts.query}"


async def follow(client: TestClient, link: str) -> int:
    page = await (await client.get(link)).text()
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    secret = re.search(r'name="t" value="([^"]+)"', page)
    assert csrf and secret
    response = await client.post(
        "/login/link",
        data={"csrf": csrf.group(1), "t": secret.group(1)},
        allow_redirects=False,
    )
    return response.status


async def test_gallery_answers_privately_with_a_link_that_signs_in_once(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    link = await link_from(standin)
    async with TestClient(TestServer(create_app(services), host="127.0.0.1")) as client:
        assert await follow(client, link) == 303
        me = await (await client.get("/me")).text()
        assert f"Sign out {standin.user.name}" in me
        assert (await client.get("/mod")).status == 403  # a member, not an owner
    async with TestClient(TestServer(create_app(services), host="127.0.0.1")) as other:
        assert await follow(other, link) == 401  # used up


async def test_an_owners_link_opens_the_moderation_queue(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    link = await link_from(standin, user=standin.owner)
    async with TestClient(TestServer(create_app(services), host="127.0.0.1")) as client:
        assert await follow(client, link) == 303
        assert (await client.get("/mod")).status == 200
