"""Blob store benchmark, run by hand: `.venv/bin/python bench/blobs.py`.

Starts a local OpenStack Swift with s3api (tests/servers.py; needs Debian's swift,
swift-proxy, swift-account, swift-container, swift-object and memcached packages)
and, in the same run, times a 2 MB image through both stores behind core's BlobStore
contract: uploads (`put`, verified) and whole reads (`read`), one at a time and 8 at
once, plus a ranged read of 64 KiB; then GET /image/<id> of that image through
gazou's app over loopback HTTP (files: sendfile; S3: streamed from the bucket).
Prints MB/s for each store and the ratio files/S3 (how much faster the local disk
is; S3 here is loopback HTTP to one Swift, so the ratio is what the protocol and
Swift cost, not a network)."""

from __future__ import annotations

import asyncio
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

# The repository instead of bench/, whose http.py would shadow the standard library's.
sys.path.remove(str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from PIL import Image as PILImage

from api.app import create_app
from core.contracts import BlobStore
from core.models import IngestMetadata, User
from core.services import open_services
from core.settings import ensure_signing_secret, load_settings
from storage import open_blobs
from tests.servers import INSTALL_SWIFT, missing_swift_binaries, running_swift

ROUNDS = 20
PARALLEL = 8


def two_megabyte_png() -> bytes:
    """A real PNG of noise (it does not compress), about 2 MB."""
    side = 816  # 816 * 816 * 3 bytes of noise: ~2.0 MB once wrapped as PNG
    image = PILImage.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


async def timed(step: Callable[[int], Awaitable[object]], rounds: int, parallel: int) -> float:
    """Median seconds per batch of `parallel` concurrent steps, over `rounds` batches."""
    times = []
    for n in range(rounds):
        start = time.perf_counter()
        await asyncio.gather(*(step(n * parallel + i) for i in range(parallel)))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def measure(blobs: BlobStore, data: bytes) -> dict[str, float]:
    """MB/s of each operation on `blobs`."""
    mb = len(data) / 1e6

    async def put(n: int) -> None:
        await blobs.put(f"images/be/{n}.png", data)

    async def read(n: int) -> None:
        got = b"".join([c async for c in blobs.read(f"images/be/{n % ROUNDS}.png")])
        assert len(got) == len(data)

    async def ranged(n: int) -> None:
        got = b"".join([c async for c in blobs.read(f"images/be/{n % ROUNDS}.png", 0, 65536)])
        assert len(got) == 65536

    results = {}
    results["upload MB/s, 1 at a time"] = mb / await timed(put, ROUNDS, 1)
    results[f"upload MB/s, {PARALLEL} at once"] = PARALLEL * mb / await timed(put, 5, PARALLEL)
    results["fetch MB/s, 1 at a time"] = mb / await timed(read, ROUNDS, 1)
    results[f"fetch MB/s, {PARALLEL} at once"] = PARALLEL * mb / await timed(read, 5, PARALLEL)
    # Small reads are about latency: reported as reads per second, not MB/s.
    results["64 KiB range reads/s"] = 1 / await timed(ranged, ROUNDS, 1)
    return results


async def http_fetch(data_dir: Path, data: bytes, env: dict[str, str]) -> float:
    """MB/s of GET /image/<id> of `data` through gazou's app, one request at a time."""
    settings = ensure_signing_secret(
        load_settings({"DATA_DIR": str(data_dir), "RATE_LIMITS": "off", **env})
    )
    async with open_services(settings) as services:
        image = await services.images.ingest(data, IngestMetadata(), User("1", "b"), trusted=True)
        async with TestServer(create_app(services), host="127.0.0.1") as server:
            async with ClientSession() as session:

                async def get(_: int) -> None:
                    async with session.get(server.make_url(f"/image/{image.id}")) as response:
                        assert len(await response.read()) == image.size

                return image.size / 1e6 / await timed(get, ROUNDS, 1)


async def main() -> None:
    missing = missing_swift_binaries()
    if missing:
        sys.exit(f"needs Swift ({', '.join(missing)} missing): {INSTALL_SWIFT}")
    data = two_megabyte_png()
    print(f"image: {len(data) / 1e6:.2f} MB PNG; {ROUNDS} rounds, median; cores: {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        with running_swift(root / "swift") as swift:
            swift.create_bucket("gazou-bench")
            env = swift.blob_env("gazou-bench")
            async with open_blobs(root / "data") as files:
                on_files = await measure(files, data)
            async with open_blobs(
                root / "data",
                blob_url=env["BLOB_URL"],
                blob_access_key=env["AWS_ACCESS_KEY_ID"],
                blob_secret_key=env["AWS_SECRET_ACCESS_KEY"],
            ) as s3:
                on_s3 = await measure(s3, data)
            on_files["GET /image MB/s (HTTP)"] = await http_fetch(root / "http-files", data, {})
            on_s3["GET /image MB/s (HTTP)"] = await http_fetch(root / "http-s3", data, env)
    print(f"{'':28} {'files':>10} {'S3 (Swift)':>12} {'files/S3':>9}")
    for name, value in on_files.items():
        print(f"{name:28} {value:>10.1f} {on_s3[name]:>12.1f} {value / on_s3[name]:>8.1f}x")


if __name__ == "__main__":
    asyncio.run(main())
