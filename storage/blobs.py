"""Image bytes as files under one root: the embedded backend of core's BlobStore
contract (core/contracts.py)."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from pathlib import Path

from core.errors import GazouError, StorageFull, StorageUnavailable

log = logging.getLogger(__name__)
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


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

    def path(self, key: str) -> Path:
        """The file that holds `key`."""
        parts = key.split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"bad blob key {key!r}")
        return self.root.joinpath(*parts)

    def _put_sync(self, key: str, data: bytes) -> None:
        final = self.path(key)
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

    async def exists(self, key: str) -> bool:
        """Whether the file for `key` exists."""
        return await asyncio.to_thread(self.path(key).is_file)

    async def remove(self, key: str) -> None:
        """Delete the file for `key`, if any."""
        await asyncio.to_thread(self.path(key).unlink, missing_ok=True)

    def _list_sync(self, prefix: str) -> list[str]:
        folder = self.path(prefix)
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return []
        return [f"{prefix}/{e.name}" for e in entries if e.is_file()]

    async def list_prefix(self, prefix: str) -> list[str]:
        """Keys of the files directly inside the folder `prefix` (temporaries included)."""
        return await asyncio.to_thread(self._list_sync, prefix)

    def _modified_sync(self, key: str) -> float | None:
        try:
            return self.path(key).stat().st_mtime
        except FileNotFoundError:
            return None

    async def modified_at(self, key: str) -> float | None:
        """The file's mtime: when its writer last wrote it (a rename keeps it)."""
        return await asyncio.to_thread(self._modified_sync, key)
