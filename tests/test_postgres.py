"""What only the PostgreSQL repo has to show: several processes on one database
(migrating at once, inserting the same bytes at once, sweeping at once, seeing each
other's writes), refusing a newer schema, and a server that cannot be reached.
The behaviour both backends share is tested by the contract suites (test_store,
test_random, test_search, test_tokens)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg  # type: ignore[import-untyped]
import pytest

from core.errors import DuplicateImage, StorageUnavailable
from core.models import Filters, IngestMetadata, Status
from core.services import open_services
from core.settings import Settings
from storage.postgres import PostgresRepo
from storage.postgres.schema import MIGRATIONS
from tests import pg_server
from tests.conftest import OWNER, make_image
from tests.test_store import row

BACKENDS = ("postgres",)


@pytest.fixture
async def repo(database_url: str) -> AsyncIterator[PostgresRepo]:
    async with PostgresRepo(database_url) as opened:
        yield opened


async def test_processes_starting_together_migrate_once(
    postgres: pg_server.PostgresServer,
) -> None:
    url = await pg_server.create_database(postgres)
    repos = [PostgresRepo(url) for _ in range(4)]
    await asyncio.gather(*(r.open() for r in repos))
    try:
        assert [await r.schema_version() for r in repos] == [len(MIGRATIONS)] * 4
        await repos[0].kv_set("k", "v")
        assert await repos[3].kv_get("k") == "v"
    finally:
        await asyncio.gather(*(r.close() for r in repos))


async def test_a_database_from_a_newer_gazou_refuses_to_open(
    postgres: pg_server.PostgresServer,
) -> None:
    url = await pg_server.create_database(postgres)
    async with PostgresRepo(url):
        pass
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("UPDATE gazou_schema SET version = $1", len(MIGRATIONS) + 1)
    finally:
        await conn.close()
    refused = PostgresRepo(url)
    with pytest.raises(RuntimeError, match=r"schema version \d+, newer than this gazou"):
        await refused.open()
    assert refused._pool is None  # the refused open closed its connections


async def test_an_unreachable_server_is_storage_unavailable() -> None:
    port = pg_server._free_port()  # nothing listens there
    with pytest.raises(StorageUnavailable):
        await PostgresRepo(f"postgresql://postgres@127.0.0.1:{port}/gazou").open()


async def test_writes_to_a_read_only_server_are_storage_unavailable(
    postgres: pg_server.PostgresServer,
) -> None:
    url = await pg_server.create_database(postgres)
    async with PostgresRepo(url) as first:
        await first.kv_set("kept", "yes")
    # As a hot standby (or a server put in read-only mode) refuses every write.
    admin = await asyncpg.connect(postgres.url())
    try:
        await admin.execute(
            f"ALTER DATABASE {url.rsplit('/', 1)[1]} SET default_transaction_read_only = on"
        )
    finally:
        await admin.close()
    async with PostgresRepo(url) as repo:
        assert await repo.kv_get("kept") == "yes"  # reads still work
        with pytest.raises(StorageUnavailable):
            await repo.kv_set("new", "no")
        with pytest.raises(StorageUnavailable):
            await repo.insert_image(row(1, tags=("cat",)))
        assert await repo.get_tag("cat") is None


async def schema_objects(repo: PostgresRepo) -> tuple[int, int]:
    """How many indexes and foreign keys the schema has."""
    row = await repo._one(SCHEMA_OBJECTS)
    assert row is not None
    return row[0], row[1]


SCHEMA_OBJECTS = (
    "SELECT (SELECT COUNT(*) FROM pg_indexes WHERE schemaname = 'public') AS indexes, "
    "(SELECT COUNT(*) FROM pg_constraint WHERE contype = 'f') AS foreign_keys"
)


async def test_a_bulk_load_into_an_empty_store_keeps_its_indexes_and_keys(
    repo: PostgresRepo,
) -> None:
    before = await schema_objects(repo)
    assert before[1] > 0
    failing = [row(n, tags=("cat",)) for n in range(5)] + [replace(row(9), sha256=f"{1:064x}")]
    with pytest.raises(asyncpg.UniqueViolationError):
        await repo.bulk_load(failing)
    assert await schema_objects(repo) == before
    assert await repo.bulk_load([row(n, tags=("cat",), artist="A") for n in range(50)]) == 50
    assert await schema_objects(repo) == before
    assert await repo.pool_problems() == [] and await repo.integrity_check() == []
    with pytest.raises(asyncpg.ForeignKeyViolationError):  # the keys are enforced again
        async with repo.transaction() as tx:
            await tx.execute("INSERT INTO image_tags (tag_rid, seq) VALUES (999, 999)")


async def test_the_same_bytes_from_two_processes_at_once_are_stored_once(
    database_url: str, repo: PostgresRepo
) -> None:
    async with PostgresRepo(database_url) as other:
        first, second = row(1, tags=("cat",)), replace(row(2, tags=("dog",)), sha256=f"{1:064x}")
        results = await asyncio.gather(
            repo.insert_image(first), other.insert_image(second), return_exceptions=True
        )
    stored = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(stored) == 1 and len(refused) == 1
    assert isinstance(refused[0], DuplicateImage)
    assert refused[0].existing_id == stored[0].id
    assert await repo.pool_size("all") == 1
    assert await repo.pool_problems() == []


async def test_writes_from_many_processes_keep_the_pools_dense(
    database_url: str, repo: PostgresRepo
) -> None:
    others = [PostgresRepo(database_url) for _ in range(3)]
    await asyncio.gather(*(o.open() for o in others))
    try:
        writers = [repo, *others]
        images = await asyncio.gather(
            *(
                writers[n % 4].insert_image(row(n, tags=("cat", f"t{n % 3}"), artist="Alice"))
                for n in range(24)
            )
        )
        # Every process approves, rejects and deletes at once.
        await asyncio.gather(
            *(
                writers[n % 4].set_status(image.id, Status.PENDING, None)
                if n % 3 == 0
                else writers[n % 4].delete_image(image.id)
                if n % 3 == 1
                else writers[n % 4].set_like(image.id, "u", "like", True)
                for n, image in enumerate(images)
            )
        )
    finally:
        await asyncio.gather(*(o.close() for o in others))
    assert await repo.pool_problems() == []
    assert await repo.pool_size("all") == 8
    assert await repo.integrity_check() == []


async def test_two_processes_sweeping_at_once_delete_each_image_once(
    settings: Settings,
) -> None:
    async with open_services(settings) as one, open_services(settings) as two:
        meta = IngestMetadata(tags=("cat",), expires_at=datetime.now(UTC) + timedelta(hours=1))
        expiring = [
            await one.images.ingest(make_image(seed=n), meta, OWNER, trusted=True)
            for n in range(12)
        ]
        kept = await one.images.ingest(
            make_image(seed=99), IngestMetadata(tags=("cat",)), OWNER, trusted=True
        )
        later = datetime.now(UTC) + timedelta(hours=2)
        removed = await asyncio.gather(
            one.images.sweep_expired(later), two.images.sweep_expired(later)
        )
        assert sum(removed) == len(expiring)
        assert await one.storage.repo.pool_size("all") == 1
        assert [i.id for i in await two.images.random(Filters(), count=5)] == [kept.id]
        for image in expiring:
            assert await two.storage.repo.get_image(image.id) is None


async def test_two_processes_purging_values_at_once_delete_each_once(
    database_url: str, repo: PostgresRepo
) -> None:
    for n in range(40):
        await repo.kv_set(f"stale:{n}", "x", expires_in=timedelta(seconds=-1))
    await repo.kv_set("lasting", "1")
    async with PostgresRepo(database_url) as other:
        counts = await asyncio.gather(repo.kv_purge_expired(), other.kv_purge_expired())
    assert sum(counts) == 40
    assert await repo.kv_get("lasting") == "1"


async def test_another_processs_approval_is_drawn_within_a_second(
    database_url: str, repo: PostgresRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await repo.insert_image(row(1, tags=("cat",)))
    assert [i.id for i in await repo.random_images(Filters(tags=("cat",)), 5)] == [first.id]
    async with PostgresRepo(database_url) as importer:
        second = await importer.insert_image(row(2, tags=("cat",)))
    monkeypatch.setattr(repo._cache, "checked_at", 0.0)  # a second has passed
    drawn = {i.id for i in await repo.random_images(Filters(tags=("cat",)), 5)}
    assert drawn == {first.id, second.id}


async def test_writes_cancelled_anywhere_leave_no_lock_or_transaction_behind(
    database_url: str, repo: PostgresRepo
) -> None:
    image = await repo.insert_image(row(0, tags=("cat",)))
    async with PostgresRepo(database_url) as other:
        for k in range(16):
            # Cancel an image write after k turns of the loop: before, during or after
            # any of its round trips (BEGIN with the lock, the writes, COMMIT).
            task = asyncio.create_task(repo.set_like(image.id, f"u{k}", "like", True))
            for _ in range(k):
                await asyncio.sleep(0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            # Another process's image write still gets the lock (bounded wait).
            await asyncio.wait_for(other.set_like(image.id, "other", "like", k % 2 == 0), 10)
        await asyncio.wait_for(repo.insert_image(row(1, tags=("cat",))), 10)
    assert await repo.pool_problems() == []
    stored = await repo.get_image(image.id)
    assert stored is not None
    assert stored.likes == len(
        await repo._all(
            "SELECT 1 FROM likes WHERE seq = (SELECT seq FROM images WHERE id = ?)", (image.id,)
        )
    )
