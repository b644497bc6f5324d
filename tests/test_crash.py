"""Crash consistency: a child process ingests, approves and deletes images in a loop and
is killed with SIGKILL at random moments; after each kill the store reopens healthy,
its pools are exact, and after a check of files against rows every row has its files
(but a rejected image's, which are removed) and no file lacks a row."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from pathlib import Path

from core.contracts import image_key, thumbnail_key
from core.services import open_services
from tests.conftest import make_settings
from tests.test_random import pool_problems

ROOT = Path(__file__).resolve().parent.parent
KILLS = 5

CHILD = """
import asyncio, random, sys
from core.errors import DuplicateImage
from core.models import IngestMetadata, User
from core.services import open_services
from core.settings import ensure_signing_secret, load_settings
from tests.conftest import make_image

async def main() -> None:
    rng = random.Random(int(sys.argv[1]))
    who = User("1", "crash")
    async with open_services(ensure_signing_secret(load_settings())) as services:
        print("ready", flush=True)
        n = 0
        while True:
            n += 1
            meta = IngestMetadata(tags=(f"t{n % 5}", f"u{n % 7}"), artist=f"a{n % 3}",
                                  characters=(f"c{n % 4}",))
            raw = make_image(size=(96, 64), seed=rng.getrandbits(48))
            try:
                image = await services.images.ingest(raw, meta, who,
                                                     trusted=rng.random() < 0.5)
            except DuplicateImage:
                continue
            roll = rng.random()
            if roll < 0.3:
                await services.images.approve(image.id, who)
            elif roll < 0.4:
                await services.images.reject(image.id, who)
            elif roll < 0.55:
                await services.images.delete(image.id)

asyncio.run(main())
"""


async def run_and_kill(data_dir: Path, seed: int, after: float) -> None:
    """Start the child, let it work for `after` seconds once ready, then SIGKILL it."""
    env = {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "IMAGE_WORKERS": "2",
        "DISCORD_TOKEN": "",
        "LOG_LEVEL": "WARNING",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(seed),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=20)
        assert line == b"ready\n", (line, await proc.stderr.read())
        await asyncio.sleep(after)
        assert proc.returncode is None, await proc.stderr.read()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), timeout=10)


def files_on_disk(data_dir: Path) -> set[str]:
    root = data_dir / "files"
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


async def test_store_survives_sigkill_at_random_moments(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    rng = random.Random(20261124)
    rows_seen = 0
    for kill in range(KILLS):
        await run_and_kill(settings.data_dir, seed=kill, after=rng.uniform(0.05, 0.5))
        async with open_services(settings) as services:
            repo = services.storage.repo
            assert await repo.integrity_check() == [], f"after kill {kill}"
            assert pool_problems(settings.data_dir / "gazou.sqlite3") == [], f"after kill {kill}"
            # The child is dead, so no writer can still commit: no grace period needed.
            report = await services.images.check_consistency(grace_seconds=0)
            assert report.missing_files == [], f"after kill {kill}"
            # A rejected image keeps its row but not its files.
            rows = await repo._all("SELECT id, extension FROM images WHERE status != 'rejected'")
            wanted = {image_key(i, e) for i, e in rows} | {thumbnail_key(i) for i, _ in rows}
            on_disk = files_on_disk(settings.data_dir)
            assert on_disk == wanted, (
                f"after kill {kill}: orphans {sorted(on_disk - wanted)[:5]}, "
                f"missing {sorted(wanted - on_disk)[:5]}"
            )
            rows_seen = len(rows)
    # The child did real work between kills (the check is not of an empty store).
    assert rows_seen > 0
