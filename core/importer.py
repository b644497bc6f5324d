"""Bulk import of a folder of images as approved (owners and scripts), optionally with
the metadata downloaders wrote next to each image (core/sidecars.py)."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from core import sidecars as sc
from core.errors import DuplicateImage, GazouError
from core.images import (
    MAX_NAME_LENGTH,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    MAX_TITLE_LENGTH,
    ImageService,
)
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
    with_sidecars: int = 0  # images imported with metadata from their sidecars
    # What was left out of sidecars to fit gazou's limits (too many or too long tags).
    trimmed: list[tuple[Path, str]] = field(default_factory=list)

    def reasons(self) -> Counter[str]:
        """How many files were refused for each reason."""
        return Counter(reason for _, reason in self.refused)


@dataclass(frozen=True, slots=True)
class SidecarOptions:
    """How an import reads sidecars: whether it does, and the `--map` of names."""

    read: bool = False
    mapping: Mapping[str, str] = field(default_factory=dict)


def candidate_files(folder: Path, *, sidecars: bool = False) -> Iterator[Path]:
    """Every regular file below `folder`, in a stable order, hidden ones left out (and
    with `sidecars`, the `.json` and `.txt` files, which are metadata, not images)."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            if sidecars and Path(name).suffix.lower() in sc.SIDECAR_SUFFIXES:
                continue
            yield Path(root) / name


def with_sidecar(
    meta: IngestMetadata, sidecar: sc.Sidecar | None, mapping: Mapping[str, str]
) -> tuple[IngestMetadata, str | None]:
    """The import's metadata for one image: the command line's (`meta`: its tags are
    added to every image; its artist and rating apply where the sidecar names none),
    completed by the sidecar, renamed by `mapping` and trimmed to gazou's limits; with
    a note of what was trimmed, if anything."""
    given = sc.Sidecar(tags=meta.tags, artist=meta.artist, characters=meta.characters)
    merged = sc.rename(given.merged(sidecar) if sidecar else given, mapping)
    notes = []
    tags = tuple(t for t in merged.tags if len(t) <= MAX_TAG_LENGTH)
    if len(tags) < len(merged.tags):
        notes.append(f"{len(merged.tags) - len(tags)} tags longer than {MAX_TAG_LENGTH}")
    if len(tags) > MAX_TAGS:
        notes.append(f"{len(tags) - MAX_TAGS} tags past the first {MAX_TAGS}")
        tags = tags[:MAX_TAGS]
    characters = tuple(c for c in merged.characters if len(c) <= MAX_NAME_LENGTH)
    if len(characters) < len(merged.characters):
        notes.append(f"character names longer than {MAX_NAME_LENGTH}")
    artist = merged.artist
    if artist and len(artist) > MAX_NAME_LENGTH:
        notes.append(f"an artist name longer than {MAX_NAME_LENGTH}")
        artist = None
    title = merged.title
    if len(title) > MAX_TITLE_LENGTH:
        notes.append(f"the title cut to {MAX_TITLE_LENGTH} characters")
        title = title[:MAX_TITLE_LENGTH]
    out = replace(
        meta,
        tags=tags,
        artist=artist,
        characters=characters,
        rating=(sidecar.rating if sidecar and sidecar.rating else meta.rating),
        title=title or meta.title,
        source_name=merged.source_name or meta.source_name,
        source_url=merged.source_url or meta.source_url,
    )
    return out, ("left out " + ", ".join(notes)) if notes else None


async def import_folder(
    images: ImageService,
    folder: Path,
    meta: IngestMetadata,
    *,
    concurrency: int = 2,
    progress: Callable[[Path, str], None] | None = None,
    sidecars: SidecarOptions | None = None,
) -> ImportSummary:
    """Ingest every image below `folder` as approved (with `sidecars.read`, with the
    metadata of its sidecars; an image whose sidecar cannot be read is refused, so a
    re-run after fixing the sidecar imports it with its metadata). Safe to re-run after
    an interrupt: what is already stored counts as a duplicate and is skipped."""
    options = sidecars or SidecarOptions()
    summary = ImportSummary()
    queue: asyncio.Queue[Path | None] = asyncio.Queue(maxsize=concurrency * 2)

    async def worker() -> None:
        while (path := await queue.get()) is not None:
            outcome = await _import_one(images, path, meta, summary, options)
            if progress:
                progress(path, outcome)

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        for path in candidate_files(folder, sidecars=options.read):
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
    images: ImageService,
    path: Path,
    meta: IngestMetadata,
    summary: ImportSummary,
    options: SidecarOptions,
) -> str:
    try:
        raw = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        summary.refused.append((path, f"unreadable: {exc.strerror}"))
        return "refused"
    if sniff_format(raw[:16]) is None:
        summary.skipped += 1
        return "skipped"
    sidecar = None
    if options.read:
        try:
            sidecar = await asyncio.to_thread(sc.read_sidecars, path)
        except sc.SidecarError as exc:
            summary.refused.append((path, f"sidecar {exc}"))
            return "refused"
    meta, trimmed = with_sidecar(meta, sidecar, options.mapping)
    try:
        # Not announced: a bulk load would flood the announcement channels and webhooks.
        await images.ingest(
            raw, replace(meta, original_filename=path.name), IMPORTER, trusted=True, announce=False
        )
    except DuplicateImage:
        summary.duplicates += 1
        return "duplicate"
    except GazouError as exc:
        summary.refused.append((path, exc.message))
        return "refused"
    summary.imported += 1
    if sidecar is not None:
        summary.with_sidecars += 1
    if trimmed:
        summary.trimmed.append((path, trimmed))
    return "imported"
