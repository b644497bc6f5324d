"""Store benchmark, run by hand: `.venv/bin/python bench/store.py [--quick]
[--backend sqlite|postgres] [--database-url postgresql://...]`.

Fills a store with 1,000 and with 1,000,000 image rows (rows only, through the
repo's bulk_load: SQLite inserts, PostgreSQL COPY) and prints the median latency of
random, search and get at both sizes with the ratio large/small (the target is < 1.5:
the pools make a draw
cost the same whatever the size), then, at the large size, the same draw done with
`ORDER BY RANDOM()` as most peer services do. It also ingests real 2 MP and 24 MP
JPEGs through ImageService.ingest and reports images per second and the longest
event-loop stall a 5 ms ticker saw meanwhile (target < 20 ms).

--quick uses 1,000 and 100,000 rows and fewer repetitions. With `--backend postgres`
the stores are databases created on the server of --database-url (a role allowed to
CREATE DATABASE), or, without it, on a throwaway PostgreSQL 15 cluster started in a
temporary folder (tests/pg_server.py: fsync off, which changes writes, not reads;
shared_buffers 1 GB)."""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image as PILImage
from PIL import ImageDraw, ImageFilter

from core.blacklist import Blacklist
from core.events import Events
from core.images import ImageService
from core.models import Filters, IngestMetadata, NewImage, Rating, SearchQuery, Sort, Status, User
from core.services import image_executor
from core.settings import DEFAULT_IMAGE_WORKERS
from storage.blobs import FileBlobStore
from storage.postgres import PostgresRepo
from storage.sqlite import SQLiteRepo

Repo = SQLiteRepo | PostgresRepo

TAG_COUNT = 50
# Tag i is picked with weight 1/(i + 10): the commonest lands on ~20% of images, the
# tail on a few percent; the last five are rare (~0.1%).
TAG_WEIGHTS = list(accumulate([1 / (i + 10) for i in range(TAG_COUNT - 5)] + [0.0005] * 5))
TAGS = [f"tag{i:02d}" for i in range(TAG_COUNT)]
ARTISTS = [f"artist {i}" for i in range(2_000)]
ARTIST_WEIGHTS = list(accumulate(1 / (i + 1) for i in range(len(ARTISTS))))
CHARACTERS = [f"character {i}" for i in range(500)]
UPLOADER = User("1", "bench")


def synthetic_rows(n: int, seed: int = 1) -> Iterator[NewImage]:
    """`n` realistic image rows: 3-5 weighted tags, 90% sfw, Zipf artists, 0-2
    characters, 97% approved, created one second apart."""
    rng = random.Random(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    ratings = [Rating.SFW] * 90 + [Rating.QUESTIONABLE] * 7 + [Rating.NSFW] * 3
    statuses = [Status.APPROVED] * 97 + [Status.PENDING] * 2 + [Status.REJECTED]
    for k in range(n):
        want = rng.randint(3, 5)
        tags: dict[str, None] = {}
        while len(tags) < want:
            more = rng.choices(TAGS, cum_weights=TAG_WEIGHTS, k=want - len(tags))
            tags.update(dict.fromkeys(more))
        width, height = rng.choice(((1920, 1080), (1080, 1920), (1024, 1024), (2480, 3508)))
        yield NewImage(
            id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            sha256=f"{rng.getrandbits(256):064x}",
            md5=f"{rng.getrandbits(128):032x}",
            phash=rng.getrandbits(64),
            mimetype="image/jpeg",
            extension="jpg",
            size=rng.randrange(100_000, 5_000_000),
            width=width,
            height=height,
            aspect_ratio="16:9",
            orientation="landscape",
            dominant_color="#808080",
            animated=False,
            thumbnail_size=20_000,
            rating=rng.choice(ratings),
            status=rng.choice(statuses),
            title="",
            description="",
            source_name=None,
            source_url=None,
            original_filename=None,
            artist=(
                rng.choices(ARTISTS, cum_weights=ARTIST_WEIGHTS)[0] if rng.random() < 0.8 else None
            ),
            characters=tuple({rng.choice(CHARACTERS) for _ in range(rng.randint(0, 2))}),
            tags=tuple(tags),
            album_id=None,
            uploader=UPLOADER,
            approver=UPLOADER,
            created_at=start + timedelta(seconds=k),
            expires_at=None,
            near_duplicate_of=None,
        )


async def median_ms(call: Callable[[], Awaitable[object]], runs: int, budget: float = 1.0) -> float:
    """Median wall time of `call` in milliseconds, after a short warm-up: at least
    `runs` calls, more (up to 10x) while under `budget` seconds, so that fast calls
    get enough samples to outvote other processes' noise."""
    for _ in range(min(20, runs)):
        await call()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < runs or (time.perf_counter() - started < budget and len(times) < runs * 10):
        t0 = time.perf_counter()
        await call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


@dataclass
class BenchStore:
    """A filled store and what the timed calls need."""

    rows: int
    fill_s: float
    repo: Repo
    images: ImageService
    executor: ThreadPoolExecutor
    ids: list[str]


class Stores:
    """Where the benchmark's stores are made: SQLite files in a folder, or new
    databases on one PostgreSQL server."""

    def __init__(self, backend: str, folder: Path, server_url: str | None) -> None:
        self.backend, self.folder, self.server_url = backend, folder, server_url
        self.made: list[str] = []

    async def new(self, name: str) -> Repo:
        """A new, empty, open store named `name`."""
        if self.backend == "sqlite":
            repo: Repo = SQLiteRepo(self.folder / f"{name}.sqlite3")
        else:
            import asyncpg  # type: ignore[import-untyped]

            assert self.server_url is not None
            database = f"gazou_bench_{name}".replace("-", "_").lower()
            admin = await asyncpg.connect(self.server_url)
            try:
                await admin.execute(f"DROP DATABASE IF EXISTS {database}")
                await admin.execute(f"CREATE DATABASE {database}")
            finally:
                await admin.close()
            self.made.append(database)
            base, _, _ = self.server_url.rpartition("/")
            repo = PostgresRepo(f"{base}/{database}")
        await repo.open()
        return repo

    async def drop_all(self) -> None:
        """Drop the databases made on a server the caller gave (not a throwaway one)."""
        if self.backend != "postgres" or not self.made:
            return
        import asyncpg  # type: ignore[import-untyped]

        admin = await asyncpg.connect(self.server_url)
        try:
            for database in self.made:
                await admin.execute(f"DROP DATABASE IF EXISTS {database}")
        finally:
            await admin.close()


def service_over(repo: Repo, root: Path, executor: ThreadPoolExecutor) -> ImageService:
    return ImageService(
        repo,
        FileBlobStore(root / "files"),
        Events(),
        executor=executor,
        max_pixels=100_000_000,
        max_bytes=50 * 1024 * 1024,
    )


async def open_store(rows: int, stores: Stores) -> BenchStore:
    """A fresh store filled with `rows` synthetic rows (timed), analysed."""
    folder = stores.folder
    repo = await stores.new(f"bench-{rows}")
    t0 = time.perf_counter()
    await repo.bulk_load(synthetic_rows(rows))
    fill = time.perf_counter() - t0
    # What a long-running server would have: fresh planner statistics.
    async with repo.transaction() as tx:
        await tx.execute("ANALYZE")
    executor = image_executor(DEFAULT_IMAGE_WORKERS)
    ids = [
        r[0]
        for r in await repo._all(
            "SELECT id FROM images WHERE status = 'approved' ORDER BY RANDOM() LIMIT 1000"
        )
    ]
    return BenchStore(rows, fill, repo, service_over(repo, folder, executor), executor, ids)


# The two commonest tags (~20% each): their intersection fills a page of 20 at both
# sizes, so both sizes do the same work and the ratio shows the scaling alone.
COMMON, SECOND = "tag00", "tag01"
# A member's blacklist of 5 tags (~6-10% of images each, ~35% carry one): /random
# merges it into the excluded tags, and the draw stays on the dense "all" pool.
BLACKLIST = Blacklist(member=("tag02", "tag03", "tag04", "tag05", "tag06"))


def operations(store: BenchStore) -> dict[str, Callable[[], Awaitable[object]]]:
    """The timed calls, by name."""
    images, pick = store.images, random.Random(2)
    two_tags = SearchQuery(tags=(COMMON, SECOND), sort=Sort.NEWEST, limit=20)
    return {
        "random": lambda: images.random(Filters()),
        "random tag": lambda: images.random(Filters(tags=(COMMON,))),
        "random tag+exclude": lambda: images.random(
            Filters(tags=(COMMON,), exclude_tags=(SECOND,))
        ),
        "random blacklist 5": lambda: images.random(BLACKLIST.apply(Filters())),
        "search 2 tags": lambda: images.search(two_tags, count_total=False),
        "search 2 tags +total": lambda: images.search(two_tags, count_total=True),
        "get": lambda: images.get(pick.choice(store.ids)),
    }


async def paired_medians(
    small: Callable[[], Awaitable[object]],
    large: Callable[[], Awaitable[object]],
    runs: int,
    budget: float = 2.0,
) -> tuple[float, float]:
    """Median ms of two calls timed in alternating bursts, so that a change in the
    machine's load (other processes) hits both sizes alike."""
    for _ in range(min(20, runs)):
        await small()
        await large()
    times: tuple[list[float], list[float]] = ([], [])
    burst = min(10, runs)
    started = time.perf_counter()
    while len(times[0]) < runs or (
        time.perf_counter() - started < budget and len(times[0]) < runs * 10
    ):
        for call, out in ((small, times[0]), (large, times[1])):
            for _ in range(burst):
                t0 = time.perf_counter()
                await call()
                out.append(time.perf_counter() - t0)
    return statistics.median(times[0]) * 1000, statistics.median(times[1]) * 1000


async def order_by_random_ms(store: BenchStore, runs: int) -> dict[str, float]:
    """The same draws done the common way: sort the matches by RANDOM(), take one."""
    repo = store.repo
    rids = [await repo._one("SELECT rid FROM tags WHERE name = ?", (n,)) for n in (COMMON, SECOND)]
    assert rids[0] is not None and rids[1] is not None
    tag_rid, second_rid = rids[0][0], rids[1][0]

    async def draw(sql: str, params: tuple[object, ...]) -> None:
        seqs = [r[0] for r in await repo._all(sql, params)]
        await repo._images_by_seq(seqs)

    return {
        "random": await median_ms(
            lambda: draw(
                "SELECT seq FROM images WHERE status = 'approved' ORDER BY RANDOM() LIMIT 1", ()
            ),
            runs,
        ),
        "random tag": await median_ms(
            lambda: draw(
                "SELECT i.seq FROM image_tags t JOIN images i ON i.seq = t.seq "
                "WHERE t.tag_rid = ? AND i.status = 'approved' ORDER BY RANDOM() LIMIT 1",
                (tag_rid,),
            ),
            runs,
        ),
        "random tag+exclude": await median_ms(
            lambda: draw(
                "SELECT i.seq FROM image_tags t JOIN images i ON i.seq = t.seq "
                "WHERE t.tag_rid = ? AND i.status = 'approved' AND NOT EXISTS "
                "(SELECT 1 FROM image_tags x WHERE x.tag_rid = ? AND x.seq = i.seq) "
                "ORDER BY RANDOM() LIMIT 1",
                (tag_rid, second_rid),
            ),
            runs,
        ),
    }


async def close_store(store: BenchStore) -> None:
    await store.repo.close()
    store.executor.shutdown()


def photo_like_jpeg(width: int, height: int, seed: int) -> bytes:
    """A JPEG that compresses like a photo: smooth shapes plus fine grain."""
    rng = random.Random(seed)
    img = PILImage.new("RGB", (width, height), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(40):
        x, y = rng.randrange(width), rng.randrange(height)
        r = rng.randrange(width // 20, width // 3)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.randrange(256) for _ in range(3)))
    img = img.filter(ImageFilter.GaussianBlur(radius=max(2, width // 200)))
    grain = PILImage.effect_noise((width, height), 24).convert("RGB")
    img = PILImage.blend(img, grain, 0.12)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


class Ticker:
    """A 5 ms ticker on the event loop: how late each tick fires is how long the loop
    was stalled."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._running = False
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while self._running:
            t0 = time.perf_counter()
            await asyncio.sleep(0.005)
            self.delays.append(time.perf_counter() - t0 - 0.005)

    def start(self) -> None:
        self._running = True
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> tuple[float, float]:
        """(longest stall, 99th percentile stall) in ms."""
        self._running = False
        assert self._task is not None
        await self._task
        ordered = sorted(self.delays) or [0.0]
        return ordered[-1] * 1000, ordered[int(len(ordered) * 0.99)] * 1000


async def idle_stalls(seconds: float) -> tuple[float, float]:
    """Stalls of an idle loop: what other processes on the machine cause by themselves."""
    ticker = Ticker()
    ticker.start()
    await asyncio.sleep(seconds)
    return await ticker.stop()


async def ingest_round(
    blobs: list[bytes], folder: Path, stores: Stores
) -> tuple[float, float, float]:
    """Ingest `blobs` into a fresh store with the default IMAGE_WORKERS threads, as many
    at a time (as the importer does); returns (images per second, longest loop stall
    ms, 99th percentile stall ms)."""
    repo = await stores.new(f"ingest-{folder.name}")
    executor = image_executor(DEFAULT_IMAGE_WORKERS)  # as open_services makes it
    images = service_over(repo, folder, executor)
    gate = asyncio.Semaphore(DEFAULT_IMAGE_WORKERS)

    async def one(raw: bytes) -> None:
        async with gate:
            await images.ingest(raw, IngestMetadata(tags=("bench",)), UPLOADER, trusted=True)

    ticker = Ticker()
    ticker.start()
    await asyncio.sleep(0.02)
    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(one(raw) for raw in blobs))
        elapsed = time.perf_counter() - t0
    finally:
        longest, p99 = await ticker.stop()
        await repo.close()
        executor.shutdown()
    return len(blobs) / elapsed, longest, p99


async def measure_ingest(
    label: str, size: tuple[int, int], count: int, rounds: int, stores: Stores
) -> None:
    """Print ingest throughput and loop stalls for `rounds` runs over `count` JPEGs."""
    blobs = [photo_like_jpeg(*size, seed=n) for n in range(count)]
    mb = statistics.mean(len(b) for b in blobs) / 1e6
    results = [
        await ingest_round(blobs, stores.folder / f"{label}-{n}", stores) for n in range(rounds)
    ]
    rates = ", ".join(f"{r:.1f}" for r, _, _ in results)
    stalls = ", ".join(f"{s:.1f}/{p:.1f}" for _, s, p in results)
    print(
        f"ingest {label:5} JPEG ({mb:4.1f} MB) x{count}: images/s {rates}; "
        f"loop stall ms longest/p99 {stalls} (load average {os.getloadavg()[0]:.2f})"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k and 100k rows, fewer runs")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--database-url",
        help="postgres: a server to create the bench databases on (default: a throwaway one)",
    )
    parser.add_argument("--no-ingest", action="store_true", help="skip the ingest rounds")
    args = parser.parse_args()
    large = 100_000 if args.quick else 1_000_000
    runs, slow_runs = (300, 5) if args.quick else (2000, 15)
    server = None
    with tempfile.TemporaryDirectory(prefix="gazou-bench-") as tmp:
        server_url = args.database_url
        if args.backend == "postgres" and server_url is None:
            from tests import pg_server

            if not pg_server.available():
                sys.exit(f"PostgreSQL is not installed ({pg_server.INSTALL})")
            # Memory as a server holding a million images would be given.
            server = pg_server.start_server(shared_buffers="1GB", work_mem="16MB")
            server_url = server.url()
        stores = Stores(args.backend, Path(tmp), server_url)
        try:
            await run(stores, large, runs, slow_runs, ingest=not args.no_ingest, quick=args.quick)
        finally:
            await stores.drop_all() if server is None else pg_server.stop_server(server)


async def run(
    stores: Stores, large: int, runs: int, slow_runs: int, *, ingest: bool, quick: bool
) -> None:
    """Fill, time and print (see the module's docstring)."""
    print(f"backend: {stores.backend}")
    small = await open_store(1_000, stores)
    big = await open_store(large, stores)
    try:
        print(
            f"load average {os.getloadavg()[0]:.2f} (other processes skew timings; "
            "the two sizes are timed in alternating bursts)"
        )
        print(
            f"fill: {small.rows:,} rows in {small.fill_s:.2f} s, {big.rows:,} rows in "
            f"{big.fill_s:.1f} s ({big.rows / big.fill_s:,.0f} rows/s)"
        )
        head = f"{'operation':24} {small.rows:>10,} {big.rows:>12,}   ratio"
        print(head)
        print("-" * len(head))
        big_ops = operations(big)
        fast = {}
        for name, small_call in operations(small).items():
            n = slow_runs if name.endswith("+total") else runs
            small_ms, big_ms = await paired_medians(small_call, big_ops[name], n)
            fast[name] = big_ms
            print(f"{name:24} {small_ms:8.3f}ms {big_ms:10.3f}ms   {big_ms / small_ms:5.2f}x")
        for name, slow in (await order_by_random_ms(big, slow_runs)).items():
            label = "ORDER BY RANDOM()" + name.removeprefix("random")
            print(
                f"{label:24} {'':>10} {slow:10.3f}ms   "
                f"{slow / fast[name]:5.0f}x slower than the pools"
            )
    finally:
        await close_store(small)
        await close_store(big)
    if not ingest:
        return
    longest, p99 = await idle_stalls(3.0)
    print(
        f"idle loop, no ingest (other processes only): stall ms longest/p99 {longest:.1f}/{p99:.1f}"
    )
    print(
        f"ingest with IMAGE_WORKERS={DEFAULT_IMAGE_WORKERS} (the default on {os.cpu_count()} cores)"
    )
    ingest_counts = (6, 2) if quick else (24, 6)
    for label, size, count in (
        ("2MP", (1732, 1155), ingest_counts[0]),
        ("24MP", (6000, 4000), ingest_counts[1]),
    ):
        await measure_ingest(label, size, count, 3, stores)


if __name__ == "__main__":
    asyncio.run(main())
