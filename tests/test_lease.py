"""The lease in the store (kv_claim / kv_release and core.lease.Lease): one holder at a
time, also between connections racing on one SQLite file; a lapsed lease is taken over,
a released one at once; a holder whose lease was taken stops. And `bot.serve` in the
bot role against the Discord stand-in: one gateway per token."""

from __future__ import annotations

import asyncio
import gc
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from core.lease import Lease, LeaseHeld, LeaseLost, gateway_lease_key
from storage.sqlite import SQLiteRepo
from tests import botkit
from tests.botkit import bot_settings
from tests.discord_standin import DiscordStandIn

standin = botkit.standin

GONE = timedelta(seconds=-1)  # a lease that has already lapsed
MINUTE = timedelta(minutes=1)


@pytest.fixture
async def repo(tmp_path: Path):  # type: ignore[no-untyped-def]
    repo = SQLiteRepo(tmp_path / "gazou.sqlite3")
    await repo.open()
    yield repo
    await repo.close()


async def test_claim_is_refused_while_another_holds_it_and_renewed_by_the_holder(
    repo: SQLiteRepo,
) -> None:
    assert await repo.kv_claim("lease:x", "a", MINUTE)
    assert not await repo.kv_claim("lease:x", "b", MINUTE)
    assert await repo.kv_get("lease:x") == "a"
    assert await repo.kv_claim("lease:x", "a", MINUTE)  # renewal
    assert not await repo.kv_release("lease:x", "b")
    assert await repo.kv_get("lease:x") == "a"
    assert await repo.kv_release("lease:x", "a")
    assert await repo.kv_get("lease:x") is None
    assert await repo.kv_claim("lease:x", "b", MINUTE)


async def test_a_lapsed_claim_is_taken_over(repo: SQLiteRepo) -> None:
    assert await repo.kv_claim("lease:x", "a", GONE)
    assert await repo.kv_get("lease:x") is None
    assert await repo.kv_claim("lease:x", "b", MINUTE)
    assert not await repo.kv_claim("lease:x", "a", MINUTE)
    assert await repo.kv_get("lease:x") == "b"


async def test_claims_racing_on_one_file_have_one_winner_each_time(tmp_path: Path) -> None:
    repos = [SQLiteRepo(tmp_path / "gazou.sqlite3") for _ in range(3)]
    for repo in repos:
        await repo.open()
    try:
        for round_ in range(20):
            key = f"lease:{round_}"
            won = await asyncio.gather(
                *(repo.kv_claim(key, f"holder {n}", MINUTE) for n, repo in enumerate(repos))
            )
            assert won.count(True) == 1, won
            assert await repos[0].kv_get(key) == f"holder {won.index(True)}"
    finally:
        for repo in repos:
            await repo.close()


def test_the_gateway_key_is_per_token_and_never_holds_the_token() -> None:
    key = gateway_lease_key("secret-token-1")
    assert key == gateway_lease_key("secret-token-1") != gateway_lease_key("secret-token-2")
    assert "secret" not in key


async def test_a_second_holder_is_refused_naming_the_first(repo: SQLiteRepo) -> None:
    first = Lease(repo, "lease:bot", what="the bot", holder="host:1:aa")
    await first.acquire()
    second = Lease(repo, "lease:bot", what="the bot", holder="host:2:bb")
    with pytest.raises(LeaseHeld) as refused:
        await second.acquire()
    assert refused.value.holder == "host:1:aa"
    assert refused.value.message.startswith("the bot is already running (host:1:aa holds")
    assert "\n" not in refused.value.message
    await first.release()
    await second.acquire()  # released: no need to wait for the lapse


async def test_a_dead_holders_lease_lapses_and_is_taken_over(repo: SQLiteRepo) -> None:
    # The first holder "dies": it acquired with a short ttl and never renews.
    await Lease(repo, "lease:bot", what="the bot", holder="dead", ttl=0.3).acquire()
    second = Lease(repo, "lease:bot", what="the bot", holder="next", ttl=0.3)
    with pytest.raises(LeaseHeld):
        await second.acquire()
    for _ in range(50):  # at most 5 s
        await asyncio.sleep(0.1)
        try:
            await second.acquire()
            break
        except LeaseHeld:
            continue
    assert await repo.kv_get("lease:bot") == "next"


async def test_a_kept_lease_stays_held_and_one_taken_away_stops_its_keeper(
    repo: SQLiteRepo,
) -> None:
    lease = Lease(repo, "lease:bot", what="the bot", holder="me", ttl=0.3)
    await lease.acquire()
    keeper = asyncio.create_task(lease.keep())
    # Across several lifetimes of the lease, nobody else can claim it.
    for _ in range(6):
        await asyncio.sleep(0.1)
        assert not await repo.kv_claim("lease:bot", "other", timedelta(seconds=0.3))
    assert not keeper.done()
    # Another holder takes it (as after a lapse): the keeper notices at its next renewal.
    await repo.kv_set("lease:bot", "other", expires_in=MINUTE)
    with pytest.raises(LeaseLost, match="lost the lease of the bot to other"):
        await asyncio.wait_for(keeper, 5)
    await lease.release()  # not ours any more: left alone
    assert await repo.kv_get("lease:bot") == "other"


async def test_a_running_bot_holds_the_gateway_a_second_is_refused_and_starts_after_it(
    standin: DiscordStandIn, tmp_path: Path
) -> None:
    """`bot.serve` with the bot role, for real against the stand-in, twice on one store."""
    import bot as composition_root

    settings = replace(bot_settings(tmp_path / "data", DISCORD_TOKEN=standin.token), role="bot")
    try:
        with standin.patch_discord():
            first = asyncio.create_task(composition_root.serve(settings))
            await standin.wait_until(lambda: standin.connected, what="the gateway")
            with pytest.raises(LeaseHeld):
                await composition_root.serve(settings)
            assert len(standin.identifies) == 1  # the refused one never connected
            first.cancel()  # stops as on SIGINT, giving the lease back
            await asyncio.gather(first, return_exceptions=True)
            second = asyncio.create_task(composition_root.serve(settings))
            try:
                await standin.wait_until(lambda: len(standin.identifies) == 2, what="a bot")
                await standin.wait_until(lambda: standin.connected, what="the gateway")
            finally:
                second.cancel()
                await asyncio.gather(second, return_exceptions=True)
    finally:
        gc.unfreeze()  # serve froze what the test process had built
