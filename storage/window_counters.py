"""Window counters for the rate limiter (core.contracts.WindowCounter) that need no
server: in this process's memory, or in a table in shared memory that every process on
the machine serving the same DATA_DIR maps (storage/redis_counter.py is the third)."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import math
import mmap
import os
import struct
import time
from collections import deque
from pathlib import Path

log = logging.getLogger(__name__)


class MemoryWindowCounter:
    """One process's counts: a dict of (window end, count) per key. Finished windows are
    forgotten from the front of one queue per window length, in the order they opened,
    so in the order they end (amortised O(1) a hit, however many clients are live)."""

    def __init__(self) -> None:
        self._windows: dict[str, tuple[float, int]] = {}
        self._opened: dict[float, deque[tuple[float, str]]] = {}

    def count(self, key: str, window: float, now: float) -> int:
        """`hit` without the coroutine (for callers that are sync already)."""
        for opened in self._opened.values():
            while opened and opened[0][0] <= now:
                end, old = opened.popleft()
                seen = self._windows.get(old)
                if seen is not None and seen[0] == end:  # not reopened since
                    del self._windows[old]
        end = (math.floor(now / window) + 1) * window
        seen = self._windows.get(key)
        if seen is not None and seen[0] == end:
            count = seen[1] + 1
        else:
            count = 1
            queue = self._opened.get(window)
            if queue is None:
                queue = self._opened[window] = deque()
            queue.append((end, key))
        self._windows[key] = (end, count)
        return count

    async def hit(self, key: str, window: float, now: float) -> int:
        """Count one hit of `key` and return its count in the current window."""
        return self.count(key, window, now)

    async def close(self) -> None:
        """Nothing to release."""

    def __len__(self) -> int:
        return len(self._windows)


# The shared table: a header, then SLOTS + PROBES slots (the spare PROBES let a probe run
# starting at any of the first SLOTS never wrap around). A slot is (16-byte BLAKE2b of the
# window length and key, end of its window in unix ms, count); a slot whose window has
# ended is free, whoever it belonged to. 2**18 slots of 32 bytes: an 8 MiB sparse file.
_MAGIC = b"gazou-rl"
_VERSION = 1
_HEADER = struct.Struct("<8sIII")  # magic, version, slots, probes
_HEADER_SIZE = 64
_SLOT = struct.Struct("<16sqq")
_SLOT_SIZE = _SLOT.size
_END = struct.Struct("<q")
DEFAULT_SLOTS = 1 << 18
DEFAULT_PROBES = 16
_HOMES_KEPT = 65_536  # digests remembered per process (about 10 MB at most)
_FULL_WARNING_EVERY = 60.0  # seconds between two "table full" warnings


class SharedWindowCounter:
    """One count per key for every process on this machine that opens the same file: a
    fixed-size open-addressing table in a shared mmap of `path`, each read-modify-write
    under an exclusive flock (held for a few microseconds; the kernel releases it if its
    holder dies).

    A key lives within PROBES slots of its home slot. When all of those hold live
    windows of other keys (about 100,000 live (route, client) pairs in one window at
    the default size), the key is counted in this process alone, with a warning: the
    count is then low, never high, so a client within its limits is still never
    refused. The first process to open the table (no other holds it open, seen through
    a shared flock on `path`.lock held for the counter's life) clears it."""

    def __init__(
        self, path: Path, *, slots: int = DEFAULT_SLOTS, probes: int = DEFAULT_PROBES
    ) -> None:
        self.path = path
        self._slots, self._probes = slots, probes
        size = _HEADER_SIZE + (slots + probes) * _SLOT_SIZE
        path.parent.mkdir(parents=True, exist_ok=True)
        # Held shared for the counter's life: whoever gets it exclusively is alone.
        self._users = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._fd = -1
        try:
            try:
                fcntl.flock(self._users, fcntl.LOCK_EX | fcntl.LOCK_NB)
                alone = True
            except BlockingIOError:
                alone = False
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)  # whoever clears, clears before any use
            try:
                self._prepare(size, clear=alone)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            fcntl.flock(self._users, fcntl.LOCK_SH)
            self._map = mmap.mmap(self._fd, size)
        except BaseException:
            for fd in (self._fd, self._users):
                if fd >= 0:
                    os.close(fd)
            raise
        self._local = MemoryWindowCounter()
        self._warned_at = -math.inf
        self._homes: dict[tuple[str, float], tuple[bytes, int]] = {}

    def _prepare(self, size: int, *, clear: bool) -> None:
        """Clear the table when asked (no other process has it open: what it holds is
        stale) or when it is new."""
        header = os.pread(self._fd, _HEADER.size, 0)
        expected = _HEADER.pack(_MAGIC, _VERSION, self._slots, self._probes)
        in_place = header == expected and os.fstat(self._fd).st_size == size
        if not clear and not in_place and any(header):
            # Another process maps it with another layout: resizing it under that
            # process's mapping would crash it (SIGBUS).
            raise RuntimeError(f"{self.path} is in use with another layout (another version?)")
        if clear or not in_place:
            os.ftruncate(self._fd, 0)  # sparse again: every slot zero, so free
            os.ftruncate(self._fd, size)
            os.pwrite(self._fd, expected, 0)

    def count(self, key: str, window: float, now: float) -> int:
        """`hit` without the coroutine (the work is a few microseconds of sync calls)."""
        end_ms = round((math.floor(now / window) + 1) * window * 1000)
        found = self._homes.get((key, window))
        if found is None:
            found = self._home(key, window)
        digest, base = found
        limit = base + self._probes * _SLOT_SIZE
        table = self._map
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            at = table.find(digest, base, limit)
            while at >= 0 and (at - base) % _SLOT_SIZE:  # the bytes, but astride two fields
                at = table.find(digest, at + 1, limit)
            if at >= 0:
                _, seen_end, seen = _SLOT.unpack_from(table, at)
                count = seen + 1 if seen_end == end_ms else 1
                _SLOT.pack_into(table, at, digest, end_ms, count)
                return count
            now_ms = math.floor(now * 1000)
            for at in range(base, limit, _SLOT_SIZE):
                if _END.unpack_from(table, at + 16)[0] <= now_ms:  # free: its window is over
                    _SLOT.pack_into(table, at, digest, end_ms, 1)
                    return 1
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        return self._overflow(key, window, now)

    def _home(self, key: str, window: float) -> tuple[bytes, int]:
        """The key's digest and the offset of its home slot, remembered for the clients
        seen lately (hashing costs more than the rest of a hit)."""
        digest = hashlib.blake2b(f"{window:g} {key}".encode(), digest_size=16).digest()
        base = _HEADER_SIZE + int.from_bytes(digest[:8], "little") % self._slots * _SLOT_SIZE
        if len(self._homes) >= _HOMES_KEPT:
            self._homes.clear()
        self._homes[key, window] = found = (digest, base)
        return found

    def _overflow(self, key: str, window: float, now: float) -> int:
        """Every slot near the key's home is live: count it in this process (low, never
        high), and say so at most once a minute."""
        if (clock := time.monotonic()) - self._warned_at >= _FULL_WARNING_EVERY:
            self._warned_at = clock
            log.warning(
                "rate limit table %s is full near a key; counting such keys per process "
                "until their windows end (room for about %d live keys)",
                self.path,
                self._slots // 2,
            )
        return self._local.count(key, window, now)

    async def hit(self, key: str, window: float, now: float) -> int:
        """Count one hit of `key` and return its count in the current window, across
        every process that has the table open."""
        return self.count(key, window, now)

    async def close(self) -> None:
        """Unmap the table and leave it to the other processes."""
        if self._fd < 0:
            return
        self._map.close()
        os.close(self._fd)
        os.close(self._users)  # drops the shared flock
        self._fd = self._users = -1
