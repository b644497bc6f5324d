"""The gallery in a real browser: Debian's chromium, headless, driven by Playwright's
Python client (never a browser download), against the production app on loopback.
Walks through browsing, tag search, the orientation filter, an image and its copy
button, signing in with a one-time link, uploading two files with a progress bar each,
approving as an owner, and the age gate; writes screenshots at desktop and phone
widths to GAZOU_SCREENSHOTS (default: the test's tmp folder)."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from api.app import create_app
from core.models import IngestMetadata, Rating, User
from core.services import Services, open_services
from core.sessions import SessionService
from tests.conftest import MEMBER, OWNER, make_image, make_settings
from tests.servers import SKIPPED_BACKENDS

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    SKIPPED_BACKENDS["browser"] = "missing /usr/bin/chromium: apt-get install -y chromium"
playwright_api = pytest.importorskip(
    "playwright.async_api", reason="browser suite did not run: no playwright client"
)
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="browser suite did not run: /usr/bin/chromium is missing"
)
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 15_000


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[str, Services]]:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    settings = make_settings(tmp_path / "data", RATE_LIMITS="off", PUBLIC_URL=base)
    async with open_services(settings) as services:
        runner = web.AppRunner(create_app(services))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            yield base, services
        finally:
            await runner.cleanup()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("GAZOU_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def _seed(services: Services) -> None:
    sizes = [(320, 240), (240, 320), (300, 300), (400, 225), (256, 384), (360, 240)]
    for n, size in enumerate(sizes):
        tags = ("cat", "sleeping") if n % 2 == 0 else ("dog",)
        meta = IngestMetadata(tags=tags, artist="Ann" if n < 3 else "Bob", title=f"Picture {n}")
        await services.images.ingest(make_image(seed=500 + n, size=size), meta, OWNER, trusted=True)
    spicy = IngestMetadata(tags=("cat",), rating=Rating.NSFW, title="Spicy")
    await services.images.ingest(make_image(seed=520, size=(300, 200)), spicy, OWNER, trusted=True)


async def _sign_in(page: Any, base: str, services: Services, user: User, owner: bool) -> None:
    secret = await SessionService(services.kv, services.tokens).issue_link(user, owner=owner)
    await page.goto(f"{base}/login/link?t={secret}")
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{base}/me")


async def test_a_walk_through_the_gallery(
    server: tuple[str, Services], shots: Path, tmp_path: Path
) -> None:
    base, services = server
    await _seed(services)
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            await _walk(browser, base, services, shots, tmp_path)
        finally:
            await browser.close()


async def _walk(browser: Any, base: str, services: Services, shots: Path, tmp: Path) -> None:
    context = await browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(TIMEOUT_MS)
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    page = await context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)

    # Browse, then search by tag: htmx swaps the grid and puts the search in the URL.
    await page.goto(base + "/")
    await page.wait_for_load_state("networkidle")
    assert await page.locator(".grid li").count() == 6  # sfw only until the age gate
    await page.screenshot(path=str(shots / "home-desktop.png"), full_page=True)
    await page.get_by_label("Tags").fill("cat")
    await page.get_by_role("button", name="Search").click()
    await page.wait_for_function("location.search === '?q=cat'")
    await page.wait_for_function("document.querySelectorAll('.grid li').length === 3")
    # Choosing an orientation swaps the grid at once and joins the search in the URL.
    await page.get_by_label("Orientation").select_option("portrait")
    # (Waits that poll go through locators and URLs: a polled string predicate would
    # need eval, which the page's CSP forbids.)
    await page.wait_for_url(f"{base}/?q=cat&orientation=portrait")
    await playwright_api.expect(page.locator(".grid li")).to_have_count(1)

    # Open an image and copy its direct link.
    await page.locator(".grid a").first.click()
    await page.wait_for_url("**/i/*")
    direct = await page.locator("#direct-link").input_value()
    await page.get_by_role("button", name="Copy").first.click()
    assert await page.evaluate("navigator.clipboard.readText()") == direct
    await page.screenshot(path=str(shots / "image-desktop.png"), full_page=True)

    # Sign in with a one-time link as a member; upload two files, each with its own
    # progress bar and, once sent, its result.
    await _sign_in(page, base, services, MEMBER, owner=False)
    await page.goto(base + "/upload")
    uploads = [tmp / "upload.png", tmp / "second.png"]
    uploads[0].write_bytes(make_image(seed=530, size=(300, 200)))
    uploads[1].write_bytes(make_image(seed=531, size=(200, 300)))
    await page.locator("input[type=file]").set_input_files([str(u) for u in uploads])
    await page.get_by_label("Tags (comma separated)").fill("fresh")
    await page.screenshot(path=str(shots / "upload-desktop.png"), full_page=True)
    await page.get_by_role("button", name="Upload").click()
    await playwright_api.expect(page.locator(".upload-row.done")).to_have_count(2)
    rows = page.locator(".upload-row")
    assert await rows.count() == 2
    for n, upload in enumerate(uploads):
        assert await rows.nth(n).locator("strong").inner_text() == upload.name
        assert await rows.nth(n).locator("progress").get_attribute("value") == "100"
        assert await rows.nth(n).get_by_role("link", name="pending").count() == 1
    await page.screenshot(path=str(shots / "uploaded-desktop.png"), full_page=True)
    await context.close()

    # An owner approves it (htmx swaps the row); it appears on the home page.
    owner_context = await browser.new_context(viewport=DESKTOP)
    owner_context.set_default_timeout(TIMEOUT_MS)
    owner = await owner_context.new_page()
    owner.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    await _sign_in(owner, base, services, OWNER, owner=True)
    await owner.goto(base + "/mod")
    await owner.screenshot(path=str(shots / "mod-desktop.png"), full_page=True)
    await owner.get_by_role("button", name="Approve", exact=True).first.click()
    await owner.wait_for_selector(".mod-item.decided")
    await owner.goto(base + "/?q=fresh")
    assert await owner.locator(".grid li").count() == 1
    await owner_context.close()

    # Phone width in the dark scheme, and the age gate.
    phone_context = await browser.new_context(viewport=PHONE, is_mobile=True, color_scheme="dark")
    phone_context.set_default_timeout(TIMEOUT_MS)
    phone = await phone_context.new_page()
    phone.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    await phone.goto(base + "/")
    await phone.wait_for_load_state("networkidle")
    await phone.screenshot(path=str(shots / "home-phone.png"), full_page=True)
    await phone.get_by_role("link", name="Show images above sfw").click()
    await phone.screenshot(path=str(shots / "age-phone.png"), full_page=True)
    await phone.get_by_role("button", name="I am 18 or older: show them").click()
    await phone.wait_for_url(base + "/")
    assert await phone.locator(".grid li").count() == 8  # the spicy one and the approved upload
    await phone.locator(".grid a").first.click()
    await phone.wait_for_url("**/i/*")
    await phone.screenshot(path=str(shots / "image-phone.png"), full_page=True)
    await phone_context.close()

    assert problems == []  # no CSP violation, no script error


async def test_owner_pages_and_log_in_with_discord(tmp_path: Path, shots: Path) -> None:
    """An owner logs in with Discord (the stand-in's consent screen), issues a token on
    /tokens and reads /stats: screenshots of both at desktop and phone widths."""
    from tests.discord_standin import DiscordStandIn
    from web.discord_oauth import OAUTH, DiscordOAuth

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    async with DiscordStandIn() as standin:
        standin.oauth_user = standin.owner
        standin.oauth_redirect_uris = [base + "/login/discord/callback"]
        settings = make_settings(
            tmp_path / "data",
            RATE_LIMITS="off",
            PUBLIC_URL=base,
            DISCORD_TOKEN=standin.token,
            DISCORD_CLIENT_SECRET=standin.client_secret,
        )
        async with open_services(settings) as services:
            await _seed(services)
            app = create_app(services)
            app[OAUTH] = DiscordOAuth(
                settings,
                api_base=standin.api_base,
                authorize_url=str(standin.base_url.with_path("/oauth2/authorize")),
            )
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            try:
                async with playwright_api.async_playwright() as p:
                    browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
                    try:
                        await _owner_pages(browser, base, shots)
                    finally:
                        await browser.close()
            finally:
                await runner.cleanup()


async def _owner_pages(browser: Any, base: str, shots: Path) -> None:
    problems: list[str] = []
    context = await browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    await page.goto(base + "/login?next=/tokens")
    await page.get_by_role("link", name="Log in with Discord").click()
    await page.wait_for_url(base + "/tokens")  # through the stand-in and back, signed in
    await page.get_by_label("For (a name)").fill("dana")
    await page.get_by_label("Purpose").fill("a bot of hers")
    await page.get_by_role("button", name="Issue").click()
    secret = await page.locator("#token-secret").input_value()
    assert len(secret) == 100
    await page.screenshot(path=str(shots / "token-secret-desktop.png"), full_page=True)
    await page.goto(base + "/tokens")
    assert secret not in await page.content()
    await page.screenshot(path=str(shots / "tokens-desktop.png"), full_page=True)
    await page.goto(base + "/stats")
    await page.screenshot(path=str(shots / "stats-desktop.png"), full_page=True)
    await page.set_viewport_size(PHONE)
    await page.goto(base + "/tokens")
    await page.screenshot(path=str(shots / "tokens-phone.png"), full_page=True)
    await page.goto(base + "/stats")
    await page.screenshot(path=str(shots / "stats-phone.png"), full_page=True)
    await context.close()
    assert problems == []
