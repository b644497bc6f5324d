"""The metadata store on every backend (the `repo` fixture: SQLite, PostgreSQL):
migrations, reopening, the bulk loader keeping the same invariants as one-by-one
inserts, the read cache, kv expiry. Tests of SQLite's own machinery (WAL, pragmas,
its migrations) use `sqlite_repo`."""

from __future__ import annotations

import sqlite3
import sys
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest

import storage.postgres.schema
from core.errors import DuplicateImage
from core.models import Filters, NewImage, Rating, SearchQuery, Sort, Status, User, new_id
from storage.postgres import PostgresRepo
from storage.schema import MIGRATIONS
from storage.sqlite import SQLiteRepo
from tests.conftest import ALL_BACKENDS
from tests.test_random import store_pool_problems

BACKENDS = ALL_BACKENDS
# What a bulk load of known bytes raises, by backend.
INTEGRITY_ERRORS = (sqlite3.IntegrityError, asyncpg.IntegrityConstraintViolationError)
Repo = SQLiteRepo | PostgresRepo

TABLES = {
    "tags",
    "artists",
    "characters",
    "albums",
    "images",
    "image_tags",
    "image_characters",
    "pools",
    "pool_slots",
    "likes",
    "seen",
    "tokens",
    "token_requests",
    "kv",
}


def connection_threads() -> set[threading.Thread]:
    """Live threads other than asyncio's default executor (which comes and goes)."""
    return {t for t in threading.enumerate() if not t.name.startswith("asyncio_")}


@pytest.fixture
def new_repo(tmp_path: Path, database_url: str) -> Callable[[], Repo]:
    """Another (unopened) repo on this test's store, as another process has it."""
    if database_url:
        return lambda: PostgresRepo(database_url)
    return lambda: SQLiteRepo(tmp_path / "store.sqlite3")


@pytest.fixture
async def repo(new_repo: Callable[[], Repo]) -> AsyncIterator[Repo]:
    store = new_repo()
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def sqlite_repo(tmp_path: Path) -> AsyncIterator[SQLiteRepo]:
    store = SQLiteRepo(tmp_path / "store.sqlite3")
    await store.open()
    yield store
    await store.close()


def migrations(repo: Repo) -> list[str]:
    return storage.postgres.schema.MIGRATIONS if isinstance(repo, PostgresRepo) else MIGRATIONS


def row(
    n: int,
    *,
    tags: tuple[str, ...] = (),
    status: Status = Status.APPROVED,
    rating: Rating = Rating.SFW,
    artist: str | None = None,
    characters: tuple[str, ...] = (),
) -> NewImage:
    """A plausible image row (metadata only) numbered `n`."""
    return NewImage(
        id=new_id(),
        sha256=f"{n:064x}",
        md5=f"{n:032x}",
        phash=(n * 0x9E3779B97F4A7C15) % (1 << 64),
        mimetype="image/png",
        extension="png",
        size=1000 + n,
        width=64,
        height=48,
        aspect_ratio="4:3",
        orientation="landscape",
        dominant_color="#000000",
        animated=False,
        thumbnail_size=100,
        rating=rating,
        status=status,
        title=f"n{n}",
        description="",
        source_name=None,
        source_url=None,
        original_filename=None,
        artist=artist,
        characters=characters,
        tags=tags,
        album_id=None,
        uploader=User("1", "u"),
        approver=None,
        created_at=datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=n),
        expires_at=None,
        near_duplicate_of=None,
    )


async def test_a_new_store_runs_every_migration(repo: Repo) -> None:
    assert await repo.schema_version() == len(migrations(repo))


async def test_a_new_store_has_every_table(sqlite_repo: SQLiteRepo) -> None:
    repo = sqlite_repo
    rows = await repo._all("SELECT name FROM sqlite_master WHERE type = 'table'")
    assert TABLES <= {r[0] for r in rows}


async def test_the_store_runs_in_wal_mode(sqlite_repo: SQLiteRepo, tmp_path: Path) -> None:
    repo = sqlite_repo
    assert (await repo._one("PRAGMA journal_mode"))[0] == "wal"
    # WAL is a property of the file: a fresh connection sees it too.
    with sqlite3.connect(tmp_path / "store.sqlite3") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_foreign_keys_are_enforced_on_both_connections(sqlite_repo: SQLiteRepo) -> None:
    repo = sqlite_repo
    assert (await repo._one("PRAGMA foreign_keys"))[0] == 1
    async with repo.transaction() as tx:
        assert (await tx.one("PRAGMA foreign_keys"))[0] == 1
    with pytest.raises(sqlite3.IntegrityError):
        async with repo.transaction() as tx:
            await tx.execute("INSERT INTO image_tags (tag_rid, seq) VALUES (999, 999)")


async def test_reopening_keeps_data_and_does_not_rerun_migrations(
    new_repo: Callable[[], Repo],
) -> None:
    async with new_repo() as first:
        await first.kv_set("kept", "yes")
        await first.upsert_tag("cat")
    async with new_repo() as second:
        # Re-running migration 1 would fail on CREATE TABLE of an existing table.
        assert await second.schema_version() == len(migrations(second))
        assert await second.kv_get("kept") == "yes"
        assert (await second.get_tag("cat")) is not None


async def test_a_store_from_a_newer_gazou_refuses_to_open(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    async with SQLiteRepo(path):
        pass
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    threads = connection_threads()
    repo = SQLiteRepo(path)
    with pytest.raises(RuntimeError, match=r"schema version \d+, newer than this gazou"):
        await repo.open()
    # The refused open leaves no connection (and no worker thread) behind.
    started = connection_threads() - threads
    for thread in started:
        thread.join(timeout=2)
    assert not [t for t in started if t.is_alive()]
    await repo.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) + 1


async def test_bulk_load_inserts_rows_with_their_tags_artists_and_characters(repo: Repo) -> None:
    rows = [
        row(
            n,
            tags=("cat", "dog")[: 1 + n % 2],
            artist=f"artist {n % 3}",
            characters=("Neko",) if n % 4 == 0 else (),
        )
        for n in range(40)
    ]
    assert await repo.bulk_load(rows, chunk=7) == 40
    image = await repo.get_image(rows[4].id)
    assert image is not None
    assert image.tag_names == ["cat"]
    assert image.artist is not None and image.artist.name == "artist 1"
    assert [c.name for c in image.characters] == ["Neko"]
    assert image.phash == rows[4].phash
    assert await store_pool_problems(repo) == []


async def test_bulk_load_puts_only_approved_rows_in_the_pools(repo: Repo) -> None:
    statuses = [Status.APPROVED, Status.PENDING, Status.REJECTED]
    rows = [row(n, tags=("cat",), status=statuses[n % 3]) for n in range(30)]
    await repo.bulk_load(rows)
    assert await repo.pool_size("all") == 10
    drawn = await repo.random_images(Filters(tags=("cat",)), 30)
    assert {i.id for i in drawn} == {r.id for r in rows if r.status is Status.APPROVED}
    assert await store_pool_problems(repo) == []


async def test_bulk_load_appends_to_a_store_that_already_has_images(repo: Repo) -> None:
    first = await repo.insert_image(row(0, tags=("cat",), artist="Alice"))
    await repo.bulk_load([row(n, tags=("cat", "new"), artist="alice") for n in range(1, 6)])
    await repo.insert_image(row(6, tags=("cat",)))
    assert await repo.pool_size("all") == 7
    # "alice" is the same artist as "Alice": names are unique without regard to case.
    artist = await repo.get_artist("Alice")
    assert artist is not None and artist.images == 6
    page = await repo.search(SearchQuery(tags=("cat",), limit=100))
    assert page.total == 7 and page.images[-1].id == first.id
    assert await store_pool_problems(repo) == []


async def test_inserting_stored_bytes_again_raises_duplicate_with_the_stored_id(
    repo: Repo,
) -> None:
    first = await repo.insert_image(row(0, tags=("cat",)))
    with pytest.raises(DuplicateImage) as raised:
        await repo.insert_image(replace(row(1, tags=("dog",)), sha256=first.sha256))
    assert raised.value.existing_id == first.id
    assert await repo.pool_size("all") == 1
    assert await repo.get_tag("dog") is None
    assert await store_pool_problems(repo) == []


async def test_bulk_load_with_a_duplicate_stores_nothing(repo: Repo) -> None:
    existing = row(0)
    await repo.insert_image(existing)
    rows = [row(n, tags=("cat",)) for n in range(1, 5)] + [replace(row(9), sha256=existing.sha256)]
    with pytest.raises(INTEGRITY_ERRORS):
        await repo.bulk_load(rows)
    assert await repo.pool_size("all") == 1
    assert (await repo._one("SELECT COUNT(*) FROM images"))[0] == 1
    assert await repo.get_tag("cat") is None
    assert await store_pool_problems(repo) == []


async def test_bulk_load_leaves_the_write_ahead_log_folded_in(
    sqlite_repo: SQLiteRepo, tmp_path: Path
) -> None:
    repo = sqlite_repo
    await repo.bulk_load([row(n, tags=("cat", "dog")) for n in range(2000)])
    assert (tmp_path / "store.sqlite3-wal").stat().st_size == 0
    assert await repo.pool_size("tag:1") == 2000


async def test_integrity_check_of_a_healthy_store_is_empty(repo: Repo) -> None:
    await repo.bulk_load([row(n, tags=("cat",)) for n in range(5)])
    assert await repo.integrity_check() == []


# ---- hydrating images: members shared across reads, never stale ------------------------


async def test_images_share_their_tag_objects_until_something_changes(repo: Repo) -> None:
    await repo.bulk_load(
        [
            row(1, tags=("cat", "Blue")),
            row(2, tags=("cat",)),
            row(3, tags=("cat",), status=Status.PENDING),
        ]
    )
    first = await repo.search(SearchQuery(sort=Sort.OLDEST))
    one, two = first.images
    # Sorted as SQLite's NOCASE sorts, and one Tag object for both images.
    assert [t.name for t in one.tags] == ["Blue", "cat"]
    assert one.tags[1] is two.tags[0] and one.tags[1].images == 2
    pending = (await repo.search(SearchQuery(statuses=frozenset({Status.PENDING})))).images[0]
    await repo.set_status(pending.id, Status.APPROVED, User("9", "mod"))
    again = (await repo.search(SearchQuery(sort=Sort.OLDEST))).images
    assert [t.images for t in again[0].tags] == [1, 3]  # the approval is counted at once


async def test_a_write_drops_the_remembered_members(repo: Repo) -> None:
    await repo.bulk_load([row(1, tags=("cat", "dog"))])
    [seq] = [r[0] for r in await repo._all("SELECT seq FROM images")]
    [image] = await repo._images_by_seq([seq])
    assert [t.name for t in image.tags] == ["cat", "dog"]
    async with repo.transaction() as tx:
        await tx.execute("DELETE FROM tags WHERE name = 'dog'")
        await tx.execute("UPDATE tags SET description = 'meow' WHERE name = 'cat'")
    [image] = await repo._images_by_seq([seq])
    assert [(t.name, t.description) for t in image.tags] == [("cat", "meow")]


async def test_only_writes_that_may_touch_images_drop_the_members(repo: Repo) -> None:
    await repo.bulk_load([row(1, tags=("cat",))])
    [seq] = [r[0] for r in await repo._all("SELECT seq FROM images")]
    [first] = await repo._images_by_seq([seq])
    await repo.kv_set("anything", "1")  # leaves images alone
    [second] = await repo._images_by_seq([seq])
    assert second.tags[0] is first.tags[0]
    await repo.set_like(first.id, "7", "like", True)
    [third] = await repo._images_by_seq([seq])
    assert third.tags[0] is not first.tags[0] and third.likes == 1


async def test_changes_by_another_process_are_seen_within_a_second(
    new_repo: Callable[[], Repo], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with new_repo() as server, new_repo() as importer:
        await server.bulk_load([row(1, tags=("cat",))])
        [image] = (await server.search(SearchQuery())).images
        assert image.tags[0].images == 1
        # Another process (bot.py import) adds an approved cat while the server runs.
        await importer.bulk_load([row(2, tags=("cat",))])
        [seq] = [
            r[0] for r in await server._all("SELECT seq FROM images WHERE id = ?", (image.id,))
        ]
        monkeypatch.setattr(server._cache, "checked_at", 0.0)  # a second has passed
        [again] = await server._images_by_seq([seq])
        assert again.tags[0].images == 2


async def test_past_the_cap_the_tags_outlive_their_combinations(
    repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    import itertools

    monkeypatch.setattr(sys.modules[type(repo).__module__], "CATALOGUE_CAP", 8)
    combos = [c for k in (1, 2, 3) for c in itertools.combinations("abcd", k)]  # 14
    await repo.bulk_load([row(n, tags=combo) for n, combo in enumerate(combos)])
    seqs = [r[0] for r in await repo._all("SELECT seq FROM images ORDER BY seq")]
    for seq, combo in zip(seqs, combos, strict=True):
        [image] = await repo._images_by_seq([seq])
        assert tuple(t.name for t in image.tags) == combo
    # The combinations went past the cap and started over; the four tags stayed.
    assert len(repo._cache.sets["tags"]) <= 8
    assert sorted(t.name for t in repo._cache.objects["tags"].values()) == list("abcd")


async def test_an_expiring_value_is_gone_once_its_time_has_passed(repo: Repo) -> None:
    await repo.kv_set("lasting", "1")
    await repo.kv_set("fresh", "2", expires_in=timedelta(hours=1))
    await repo.kv_set("stale", "3", expires_in=timedelta(seconds=-1))
    assert [await repo.kv_get(k) for k in ("lasting", "fresh", "stale")] == ["1", "2", None]


async def test_setting_a_value_again_replaces_its_expiry(repo: Repo) -> None:
    await repo.kv_set("key", "old", expires_in=timedelta(seconds=-1))
    await repo.kv_set("key", "new")
    assert await repo.kv_get("key") == "new"
    assert await repo.kv_purge_expired() == 0


async def test_purge_deletes_only_the_expired_values(repo: Repo) -> None:
    await repo.kv_set("lasting", "1")
    await repo.kv_set("fresh", "2", expires_in=timedelta(hours=1))
    for n in range(3):
        await repo.kv_set(f"stale:{n}", "3", expires_in=timedelta(seconds=-1))
    assert await repo.kv_purge_expired() == 3
    rows = await repo._all("SELECT key FROM kv ORDER BY key")
    assert [r[0] for r in rows] == ["fresh", "lasting"]
    later = datetime.now(UTC) + timedelta(hours=2)
    assert await repo.kv_purge_expired(later) == 1
    assert [r[0] for r in await repo._all("SELECT key FROM kv")] == ["lasting"]


async def test_migration_gives_the_bots_message_state_an_end(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    with sqlite3.connect(path) as conn:  # a store as gazou left it before values expired
        conn.executescript(MIGRATIONS[0] + MIGRATIONS[1] + "PRAGMA user_version = 2;")
        conn.executemany(
            "INSERT INTO kv (key, value) VALUES (?, ?)",
            [
                ("discord:random:0123456789abcdef", "{}"),
                ("discord:moderation:5b0e8d4e-0000-4000-8000-000000000000", "[]"),
                ("discord:token-request:5b0e8d4e-0000-4000-8000-000000000001", "[]"),
                ("discord:commands:1:global", "digest"),
            ],
        )
    async with SQLiteRepo(path) as repo:
        rows = await repo._all("SELECT key, expires_at FROM kv ORDER BY key")
        expiry = {r[0].split(":")[1]: r[1] for r in rows}
        assert expiry["commands"] is None
        month = datetime.now(UTC) + timedelta(days=30)
        for kind in ("random", "moderation", "token-request"):
            assert abs(expiry[kind] - month.timestamp()) < 3600, kind
        assert await repo.kv_get("discord:random:0123456789abcdef") == "{}"


async def test_a_lease_is_held_by_one_holder_until_released_or_lapsed(repo: Repo) -> None:
    minute = timedelta(minutes=1)
    assert await repo.kv_claim("lease:x", "a", minute)
    assert not await repo.kv_claim("lease:x", "b", minute)
    assert await repo.kv_claim("lease:x", "a", minute)  # renewed by its holder
    assert not await repo.kv_release("lease:x", "b")
    assert await repo.kv_release("lease:x", "a")
    assert await repo.kv_claim("lease:x", "b", timedelta(seconds=-1))  # taken, lapsed at once
    assert await repo.kv_claim("lease:x", "c", minute)
    assert await repo.kv_get("lease:x") == "c"
