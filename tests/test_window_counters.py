"""The rate limiter's counters (core.contracts.WindowCounter): the contract for all
three (this process, shared memory, a real Redis), the shared table driven from several
real processes at once, and two app instances on one DATA_DIR (as two web workers are)
sharing one count whichever of them answers."""

from __future__ import annotations

import asyncio
import logging
import math
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from api.ratelimit import RATE_LIMITER
from core.contracts import WindowCounter
from core.services import open_services
from storage import open_window_counter
from storage.window_counters import SharedWindowCounter
from tests.conftest import make_settings
from tests.servers import SKIPPED_BACKENDS

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _soon() -> float:
    """Half a second into the next minute: near the real time (Redis expires its keys
    by the real clock), and never straddling a window boundary for 10 s windows."""
    return (math.floor(time.time() / 60) + 1) * 60 + 0.5


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port in a temporary folder, no persistence;
    stopped by its pid."""
    exe = shutil.which("redis-server")
    if exe is None:
        SKIPPED_BACKENDS["Redis"] = "missing redis-server: apt-get install -y redis-server"
        pytest.skip("redis-server is not installed (Debian package: redis-server)")
    port = _free_port()
    folder = tmp_path_factory.mktemp("redis")
    command = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    command += ["no", "--dir", str(folder)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            assert proc.poll() is None, "redis-server exited at start"
            assert time.monotonic() < deadline, "redis-server did not answer in 15 s"
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


STORES = ["memory", "shared", "redis"]


@pytest.fixture(params=STORES)
async def counter(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[WindowCounter]:
    """Each counter, fresh (Redis: one server for the module, keys unique to the test)."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    async with open_window_counter(request.param, tmp_path, url) as opened:
        yield opened


def _key() -> str:
    return f"route addr:{uuid.uuid4().hex}"


# ---- the contract, for every counter ----------------------------------------------


async def test_counts_each_hit_of_a_key_in_its_window(counter: WindowCounter) -> None:
    key, other, now = _key(), _key(), _soon()
    assert [await counter.hit(key, 10.0, now) for _ in range(3)] == [1, 2, 3]
    assert await counter.hit(other, 10.0, now) == 1
    assert await counter.hit(key, 10.0, now + 9.0) == 4  # the same aligned window


async def test_the_next_aligned_window_starts_afresh(counter: WindowCounter) -> None:
    key, now = _key(), _soon()  # 0.5 s into a window: 9.5 s later is the next one
    for _ in range(5):
        await counter.hit(key, 10.0, now)
    assert await counter.hit(key, 10.0, now + 9.5) == 1
    assert await counter.hit(key, 10.0, now + 9.6) == 2


async def test_a_client_pacing_within_the_limit_never_counts_past_it(
    counter: WindowCounter,
) -> None:
    key, now = _key(), _soon() + 3.7  # not on a boundary
    counts = [await counter.hit(key, 10.0, now + 2.0 * n) for n in range(50)]  # 5 per 10 s
    assert max(counts) <= 5


async def test_many_keys_are_counted_apart(counter: WindowCounter) -> None:
    keys, now = [_key() for _ in range(500)], _soon()
    assert {await counter.hit(k, 10.0, now) for k in keys} == {1}
    assert {await counter.hit(k, 10.0, now) for k in keys} == {2}


async def test_concurrent_hits_lose_no_increment(counter: WindowCounter) -> None:
    key, now = _key(), _soon()
    counts = await asyncio.gather(*(counter.hit(key, 60.0, now) for _ in range(300)))
    assert sorted(counts) == list(range(1, 301))


# ---- shared memory -------------------------------------------------------------------

_CHILD = """
import sys
from pathlib import Path
from storage.window_counters import SharedWindowCounter
counter = SharedWindowCounter(Path(sys.argv[1]))
print("ready", flush=True)
sys.stdin.readline()
print(" ".join(str(counter.count("route addr:1", 10.0, float(sys.argv[3])))
               for _ in range(int(sys.argv[2]))), flush=True)
"""


def test_processes_hitting_one_key_at_once_lose_no_increment(tmp_path: Path) -> None:
    path, hits, now = tmp_path / "rate-limits.shm", 4_000, time.time()
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(path), str(hits), repr(now)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        for child in children:  # all mapped before any counts
            assert child.stdout is not None and child.stdout.readline() == "ready\n"
        for child in children:  # then all at once
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        counts = [int(n) for child in children for n in child.communicate(timeout=120)[0].split()]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert [child.returncode for child in children] == [0, 0, 0]
    assert sorted(counts) == list(range(1, 3 * hits + 1))


async def test_two_openers_in_one_process_share_the_count(tmp_path: Path) -> None:
    a = SharedWindowCounter(tmp_path / "t.shm")
    b = SharedWindowCounter(tmp_path / "t.shm")
    try:
        now = time.time()
        assert [await a.hit("k", 10.0, now), await b.hit("k", 10.0, now)] == [1, 2]
    finally:
        await a.close()
        await b.close()


async def test_the_first_opener_clears_a_stale_table_later_ones_do_not(tmp_path: Path) -> None:
    now = time.time()
    first = SharedWindowCounter(tmp_path / "t.shm")
    await first.hit("k", 60.0, now)
    await first.close()  # nobody has it open now: what it holds is stale
    fresh = SharedWindowCounter(tmp_path / "t.shm")
    assert await fresh.hit("k", 60.0, now) == 1
    later = SharedWindowCounter(tmp_path / "t.shm")  # fresh still has it open
    assert await later.hit("k", 60.0, now) == 2
    await fresh.close()
    await later.close()


async def test_a_full_table_counts_the_keys_without_room_per_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Two processes' worth of openers on a table of 4 (+4 spare) slots.
    a = SharedWindowCounter(tmp_path / "t.shm", slots=4, probes=4)
    b = SharedWindowCounter(tmp_path / "t.shm", slots=4, probes=4)
    try:
        now = math.floor(time.time() / 10) * 10 + 0.5
        with caplog.at_level(logging.WARNING, logger="storage.window_counters"):
            first = [await a.hit(f"k{n}", 10.0, now) for n in range(12)]
            second = [await b.hit(f"k{n}", 10.0, now) for n in range(12)]
        assert first == [1] * 12  # every key counted
        # Keys with a slot are shared (2); the others are counted per process (1): low,
        # never high.
        assert set(second) == {1, 2} and second.count(2) <= 8
        assert len([r for r in caplog.records if "is full" in r.message]) == 2  # one each
        # Those windows are over: every slot is free again, and shared.
        later = now + 10
        assert [await a.hit(f"new{n}", 10.0, later) for n in range(4)] == [1] * 4
        assert [await b.hit(f"new{n}", 10.0, later) for n in range(4)] == [2] * 4
    finally:
        await a.close()
        await b.close()


async def test_a_table_in_use_with_another_layout_is_not_resized_under_it(
    tmp_path: Path,
) -> None:
    counter = SharedWindowCounter(tmp_path / "t.shm", slots=64)
    try:
        with pytest.raises(RuntimeError, match="another layout"):
            SharedWindowCounter(tmp_path / "t.shm", slots=128)
        assert await counter.hit("k", 10.0, time.time()) == 1
    finally:
        await counter.close()


# ---- Redis ---------------------------------------------------------------------------


async def test_redis_keys_are_namespaced_by_window_and_expire_after_it(redis_url: str) -> None:
    import redis.asyncio as aioredis

    key, now = _key(), _soon()
    async with open_window_counter("redis", Path("unused"), redis_url) as counter:
        await counter.hit(key, 10.0, now)
    start = math.floor(now / 10) * 10
    client = aioredis.Redis.from_url(redis_url)
    try:
        name = f"gazou:rl:{start * 1000}:{key}"
        assert await client.get(name) == b"1"
        expires_at = await client.pexpiretime(name)
        assert (start + 10) * 1000 < expires_at <= (start + 10) * 1000 + 5_000
    finally:
        await client.aclose()


async def test_unreachable_redis_counts_per_process_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"redis://127.0.0.1:{_free_port()}/0"  # nothing listens there
    key, now = _key(), _soon()
    with caplog.at_level(logging.WARNING, logger="storage.redis_counter"):
        async with open_window_counter("redis", Path("unused"), url) as counter:
            counts = [await counter.hit(key, 10.0, now) for _ in range(20)]
    assert counts == list(range(1, 21))  # this process's count: the API stays up
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "Redis unreachable" in warnings[0]


# ---- two workers (two app instances on one DATA_DIR) share one count ------------------


@pytest.fixture(params=STORES)
async def two_workers(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, list[TestClient]]]:
    """Two app instances over loopback, each with its own services on one DATA_DIR, as
    two web workers run, with the given store."""
    env = {"RATE_LIMITS": "on", "RATE_LIMIT_STORE": request.param}
    if request.param == "redis":
        env["REDIS_URL"] = request.getfixturevalue("redis_url")
    settings = make_settings(tmp_path / "data", **env)
    now = _soon()
    async with open_services(settings) as a, open_services(settings) as b:
        async with (
            TestClient(TestServer(create_app(a), host="127.0.0.1")) as one,
            TestClient(TestServer(create_app(b), host="127.0.0.1")) as two,
        ):
            for client in (one, two):
                client.server.app[RATE_LIMITER].clock = lambda: now
            yield request.param, [one, two]


async def test_a_client_is_limited_whichever_worker_answers(two_workers) -> None:
    store, (one, two) = two_workers
    # nekos.moe's random: 5 per 10 s, the requests spread over both workers.
    order = [one, two, one, two, one, two, one]
    responses = [await client.get("/api/v1/random/image") for client in order]
    statuses = [r.status for r in responses]
    if store == "memory":  # one count per worker: what the shared stores are for
        assert statuses == [200] * 7
        return
    assert statuses == [200] * 5 + [429] * 2
    remaining = [r.headers["X-RateLimit-Remaining"] for r in responses]
    assert remaining == ["4", "3", "2", "1", "0", "0", "0"]
