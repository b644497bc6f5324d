"""Several processes, for real: `bot.py serve --workers 2` shares its port between the
main process and a web worker, replaces a worker killed with SIGKILL while requests keep
succeeding, stops the whole tree on SIGINT, and takes its workers with it when it is
killed itself. A second server on that port is refused; a second Discord bot for one
token is refused through the lease in the store."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from core.lease import gateway_lease_key
from core.services import open_services
from tests.conftest import make_settings
from tests.test_shared_data_dir import ROOT, WAIT, Server, child_env, free_port

TRIES = 200  # requests at most while waiting for a given process to answer


async def start(data_dir: Path, port: int, *args: str, **env: str) -> Server:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "bot.py",
        "serve",
        *args,
        cwd=ROOT,
        env={**child_env(data_dir, port), **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    return Server(proc)


async def healthz(port: int) -> tuple[int, int]:
    """One /healthz on a new connection (so the kernel picks a process each time): the
    status and the pid that answered."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(
            f"http://127.0.0.1:{port}/healthz", timeout=aiohttp.ClientTimeout(total=10)
        ) as response,
    ):
        await response.read()
        return response.status, int(response.headers["X-Gazou-Worker"])


async def answering(port: int, wanted: set[int] | None = None, *, avoid: int = 0) -> set[int]:
    """Request until every pid in `wanted` has answered (at most TRIES times); every
    request must succeed, and none be answered by `avoid`. The pids seen."""
    seen: set[int] = set()
    for _ in range(TRIES):
        status, pid = await healthz(port)
        assert status == 200
        assert pid != avoid, f"the killed worker {pid} answered"
        seen.add(pid)
        if wanted is not None and wanted <= seen:
            return seen
    return seen


def worker_pids(output: str) -> set[int]:
    return {int(p) for p in re.findall(r"\[web worker (\d+)\].*listening on", output)}


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def until_gone(pids: set[int]) -> None:
    for _ in range(int(WAIT * 10)):
        if not any(alive(p) for p in pids):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"still running: {[p for p in pids if alive(p)]}")


async def until_worker(server: Server, count: int) -> set[int]:
    """Until `count` web workers have said they listen; their pids."""
    for _ in range(int(WAIT * 10)):
        pids = worker_pids(server.output)
        if len(pids) >= count:
            return pids
        assert server.proc.returncode is None, server.output
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {count} workers:\n{server.output}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT balancing")
async def test_workers_share_the_port_are_replaced_when_killed_and_stop_on_sigint(
    tmp_path: Path,
) -> None:
    data_dir, port = tmp_path / "data", free_port()
    server = await start(data_dir, port, "--workers", "2")
    try:
        await server.wait_for("Discord bot is off")
        [worker] = await until_worker(server, 1)
        main = server.proc.pid
        # The kernel spreads new connections over both processes.
        assert await answering(port, {main, worker}) == {main, worker}

        # A second gazou on the same port is refused, workers or not.
        second = await start(tmp_path / "other", port, "--workers", "2")
        try:
            assert await second.exit_code() == 1
        finally:
            await second.kill()
        assert second.lines == [
            f"gazou: 127.0.0.1:{port} is already in use (is another gazou running?)\n"
        ]

        os.kill(worker, signal.SIGKILL)
        await server.wait_for(f"web worker 1 (pid {worker}) was killed by SIGKILL")
        # Meanwhile and afterwards every request succeeds, and a new worker answers.
        [replacement] = await until_worker(server, 2) - {worker}
        assert await answering(port, {replacement}, avoid=worker) >= {replacement}

        assert await server.stop() == 0, server.output
        await until_gone({main, replacement})
    finally:
        await server.kill()
    assert "Traceback" not in server.output
    # The work that must happen once ran in the main process only.
    assert server.output.count("checked files against rows") == 1, server.output
    assert server.output.count("doing the work that must happen once") == 1
    assert server.output.count("] gazou: stopped") == 2, server.output  # main, replacement


async def test_workers_die_with_a_killed_supervisor_and_web_role_does_no_once_only_work(
    tmp_path: Path,
) -> None:
    data_dir, port = tmp_path / "data", free_port()
    server = await start(data_dir, port, "--role", "web", "--workers", "2")
    try:
        await server.wait_for("role web: HTTP API only")
        workers = await until_worker(server, 1)
        server.proc.kill()  # SIGKILL: no chance to stop its workers itself
        await until_gone(workers)
        await asyncio.wait_for(server.reader, WAIT)  # the workers' last lines
    finally:
        await server.kill()
    # Told by the kernel (SIGTERM), each worker stopped cleanly.
    for pid in workers:
        assert f"[web worker {pid}] gazou: stopped" in server.output, server.output
    assert "checked files against rows" not in server.output
    assert "doing the work that must happen once" not in server.output


@pytest.mark.parametrize("role", ["bot", "all"])
async def test_a_second_bot_for_one_token_is_refused_with_one_line(
    tmp_path: Path, role: str
) -> None:
    settings = make_settings(tmp_path / "data")
    token = "not-a-real-token"  # never sent anywhere: the refusal comes first
    async with open_services(settings) as services:
        assert await services.kv.kv_claim(
            gateway_lease_key(token), "elsewhere:4242:0a1b2c3d", timedelta(minutes=5)
        )
    server = await start(
        settings.data_dir, free_port(), "--role", role, DISCORD_TOKEN=token, LOG_LEVEL="WARNING"
    )
    try:
        code = await server.exit_code()
    finally:
        await server.kill()
    assert code == 1
    assert server.lines == [
        "gazou: the Discord bot of this DISCORD_TOKEN is already running "
        "(elsewhere:4242:0a1b2c3d holds its lease in the store); stop that one first, "
        "or wait up to 30 s for a stopped one's lease to lapse\n"
    ]


async def test_workers_are_refused_for_the_bot_role(tmp_path: Path) -> None:
    server = await start(tmp_path / "data", free_port(), "--role", "bot", "--workers", "2")
    try:
        assert await server.exit_code() == 2
    finally:
        await server.kill()
    assert server.lines == [
        "gazou: --workers is for roles all and web (the bot role serves no HTTP)\n"
    ]


def test_probe_refuses_a_port_someone_listens_on() -> None:
    from bot import _probe_port

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            _probe_port("127.0.0.1", taken.getsockname()[1])


async def test_two_workers_keep_one_rate_limit_count(tmp_path: Path) -> None:
    """nekos.moe's random allows 5 per 10 s per client: spread over both workers (each
    request on a new connection, so the kernel picks a process each time), exactly 5 of
    a burst get through within one window, not 5 per worker."""
    data_dir, port = tmp_path / "data", free_port()
    server = await start(data_dir, port, "--workers", "2", RATE_LIMITS="on")
    try:
        await server.wait_for("Discord bot is off")
        [worker] = await until_worker(server, 1)
        assert await answering(port, {server.proc.pid, worker}) == {server.proc.pid, worker}
        url = f"http://127.0.0.1:{port}/api/v1/random/image"
        for _ in range(3):  # a burst that straddles a window's end is tried again
            statuses, resets = [], set()
            for _ in range(20):
                connector = aiohttp.TCPConnector(force_close=True)
                async with (
                    aiohttp.ClientSession(connector=connector) as session,
                    session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as response,
                ):
                    await response.read()
                    statuses.append(response.status)
                    resets.add(response.headers["X-RateLimit-Reset"])
            if len(resets) == 1:
                break
            await asyncio.sleep(0.5)
        assert len(resets) == 1, "every burst straddled a window's end"
        assert sum(s != 429 for s in statuses) == 5, statuses
        assert statuses[:5].count(429) == 0 and set(statuses[5:]) == {429}
        assert await server.stop() == 0, server.output
    finally:
        await server.kill()
    assert "Traceback" not in server.output
