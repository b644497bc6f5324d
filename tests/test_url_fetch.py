"""Safe URL downloads (api/fetch.py) against a loopback server the tests start."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from api.fetch import address_allowed, fetch_url
from core.errors import InvalidInput
from tests.conftest import make_image

PNG = make_image(seed=5)


def source_app() -> web.Application:
    """A little image host: an image, redirect chains, a slow body, a huge body."""

    async def image(request: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    async def hop(request: web.Request) -> web.Response:
        left = int(request.match_info["n"])
        target = "/cat.png" if left == 0 else f"/hop/{left - 1}"
        raise web.HTTPFound(target)

    async def to_elsewhere(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def slow(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        await response.prepare(request)
        for _ in range(50):  # 50 x 0.1 s: far longer than the test's time limit
            await response.write(b"x" * 10)
            await asyncio.sleep(0.1)
        return response

    async def huge(request: web.Request) -> web.StreamResponse:
        # Streamed without a Content-Length, so only counting the body can stop it.
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        await response.prepare(request)
        for _ in range(64):
            await response.write(b"x" * 16384)
        return response

    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404, text="no")

    app = web.Application()
    app.router.add_get("/cat.png", image)
    app.router.add_get("/hop/{n}", hop)
    app.router.add_get("/to", to_elsewhere)
    app.router.add_get("/slow", slow)
    app.router.add_get("/huge", huge)
    app.router.add_get("/missing", missing)
    return app


@pytest.fixture
async def source() -> AsyncIterator[str]:
    async with TestServer(source_app(), host="127.0.0.1") as server:
        yield f"http://127.0.0.1:{server.port}"


async def fetch(
    url: str, *, allow_private: bool = True, max_bytes: int = 1 << 20, time_limit: float = 5.0
):  # type: ignore[no-untyped-def]
    return await fetch_url(
        url, max_bytes=max_bytes, time_limit=time_limit, allow_private=allow_private
    )


async def test_fetch_downloads_an_image_with_its_name(source: str) -> None:
    fetched = await fetch(f"{source}/cat.png")
    assert fetched.data == PNG
    assert fetched.filename == "cat.png"
    assert fetched.content_type == "image/png"


async def test_fetch_follows_five_redirects(source: str) -> None:
    fetched = await fetch(f"{source}/hop/4")  # 5 redirects in all
    assert fetched.data == PNG
    assert fetched.url.endswith("/cat.png")


async def test_fetch_refuses_a_sixth_redirect(source: str) -> None:
    with pytest.raises(InvalidInput, match="redirects more than 5 times"):
        await fetch(f"{source}/hop/5")


async def test_fetch_stops_a_slow_body_at_the_time_limit(source: str) -> None:
    started = time.monotonic()
    with pytest.raises(InvalidInput, match=r"took longer than 0\.5 s"):
        await fetch(f"{source}/slow", time_limit=0.5)
    assert time.monotonic() - started < 3


async def test_fetch_stops_an_oversized_streamed_body(source: str) -> None:
    with pytest.raises(InvalidInput, match="larger than"):
        await fetch(f"{source}/huge", max_bytes=100_000)


async def test_fetch_refuses_an_oversized_declared_length(source: str) -> None:
    with pytest.raises(InvalidInput, match="larger than"):
        await fetch(f"{source}/cat.png", max_bytes=len(PNG) - 1)


async def test_fetch_reports_an_error_status(source: str) -> None:
    with pytest.raises(InvalidInput, match="HTTP 404"):
        await fetch(f"{source}/missing")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.org/a.png",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "http://",
        "not a url",
    ],
)
async def test_fetch_refuses_non_http_urls(url: str) -> None:
    with pytest.raises(InvalidInput, match="http"):
        await fetch(url, allow_private=False)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "10.0.0.1",
        "192.168.1.10",
        "172.16.0.5",
        "169.254.169.254",
        "0.0.0.0",
        "[::1]",
        "[fe80::1]",
        "224.0.0.1",
        "100.64.0.1",
        "[::ffff:127.0.0.1]",
        "240.0.0.1",
    ],
)
async def test_fetch_refuses_literal_private_addresses(host: str) -> None:
    with pytest.raises(InvalidInput, match="private or reserved"):
        await fetch(f"http://{host}/cat.png", allow_private=False)


async def test_fetch_refuses_a_name_resolving_to_loopback(source: str) -> None:
    port = source.rsplit(":", 1)[1]
    with pytest.raises(InvalidInput, match="private or reserved"):
        await fetch(f"http://localhost:{port}/cat.png", allow_private=False)


def _only(address: str):  # type: ignore[no-untyped-def]
    """An address rule under which the test server's address stands in for a public
    host and every other address keeps the real rule."""
    return lambda a: a == address or address_allowed(a)


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.2:{port}/cat.png",
        "http://[::1]:{port}/cat.png",
        "http://10.1.2.3:{port}/cat.png",
    ],
)
async def test_fetch_refuses_a_redirect_to_a_private_address(source: str, target: str) -> None:
    port = source.rsplit(":", 1)[1]
    url = f"{source}/to?to={target.format(port=port)}"
    with pytest.raises(InvalidInput, match="private or reserved"):
        await fetch_url(url, max_bytes=1 << 20, time_limit=5, is_allowed=_only("127.0.0.1"))


async def test_fetch_refuses_a_redirect_to_a_name_resolving_to_loopback(source: str) -> None:
    port = source.rsplit(":", 1)[1]
    url = f"{source}/to?to=http://localhost:{port}/cat.png"
    checked: list[str] = []

    def first_only(address: str) -> bool:
        """The start URL's literal address is the first one checked and stands in for a
        public host; everything after it (the redirect's resolved name) meets the real
        rule."""
        checked.append(address)
        return len(checked) == 1 or address_allowed(address)

    with pytest.raises(InvalidInput, match="private or reserved"):
        await fetch_url(url, max_bytes=1 << 20, time_limit=5, is_allowed=first_only)
    assert checked[0] == "127.0.0.1" and len(checked) >= 2


async def test_fetch_follows_redirects_the_rule_allows(source: str) -> None:
    fetched = await fetch_url(
        f"{source}/to?to={source}/cat.png",
        max_bytes=1 << 20,
        time_limit=5,
        is_allowed=_only("127.0.0.1"),
    )
    assert fetched.data == PNG


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("93.184.215.14", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("fc00::1", False),
        ("::", False),
        ("ff02::1", False),
        ("198.18.0.1", False),
        ("garbage", False),
    ],
)
def test_address_allowed_only_for_public_unicast(address: str, allowed: bool) -> None:
    assert address_allowed(address) is allowed
