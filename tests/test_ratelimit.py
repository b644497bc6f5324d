"""Rate limits: fixed windows per client, headers, 429 in each dialect's shape,
exemptions, and RATE_LIMITS=off."""

from __future__ import annotations

import io
import math
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer

from api import discord_images, miku, nekosmoe
from api.app import create_app
from api.dialect import RateLimit
from api.ratelimit import RATE_LIMITER, FixedWindowLimiter
from core.errors import RateLimited
from core.models import IngestMetadata
from core.services import Services, open_services
from core.settings import Settings
from storage.window_counters import MemoryWindowCounter
from tests.conftest import MEMBER, OWNER, make_image, make_settings

# A fixed point well inside a 10 s window, so counts never straddle a boundary.
T0 = 1_700_000_000.0


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def limited_settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data", RATE_LIMITS="on")


@pytest.fixture
async def limited(
    limited_settings: Settings,
) -> AsyncIterator[tuple[TestClient, Services, FakeClock]]:
    """The production app with rate limits on and a hand-moved clock."""
    async with open_services(limited_settings) as services:
        async with TestClient(TestServer(create_app(services), host="127.0.0.1")) as client:
            clock = FakeClock(T0)
            client.server.app[RATE_LIMITER].clock = clock
            yield client, services, clock


# ---- the limiter alone ------------------------------------------------------------


async def test_limiter_refuses_the_request_past_the_limit() -> None:
    clock = FakeClock(T0)
    limiter = FixedWindowLimiter(MemoryWindowCounter(), clock)
    rule = RateLimit(3, 10.0)
    states = [await limiter.hit("r", "c", rule) for _ in range(4)]
    assert [s.refused for s in states] == [False, False, False, True]
    assert [s.remaining for s in states] == [2, 1, 0, 0]


async def test_limiter_starts_afresh_in_the_next_window() -> None:
    clock = FakeClock(T0)
    limiter = FixedWindowLimiter(MemoryWindowCounter(), clock)
    rule = RateLimit(1, 10.0)
    await limiter.hit("r", "c", rule)
    assert (await limiter.hit("r", "c", rule)).refused
    clock.now += 10
    assert not (await limiter.hit("r", "c", rule)).refused


async def test_client_pacing_within_the_limit_is_never_refused() -> None:
    clock = FakeClock(T0 + 3.7)  # deliberately not on a window boundary
    limiter = FixedWindowLimiter(MemoryWindowCounter(), clock)
    rule = RateLimit(5, 10.0)
    for _ in range(500):  # one request every 2 s = 5 per 10 s, for 1000 s
        assert not (await limiter.hit("r", "c", rule)).refused
        clock.now += 2.0


async def test_limiter_counts_clients_and_routes_apart() -> None:
    limiter = FixedWindowLimiter(MemoryWindowCounter(), FakeClock(T0))
    rule = RateLimit(1, 10.0)
    await limiter.hit("r", "a", rule)
    assert not (await limiter.hit("r", "b", rule)).refused
    assert not (await limiter.hit("other", "a", rule)).refused


async def test_limiter_forgets_finished_windows_when_large() -> None:
    clock = FakeClock(T0)
    limiter = FixedWindowLimiter(MemoryWindowCounter(), clock)
    rule = RateLimit(1, 10.0)
    for n in range(10_000):
        await limiter.hit("r", f"c{n}", rule)
    clock.now += 20
    await limiter.hit("r", "new", rule)
    assert len(limiter.counter) == 1


async def test_limiter_forgets_finished_windows_of_every_length() -> None:
    clock = FakeClock(T0)
    limiter = FixedWindowLimiter(MemoryWindowCounter(), clock)
    for n in range(100):
        await limiter.hit("short", f"c{n}", RateLimit(1, 10.0))
        await limiter.hit("long", f"c{n}", RateLimit(1, 60.0))
    clock.now += 20
    await limiter.hit("short", "new", RateLimit(1, 10.0))
    assert len(limiter.counter) == 101  # the 60 s windows live on
    clock.now += 60
    await limiter.hit("short", "new", RateLimit(1, 10.0))
    assert len(limiter.counter) == 1


async def test_limiter_keeps_a_window_reopened_after_its_first_one_ended() -> None:
    clock = FakeClock(T0)
    limiter = FixedWindowLimiter(MemoryWindowCounter(), clock)
    rule = RateLimit(2, 10.0)
    await limiter.hit("r", "c", rule)
    clock.now += 10  # the first window is over; this opens the next
    await limiter.hit("r", "c", rule)
    await limiter.hit("r", "other", rule)  # expires the first window's record
    assert (await limiter.hit("r", "c", rule)).count == 2


async def test_window_reset_is_the_end_of_the_aligned_window() -> None:
    limiter = FixedWindowLimiter(MemoryWindowCounter(), FakeClock(T0 + 4.0))
    state = await limiter.hit("r", "c", RateLimit(5, 10.0))
    assert state.reset_at == T0 + 10.0


# ---- over HTTP (nekos.moe's limits) ------------------------------------------------


async def test_random_allows_five_then_429_with_nekos_body(limited) -> None:
    client, _, _ = limited
    for _ in range(5):
        assert (await client.get("/api/v1/random/image")).status == 200
    response = await client.get("/api/v1/random/image")
    assert response.status == 429
    assert await response.json() == {
        "message": "Too many requests, please try again later nyaa~",
        "retryAfter": 10_000,
    }
    assert response.headers["Retry-After"] == "10"


async def test_limited_responses_carry_rate_limit_headers(limited) -> None:
    client, _, _ = limited
    first = await client.get("/api/v1/random/image")
    second = await client.get("/api/v1/random/image")
    assert first.headers["X-RateLimit-Limit"] == "5"
    assert first.headers["X-RateLimit-Remaining"] == "4"
    assert second.headers["X-RateLimit-Remaining"] == "3"
    assert first.headers["X-RateLimit-Reset"] == str(int((T0 + 10) * 1000))
    assert "Retry-After" not in first.headers


async def test_error_responses_on_limited_routes_carry_headers(limited) -> None:
    client, _, _ = limited
    response = await client.get("/api/v1/images/unknown")
    assert response.status == 404
    assert response.headers["X-RateLimit-Limit"] == "5"


async def test_unlimited_routes_have_no_rate_limit_headers(limited) -> None:
    client, _, _ = limited
    response = await client.get("/api/v2/random")
    assert "X-RateLimit-Limit" not in response.headers


async def test_retry_after_counts_down_to_the_window_end(limited) -> None:
    client, _, clock = limited
    clock.now = T0 + 7.5
    for _ in range(2):
        await client.post("/api/v1/images")
    response = await client.post("/api/v1/images")
    assert response.status == 429
    assert (await response.json())["retryAfter"] == 2500
    assert response.headers["Retry-After"] == "3"


async def test_next_window_serves_again(limited) -> None:
    client, _, clock = limited
    for _ in range(6):
        await client.post("/api/v1/images/search", json={})
    assert (await client.post("/api/v1/images/search", json={})).status == 429
    clock.now += 10
    assert (await client.post("/api/v1/images/search", json={})).status == 200


async def test_image_route_allows_the_seeds_five_per_ten_seconds(limited) -> None:
    client, services, _ = limited
    image = await services.images.ingest(make_image(), IngestMetadata(), OWNER, trusted=True)
    statuses = [(await client.get(f"/api/v1/images/{image.id}")).status for _ in range(6)]
    assert statuses == [200] * 5 + [429]


async def test_each_token_has_its_own_allowance(limited) -> None:
    client, services, _ = limited
    a = (await services.tokens.issue(MEMBER, issued_by="t")).secret
    b = (await services.tokens.issue(OWNER, issued_by="t")).secret
    for _ in range(5):
        await client.get("/api/v1/random/image", headers={"Authorization": a})
    assert (await client.get("/api/v1/random/image", headers={"Authorization": a})).status == 429
    assert (await client.get("/api/v1/random/image", headers={"Authorization": b})).status == 200
    # The address's own allowance is untouched by the tokens' requests.
    assert (await client.get("/api/v1/random/image")).status == 200


async def test_bad_token_counts_against_the_address(limited) -> None:
    client, _, _ = limited
    for _ in range(5):
        await client.get("/api/v1/random/image", headers={"Authorization": "junk"})
    assert (await client.get("/api/v1/random/image")).status == 429


async def test_admin_tokens_are_exempt(limited) -> None:
    client, services, _ = limited
    admin = (await services.tokens.issue(OWNER, scopes=("admin",), issued_by="t")).secret
    for _ in range(8):
        response = await client.get(
            "/api/v1/random/image", headers={"Authorization": f"Bearer {admin}"}
        )
        assert response.status == 200
        assert "X-RateLimit-Limit" not in response.headers


async def test_upload_limit_429_comes_before_reading_the_body(limited) -> None:
    client, services, _ = limited
    token = (await services.tokens.issue(MEMBER, issued_by="t")).secret
    for seed in range(2):
        form = FormData()
        form.add_field("image", io.BytesIO(make_image(seed=seed)), filename="a.png")
        assert (
            await client.post("/api/v1/images", data=form, headers={"Authorization": token})
        ).status == 200
    form = FormData()
    form.add_field("image", io.BytesIO(make_image(seed=9)), filename="a.png")
    response = await client.post("/api/v1/images", data=form, headers={"Authorization": token})
    assert response.status == 429
    assert await services.images.pending() and len(await services.images.pending()) == 2


async def test_rate_limits_off_never_refuses(client: TestClient) -> None:
    for _ in range(12):
        response = await client.get("/api/v1/random/image")
        assert response.status == 200
        assert "X-RateLimit-Limit" not in response.headers


# ---- the 429 shape of each of my dialects ---------------------------------------------


def _limited_error() -> RateLimited:
    return RateLimited("Too many requests", retry_after=4.2, limit=5, reset=T0)


def test_miku_renders_429_as_message() -> None:
    response = miku.render_error(_limited_error())
    assert response.status == 429
    assert response.content_type == "application/json"


def test_discord_images_renders_429_with_success_false() -> None:
    response = discord_images.render_error(_limited_error())
    assert response.status == 429
    assert response.body == b'{"success":false,"message":"Too many requests."}'


def test_nekosmoe_renders_retry_after_in_ms() -> None:
    response = nekosmoe.render_error(_limited_error())
    assert response.body == (
        b'{"message":"Too many requests, please try again later nyaa~","retryAfter":4200}'
    )


# ---- the client: tokens apart from addresses, trusted proxies ------------------------


async def test_anonymous_calls_leave_a_chevereto_query_key_its_own_allowance(limited) -> None:
    client, services, _ = limited
    key = (await services.tokens.issue(MEMBER, issued_by="t")).secret
    for _ in range(30):
        await client.post("/api/1/upload")  # "Empty API key.", counted on the address
    assert (await client.post("/api/1/upload")).status == 429
    response = await client.post("/api/1/upload", params={"key": key})
    assert response.status != 429
    assert response.headers["X-RateLimit-Remaining"] == "29"


async def test_a_bad_chevereto_query_key_counts_against_the_address(limited) -> None:
    client, _, _ = limited
    for _ in range(30):
        await client.post("/api/1/upload", params={"key": "junk"})
    assert (await client.post("/api/1/upload")).status == 429


async def _remaining(client: TestClient, forwarded: str) -> str:
    response = await client.get("/api/v1/random/image", headers={"X-Forwarded-For": forwarded})
    return response.headers["X-RateLimit-Remaining"]


async def test_x_forwarded_for_is_ignored_without_trusted_proxies(limited) -> None:
    client, _, _ = limited
    assert await _remaining(client, "1.2.3.4") == "4"
    assert await _remaining(client, "5.6.7.8") == "3"  # the same (real) address


@pytest.fixture
async def proxied(tmp_path: Path) -> AsyncIterator[TestClient]:
    """The app behind a trusted proxy on loopback (the test client) and 10.0.0.0/8."""
    settings = make_settings(
        tmp_path / "data", RATE_LIMITS="on", TRUSTED_PROXIES="127.0.0.1, 10.0.0.0/8"
    )
    async with open_services(settings) as services:
        async with TestClient(TestServer(create_app(services), host="127.0.0.1")) as client:
            client.server.app[RATE_LIMITER].clock = FakeClock(T0)
            yield client


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket(proxied) -> None:
    assert await _remaining(proxied, "1.2.3.4") == "4"
    assert await _remaining(proxied, "5.6.7.8") == "4"
    assert await _remaining(proxied, "1.2.3.4") == "3"


async def test_forwarded_hops_are_walked_from_the_right_past_trusted_proxies(proxied) -> None:
    assert await _remaining(proxied, "1.2.3.4, 10.1.2.3") == "4"
    # Whatever the client wrote left of its own address is not believed.
    assert await _remaining(proxied, "6.6.6.6, 1.2.3.4, 10.9.9.9") == "3"
    response = await proxied.get(
        "/api/v1/random/image",
        headers=[("X-Forwarded-For", "7.7.7.7, 1.2.3.4"), ("X-Forwarded-For", "10.0.0.1")],
    )
    assert response.headers["X-RateLimit-Remaining"] == "2"


async def test_a_proxy_that_forwards_no_address_counts_as_itself(proxied) -> None:
    assert await _remaining(proxied, "unknown") == "4"
    assert await _remaining(proxied, "") == "3"  # both the proxy's own bucket


# ---- the upload limits MikuAPI and Discord Images publish none of ----------------------


async def test_miku_add_allows_ten_a_minute_then_429_in_miku_shape(limited) -> None:
    client, services, _ = limited
    token = (await services.tokens.issue(MEMBER, issued_by="t")).secret
    headers = {"Authorization": f"Bearer {token}"}
    statuses = [(await client.post("/api/add", headers=headers)).status for _ in range(10)]
    assert 429 not in statuses
    response = await client.post("/api/add", headers=headers)
    assert response.status == 429
    assert set(await response.json()) == {"message"}
    assert response.headers["X-RateLimit-Reset"] == str(math.ceil(T0 / 60) * 60 - int(T0))


async def test_discord_images_upload_allows_ten_a_minute_then_429(limited) -> None:
    client, services, _ = limited
    headers = {"token": (await services.tokens.issue(MEMBER, issued_by="t")).secret}
    statuses = [(await client.post("/api/upload", headers=headers)).status for _ in range(10)]
    assert 429 not in statuses
    response = await client.post("/api/upload", headers=headers)
    assert response.status == 429
    assert await response.json() == {"success": False, "message": "Too many requests."}
