"""The check of rows against files: orphan files and leftover temporaries are removed
once they are older than the grace period (a live writer may still commit the young
ones), rows whose file is gone are reported, everything else is left alone. Ingest
leaves no file behind when it fails before its row commits, and commits that
acknowledge an upload are durable."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from core.contracts import image_key, thumbnail_key
from core.errors import InvalidInput, StorageFull, StorageUnavailable
from core.images import ORPHAN_GRACE_SECONDS
from core.models import IngestMetadata, new_id
from core.services import Services, open_services
from storage.blobs import FileBlobStore
from tests.conftest import MEMBER, blob_path, make_image, make_settings, stored_path

META = IngestMetadata(tags=("cat",))


def all_files(services: Services) -> set[Path]:
    return {p for p in (services.settings.data_dir / "files").rglob("*") if p.is_file()}


def age(path: Path, seconds: float) -> None:
    """Make `path` look last written `seconds` ago."""
    when = time.time() - seconds
    os.utime(path, (when, when))


async def put_orphan(services: Services, *, age_seconds: float) -> list[Path]:
    """An image and thumbnail no row points at, as a crashed upload leaves them."""
    orphan_id = new_id()
    paths = []
    for key in (image_key(orphan_id, "png"), thumbnail_key(orphan_id)):
        await services.storage.blobs.put(key, make_image(seed=2))
        paths.append(blob_path(services, key))
        age(paths[-1], age_seconds)
    return paths


def put_temporary(services: Services, near: Path, *, age_seconds: float) -> Path:
    """What FileBlobStore.put leaves while it writes (or after a crash mid-write)."""
    temporary = near.with_name(f".{new_id()}.png.4242.tmp")
    temporary.write_bytes(b"half an image")
    age(temporary, age_seconds)
    return temporary


async def test_check_of_a_consistent_store_changes_nothing(services: Services) -> None:
    for n in range(3):
        await services.images.ingest(make_image(seed=n), META, MEMBER)
    before = {p: p.read_bytes() for p in all_files(services)}
    report = await services.images.check_consistency()
    assert report.orphans_removed == [] and report.missing_files == []
    assert report.young_kept == []
    assert {p: p.read_bytes() for p in all_files(services)} == before


async def test_check_removes_an_orphan_older_than_the_grace_period(services: Services) -> None:
    kept = await services.images.ingest(make_image(seed=1), META, MEMBER)
    orphans = await put_orphan(services, age_seconds=ORPHAN_GRACE_SECONDS + 60)
    report = await services.images.check_consistency()
    assert len(report.orphans_removed) == 2 and report.young_kept == []
    assert not any(p.exists() for p in orphans)
    assert all_files(services) == {
        stored_path(services, kept),
        stored_path(services, kept, thumbnail=True),
    }


async def test_check_keeps_an_orphan_younger_than_the_grace_period(services: Services) -> None:
    # Exactly what another process's upload looks like between its files and its row.
    orphans = await put_orphan(services, age_seconds=ORPHAN_GRACE_SECONDS - 60)
    report = await services.images.check_consistency()
    assert report.orphans_removed == []
    assert len(report.young_kept) == 2
    assert all(p.exists() for p in orphans)


async def test_check_keeps_a_young_temporary_file(services: Services) -> None:
    image = await services.images.ingest(make_image(seed=1), META, MEMBER)
    temporary = put_temporary(services, stored_path(services, image), age_seconds=5)
    report = await services.images.check_consistency()
    assert temporary.read_bytes() == b"half an image"
    assert report.orphans_removed == []
    assert [k.rsplit("/", 1)[-1] for k in report.young_kept] == [temporary.name]


async def test_check_removes_a_temporary_file_older_than_the_grace_period(
    services: Services,
) -> None:
    image = await services.images.ingest(make_image(seed=1), META, MEMBER)
    final = stored_path(services, image)
    temporary = put_temporary(services, final, age_seconds=ORPHAN_GRACE_SECONDS + 60)
    report = await services.images.check_consistency()
    assert not temporary.exists()
    assert [k.rsplit("/", 1)[-1] for k in report.orphans_removed] == [temporary.name]
    assert final.exists()


async def test_check_with_no_grace_removes_even_a_fresh_orphan(services: Services) -> None:
    # What a caller that knows no writer is alive (e.g. after a crash test) may ask.
    orphans = await put_orphan(services, age_seconds=0)
    report = await services.images.check_consistency(grace_seconds=0)
    assert len(report.orphans_removed) == 2
    assert not any(p.exists() for p in orphans)


async def test_check_reports_a_row_whose_file_was_deleted(services: Services) -> None:
    lost = await services.images.ingest(make_image(seed=1), META, MEMBER)
    fine = await services.images.ingest(make_image(seed=2), META, MEMBER)
    stored_path(services, lost).unlink()
    report = await services.images.check_consistency()
    assert report.missing_files == [lost.id]
    # The row is kept (nothing stored is lost on a guess), and so is its thumbnail.
    assert await services.storage.repo.get_image(lost.id) is not None
    assert stored_path(services, lost, thumbnail=True).exists()
    assert stored_path(services, fine).exists()
    assert fine.id not in report.missing_files


class ThumbnailsFail(FileBlobStore):
    """Files as usual, except that writing a thumbnail fails as a full disk would."""

    def _put_sync(self, key: str, data: bytes) -> None:
        if key.startswith("thumbs/"):
            raise OSError(28, "No space left on device")
        super()._put_sync(key, data)


async def test_a_failed_thumbnail_write_leaves_no_file(services: Services) -> None:
    services.images.blobs = ThumbnailsFail(services.settings.data_dir / "files")
    with pytest.raises(StorageFull):
        await services.images.ingest(make_image(seed=1), META, MEMBER)
    assert all_files(services) == set()
    assert await services.storage.repo._all("SELECT id FROM images") == []


async def test_a_row_refused_at_commit_leaves_no_file(services: Services) -> None:
    with pytest.raises(InvalidInput):
        await services.images.ingest(
            make_image(seed=1), IngestMetadata(album_id="no-such-album"), MEMBER
        )
    assert all_files(services) == set()


async def test_an_ingest_cancelled_after_its_commit_keeps_its_files(services: Services) -> None:
    repo = services.storage.repo
    committed = asyncio.Event()
    original = repo.insert_image

    async def insert_then_linger(new, **kw):  # type: ignore[no-untyped-def]
        image = await original(new, **kw)
        committed.set()
        await asyncio.sleep(0.05)  # the caller is cancelled while the insert finishes
        return image

    repo.insert_image = insert_then_linger  # type: ignore[method-assign]
    upload = asyncio.create_task(services.images.ingest(make_image(seed=1), META, MEMBER))
    await committed.wait()
    upload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await upload
    ((image_id, extension),) = await repo._all("SELECT id, extension FROM images")
    assert all_files(services) == {
        blob_path(services, image_key(image_id, extension)),
        blob_path(services, thumbnail_key(image_id)),
    }


@pytest.mark.backends("sqlite")  # SQLite's own machinery
async def test_the_commit_of_an_upload_is_synced_in_full(services: Services) -> None:
    repo = services.storage.repo
    statements: list[str] = []
    assert repo._write is not None
    await repo._write.set_trace_callback(statements.append)
    await services.images.ingest(make_image(seed=1), META, MEMBER)
    await repo._write.set_trace_callback(None)
    full = statements.index("PRAGMA synchronous = FULL")
    begin = statements.index("BEGIN IMMEDIATE", full)
    insert = next(i for i, s in enumerate(statements) if s.startswith("INSERT INTO images"))
    commit = statements.index("COMMIT", insert)
    assert full < begin < insert < commit
    # ...and only that commit: other writes keep NORMAL (a read-heavy path writes too).
    assert statements.index("PRAGMA synchronous = NORMAL", commit) == commit + 1
    assert (await (await repo._write.execute("PRAGMA synchronous")).fetchone())[0] == 1


@pytest.mark.backends("sqlite")  # SQLite's own machinery
async def test_a_reject_is_synced_in_full_before_its_files_go(services: Services) -> None:
    repo = services.storage.repo
    image = await services.images.ingest(make_image(seed=1), META, MEMBER)
    statements: list[str] = []
    assert repo._write is not None
    await repo._write.set_trace_callback(statements.append)
    await services.images.reject(image.id, MEMBER)
    await repo._write.set_trace_callback(None)
    full = statements.index("PRAGMA synchronous = FULL")
    update = next(i for i, s in enumerate(statements) if s.startswith("UPDATE images"))
    assert full < update < statements.index("COMMIT", update)
    assert not blob_path(services, thumbnail_key(image.id)).exists()


# ---- the same check over every blob store backend (files, S3 on a real Swift) -----------


@pytest.fixture
async def any_store(tmp_path: Path, blob_env: dict[str, str]) -> AsyncIterator[Services]:
    """Services over each blob store backend in turn."""
    settings = make_settings(tmp_path / "data", RATE_LIMITS="off", **blob_env)
    async with open_services(settings) as opened:
        yield opened


def _keys(image_id: str, extension: str) -> tuple[str, str]:
    return image_key(image_id, extension), thumbnail_key(image_id)


async def test_ingest_stores_both_objects_and_the_check_finds_nothing_to_do(
    any_store: Services,
) -> None:
    image = await any_store.images.ingest(make_image(seed=1), META, MEMBER)
    for key in _keys(image.id, image.extension):
        assert await any_store.storage.blobs.exists(key)
    report = await any_store.images.check_consistency()
    assert (report.orphans_removed, report.young_kept, report.missing_files) == ([], [], [])
    assert await any_store.images.read_bytes(image) == make_image(seed=1)


async def test_check_reports_a_row_whose_object_is_missing(any_store: Services) -> None:
    lost = await any_store.images.ingest(make_image(seed=1), META, MEMBER)
    fine = await any_store.images.ingest(make_image(seed=2), META, MEMBER)
    await any_store.storage.blobs.remove(any_store.images.blob_key(lost))
    report = await any_store.images.check_consistency()
    assert report.missing_files == [lost.id]
    assert await any_store.storage.repo.get_image(lost.id) is not None
    assert await any_store.storage.blobs.exists(any_store.images.blob_key(fine))


async def test_check_keeps_young_orphans_and_removes_them_once_old(any_store: Services) -> None:
    kept = await any_store.images.ingest(make_image(seed=1), META, MEMBER)
    orphan = _keys(new_id(), "png")
    for key in orphan:
        await any_store.storage.blobs.put(key, make_image(seed=2))
    # Now: a crashed upload's objects look like a live writer's, so they stay.
    report = await any_store.images.check_consistency()
    assert sorted(report.young_kept) == sorted(orphan) and report.orphans_removed == []
    # The same objects seen by a check run past the grace period are removed.
    later = time.time() + ORPHAN_GRACE_SECONDS + 60
    report = await any_store.images.check_consistency(now=later)
    assert sorted(report.orphans_removed) == sorted(orphan) and report.missing_files == []
    blobs = any_store.storage.blobs
    assert not any([await blobs.exists(key) for key in orphan])
    assert all([await blobs.exists(key) for key in _keys(kept.id, kept.extension)])


async def test_check_follows_the_listing_across_pages_and_shards(any_store: Services) -> None:
    blobs = any_store.storage.blobs
    kept = [await any_store.images.ingest(make_image(seed=n), META, MEMBER) for n in range(4)]
    # Orphans spread over shards (first, last and some between), listed 3 keys a page,
    # so pages end in the middle of shards and shards in the middle of pages.
    orphans = sorted(
        key
        for shard in ("00", "3c", "3d", "ff", kept[1].id[:2])
        for key in _keys(f"{shard}{new_id()[2:]}", "gif")
    )
    for key in orphans:
        await blobs.put(key, b"no row")
    lost = kept[2]
    await blobs.remove(any_store.images.blob_key(lost))
    blobs.page_size = 3  # type: ignore[attr-defined]
    report = await any_store.images.check_consistency(now=time.time() + ORPHAN_GRACE_SECONDS + 60)
    assert report.orphans_removed == orphans
    assert report.missing_files == [lost.id] and report.young_kept == []
    for image in (kept[0], kept[1], kept[3]):
        assert await any_store.images.read_bytes(image) == make_image(seed=kept.index(image))


async def test_check_leaves_what_is_not_in_a_shard_folder_alone(any_store: Services) -> None:
    blobs = any_store.storage.blobs
    strangers = ["images/README", "images/ab/extra/1.png", "images/zz/2.png", "thumbs/AB/3.jpg"]
    for key in strangers:
        await blobs.put(key, b"not gazou's")
    report = await any_store.images.check_consistency(now=time.time() + ORPHAN_GRACE_SECONDS + 60)
    assert (report.orphans_removed, report.young_kept, report.missing_files) == ([], [], [])
    assert all([await blobs.exists(key) for key in strangers])


async def test_an_orphan_rewritten_since_the_listing_is_kept(any_store: Services) -> None:
    # The listing said old; the object was written again before the check reached it
    # (here: the listing's times are made ancient). It is asked again before removal.
    blobs = any_store.storage.blobs
    orphan = _keys(new_id(), "png")
    for key in orphan:
        await blobs.put(key, make_image(seed=2))
    listed = blobs.list_all

    async def listed_long_ago(prefix: str) -> AsyncIterator[tuple[str, float]]:
        async for key, _ in listed(prefix):
            yield key, 0.0

    any_store.images.blobs = SimpleNamespace(  # type: ignore[assignment]
        list_all=listed_long_ago,
        modified_at=blobs.modified_at,
        remove=blobs.remove,
        exists=blobs.exists,
    )
    report = await any_store.images.check_consistency()
    assert sorted(report.young_kept) == sorted(orphan) and report.orphans_removed == []
    assert all([await blobs.exists(key) for key in orphan])


async def test_a_listing_that_fails_fails_the_check_and_removes_nothing(
    any_store: Services,
) -> None:
    blobs = any_store.storage.blobs
    orphans = [key for _ in range(3) for key in _keys(new_id(), "png")]
    for key in orphans:
        await blobs.put(key, b"no row")
    listed = blobs.list_all

    async def thumbs_unreadable(prefix: str) -> AsyncIterator[tuple[str, float]]:
        async for found in listed(prefix):
            if prefix.startswith("thumbs"):
                raise StorageUnavailable("The image store cannot be read right now")
            yield found

    any_store.images.blobs = SimpleNamespace(  # type: ignore[assignment]
        list_all=thumbs_unreadable,
        modified_at=blobs.modified_at,
        remove=blobs.remove,
        exists=blobs.exists,
    )
    with pytest.raises(StorageUnavailable):
        await any_store.images.check_consistency(now=time.time() + ORPHAN_GRACE_SECONDS + 60)
    assert all([await blobs.exists(key) for key in orphans])
