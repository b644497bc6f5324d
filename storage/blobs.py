"""Image bytes as files under one root: the embedded backend of core's BlobStore
contract (core/contracts.py)."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from collections.abc import AsyncGenerator, Iterator
from itertools import islice
from pathlib import Path
from stat import S_ISREG
from typing import BinaryIO

from core.contracts import BlobNotFound
from core.errors import GazouError, StorageFull, StorageUnavailable

log = logging.getLogger(__name__)
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# Bytes read per thread hop when streaming a file.
READ_CHUNK = 256 * 1024


def write_error(error: OSError) -> GazouError:
    """The domain error for a failed write of image files: full (507) or not writable
    (503), worded for whoever reads it, without paths."""
    if error.errno in _FULL:
        return StorageFull("The image store is full: nothing was stored")
    if error.errno == errno.EROFS:
        return StorageUnavailable("The image store is read-only: nothing was stored")
    if error.errno in (errno.EACCES, errno.EPERM):
        return StorageUnavailable("The image store may not be written: nothing was stored")
    return StorageUnavailable("The image store cannot be written: nothing was stored")


class FileBlobStore:
    """Blobs as files under one root; writes go to a temporary file, are fsynced,
    then renamed into place, so a crash leaves either the old state or the new."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # Files listed per thread hop by list_all.
        self.page_size = 1000

    def local_path(self, key: str) -> Path:
        """The file that holds `key` (served with sendfile)."""
        parts = key.split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"bad blob key {key!r}")
        return self.root.joinpath(*parts)

    def _put_sync(self, key: str, data: bytes) -> None:
        final = self.local_path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        # The rename itself must survive a power cut: fsync the directory.
        dir_fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    async def put(self, key: str, data: bytes) -> None:
        """Write `data` atomically under `key`; StorageFull or StorageUnavailable when
        the disk refuses."""
        try:
            await asyncio.to_thread(self._put_sync, key, data)
        except OSError as exc:
            # The operator must hear of it; the client gets a 507 or 503 that says why.
            log.error("cannot write %s: %s", key, exc)
            raise write_error(exc) from exc

    async def read(
        self, key: str, start: int = 0, end: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """The file's bytes from `start` up to `end` (None: to the end), a chunk per
        thread hop; BlobNotFound when there is no file."""
        try:
            f = await asyncio.to_thread(_open_at, self.local_path(key), start)
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        try:
            left = None if end is None else end - start
            while left is None or left > 0:
                chunk = await asyncio.to_thread(
                    f.read, READ_CHUNK if left is None else min(READ_CHUNK, left)
                )
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk
        finally:
            f.close()

    async def direct_url(self, key: str, expires_in: int) -> str | None:
        """None: files are only reachable through gazou."""
        return None

    async def exists(self, key: str) -> bool:
        """Whether the file for `key` exists."""
        return await asyncio.to_thread(self.local_path(key).is_file)

    async def remove(self, key: str) -> None:
        """Delete the file for `key`, if any."""
        await asyncio.to_thread(self.local_path(key).unlink, missing_ok=True)

    def _list_sync(self, prefix: str) -> list[str]:
        folder = self.local_path(prefix)
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return []
        return [f"{prefix}/{e.name}" for e in entries if e.is_file()]

    async def list_prefix(self, prefix: str) -> list[str]:
        """Keys of the files directly inside the folder `prefix` (temporaries included)."""
        return await asyncio.to_thread(self._list_sync, prefix)

    async def list_all(self, prefix: str) -> AsyncGenerator[tuple[str, float], None]:
        """(key, mtime) of every file under the folder `prefix`, at any depth, in key
        order, `page_size` files per thread hop; the mtime comes from the stat that
        finds the entry a file."""
        # The walk holds no open folder between pages (each is read whole, then
        # sorted), so a reader that stops early leaves nothing to close.
        walk = _walk(*self._listed(prefix))
        while page := await asyncio.to_thread(_take, walk, self.page_size):
            for found in page:
                yield found

    def _listed(self, prefix: str) -> tuple[Path, str]:
        folder = prefix.strip("/")
        return (self.local_path(folder), f"{folder}/") if folder else (self.root, "")

    def _modified_sync(self, key: str) -> float | None:
        try:
            return self.local_path(key).stat().st_mtime
        except FileNotFoundError:
            return None

    async def modified_at(self, key: str) -> float | None:
        """The file's mtime: when its writer last wrote it (a rename keeps it)."""
        return await asyncio.to_thread(self._modified_sync, key)


def _walk(folder: Path, key_prefix: str) -> Iterator[tuple[str, float]]:
    """The files under `folder` as (key, mtime) in key order: a folder's entries sorted
    with each sub-folder's name followed by `/`, which is where its keys fall among its
    siblings' in a sort of whole keys. Holds one listing per level, never the tree."""
    try:
        with os.scandir(folder) as found:
            entries = sorted(found, key=lambda e: f"{e.name}/" if _is_folder(e) else e.name)
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if _is_folder(entry):
            yield from _walk(Path(entry.path), f"{key_prefix}{entry.name}/")
            continue
        try:
            stat = entry.stat()
        except FileNotFoundError:
            continue  # renamed into place or removed since the folder was read
        if S_ISREG(stat.st_mode):
            yield f"{key_prefix}{entry.name}", stat.st_mtime


def _is_folder(entry: os.DirEntry[str]) -> bool:
    # A link to a folder is not followed: a link back up would walk forever.
    return entry.is_dir(follow_symlinks=False)


def _take(items: Iterator[tuple[str, float]], count: int) -> list[tuple[str, float]]:
    return list(islice(items, count))


def _open_at(path: Path, start: int) -> BinaryIO:
    f = open(path, "rb")  # closed by the reader that owns it
    if start:
        f.seek(start)
    return f
