"""The image service: every image feature, written once for HTTP and Discord."""

from __future__ import annotations

import asyncio
import logging
import re
import string
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from concurrent.futures import Executor
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from core import events as ev
from core import outbox, visibility
from core.contracts import BlobStore, Repo, image_key, thumbnail_key
from core.drawbuffer import DrawBuffer, PageCache
from core.errors import (
    Conflict,
    DuplicateImage,
    GazouError,
    ImageTooLarge,
    InvalidInput,
    NotFound,
)
from core.imaging import ProcessedImage, aspect_ratio, orientation, process_image
from core.models import (
    ORIENTATIONS,
    Album,
    Artist,
    Character,
    Filters,
    Image,
    ImageFile,
    IngestMetadata,
    NewImage,
    Rating,
    Rendition,
    SearchPage,
    SearchQuery,
    Sort,
    Stats,
    Status,
    Tag,
    User,
    new_id,
)

log = logging.getLogger(__name__)

# Renders an image as one dialect's kept rendering (see ImageService.add_rendering).
Render = Callable[[Image], bytes]

# dHash bits two images may differ by and still be flagged as near-duplicates; the
# repo's quarter index finds every pair within this distance.
NEAR_DUPLICATE_BITS = 3
# dHash bits an approved image may differ by and still be shown as similar (the image
# page): about a sixth of the hash, where unrelated pictures differ by about half.
SIMILAR_BITS = 10
MAX_TAGS = 200
MAX_TAG_LENGTH = 64
MAX_NAME_LENGTH = 120
MAX_TITLE_LENGTH = 200
MAX_DESCRIPTION_LENGTH = 5000
MAX_PAGE = 100
# How long, and for how many ids, the file routes' lookups are kept (`at_link`).
LINK_CACHE_SECONDS = 1.0
LINK_CACHE_ENTRIES = 4096
# How old a file without a row must be before the consistency check removes it.
# Ingest writes an image's files moments before it commits the row, and other
# processes (a second server, `bot.py import`) may be doing so on the same DATA_DIR
# while the check runs; a writer takes milliseconds between the two, never an hour.
# Temporaries (`.<name>.<pid>.tmp`) get the same grace: they may be half written.
ORPHAN_GRACE_SECONDS = 3600
# The folders files are sharded into under `images/` and `thumbs/`: an id's first two
# characters (core/contracts.py image_key), lower-case hex.
_SHARDS = frozenset(f"{n:02x}" for n in range(256))
# Keys the check's listing hands over at a time, and how many such batches of each
# folder it reads ahead of the shard being checked (about two S3 pages).
CHECK_BATCH = 250
CHECK_READ_AHEAD_BATCHES = 8
# Distinct tags one filter may name, included and excluded together: more than an
# image may carry, so no query that can match is refused.
MAX_FILTER_TAGS = MAX_TAGS
_SPACES = re.compile(r"\s+")
# Tag names compare as SQLite's NOCASE does: only ASCII letters fold.
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


Found = TypeVar("Found", Image, ImageFile)
Filtered = TypeVar("Filtered", Filters, SearchQuery)


def _readable(found: Found | None, at_link: bool) -> Found:
    """`found` if a read may show it (core/visibility.py): at its own link, approved or
    pending and not expired; otherwise approved and not expired. NotFound otherwise."""
    if found is None:
        raise NotFound("Image not found")
    if at_link:
        shown = visibility.served_at_link(found.status, found.expires_at)
    else:
        shown = visibility.in_public_pools(found.status) and not visibility.expired(
            found.expires_at
        )
    if not shown:
        raise NotFound("Image not found")
    return found


def _distinct(names: Sequence[str]) -> tuple[str, ...]:
    """`names` without repeats, first spelling kept (names match case-insensitively)."""
    seen: dict[str, str] = {}
    for name in names:
        seen.setdefault(name.translate(_ASCII_LOWER), name)
    return tuple(seen.values())


def distinct_tags(filters: Filtered) -> Filtered:
    """`filters` with its tags and excluded tags each named once; InvalidInput past
    MAX_FILTER_TAGS distinct tags, rather than one SQL condition per repeat, and for an
    orientation that is none of ORIENTATIONS."""
    if filters.orientation is not None and filters.orientation not in ORIENTATIONS:
        raise InvalidInput(
            f"orientation must be one of {', '.join(ORIENTATIONS)}", field="orientation"
        )
    if len(filters.tags) + len(filters.exclude_tags) <= 1:
        return filters  # nothing to repeat (the common random request)
    tags, exclude = _distinct(filters.tags), _distinct(filters.exclude_tags)
    if len(tags) + len(exclude) > MAX_FILTER_TAGS:
        raise InvalidInput(f"At most {MAX_FILTER_TAGS} tags at once", field="tags")
    if tags == filters.tags and exclude == filters.exclude_tags:
        return filters
    return replace(filters, tags=tags, exclude_tags=exclude)


def carries_any(image: Image, tags: Sequence[str]) -> bool:
    """Whether `image` has one of `tags` (compared as the store compares tag names)."""
    if not tags:
        return False
    wanted = {t.strip().translate(_ASCII_LOWER) for t in tags}
    return any(t.name.translate(_ASCII_LOWER) in wanted for t in image.tags)


def clean_name(text: str) -> str:
    """Trim and fold runs of white space: the canonical form of names and tags."""
    return _SPACES.sub(" ", text).strip()


@dataclass(slots=True)
class ConsistencyReport:
    """What a check of rows against files found and did."""

    orphans_removed: list[str] = field(default_factory=list)
    # Files without a row (temporaries included) too young to remove: a live writer
    # may still commit their row.
    young_kept: list[str] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)


def _outboxed(image: Image, announce: bool) -> bool:
    """Whether storing `image` wrote an outbox entry (see ImageRepo.insert_image)."""
    return image.status is Status.PENDING or (image.status is Status.APPROVED and announce)


class _Shards:
    """One folder's listing (`images/`), handed out a shard's files at a time. A task
    reads the listing ahead (a few batches at most, so memory stays bounded whatever
    the store holds): the next pages arrive while a shard's rows are read, and the two
    folders' listings wait on the store at the same time."""

    def __init__(self, listing: AsyncGenerator[tuple[str, float], None], folder: str) -> None:
        self._folder = folder
        self._ahead: asyncio.Queue[list[tuple[str, str, float]] | Exception | None] = asyncio.Queue(
            CHECK_READ_AHEAD_BATCHES
        )
        self._reader = asyncio.create_task(self._read(listing))
        self._batch: list[tuple[str, str, float]] = []
        self._at = 0
        self._done = False
        self._warned = False

    async def _read(self, listing: AsyncGenerator[tuple[str, float], None]) -> None:
        batch: list[tuple[str, str, float]] = []
        try:
            async for key, modified in listing:
                rest = key[len(self._folder) :]
                # Only files directly inside a shard folder are ours to judge; anything
                # else an operator put there is left alone, as before.
                if len(rest) > 3 and rest[2] == "/" and "/" not in rest[3:] and rest[:2] in _SHARDS:
                    batch.append((rest[:2], key, modified))
                    if len(batch) == CHECK_BATCH:
                        await self._ahead.put(batch)
                        batch = []
        except Exception as exc:  # the checker raises it where it waits for keys
            await self._ahead.put(exc)
            return
        if batch:
            await self._ahead.put(batch)
        await self._ahead.put(None)

    async def stop(self) -> None:
        """Stop reading ahead (before the listing is closed)."""
        self._reader.cancel()
        await asyncio.wait([self._reader])

    async def _peek(self) -> tuple[str, str, float] | None:
        if self._at == len(self._batch) and not self._done:
            got = await self._ahead.get()
            if isinstance(got, Exception):
                raise got
            self._batch, self._at, self._done = got or [], 0, got is None
        return self._batch[self._at] if self._at < len(self._batch) else None

    async def take(self, shard: str) -> dict[str, float]:
        """{key: when written} of the files of `shard`; shards are taken in order."""
        found: dict[str, float] = {}
        while (ahead := await self._peek()) is not None and ahead[0] <= shard:
            self._at += 1
            if ahead[0] == shard:
                found[ahead[1]] = ahead[2]
            elif not self._warned:
                # A store that lists out of order: such keys are neither removed nor
                # counted as present (a missing file is re-checked with exists()).
                self._warned = True
                log.warning("%s was listed out of key order; skipping %s", self._folder, ahead[1])
        return found


class ImageService:
    """Ingest, moderation, reads and upkeep of images."""

    def __init__(
        self,
        repo: Repo,
        blobs: BlobStore,
        events: ev.Events,
        *,
        executor: Executor | None,
        max_pixels: int,
        max_bytes: int,
        thumb_size: tuple[int, int] = (360, 420),
        buffer_draws: bool = False,
    ) -> None:
        self.repo = repo
        # Anonymous random draws from a short-lived buffer (see core/drawbuffer.py);
        # off by default so store benchmarks measure the store.
        self.draw_buffer = (
            DrawBuffer(lambda f, n: repo.random_images(f, n)) if buffer_draws else None
        )
        self.file_draw_buffer = DrawBuffer(self._draw_files) if buffer_draws else None
        self.page_cache = PageCache() if buffer_draws else None
        self._buffer_draws = buffer_draws
        # The file routes' lookups by id, each kept LINK_CACHE_SECONDS (see `at_link`).
        self._links: dict[str, tuple[float, ImageFile]] | None = {} if buffer_draws else None
        self._links_generation = 0
        self.clock: Callable[[], float] = time.monotonic  # for the lookups' age
        # Renderings kept by the store, by name (see `add_rendering`), and their buffers.
        self._renderings: dict[str, tuple[Render, bool]] = {}
        self.rendition_buffers: dict[str, DrawBuffer[Rendition]] = {}
        self.blobs = blobs
        self.events = events
        self.executor = executor
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes
        self.thumb_size = thumb_size

    # ---- ingest ----------------------------------------------------------------

    def _clean_metadata(self, meta: IngestMetadata) -> IngestMetadata:
        tags = tuple(dict.fromkeys(t for t in (clean_name(x) for x in meta.tags) if t))
        if len(tags) > MAX_TAGS:
            raise InvalidInput(f"At most {MAX_TAGS} tags are allowed", field="tags")
        for tag in tags:
            if len(tag) > MAX_TAG_LENGTH:
                raise InvalidInput(f"Tags are limited to {MAX_TAG_LENGTH} characters", field="tags")
        characters = tuple(dict.fromkeys(c for c in (clean_name(x) for x in meta.characters) if c))
        artist = clean_name(meta.artist) if meta.artist else None
        for name in (artist, *characters):
            if name and len(name) > MAX_NAME_LENGTH:
                raise InvalidInput(f"Names are limited to {MAX_NAME_LENGTH} characters")
        if len(meta.title) > MAX_TITLE_LENGTH:
            raise InvalidInput(
                f"The title is limited to {MAX_TITLE_LENGTH} characters", field="title"
            )
        if len(meta.description) > MAX_DESCRIPTION_LENGTH:
            raise InvalidInput(
                f"The description is limited to {MAX_DESCRIPTION_LENGTH} characters",
                field="description",
            )
        if meta.resize_width is not None and not 16 <= meta.resize_width <= 10_000:
            raise InvalidInput("The width must be between 16 and 10000 pixels", field="width")
        return replace(
            meta,
            tags=tags,
            characters=characters,
            artist=artist or None,
            title=meta.title.strip(),
            description=meta.description.strip(),
        )

    async def _process(self, raw: bytes, meta: IngestMetadata) -> ProcessedImage:
        limit = min(self.max_bytes, meta.max_bytes or self.max_bytes)
        if len(raw) > limit:
            raise ImageTooLarge(f"Image is larger than {limit // (1024 * 1024)} MB", limit=limit)
        work = partial(
            process_image,
            raw,
            max_pixels=self.max_pixels,
            max_bytes=limit,
            thumb_size=self.thumb_size,
            resize_width=meta.resize_width,
        )
        return await asyncio.get_running_loop().run_in_executor(self.executor, work)

    async def ingest(
        self,
        raw: bytes,
        meta: IngestMetadata,
        uploader: User | None,
        *,
        trusted: bool = False,
        announce: bool = True,
    ) -> Image:
        """Verify, measure and store an upload. Trusted uploads (owners, imports) are
        approved at once, and announced as new images unless `announce` is False (bulk
        imports: they would flood the announcement channels); others start pending and
        are announced to moderators. Raises DuplicateImage with the stored id for bytes
        already stored."""
        meta, processed = await self._prepare(raw, meta)
        image = await self._store(processed, meta, uploader, trusted, announce)
        if _outboxed(image, announce):
            # The store wrote IMAGE_PENDING (or IMAGE_DECIDED) to its outbox with the
            # row: wake the consumer (core/outbox.py), here or in the bot's process.
            self.events.emit(ev.OUTBOX_WRITTEN)
        return image

    async def ingest_many(
        self,
        uploads: Sequence[tuple[bytes, IngestMetadata]],
        uploader: User | None,
        *,
        trusted: bool = False,
        announce: bool = True,
    ) -> list[Image]:
        """`ingest` for a batch, all or nothing: every upload is verified first, so one
        bad or duplicate file stores none; a store that fails part-way removes what
        it stored (an outbox entry of an image taken back is dropped unposted, unless
        the consumer was quicker)."""
        prepared = [await self._prepare(raw, meta) for raw, meta in uploads]
        first: dict[str, int] = {}
        for n, (_, processed) in enumerate(prepared):
            if processed.sha256 in first:
                raise InvalidInput(f"Files {first[processed.sha256] + 1} and {n + 1} are the same")
            first[processed.sha256] = n
        stored: list[Image] = []
        try:
            for meta, processed in prepared:
                stored.append(await self._store(processed, meta, uploader, trusted, announce))
        except BaseException:
            for image in stored:
                try:
                    await asyncio.shield(self._unstore(image))
                except Exception:
                    # The store still refuses (a full disk may refuse a delete too):
                    # the image stays, pending or approved as it was; say so.
                    log.exception("could not take back %s of a failed batch", image.id)
            raise
        if any(_outboxed(image, announce) for image in stored):
            self.events.emit(ev.OUTBOX_WRITTEN)
        return stored

    async def _unstore(self, image: Image) -> None:
        """Take back an image just stored by a batch that failed: row, then files."""
        await self.repo.delete_image(image.id)
        self._changed()
        await self.blobs.remove(image_key(image.id, image.extension))
        await self.blobs.remove(thumbnail_key(image.id))

    async def _prepare(
        self, raw: bytes, meta: IngestMetadata
    ) -> tuple[IngestMetadata, ProcessedImage]:
        """Clean the metadata and verify the bytes; DuplicateImage if already stored."""
        meta = self._clean_metadata(meta)
        processed = await self._process(raw, meta)
        existing = await self.repo.id_by_sha256(processed.sha256)
        if existing is not None:
            raise DuplicateImage(existing)
        return meta, processed

    async def _store(
        self,
        processed: ProcessedImage,
        meta: IngestMetadata,
        uploader: User | None,
        trusted: bool,
        announce: bool = True,
    ) -> Image:
        """Write the files and the row of a prepared upload (no event: callers announce)."""
        near = await self.repo.near_duplicate(processed.phash, NEAR_DUPLICATE_BITS)
        image_id = new_id()
        keys = (image_key(image_id, processed.extension), thumbnail_key(image_id))
        status = Status.APPROVED if trusted else Status.PENDING
        row = NewImage(
            id=image_id,
            sha256=processed.sha256,
            md5=processed.md5,
            phash=processed.phash,
            mimetype=processed.mimetype,
            extension=processed.extension,
            size=len(processed.data),
            width=processed.width,
            height=processed.height,
            aspect_ratio=aspect_ratio(processed.width, processed.height),
            orientation=orientation(processed.width, processed.height),
            dominant_color=processed.dominant_color,
            animated=processed.animated,
            thumbnail_size=len(processed.thumbnail),
            rating=meta.rating,
            status=status,
            title=meta.title,
            description=meta.description,
            source_name=meta.source_name,
            source_url=meta.source_url,
            original_filename=meta.original_filename,
            artist=meta.artist,
            characters=meta.characters,
            tags=meta.tags,
            album_id=meta.album_id,
            uploader=uploader,
            approver=uploader if trusted else None,
            created_at=datetime.now(UTC),
            expires_at=meta.expires_at,
            near_duplicate_of=near,
        )
        # Files first, row second: a crash in between leaves only orphan files, which
        # the start-up check removes once they are old; never a row without its file.
        # Each step runs as its own task, shielded: a cancelled await does not stop a
        # write already handed to a thread, so the clean-up below waits for every
        # step's outcome before it decides what to remove.
        steps: list[asyncio.Future[Any]] = []
        try:
            for key, data in zip(keys, (processed.data, processed.thumbnail), strict=True):
                steps.append(asyncio.ensure_future(self.blobs.put(key, data)))
                await asyncio.shield(steps[-1])
            steps.append(asyncio.ensure_future(self.repo.insert_image(row, announce=announce)))
            image: Image = await asyncio.shield(steps[-1])
        except BaseException:
            # Includes DuplicateImage: two uploads of the same bytes raced.
            stored = await asyncio.shield(self._settle_failed_ingest(keys, steps))
            if stored is not None:
                # Cancelled after the commit: the image is in, so it is announced
                # here (the caller, cancelled, will not).
                self._stored(stored, wake=_outboxed(stored, announce))
                raise
            raise
        self._stored(image, wake=False)  # callers wake the outbox, once all is in
        return image

    async def _settle_failed_ingest(
        self, keys: Sequence[str], steps: Sequence[asyncio.Future[Any]]
    ) -> Image | None:
        """After an ingest failed (or was cancelled): wait for every step it started,
        then remove its files unless the row committed anyway; returns that row."""
        outcomes = await asyncio.gather(*steps, return_exceptions=True)
        if len(steps) == len(keys) + 1 and isinstance(outcomes[-1], Image):
            return outcomes[-1]
        for key in keys:
            try:
                await self.blobs.remove(key)
            except OSError:
                # Left for the check of files against rows, once it is old enough.
                log.warning("could not remove %s after a failed upload", key, exc_info=True)
        return None

    def _stored(self, image: Image, *, wake: bool) -> None:
        # Even a pending upload changes what its uploader's own listing shows.
        self._changed()
        if wake:
            # The store wrote an entry to its outbox with the row; the outbox
            # consumer (core/outbox.py) delivers it, here or in the bot's process.
            self.events.emit(ev.OUTBOX_WRITTEN)

    def _changed(self) -> None:
        """What public reads may return has changed: drop pre-drawn random images."""
        for buffer in (
            self.draw_buffer,
            self.file_draw_buffer,
            self.page_cache,
            *self.rendition_buffers.values(),
        ):
            if buffer is not None:
                buffer.invalidate()
        if self._links is not None:
            self._links.clear()
            self._links_generation += 1

    # ---- moderation --------------------------------------------------------------

    async def approve(self, image_id: str, by: User) -> Image:
        """Make a pending image public; Conflict for a rejected one (its files are gone)."""
        old = await self.repo.set_status(
            image_id, Status.APPROVED, by, only_from=frozenset({Status.PENDING})
        )
        if old is None:
            raise NotFound("Image not found")
        if old is Status.REJECTED:
            # Checked in the same transaction as the change, so an approve racing a
            # reject can't make public an image whose files the reject removes.
            raise Conflict(
                "This upload was rejected and its files were removed; it can't be approved."
            )
        return await self._decided(image_id, old, by)

    async def reject(self, image_id: str, by: User) -> Image:
        """Take an image out of every read and remove its files; its row stays, so the
        same bytes are refused as a duplicate."""
        old = await self.repo.set_status(image_id, Status.REJECTED, by)
        if old is None:
            raise NotFound("Image not found")
        decided = await self._decided(image_id, old, by)
        # Row first, files second: once the row says rejected nothing serves them.
        await self.blobs.remove(image_key(decided.id, decided.extension))
        await self.blobs.remove(thumbnail_key(decided.id))
        return decided

    async def _decided(self, image_id: str, old: Status, by: User) -> Image:
        self._changed()
        decided = await self.repo.get_image(image_id)
        if decided is None:  # deleted meanwhile
            raise NotFound("Image not found")
        if old is not decided.status:
            # IMAGE_DECIDED went to the outbox with the change (see `_stored`).
            self.events.emit(ev.OUTBOX_WRITTEN)
        return decided

    async def pending(self, limit: int = 25) -> list[Image]:
        """Images waiting for a moderator, oldest first."""
        page = await self.repo.search(
            SearchQuery(statuses=frozenset({Status.PENDING}), sort=Sort.OLDEST, limit=limit),
            count_total=False,
        )
        return page.images

    async def delete(self, image_id: str) -> Image:
        """Remove an image: row first, then its files."""
        image = await self.repo.delete_image(image_id)
        self._changed()
        if image is None:
            raise NotFound("Image not found")
        await self.blobs.remove(image_key(image.id, image.extension))
        await self.blobs.remove(thumbnail_key(image.id))
        return image

    async def set_rating(self, image_id: str, rating: Rating) -> Image:
        """Re-rate an image (e.g. on a report): every read, random pool and kept rendering
        follows at once; NotFound if unknown."""
        if await self.repo.set_rating(image_id, rating) is None:
            raise NotFound("Image not found")
        self._changed()
        image = await self.repo.get_image(image_id)
        if image is None:  # deleted meanwhile
            raise NotFound("Image not found")
        return image

    # ---- reads -----------------------------------------------------------------

    async def get(self, image_id: str, *, include_pending: bool = False) -> Image:
        """An approved image, or with include_pending what its own link shows (pending
        too); never a rejected or expired one (NotFound)."""
        return _readable(await self.repo.get_image(image_id), include_pending)

    async def similar(
        self,
        image: Image,
        count: int = 12,
        *,
        ratings: frozenset[Rating] = frozenset(),
        exclude_tags: tuple[str, ...] = (),
    ) -> list[Image]:
        """Up to `count` approved images that look like `image` (perceptual hashes within
        SIMILAR_BITS, of `ratings`, empty = any, none with one of `exclude_tags`), nearest
        first; never `image` itself."""
        if not 1 <= count <= MAX_PAGE:
            raise InvalidInput(f"count must be between 1 and {MAX_PAGE}")
        # Excluded tags are checked on the candidates: look-alikes are few (within
        # SIMILAR_BITS of one hash), so a full page of them is enough to fill `count`.
        wanted = MAX_PAGE if exclude_tags else count
        found = await self.repo.similar_images(
            image.phash, wanted, SIMILAR_BITS, ratings=ratings, exclude_id=image.id
        )
        shown = [
            i
            for i in found
            if not visibility.expired(i.expires_at) and not carries_any(i, exclude_tags)
        ]
        return shown[:count]

    async def get_file(self, image_id: str, *, include_pending: bool = False) -> ImageFile:
        """`get` for serving bytes: only what that needs (one indexed row)."""
        return _readable(await self.repo.get_file(image_id), include_pending)

    async def at_link(self, image_id: str) -> ImageFile:
        """The image a file URL serves (core/visibility.py): approved or pending, not
        expired, whoever asks; NotFound otherwise. With buffered draws, a lookup is kept
        for LINK_CACHE_SECONDS (a popular file costs no store round trip per request):
        dropped at once by this process's changes (`_changed`), and another process's
        reject or delete is seen within that time, as by the draw buffers."""
        links = self._links
        if links is None:
            return await self.get_file(image_id, include_pending=True)
        now = self.clock()
        kept = links.get(image_id)
        if kept is not None and now - kept[0] < LINK_CACHE_SECONDS:
            return _readable(kept[1], True)  # its expiry is checked on every request
        generation = self._links_generation
        found = await self.repo.get_file(image_id)
        if found is not None and generation == self._links_generation:
            # Else it may be a state a change of this process has just replaced.
            if len(links) >= LINK_CACHE_ENTRIES:
                links.clear()
            links[image_id] = (now, found)
        return _readable(found, True)

    async def random(
        self, filters: Filters, count: int = 1, *, seen_by: str | None = None
    ) -> list[Image]:
        """Up to `count` distinct approved images, uniformly drawn from the matches."""
        if not 1 <= count <= MAX_PAGE:
            raise InvalidInput(f"count must be between 1 and {MAX_PAGE}")
        filters = distinct_tags(filters)
        if seen_by is None and self.draw_buffer is not None:
            return await self.draw_buffer.take(filters, count)
        return await self.repo.random_images(filters, count, seen_by)

    async def _draw_files(self, filters: Filters, count: int) -> list[ImageFile]:
        return await self.repo.random_files(filters, count)

    async def random_files(self, filters: Filters, count: int = 1) -> list[ImageFile]:
        """Like `random`, for callers that only link to the bytes (much cheaper)."""
        if not 1 <= count <= MAX_PAGE:
            raise InvalidInput(f"count must be between 1 and {MAX_PAGE}")
        filters = distinct_tags(filters)
        if self.file_draw_buffer is not None:
            return await self.file_draw_buffer.take(filters, count)
        return await self._draw_files(filters, count)

    # ---- renderings kept by the store ----------------------------------------------

    def add_rendering(self, name: str, render: Render, *, members: bool = False) -> None:
        """Let `random_renditions(name, ...)` hand out `render(image)` as kept by the
        store (rendered once per change of the image, not per request). `render` must
        depend on the image's own fields (those that bump its `rev`: status, approver,
        likes) and on its catalogue entries' names only; with `members`, draws also
        carry the image's artist, tags and characters, for what must be current per
        request (their image counts, descriptions)."""
        self._renderings[name] = (render, members)
        if self._buffer_draws and name not in self.rendition_buffers:
            self.rendition_buffers[name] = DrawBuffer(partial(self._draw_renditions, name))

    async def random_renditions(
        self, name: str, filters: Filters, count: int = 1
    ) -> list[Rendition]:
        """`random` as the rendering `name` of each drawn image (its `body`), from the
        store's kept copies; an image without a current one is rendered and kept."""
        if not 1 <= count <= MAX_PAGE:
            raise InvalidInput(f"count must be between 1 and {MAX_PAGE}")
        filters = distinct_tags(filters)
        buffer = self.rendition_buffers.get(name)
        if buffer is not None:
            return await buffer.take(filters, count)
        return await self._draw_renditions(name, filters, count)

    async def _draw_renditions(self, name: str, filters: Filters, count: int) -> list[Rendition]:
        render, members = self._renderings[name]
        drawn = await self.repo.random_renditions(filters, count, name, members=members)
        if all(r.body is not None for r in drawn):
            return drawn
        made = []
        for n, r in enumerate(drawn):
            if r.image is not None and r.body is None:
                drawn[n] = replace(r, body=render(r.image), image=None)
                made.append((r.id, r.rev, drawn[n].body))
        await self._keep_renditions(name, made)
        return drawn

    async def _keep_renditions(self, name: str, made: list[tuple[str, int, Any]]) -> int:
        try:
            return await self.repo.put_renditions(name, made)
        except GazouError as exc:
            # A store that can't be written (full, read-only) still serves draws.
            log.warning("could not keep %d %s renderings: %s", len(made), name, exc)
            return 0

    async def render_backlog(self, chunk: int = 200) -> int:
        """Render and keep every approved image lacking a current rendering, for each
        rendering added (the backfill after an upgrade or a bulk load; idempotent, and
        safe beside other processes doing the same); how many were kept."""
        kept = 0
        for name, (render, _) in list(self._renderings.items()):
            after: int | None = 0
            while after is not None:
                batch, after = await self.repo.unrendered(name, after, chunk)
                made = [(r.id, r.rev, render(r.image)) for r in batch if r.image is not None]
                kept += await self._keep_renditions(name, made)
                await asyncio.sleep(0)  # let requests through between chunks
        if kept:
            log.info("rendered %d image objects ahead of their draws", kept)
        return kept

    async def search(self, query: SearchQuery, *, count_total: bool = True) -> SearchPage:
        """A page of images matching `query`, with its total."""
        if not 1 <= query.limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}")
        if query.skip < 0:
            raise InvalidInput("skip must not be negative")
        query = distinct_tags(query)
        if self.page_cache is not None:
            return await self.page_cache.get(
                (query, count_total), lambda: self.repo.search(query, count_total=count_total)
            )
        return await self.repo.search(query, count_total=count_total)

    async def latest(self, offset: int = 0, limit: int = 25) -> SearchPage:
        """Approved images, newest first."""
        return await self.search(SearchQuery(skip=offset, limit=limit))

    async def tags(
        self, pattern: str | None = None, offset: int = 0, limit: int = 25
    ) -> tuple[list[Tag], int]:
        """Tags (categories) whose name is LIKE `pattern`, with the total."""
        return await self.repo.list_tags(pattern, offset, limit)

    async def artists(
        self, pattern: str | None = None, offset: int = 0, limit: int = 25
    ) -> tuple[list[Artist], int]:
        """Artists whose name is LIKE `pattern`, with the total."""
        return await self.repo.list_artists(pattern, offset, limit)

    async def characters(
        self, pattern: str | None = None, offset: int = 0, limit: int = 25
    ) -> tuple[list[Character], int]:
        """Characters whose name is LIKE `pattern`, with the total."""
        return await self.repo.list_characters(pattern, offset, limit)

    async def tag(self, key: str) -> Tag:
        """A tag by id or name; NotFound otherwise."""
        found = await self.repo.get_tag(key)
        if found is None:
            raise NotFound("Category not found")
        return found

    async def artist(self, key: str) -> Artist:
        """An artist by id or name; NotFound otherwise."""
        found = await self.repo.get_artist(key)
        if found is None:
            raise NotFound("Artist not found")
        return found

    async def character(self, key: str) -> Character:
        """A character by id or name; NotFound otherwise."""
        found = await self.repo.get_character(key)
        if found is None:
            raise NotFound("Character not found")
        return found

    async def album(self, album_id: str) -> Album:
        """An album by id; NotFound otherwise."""
        found = await self.repo.get_album(album_id)
        if found is None:
            raise NotFound("Album not found")
        return found

    async def unknown_tags(self, names: Sequence[str]) -> list[str]:
        """Which of `names` are not tags (NekosAPI refuses unknown categories)."""
        return await self.repo.unknown_tags(_distinct(names))

    async def check_store_answers(self) -> None:
        """A cheap read that fails when the metadata store does (a health probe)."""
        await self.repo.pool_size("all")

    async def stats(self) -> Stats:
        """Counts by rating, orientation, resolution; artists, characters, categories."""
        return await self.repo.stats()

    async def set_like(self, image_id: str, user: User, on: bool = True, kind: str = "like") -> int:
        """Like (or unlike) an approved image; returns its like count."""
        await self.get(image_id)
        count = await self.repo.set_like(image_id, user.id, kind, on)
        self._changed()
        if count is None:
            raise NotFound("Image not found")
        return count

    async def liked(self, image_id: str, user: User) -> bool:
        """Whether `user` likes the image."""
        return await self.repo.has_liked(image_id, user.id)

    async def toggle_like(self, image_id: str, user: User) -> tuple[bool, int]:
        """Flip the member's like; returns (liked now, like count)."""
        liked = await self.repo.has_liked(image_id, user.id)
        return (not liked, await self.set_like(image_id, user, on=not liked))

    async def favourites(
        self, user: User, filters: Filters, skip: int = 0, limit: int = 20
    ) -> SearchPage:
        """A page of the approved images `user` likes that match `filters`, newest like
        first, with the exact total."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}")
        if skip < 0:
            raise InvalidInput("skip must not be negative")
        return await self.repo.liked_images(user.id, distinct_tags(filters), skip, limit)

    async def random_favourites(
        self, user: User, filters: Filters, count: int = 1, *, remember: bool = False
    ) -> list[Image]:
        """Up to `count` distinct images drawn uniformly from those `user` likes that
        match `filters`; with `remember`, none given to them by such a draw before until
        all were (as `random(seen_by=...)`)."""
        if not 1 <= count <= MAX_PAGE:
            raise InvalidInput(f"count must be between 1 and {MAX_PAGE}")
        return await self.repo.random_liked(
            user.id, distinct_tags(filters), count, remember=remember
        )

    # ---- files -----------------------------------------------------------------

    def blob_key(self, image: Image | ImageFile, *, thumbnail: bool = False) -> str:
        """The key of the image's bytes (or its JPEG thumbnail's) in the blob store."""
        return thumbnail_key(image.id) if thumbnail else image_key(image.id, image.extension)

    async def read_bytes(self, image: Image | ImageFile, *, thumbnail: bool = False) -> bytes:
        """The stored bytes (or the thumbnail's), e.g. to attach them to a message;
        BlobNotFound (a FileNotFoundError) when they are gone."""
        return b"".join(
            [c async for c in self.blobs.read(self.blob_key(image, thumbnail=thumbnail))]
        )

    # ---- upkeep ----------------------------------------------------------------

    async def sweep_expired(self, now: datetime | None = None) -> int:
        """Delete every image whose expires_at has passed; returns how many."""
        now = now or datetime.now(UTC)
        removed = 0
        while ids := await self.repo.expired_ids(now):
            for image_id in ids:
                try:
                    await self.delete(image_id)
                    removed += 1
                except NotFound:
                    pass
        return removed

    async def run_expiry_sweeper(self, interval: float) -> None:
        """Sweep expired images (and outbox entries past their time, core/outbox.py)
        every `interval` seconds until cancelled."""
        while True:
            try:
                removed = await self.sweep_expired()
                if removed:
                    log.info("deleted %d expired image(s)", removed)
                await outbox.prune(self.repo)
            except Exception:
                log.exception("expiry sweep failed; will retry")
            await asyncio.sleep(interval)

    async def check_consistency(
        self, *, grace_seconds: float = ORPHAN_GRACE_SECONDS, now: float | None = None
    ) -> ConsistencyReport:
        """Remove files no row points at once they are older than `grace_seconds`;
        report rows whose file is missing. Safe while other processes write. `now`
        (seconds since the epoch) is the moment ages are measured from (default: now)."""
        report = ConsistencyReport()
        # One flat listing per folder, read shard by shard as it advances (keys come in
        # order), so a check costs a request per 1000 objects, not one per shard folder
        # (512 on S3: 4-7 s on an empty bucket), and holds one shard's keys at a time.
        async with (
            aclosing(self.blobs.list_all("images/")) as image_keys,
            aclosing(self.blobs.list_all("thumbs/")) as thumb_keys,
        ):
            images, thumbs = _Shards(image_keys, "images/"), _Shards(thumb_keys, "thumbs/")
            try:
                for shard in sorted(_SHARDS):
                    # Files before rows: a shard's keys are all listed (the next shard's
                    # first key, or the end, has been seen) before its rows are read, so
                    # a file whose row commits before they are read is never taken for
                    # an orphan. One whose row commits later looks like one, which is
                    # what the grace period is for.
                    present = await images.take(shard) | await thumbs.take(shard)
                    await self._check_shard(shard, present, grace_seconds, now, report)
            finally:
                await images.stop()
                await thumbs.stop()
        for found in (report.orphans_removed, report.young_kept, report.missing_files):
            found.sort()
        log.info(
            "checked files against rows: removed %d orphan file(s), left %d younger than "
            "%d s, %d image(s) without a file",
            len(report.orphans_removed),
            len(report.young_kept),
            grace_seconds,
            len(report.missing_files),
        )
        if report.missing_files:
            log.error(
                "%d image(s) have no file: %s",
                len(report.missing_files),
                ", ".join(report.missing_files[:20]),
            )
        return report

    async def _check_shard(
        self,
        shard: str,
        present: dict[str, float],
        grace_seconds: float,
        now: float | None,
        report: ConsistencyReport,
    ) -> None:
        """Remove `shard`'s old files that no row wants; report its rows without one."""
        rows = await self.repo.files_with_prefix(shard)
        wanted = {image_key(i, ext) for i, ext in rows} | {thumbnail_key(i) for i, _ in rows}
        for key in sorted(present.keys() - wanted):
            if (time.time() if now is None else now) - present[key] < grace_seconds:
                report.young_kept.append(key)
                continue
            # Old when listed; still there and still old just before it goes?
            modified = await self.blobs.modified_at(key)
            if modified is None:
                continue  # renamed into place or removed meanwhile
            if (time.time() if now is None else now) - modified < grace_seconds:
                report.young_kept.append(key)
                continue
            await self.blobs.remove(key)
            report.orphans_removed.append(key)
        for image_id, ext in rows:
            key = image_key(image_id, ext)
            # Written after the listing, or deleted since (row first, then files)?
            if (
                key not in present
                and not await self.blobs.exists(key)
                and await self.repo.get_file(image_id) is not None
            ):
                report.missing_files.append(image_id)
