"""The services bundle both transports are given, and how it is opened."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass

from core.contracts import KeyValue, WindowCounter
from core.events import Events
from core.images import ImageService
from core.outbox import OutboxConsumer
from core.reports import ReportService
from core.settings import Settings, rate_limit_backend
from core.signing import LinkSigner
from core.tokens import TokenService
from storage import Storage, open_storage, open_window_counter


@dataclass(frozen=True, slots=True)
class Services:
    """Everything a transport calls: images, tokens, small durable values (kv), link
    signing, events and their outbox consumer (started only by the process that runs
    the bot), the rate limiter's counter, members' reports. Transports use these, never `storage`
    directly."""

    settings: Settings
    storage: Storage
    kv: KeyValue
    images: ImageService
    tokens: TokenService
    signer: LinkSigner
    events: Events
    outbox: OutboxConsumer
    rate_counter: WindowCounter
    reports: ReportService


def image_executor(workers: int) -> ThreadPoolExecutor:
    """The threads CPU-heavy image work runs in."""
    # Pillow releases the GIL while decoding and resampling, so threads keep the
    # event loop free without copying image bytes to another process. (A lower nice
    # value for these threads was measured and dropped: when other processes load the
    # machine, a deprioritised worker holding the GIL stalls the loop for longer.)
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gazou-image")


@asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    """Open the store and build the services over it; close everything on exit."""
    executor = image_executor(settings.image_workers)
    try:
        async with (
            open_storage(
                settings.data_dir,
                database_url=settings.database_url,
                blob_url=settings.blob_url,
                blob_access_key=settings.blob_access_key,
                blob_secret_key=settings.blob_secret_key,
            ) as storage,
            open_window_counter(
                rate_limit_backend(settings), settings.data_dir, settings.redis_url
            ) as rate_counter,
        ):
            events = Events()
            images = ImageService(
                storage.repo,
                storage.blobs,
                events,
                executor=executor,
                max_pixels=settings.max_image_pixels,
                max_bytes=settings.max_request_bytes,
                thumb_size=settings.thumbnail_size,
                buffer_draws=True,
            )
            tokens = TokenService(storage.repo, settings.default_token_scopes)
            services = Services(
                settings=settings,
                storage=storage,
                kv=storage.repo,
                images=images,
                tokens=tokens,
                signer=LinkSigner(settings.signing_secret),
                events=events,
                outbox=OutboxConsumer(storage.repo, events),
                rate_counter=rate_counter,
                reports=ReportService(storage.repo, images, events),
            )
            try:
                yield services
            finally:
                await services.outbox.stop(grace=0)  # its owner (the bot) stopped it already
                for buffer in (
                    images.draw_buffer,
                    images.file_draw_buffer,
                    *images.rendition_buffers.values(),
                ):
                    if buffer is not None:
                        await buffer.aclose()
                await events.drain()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
