"""Persistence: the metadata repo (SQLite, or PostgreSQL with DATABASE_URL) and the
blob store (files, or an S3 bucket)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from core.contracts import BlobStore, Repo, WindowCounter
from storage.blobs import FileBlobStore
from storage.postgres import PostgresRepo
from storage.sqlite import SQLiteRepo
from storage.window_counters import MemoryWindowCounter, SharedWindowCounter


@dataclass(frozen=True, slots=True)
class Storage:
    """The two halves of the store, opened together."""

    repo: Repo
    blobs: BlobStore


@asynccontextmanager
async def open_blobs(
    data_dir: Path,
    *,
    blob_url: str | None = None,
    blob_access_key: str | None = None,
    blob_secret_key: str | None = None,
) -> AsyncIterator[BlobStore]:
    """The blob store: files under `data_dir/files`, or the S3 bucket of `blob_url`."""
    if blob_url is None:
        yield FileBlobStore(data_dir / "files")
        return
    # Imported only when asked for: botocore takes a while to load.
    from storage.s3 import S3BlobStore

    async with S3BlobStore.open(blob_url, blob_access_key, blob_secret_key) as store:
        yield store


@asynccontextmanager
async def open_storage(
    data_dir: Path,
    *,
    database_url: str | None = None,
    blob_url: str | None = None,
    blob_access_key: str | None = None,
    blob_secret_key: str | None = None,
) -> AsyncIterator[Storage]:
    """Open (creating and migrating as needed) the store: metadata in the PostgreSQL
    database at `database_url` if given, else in SQLite under `data_dir`; the bytes in
    files there or in the S3 bucket of `blob_url`."""
    repo: SQLiteRepo | PostgresRepo
    if database_url:
        repo = PostgresRepo(database_url)
    else:
        repo = SQLiteRepo(data_dir / "gazou.sqlite3")
    await repo.open()
    try:
        async with open_blobs(
            data_dir,
            blob_url=blob_url,
            blob_access_key=blob_access_key,
            blob_secret_key=blob_secret_key,
        ) as blobs:
            yield Storage(repo=repo, blobs=blobs)
    finally:
        await repo.close()


@asynccontextmanager
async def open_window_counter(
    store: str, data_dir: Path, redis_url: str | None = None
) -> AsyncIterator[WindowCounter]:
    """The rate limiter's counter: `memory` (this process), `shared` (every process on
    this machine with this `data_dir`) or `redis` (every process using `redis_url`)."""
    counter: WindowCounter
    if store == "redis":
        if not redis_url:
            raise ValueError("the redis rate limit store needs a Redis URL")
        from storage.redis_counter import RedisWindowCounter  # imports redis only if used

        counter = RedisWindowCounter(redis_url)
    elif store == "shared":
        counter = SharedWindowCounter(data_dir / "rate-limits.shm")
    elif store == "memory":
        counter = MemoryWindowCounter()
    else:
        raise ValueError(f"unknown rate limit store {store!r}")
    try:
        yield counter
    finally:
        await counter.close()
