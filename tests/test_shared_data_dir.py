"""Several gazou processes on one DATA_DIR, as people run them: a server takes
uploads while another server is started and stopped again and again (on another
port, or on the same one, which it must refuse). Every acknowledged upload is whole
afterwards: its row, its files, and bytes that match its sha256."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp

from core.contracts import image_key, thumbnail_key
from core.images import ORPHAN_GRACE_SECONDS
from core.models import User
from core.services import open_services
from tests.conftest import blob_path, make_image, make_settings

ROOT = Path(__file__).resolve().parent.parent
RESTARTS = 6  # second servers started, every third one on the first server's port
BUDGET = 10.0  # seconds for the restarts; the uploads run for as long
WAIT = 20.0  # seconds a child may take to print a line or exit


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(data_dir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PUBLIC_URL",)}
    return {
        **env,
        "DATA_DIR": str(data_dir),
        "DISCORD_TOKEN": "",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "RATE_LIMITS": "off",
        "IMAGE_WORKERS": "2",
        "LOG_LEVEL": "INFO",
    }


class Server:
    """`bot.py serve` in a child process, its output collected as it comes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.seen = asyncio.Condition()
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, data_dir: Path, port: int) -> Server:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "bot.py",
            "serve",
            cwd=ROOT,
            env=child_env(data_dir, port),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            async with self.seen:
                self.lines.append(line.decode(errors="replace"))
                self.seen.notify_all()
        async with self.seen:
            self.seen.notify_all()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    async def wait_for(self, text: str) -> None:
        """Until a line containing `text` is printed; fails if the child exits first."""

        async def seen() -> None:
            async with self.seen:
                while not any(text in line for line in self.lines):
                    assert not self.reader.done(), f"exited before {text!r}:\n{self.output}"
                    await self.seen.wait()

        await asyncio.wait_for(seen(), WAIT)

    async def exit_code(self) -> int:
        await asyncio.wait_for(self.reader, WAIT)
        return await asyncio.wait_for(self.proc.wait(), WAIT)

    async def stop(self) -> int:
        """SIGINT, as Ctrl-C would; the exit code."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
        return await self.exit_code()

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        self.reader.cancel()


async def upload_until(
    port: int, token: str, stop: asyncio.Event, first_seed: int, acknowledged: dict[str, str]
) -> list[int]:
    """Upload distinct images one after another until `stop`; every acknowledged id
    goes into `acknowledged` with the sha256 of the bytes sent. Returns the statuses."""
    statuses = []
    seed = first_seed
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while not stop.is_set():
            seed += 1
            raw = make_image(size=(96, 64), seed=seed)
            form = aiohttp.FormData()
            form.add_field("files[]", io.BytesIO(raw), filename="a.png", content_type="image/png")
            async with session.post(
                f"http://127.0.0.1:{port}/api/upload", data=form, headers={"token": token}
            ) as response:
                statuses.append(response.status)
                if response.status == 200:
                    code = (await response.json())["code"]
                    acknowledged[code.split(".")[0]] = hashlib.sha256(raw).hexdigest()
    return statuses


async def test_second_servers_on_one_data_dir_lose_no_acknowledged_upload(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path / "data")
    async with open_services(settings) as services:
        token = (
            await services.tokens.issue(User("1", "up"), scopes=("image:upload",), issued_by="t")
        ).secret
    port = free_port()
    first = await Server.start(settings.data_dir, port)
    acknowledged: dict[str, str] = {}
    refusals = 0
    try:
        await first.wait_for("Discord bot is off")
        stop = asyncio.Event()
        uploaders = [
            asyncio.create_task(upload_until(port, token, stop, n * 1_000_000, acknowledged))
            for n in range(4)
        ]
        try:
            deadline = time.monotonic() + BUDGET
            for n in range(RESTARTS):
                if time.monotonic() > deadline:
                    break
                same_port = n % 3 == 2
                second = await Server.start(settings.data_dir, port if same_port else free_port())
                try:
                    if same_port:
                        assert await second.exit_code() == 1, second.output
                        assert "already in use" in second.output
                        refusals += 1
                    else:
                        # Its check of files against rows runs while the first one writes.
                        await second.wait_for("checked files against rows")
                        assert await second.stop() == 0, second.output
                finally:
                    await second.kill()
        finally:
            stop.set()
            statuses = await asyncio.gather(*uploaders)
        assert await first.stop() == 0, first.output
    finally:
        await first.kill()
    assert refusals >= 1
    assert {s for batch in statuses for s in batch} == {200}, statuses
    assert len(acknowledged) >= 4
    async with open_services(settings) as services:
        for image_id, sha256 in acknowledged.items():
            stored = await services.storage.repo.get_file(image_id)
            assert stored is not None, f"acknowledged {image_id} has no row"
            assert stored.sha256 == sha256
            path = blob_path(services, image_key(image_id, stored.extension))
            assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256, image_id
            assert blob_path(services, thumbnail_key(image_id)).stat().st_size > 0
        # Nothing was removed meanwhile: every file is an acknowledged image's, or young.
        report = await services.images.check_consistency()
        assert report.missing_files == [] and report.orphans_removed == []


async def test_serve_on_a_taken_port_refuses_with_one_line_and_touches_nothing(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    settings = make_settings(data_dir)
    async with open_services(settings) as services:
        # An old orphan: what a check of files against rows would remove.
        orphan = blob_path(services, image_key("00000000-dead-4000-8000-000000000000", "png"))
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"old orphan")
    old = time.time() - ORPHAN_GRACE_SECONDS - 60
    os.utime(orphan, (old, old))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = await Server.start(data_dir, port)
        try:
            code = await server.exit_code()
        finally:
            await server.kill()
    assert code == 1
    assert server.lines == [
        f"gazou: 127.0.0.1:{port} is already in use (is another gazou running?)\n"
    ]
    assert orphan.read_bytes() == b"old orphan"
