"""Rate limiter benchmark, run by hand: `.venv/bin/python bench/ratelimit.py`.

First, fills api/ratelimit.py's FixedWindowLimiter (over the in-process counter) with
1,000 and with 100,000 live (route, client) windows, then times 2,000 hits of new
clients and prints the cost per new client at both sizes with the ratio large/small
(the target is < 2: forgetting finished windows is amortised O(1)). The same run
measures the sweep it replaced (rebuild the whole table on each new client past 10,000
windows) as the baseline; the hits go through the same limiter otherwise.

Then, the cost of one hit through the limiter for each counter (storage/): 20,000 hits
spread over 1,000 live clients, one process; for the in-process counter also the sync
limiter it replaced (the dict inside the limiter, no coroutine). Redis is a
redis-server started on a free loopback port (or REDIS_URL if set); skipped with one
line when neither is there. Last, the shared-memory counter hit by 2 processes at once
(the per-hit cost each sees while the other contends for the lock)."""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

# The repository instead of bench/, whose http.py would shadow the standard library's.
if str(Path(__file__).resolve().parent) in sys.path:  # not in spawned children
    sys.path.remove(str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.dialect import RateLimit
from api.ratelimit import FixedWindowLimiter
from storage import open_window_counter
from storage.window_counters import MemoryWindowCounter, SharedWindowCounter

RULE = RateLimit(5, 10.0)
NOW = 1_700_000_003.0
NEW_CLIENTS = 2_000


class RebuildingLimiter:
    """The limiter before: past 10,000 windows, every new client rebuilt the table."""

    def __init__(self) -> None:
        self._windows: dict[tuple[str, str], tuple[float, int]] = {}

    def hit(self, route: str, client: str, rule: RateLimit) -> None:
        now = NOW
        end = (math.floor(now / rule.window) + 1) * rule.window
        key = (route, client)
        seen = self._windows.get(key)
        count = seen[1] + 1 if seen is not None and seen[0] == end else 1
        if len(self._windows) >= 10_000 and key not in self._windows:
            self._windows = {k: v for k, v in self._windows.items() if v[0] > now}
        self._windows[key] = (end, count)


class SyncLimiter:
    """The in-process limiter before the counters moved to storage/: the same dict and
    expiry queues inside the limiter, called without a coroutine."""

    def __init__(self) -> None:
        self._windows: dict[tuple[str, str], tuple[float, int]] = {}
        self._opened: dict[float, deque[tuple[float, tuple[str, str]]]] = {}

    def hit(self, route: str, client: str, rule: RateLimit) -> int:
        now = time.time()
        for opened in self._opened.values():
            while opened and opened[0][0] <= now:
                end, key = opened.popleft()
                seen = self._windows.get(key)
                if seen is not None and seen[0] == end:
                    del self._windows[key]
        end = (math.floor(now / rule.window) + 1) * rule.window
        key = (route, client)
        seen = self._windows.get(key)
        if seen is not None and seen[0] == end:
            count = seen[1] + 1
        else:
            count = 1
            opened = self._opened.get(rule.window)
            if opened is None:
                opened = self._opened[rule.window] = deque()
            opened.append((end, key))
        self._windows[key] = (end, count)
        return count


def per_new_client(make: type, live: int) -> float:
    """Median microseconds per new client's hit, with `live` windows open, of 3 runs."""

    async def run() -> float:
        if make is FixedWindowLimiter:
            limiter = make(MemoryWindowCounter(), lambda: NOW)
            for n in range(live):
                await limiter.hit("nekosmoe.random", f"addr:{n}", RULE)
        else:  # filled directly: through hit() the fill itself is quadratic
            limiter = make()
            end = (math.floor(NOW / RULE.window) + 1) * RULE.window
            limiter._windows = {("nekosmoe.random", f"addr:{n}"): (end, 1) for n in range(live)}
        start = time.perf_counter()
        for n in range(NEW_CLIENTS):
            if make is FixedWindowLimiter:
                await limiter.hit("nekosmoe.random", f"addr:new{n}", RULE)
            else:
                limiter.hit("nekosmoe.random", f"addr:new{n}", RULE)
        return (time.perf_counter() - start) / NEW_CLIENTS * 1e6

    return statistics.median(asyncio.run(run()) for _ in range(3))


HITS, CLIENTS = 20_000, 1_000
WIDE = RateLimit(1_000_000, 60.0)  # never refuses: every hit is a full count


async def per_hit(store: str, data_dir: Path, redis_url: str | None) -> float:
    """Median microseconds per hit through the limiter over `store`, of 3 runs."""
    runs = []
    async with open_window_counter(store, data_dir, redis_url) as counter:
        limiter = FixedWindowLimiter(counter)
        hits = HITS // 10 if store == "redis" else HITS
        for _ in range(3):
            start = time.perf_counter()
            for n in range(hits):
                await limiter.hit("nekosmoe.random", f"addr:{n % CLIENTS}", WIDE)
            runs.append((time.perf_counter() - start) / hits * 1e6)
    return statistics.median(runs)


def per_hit_sync() -> float:
    limiter = SyncLimiter()
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        for n in range(HITS):
            limiter.hit("nekosmoe.random", f"addr:{n % CLIENTS}", WIDE)
        runs.append((time.perf_counter() - start) / HITS * 1e6)
    return statistics.median(runs)


def _contend(path: str, ready: multiprocessing.Barrier, out: multiprocessing.Queue) -> None:
    counter = SharedWindowCounter(Path(path))
    ready.wait()
    start = time.perf_counter()
    for n in range(HITS):
        counter.count(f"nekosmoe.random addr:{n % CLIENTS}", 60.0, time.time())
    out.put((time.perf_counter() - start) / HITS * 1e6)


def shared_two_processes(data_dir: Path) -> list[float]:
    """Microseconds per hit seen by each of 2 processes hitting the table at once."""
    context = multiprocessing.get_context("spawn")
    ready, out = context.Barrier(2), context.Queue()
    path = str(data_dir / "contended.shm")
    procs = [context.Process(target=_contend, args=(path, ready, out)) for _ in range(2)]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    return results


def _redis(folder: Path) -> tuple[str | None, subprocess.Popen | None]:
    if url := os.environ.get("REDIS_URL"):
        return url, None
    exe = shutil.which("redis-server")
    if exe is None:
        return None, None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--dir", str(folder)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):  # up to 15 s
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return f"redis://127.0.0.1:{port}/0", proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    return None, None


def main() -> None:
    print(f"{'limiter':<28}{'1k live':>12}{'100k live':>12}{'ratio':>8}")
    for name, make in (
        ("rebuild past 10k (before)", RebuildingLimiter),
        ("expiry queues (now)", FixedWindowLimiter),
    ):
        small, large = per_new_client(make, 1_000), per_new_client(make, 100_000)
        print(f"{name:<28}{small:>10.2f}us{large:>10.2f}us{large / small:>8.1f}")

    print(f"\nper hit through the limiter ({CLIENTS:,} live clients, one process)")
    with tempfile.TemporaryDirectory() as folder:
        data_dir = Path(folder)
        print(f"{'in-process, sync (before)':<28}{per_hit_sync():>10.2f}us")
        for store in ("memory", "shared"):
            cost = asyncio.run(per_hit(store, data_dir, None))
            print(f"{store + ' counter':<28}{cost:>10.2f}us")
        url, server = _redis(data_dir)
        try:
            if url is None:
                print(f"{'redis counter':<28}  skipped: no redis-server (Debian: redis-server)")
            else:
                cost = asyncio.run(per_hit("redis", data_dir, url))
                print(f"{'redis counter':<28}{cost:>10.2f}us")
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=10)
        each = shared_two_processes(data_dir)
        shown = " ".join(f"{c:.2f}us" for c in each)
        print(f"{'shared, 2 processes at once':<28}  {shown} (each)")


if __name__ == "__main__":
    main()
