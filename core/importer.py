"""Bulk import of a folder of images as approved (owners and scripts)."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import DuplicateImage, GazouError
from core.images import ImageService
from core.imaging import sniff_format
from core.models import IngestMetadata, User

IMPORTER = User(id="import", name="import")


@dataclass(slots=True)
class ImportSummary:
    """What an import did, file by file."""

    imported: int = 0
    duplicates: int = 0
    refused: list[tuple[Path, str]] = field(default_factory=list)
    skipped: int = 0  # files that are not images at all (by their first bytes)

    def reasons(self) -> Counter[str]:
        """How many files were refused for each reason."""
        return Counter(reason for _, reason in self.refused)


def candidate_files(folder: Path) -> Iterator[Path]:
    """Every regular file below `folder`, in a stable order, hidden ones left out."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name


async def import_folder(
    images: ImageService,
    folder: Path,
    meta: IngestMetadata,
    *,
    concurrency: int = 2,
    progress: Callable[[Path, str], None] | None = None,
) -> ImportSummary:
    """Ingest every image below `folder` as approved. Safe to re-run after an
    interrupt: what is already stored counts as a duplicate and is skipped."""
    summary = ImportSummary()
    queue: asyncio.Queue[Path | None] = asyncio.Queue(maxsize=concurrency * 2)

    async def worker() -> None:
        while (path := await queue.get()) is not None:
            outcome = await _import_one(images, path, meta, summary)
            if progress:
                progress(path, outcome)

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        for path in candidate_files(folder):
            await queue.put(path)
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    return summary


async def _import_one(
    images: ImageService, path: Path, meta: IngestMetadata, summary: ImportSummary
) -> str:
    try:
        raw = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        summary.refused.append((path, f"unreadable: {exc.strerror}"))
        return "refused"
    if sniff_format(raw[:16]) is None:
        summary.skipped += 1
        return "skipped"
    try:
        from dataclasses import replace

        await images.ingest(raw, replace(meta, original_filename=path.name), IMPORTER, trusted=True)
    except DuplicateImage:
        summary.duplicates += 1
        return "duplicate"
    except GazouError as exc:
        summary.refused.append((path, exc.message))
        return "refused"
    summary.imported += 1
    return "imported"
