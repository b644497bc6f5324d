"""Persistence: the metadata repo (SQLite) and the blob store (files)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from core.contracts import BlobStore, Repo
from storage.blobs import FileBlobStore
from storage.sqlite import SQLiteRepo


@dataclass(frozen=True, slots=True)
class Storage:
    """The two halves of the store, opened together."""

    repo: Repo
    blobs: BlobStore


@asynccontextmanager
async def open_storage(data_dir: Path) -> AsyncIterator[Storage]:
    """Open (creating and migrating as needed) the store under `data_dir`."""
    repo = SQLiteRepo(data_dir / "gazou.sqlite3")
    await repo.open()
    try:
        yield Storage(repo=repo, blobs=FileBlobStore(data_dir / "files"))
    finally:
        await repo.close()
