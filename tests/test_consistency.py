"""The start-up check of rows against files: orphan files and leftover temporaries
are removed, rows whose file is gone are reported, everything else is left alone."""

from __future__ import annotations

from pathlib import Path

from core.contracts import image_key, thumbnail_key
from core.models import IngestMetadata, new_id
from core.services import Services
from tests.conftest import MEMBER, make_image

META = IngestMetadata(tags=("cat",))


def all_files(services: Services) -> set[Path]:
    return {p for p in (services.settings.data_dir / "files").rglob("*") if p.is_file()}


async def test_check_of_a_consistent_store_changes_nothing(services: Services) -> None:
    for n in range(3):
        await services.images.ingest(make_image(seed=n), META, MEMBER)
    before = {p: p.read_bytes() for p in all_files(services)}
    report = await services.images.check_consistency()
    assert report.orphans_removed == [] and report.missing_files == []
    assert {p: p.read_bytes() for p in all_files(services)} == before


async def test_check_removes_an_orphan_image_and_thumbnail(services: Services) -> None:
    kept = await services.images.ingest(make_image(seed=1), META, MEMBER)
    orphan_id = new_id()
    keys = [image_key(orphan_id, "png"), thumbnail_key(orphan_id)]
    for key in keys:
        await services.storage.blobs.put(key, make_image(seed=2))
    report = await services.images.check_consistency()
    assert sorted(report.orphans_removed) == sorted(keys)
    assert all(not services.storage.blobs.path(k).exists() for k in keys)
    assert all_files(services) == {
        services.images.image_path(kept),
        services.images.thumbnail_path(kept),
    }


async def test_check_removes_a_leftover_temporary_file(services: Services) -> None:
    image = await services.images.ingest(make_image(seed=1), META, MEMBER)
    # What a crash in the middle of FileBlobStore.put leaves behind.
    final = services.images.image_path(image)
    leftover = final.with_name(f".{new_id()}.png.4242.tmp")
    leftover.write_bytes(b"half an image")
    report = await services.images.check_consistency()
    assert not leftover.exists()
    assert len(report.orphans_removed) == 1
    assert report.orphans_removed[0].endswith(leftover.name)
    assert final.exists()


async def test_check_reports_a_row_whose_file_was_deleted(services: Services) -> None:
    lost = await services.images.ingest(make_image(seed=1), META, MEMBER)
    fine = await services.images.ingest(make_image(seed=2), META, MEMBER)
    services.images.image_path(lost).unlink()
    report = await services.images.check_consistency()
    assert report.missing_files == [lost.id]
    # The row is kept (nothing stored is lost on a guess), and so is its thumbnail.
    assert await services.storage.repo.get_image(lost.id) is not None
    assert services.images.thumbnail_path(lost).exists()
    assert services.images.image_path(fine).exists()
    assert fine.id not in report.missing_files
