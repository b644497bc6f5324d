"""The durable outbox: a pending upload made by any process reaches the owners exactly
once (also when the bot was down), redelivery after a crash posts nothing twice, the
entry commits with the change or not at all, old entries are pruned; and a decision
made in one process is served by every other within about a second."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests import botkit
from tests.botkit import EXTRA_OWNER_ID, embed_image_id, store_image
from tests.discord_standin import DiscordStandIn, SentMessage, connected_bot

# isort: split
from cogs.client import GazouBot
from cogs.moderation import PENDING_CONTENT
from core import events as ev
from core import outbox
from core.errors import NotFound
from core.models import Filters, SearchQuery, Status, User
from core.services import Services, open_services
from core.settings import Settings
from tests.conftest import ALL_BACKENDS

BACKENDS = ALL_BACKENDS
settings = botkit.settings
services = botkit.services
standin = botkit.standin

ROOT = Path(__file__).resolve().parent.parent
# Another process's upload: the same pipeline over its own connections to the same
# stack (DATA_DIR, or the test's database and bucket).
UPLOADER = """
import asyncio, json, sys
from pathlib import Path
from core.models import IngestMetadata, User
from core.services import open_services
from tests.conftest import make_image, make_settings

async def main() -> None:
    settings = make_settings(Path(sys.argv[1]), **json.loads(sys.argv[4]))
    async with open_services(settings) as services:
        meta = IngestMetadata(tags=("cat",), title="Sunset")
        image = await services.images.ingest(
            make_image(seed=int(sys.argv[2]), size=(80, 60)), meta, User(sys.argv[3], "alice")
        )
        print(image.id)

asyncio.run(main())
"""


def new_bot(services: Services) -> GazouBot:
    return GazouBot(services, guild_ready_timeout=0.05)


def owner_ids(standin: DiscordStandIn) -> list[int]:
    return [standin.owner.id, EXTRA_OWNER_ID]


def reviews_of(standin: DiscordStandIn, owner: int, image_id: str) -> list[SentMessage]:
    """The review posts of `image_id` DMed to `owner` (pending or decided since)."""
    return [m for m in standin.dms(owner) if m.embeds and embed_image_id(m) == image_id]


async def upload_in_another_process(
    data_dir: Path, seed: int, uploader_id: int, backend_env: dict[str, str]
) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        UPLOADER,
        str(data_dir),
        str(seed),
        str(uploader_id),
        json.dumps(backend_env),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode().strip()


async def last_seq(services: Services) -> int:
    entries = await services.storage.repo.outbox_after(0, 1000)
    return entries[-1].seq if entries else 0


async def test_upload_by_another_process_reaches_each_owner_exactly_once(
    standin: DiscordStandIn,
    services: Services,
    settings: Settings,
    backend_env: dict[str, str],
) -> None:
    async with connected_bot(standin, new_bot(services)) as bot:
        await bot.get_cog("Moderation")._backlog  # type: ignore[union-attr]
        assert services.outbox.running
        image_id = await upload_in_another_process(
            settings.data_dir, 7, standin.user.id, backend_env
        )
        for owner in owner_ids(standin):
            dm = await standin.wait_for_dm(owner)
            assert dm.content == PENDING_CONTENT
            assert f"mod:approve:{image_id}" in dm.custom_ids()
        await services.outbox.catch_up()  # the delivery in hand ends; nothing else is due
        assert await services.storage.repo.outbox_cursor(outbox.CONSUMER) == await last_seq(
            services
        )
    for owner in owner_ids(standin):
        assert len(reviews_of(standin, owner, image_id)) == 1
        assert len(standin.dms(owner)) == 1


async def test_upload_while_the_bot_was_down_is_posted_once_when_it_starts(
    standin: DiscordStandIn, services: Services, settings: Settings
) -> None:
    # Made by a second set of services (its own connections), as a web worker would.
    async with open_services(settings) as elsewhere:
        image = await store_image(elsewhere, 3, trusted=False, uploader=User("9", "bob"))
    async with connected_bot(standin, new_bot(services)) as bot:
        for owner in owner_ids(standin):
            await standin.wait_for_dm(owner)
        await bot.get_cog("Moderation")._backlog  # type: ignore[union-attr]
        await standin.wait_until(lambda: services.outbox.delivered, what="the outbox read")
        await services.outbox.catch_up()
    for owner in owner_ids(standin):
        assert len(reviews_of(standin, owner, image.id)) == 1
        assert len(standin.dms(owner)) == 1


async def test_outbox_alone_posts_what_the_backlog_would(
    standin: DiscordStandIn, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store_image(services, 1)  # approved: not announced
    image = await store_image(services, 2, trusted=False)
    async with connected_bot(standin, new_bot(services)):
        monkeypatch.setattr(sys.modules["cogs.moderation"], "BACKLOG_LIMIT", 0)
        dm = await standin.wait_for_dm(standin.owner)
        assert f"mod:approve:{image.id}" in dm.custom_ids()


async def test_redelivery_after_a_crash_before_the_ack_posts_and_tells_nothing_twice(
    standin: DiscordStandIn, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = services.storage.repo
    uploader = User(str(standin.user.id), "alice")
    kept = await store_image(services, 1, trusted=False, uploader=uploader)
    decided = await store_image(services, 2, trusted=False, uploader=uploader)

    async def crash_before_ack(consumer: str, seq: int) -> None:
        pass  # the process "dies" after each handler, before its acknowledgement

    monkeypatch.setattr(repo, "outbox_ack", crash_before_ack)
    async with connected_bot(standin, new_bot(services)):
        dm = await standin.wait_until(
            lambda: next(iter(reviews_of(standin, standin.owner.id, decided.id)), None)
        )
        await standin.wait_until(lambda: len(standin.dms(standin.owner)) == 2, what="2 reviews")
        await standin.click(dm, f"mod:approve:{decided.id}")
        told = await standin.wait_for_dm(standin.user)
        await standin.wait_until(lambda: len(dm.edits) == 1, what="the review edited")
        await services.outbox.catch_up()
    assert await repo.outbox_cursor(outbox.CONSUMER) == 0  # nothing was acknowledged
    edited = dict(dm)
    monkeypatch.undo()

    async with connected_bot(standin, new_bot(services)):
        await standin.wait_until(
            lambda: services.outbox.delivered >= 6, what="every entry delivered again"
        )
        await services.outbox.catch_up()
        assert await repo.outbox_cursor(outbox.CONSUMER) == await last_seq(services)
    for owner in owner_ids(standin):
        assert len(reviews_of(standin, owner, kept.id)) == 1
        assert len(reviews_of(standin, owner, decided.id)) == 1
    assert standin.dms(standin.user) == [told]  # the uploader heard once
    # The redelivered decision edited the post to what it already said.
    assert dm.content == edited["content"] == "Approved by owner"
    assert dm.embeds == edited["embeds"] and dm.components == []


async def test_a_handler_that_is_not_ready_gets_the_entry_again(services: Services) -> None:
    calls: list[str] = []

    async def not_yet(image: object) -> None:
        calls.append("not yet")
        if len(calls) == 1:
            raise ev.Undelivered("not connected")

    services.events.subscribe(ev.IMAGE_PENDING, not_yet)
    await store_image(services, 1, trusted=False)
    assert await services.outbox.catch_up() == 0
    assert await services.outbox.catch_up() == 1
    assert calls == ["not yet", "not yet"]
    assert await services.outbox.catch_up() == 0


async def test_nothing_is_consumed_while_no_one_listens(services: Services) -> None:
    await store_image(services, 1, trusted=False)
    assert await services.outbox.catch_up() == 0
    assert await services.storage.repo.outbox_cursor(outbox.CONSUMER) == 0


def add_trigger(settings: Settings, sql: str) -> None:
    with sqlite3.connect(settings.data_dir / "gazou.sqlite3") as conn:
        conn.execute(sql)


@pytest.mark.backends("sqlite")  # failures injected with SQLite triggers
@pytest.mark.parametrize(
    "failing",
    [
        # The outbox entry itself can't be written: the image must not stay either.
        "CREATE TRIGGER boom BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'boom'); END",
        # A failure after the entry was written, just before COMMIT: neither stays.
        "CREATE TRIGGER boom BEFORE UPDATE ON changes BEGIN SELECT RAISE(ABORT, 'boom'); END",
    ],
)
async def test_the_entry_commits_with_the_image_or_not_at_all(
    services: Services, settings: Settings, failing: str
) -> None:
    repo = services.storage.repo
    add_trigger(settings, failing)
    with pytest.raises(sqlite3.IntegrityError):
        await store_image(services, 1, trusted=False)
    assert await repo.outbox_after(0) == []
    assert (await repo.search(SearchQuery(statuses=frozenset(Status)))).total == 0
    add_trigger(settings, "DROP TRIGGER boom")
    image = await store_image(services, 1, trusted=False)  # the connection still works
    [entry] = await repo.outbox_after(0)
    assert (entry.kind, entry.image_id) == (ev.IMAGE_PENDING, image.id)


@pytest.mark.backends("sqlite")  # failures injected with SQLite triggers
async def test_a_decision_commits_with_its_entry_or_not_at_all(
    services: Services, settings: Settings
) -> None:
    repo = services.storage.repo
    image = await store_image(services, 1, trusted=False)
    add_trigger(
        settings,
        "CREATE TRIGGER boom BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'boom'); END",
    )
    with pytest.raises(sqlite3.IntegrityError):
        await services.images.approve(image.id, User("1", "owner"))
    assert (await services.images.get(image.id, include_pending=True)).status is Status.PENDING
    add_trigger(settings, "DROP TRIGGER boom")
    await services.images.approve(image.id, User("1", "owner"))
    entries = await repo.outbox_after(0)
    assert [(e.kind, e.payload) for e in entries] == [
        (ev.IMAGE_PENDING, {}),
        (ev.IMAGE_DECIDED, {"approved": True, "by": ["1", "owner"]}),
    ]
    # No change, no entry: approving it again announces nothing.
    await services.images.approve(image.id, User("1", "owner"))
    assert len(await repo.outbox_after(0)) == 2


async def test_prune_keeps_what_is_unacknowledged_or_recent(services: Services) -> None:
    repo = services.storage.repo
    images = [await store_image(services, seed, trusted=False) for seed in range(3)]
    entries = await repo.outbox_after(0)
    await repo.outbox_ack(outbox.CONSUMER, entries[1].seq)
    await repo.outbox_ack(outbox.CONSUMER, entries[0].seq)  # never moves back
    assert await repo.outbox_cursor(outbox.CONSUMER) == entries[1].seq
    now = datetime.now(UTC)
    assert await outbox.prune(repo, now) == 0  # all recent
    assert await outbox.prune(repo, now + outbox.KEEP_HANDLED + timedelta(seconds=1)) == 2
    assert [e.image_id for e in await repo.outbox_after(0)] == [images[2].id]
    assert await outbox.prune(repo, now + outbox.KEEP_UNHANDLED + timedelta(seconds=1)) == 1
    assert await repo.outbox_after(0) == []
    # An emptied table never hands out a seq a consumer has already passed.
    await store_image(services, 9, trusted=False)
    [entry] = await repo.outbox_after(0)
    assert entry.seq > entries[-1].seq


async def eventually(check, what: str) -> None:  # type: ignore[no-untyped-def]
    """Poll `check()` every 0.1 s, for at most 5 s (caches live about 1 s)."""
    for _ in range(50):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never saw {what}")


async def test_a_decision_in_one_process_is_served_by_another_within_a_second(
    services: Services, settings: Settings
) -> None:
    only = Filters(tags=("only-here",))
    query = SearchQuery(tags=("only-here",))
    image = await store_image(services, 1, tags=("only-here",), trusted=False)
    async with open_services(settings) as worker:
        # The worker's caches are warm with "nothing matches".
        assert await worker.images.random(only) == []
        assert (await worker.images.search(query)).total == 0
        with pytest.raises(NotFound):
            await worker.images.get(image.id)
        await services.images.approve(image.id, User("1", "owner"))

        async def public() -> bool:
            drawn = await worker.images.random(only)
            page = await worker.images.search(query)
            tag = await worker.images.tag("only-here")
            return [i.id for i in drawn] == [image.id] == [i.id for i in page.images] and (
                tag.images == 1
            )

        await eventually(public, "the approved image in the worker's random and search")
        assert (await worker.images.get(image.id)).status is Status.APPROVED

        await services.images.reject(image.id, User("1", "owner"))

        async def gone() -> bool:
            drawn = await worker.images.random(only)
            return drawn == [] and (await worker.images.search(query)).total == 0

        await eventually(gone, "the rejected image gone from the worker")
        with pytest.raises(NotFound):
            await worker.images.get(image.id)
