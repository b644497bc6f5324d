"""The leaderboard: the LeaderboardRepo contract on every backend (top uploaders, most
liked images, by period), core/leaderboard.py over it, and /stats showing it through
the Discord stand-in."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests import botkit
from tests.botkit import store_image
from tests.conftest import ALL_BACKENDS
from tests.discord_standin import DiscordStandIn
from tests.test_store import row

# isort: split
from cogs.client import GazouBot
from core.contracts import Repo
from core.importer import IMPORTER
from core.leaderboard import WEEK, leaderboard
from core.models import Image, Rating, Status, User
from core.services import Services
from storage.sqlite import SQLiteRepo

BACKENDS = ALL_BACKENDS
NOW = datetime.now(UTC)


async def insert(
    repo: Repo,
    n: int,
    uploader: User | None,
    *,
    age: timedelta = timedelta(hours=1),
    status: Status = Status.APPROVED,
    rating: Rating = Rating.SFW,
) -> Image:
    new = replace(row(n, status=status, rating=rating), uploader=uploader, created_at=NOW - age)
    return await repo.insert_image(new)


async def like(repo: Repo, image: Image, *members: str) -> None:
    for user_id in members:
        assert await repo.set_like(image.id, user_id, "like", True) is not None


# ---- the contract --------------------------------------------------------------


async def test_top_uploaders_count_approved_images_most_first(services: Services) -> None:
    repo = services.images.repo
    alice, bob, carol = User("1", "alice"), User("2", "bob"), User("3", "carol")
    for n in range(3):
        await insert(repo, n, bob)
    for n in range(3, 5):
        await insert(repo, n, alice)
    await insert(repo, 5, carol)
    # Neither pending nor rejected uploads count, nor images without an uploader.
    await insert(repo, 6, carol, status=Status.PENDING)
    await insert(repo, 7, carol, status=Status.REJECTED)
    await insert(repo, 8, None)
    ranked = await repo.top_uploaders(None, 10)
    assert [(u.id, n) for u, n in ranked] == [("2", 3), ("1", 2), ("3", 1)]
    assert [(u.id, n) for u, n in await repo.top_uploaders(None, 2)] == [("2", 3), ("1", 2)]


async def test_top_uploaders_since_counts_only_the_periods_uploads(services: Services) -> None:
    repo = services.images.repo
    old, new = User("1", "old-timer"), User("2", "newcomer")
    for n in range(3):
        await insert(repo, n, old, age=timedelta(days=30))
    await insert(repo, 3, new, age=timedelta(days=1))
    await insert(repo, 4, old, age=timedelta(days=2))
    week = await repo.top_uploaders(NOW - WEEK, 10)
    assert [(u.id, n) for u, n in week] == [("1", 1), ("2", 1)]  # a tie: by id
    assert [(u.id, n) for u, n in await repo.top_uploaders(None, 10)] == [("1", 4), ("2", 1)]


async def test_top_uploaders_leave_out_the_excluded_and_name_the_latest_upload(
    services: Services,
) -> None:
    repo = services.images.repo
    await insert(repo, 1, User("7", "old name"), age=timedelta(days=3))
    await insert(repo, 2, User("7", "new name"), age=timedelta(days=1))
    for n in range(3, 6):
        await insert(repo, n, IMPORTER)
    ranked = await repo.top_uploaders(None, 10, exclude=(IMPORTER.id,))
    assert ranked == [(User("7", "new name"), 2)]


async def test_all_time_counts_follow_every_write_that_approves_or_removes(
    services: Services,
) -> None:
    """The all-time ranking is a counter kept by the writes themselves (insert, status
    change, delete, expiry's sweep, bulk load): after each, it equals a count made here."""
    repo = services.images.repo
    a, b, c = User("a", "ann"), User("b", "ben"), User("c", "cat")
    status: dict[str, tuple[str, Status]] = {}  # image id -> (uploader, status)

    async def check() -> None:
        expected: dict[str, int] = {}
        for who, st in status.values():
            if st is Status.APPROVED:
                expected[who] = expected.get(who, 0) + 1
        ranked = await repo.top_uploaders(None, 10)
        assert {u.id: n for u, n in ranked} == expected
        assert [n for _, n in ranked] == sorted(expected.values(), reverse=True)

    for n, (who, st) in enumerate([(a, Status.APPROVED)] * 3 + [(b, Status.PENDING)] * 2):
        image = await insert(repo, n, who, status=st)
        status[image.id] = (who.id, st)
    await check()
    ids = list(status)
    for image_id, to in [
        (ids[3], Status.APPROVED),  # a pending upload approved
        (ids[0], Status.REJECTED),  # an approved one rejected
        (ids[0], Status.APPROVED),  # and approved again
        (ids[1], Status.PENDING),  # back to pending
        (ids[4], Status.REJECTED),  # a pending one rejected: no change
        (ids[3], Status.APPROVED),  # approved twice: counted once
    ]:
        await repo.set_status(image_id, to, None)
        status[image_id] = (status[image_id][0], to)
        await check()
    for image_id in (ids[2], ids[4]):  # an approved and a rejected image deleted
        await repo.delete_image(image_id)
        del status[image_id]
        await check()
    loaded = [
        replace(row(100 + n, status=st), uploader=c)
        for n, st in enumerate([Status.APPROVED] * 4 + [Status.PENDING])
    ]
    assert await repo.bulk_load(loaded) == 5
    status.update({new.id: ("c", new.status) for new in loaded})
    await check()
    expiring = await repo.insert_image(
        replace(row(200), uploader=b, created_at=NOW, expires_at=NOW + timedelta(seconds=1))
    )
    status[expiring.id] = ("b", Status.APPROVED)
    await check()
    assert await services.images.sweep_expired(NOW + timedelta(minutes=1)) == 1
    del status[expiring.id]
    await check()


async def test_most_liked_of_all_time_by_like_count(services: Services) -> None:
    repo = services.images.repo
    one, two, three = [await insert(repo, n, None) for n in range(3)]
    rejected = await insert(repo, 3, None)
    await like(repo, one, "a")
    await like(repo, two, "a", "b", "c")
    await like(repo, rejected, "a", "b", "c", "d")
    assert await repo.set_status(rejected.id, Status.REJECTED, None) is Status.APPROVED
    # `three` got no like: it is not ranked.
    assert await repo.most_liked(None, 10) == [(two.id, 3), (one.id, 1)]
    assert await repo.most_liked(None, 1) == [(two.id, 3)]
    assert three.id not in dict(await repo.most_liked(None, 10))


async def test_most_liked_since_counts_only_the_likes_given_since(services: Services) -> None:
    repo = services.images.repo
    early, late = await insert(repo, 1, None), await insert(repo, 2, None)
    await like(repo, early, "a", "b", "c")
    await asyncio.sleep(0.01)  # the likes below come strictly after `since`
    since = datetime.now(UTC)
    await like(repo, late, "a")
    await like(repo, early, "d")
    ranked = await repo.most_liked(since, 10)
    assert ranked == [(late.id, 1), (early.id, 1)]  # a tie: the newer image first
    assert await repo.most_liked(None, 10) == [(early.id, 4), (late.id, 1)]
    assert await repo.most_liked(datetime.now(UTC) + timedelta(minutes=1), 10) == []


async def test_most_liked_keeps_to_the_ratings_asked(services: Services) -> None:
    repo = services.images.repo
    sfw = await insert(repo, 1, None)
    nsfw = await insert(repo, 2, None, rating=Rating.NSFW)
    await like(repo, sfw, "a")
    await like(repo, nsfw, "a", "b")
    only_sfw = frozenset({Rating.SFW})
    assert await repo.most_liked(None, 10, only_sfw) == [(sfw.id, 1)]
    assert await repo.most_liked(NOW - WEEK, 10, only_sfw) == [(sfw.id, 1)]
    assert [i for i, _ in await repo.most_liked(None, 10)] == [nsfw.id, sfw.id]


@pytest.mark.backends("sqlite")
async def test_the_migration_counts_the_uploads_already_stored(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    async with SQLiteRepo(path) as repo:
        for n, who in enumerate(["1", "1", "2"]):
            await insert(repo, n, User(who, f"m{who}"))
        await insert(repo, 3, User("2", "m2"), status=Status.PENDING)
    with sqlite3.connect(path) as conn:  # the store as it was before the counters
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        conn.executescript(
            "DROP TABLE uploader_counts; DROP INDEX images_approved_created; "
            "CREATE INDEX images_status_uploader ON images(status, uploader_id); "
            f"PRAGMA user_version = {version - 1};"
        )
    async with SQLiteRepo(path) as repo:
        ranked = await repo.top_uploaders(None, 10)
        assert [(u.id, n) for u, n in ranked] == [("1", 2), ("2", 1)]


# ---- core ------------------------------------------------------------------------


async def test_leaderboard_has_the_week_and_all_time_without_imports_or_expired(
    services: Services,
) -> None:
    repo = services.images.repo
    member = User("42", "member")
    await insert(repo, 1, member, age=timedelta(days=20))
    recent = await insert(repo, 2, member, age=timedelta(days=1))
    imported = await insert(repo, 3, IMPORTER)
    expired = await repo.insert_image(
        replace(row(4), uploader=member, created_at=NOW, expires_at=NOW - timedelta(seconds=1))
    )
    await like(repo, recent, "a")
    await like(repo, imported, "a", "b")
    await like(repo, expired, "a", "b", "c")
    board = await leaderboard(services.images)
    # Bulk imports are nobody's uploads; their images may still be the most liked.
    assert [(r.user.id, r.images) for r in board.all_time.uploaders] == [("42", 3)]
    assert [(r.user.id, r.images) for r in board.week.uploaders] == [("42", 2)]
    # An expired image is shown to nobody, so it is not ranked either.
    assert [(e.image.id, e.likes) for e in board.week.liked] == [(imported.id, 2), (recent.id, 1)]
    assert [e.image.id for e in board.all_time.liked] == [imported.id, recent.id]


# ---- /stats ----------------------------------------------------------------------


async def test_stats_shows_top_uploaders_and_most_liked_of_both_periods(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    busy, quiet = User("111", "busy"), User("222", "quiet")
    images = [await store_image(services, n, uploader=busy, title=f"pic {n}") for n in (1, 2)]
    nsfw = await store_image(services, 3, uploader=quiet, rating=Rating.NSFW, title="lewd")
    await services.images.set_like(images[1].id, User("9", "fan"))
    await services.images.set_like(nsfw.id, User("9", "fan"))
    await services.images.set_like(nsfw.id, User("8", "fan"))

    reply = await standin.wait_for_reply(await standin.invoke_command("stats"))
    fields = {f["name"]: f["value"] for f in reply.data["embeds"][0]["fields"]}
    for period in ("this week", "all time"):
        assert fields[f"Top uploaders, {period}"] == "1. <@111> (2 images)\n2. <@222> (1 image)"
        # Outside an age-restricted channel the nsfw image is not named.
        assert fields[f"Most liked, {period}"].startswith("1. pic 2")
        assert fields[f"Most liked, {period}"].endswith(": 1 like")
        assert "lewd" not in fields[f"Most liked, {period}"]

    reply = await standin.wait_for_reply(
        await standin.invoke_command("stats", channel=standin.nsfw_channel)
    )
    fields = {f["name"]: f["value"] for f in reply.data["embeds"][0]["fields"]}
    liked = fields["Most liked, all time"].splitlines()
    assert liked[0].startswith("1. lewd") and liked[0].endswith(": 2 likes")
    assert liked[1].startswith("2. pic 2")


async def test_stats_says_so_when_nobody_has_uploaded_or_liked(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    reply = await standin.wait_for_reply(await standin.invoke_command("stats"))
    fields = {f["name"]: f["value"] for f in reply.data["embeds"][0]["fields"]}
    assert fields["Top uploaders, this week"] == "nobody yet"
    assert fields["Most liked, all time"] == "no likes yet"


# The bot fixtures (module-level names, so they win over conftest's settings/services).
settings = botkit.settings
services = botkit.services
standin = botkit.standin
bot = botkit.bot
