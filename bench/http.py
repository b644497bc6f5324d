"""HTTP benchmark, run by hand: `.venv/bin/python bench/http.py [--seconds 10] [--workers 1,2]
[--backend sqlite|postgres] [--database-url postgresql://...]`.

Fills a store with 100,000 image rows (the repo's bulk_load) plus a few real image
files, then serves it with gazou (the production create_app, RATE_LIMITS=off) and,
in the same run, a bare aiohttp app answering a constant small JSON. Both run in a
child process of their own and are driven over loopback by the same load generator
(wrk if installed, else a Python generator in a separate process) for the same time
at the same concurrency. For each gazou endpoint it prints requests/s, p50 and p99,
the ratio of its requests/s to the bare app's, and the CPU time the server's whole
process tree spent per request (from /proc, in microseconds).

With `--workers 1,2` everything is measured once per process count: gazou started
with that many web workers (`serve --workers N`), the bare app as that many processes
sharing the port (SO_REUSEPORT). Ratios to the bare app compare the same process
count; the "/1w" column compares an endpoint with its one-worker figure.

The gallery is measured too: its home page and the fragment htmx swaps in for a tag
search (`--only gallery` runs just those two).

Targets: with one worker, the random endpoints serve at least half the bare app's
requests/s; with two, at least 1.4 times their one-worker requests/s; every
endpoint's p99 stays under 20 ms.

With `--backend postgres` the rows live in a new database on the PostgreSQL server of
`--database-url` (dropped at the end), or, without it, on a throwaway server this run
starts in a temporary folder (tests/pg_server.py: fsync off, which changes writes, not
the reads measured here). The image files stay under DATA_DIR either way."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on the path, and its name would hide
# the standard library's `http` from aiohttp: put the project root there instead.
HERE = Path(__file__).resolve().parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

TAGS = [f"tag{i:02d}" for i in range(40)] + ["x"]
RANDOM_TARGET = 0.5
SCALING_TARGET = 1.4  # two workers against one, random endpoints
P99_TARGET_MS = 20.0
HTMX = {"HX-Request": "true"}  # what htmx sends: the gallery answers with a fragment


# ---- the store -----------------------------------------------------------------------


def _rows(n: int, seed: int = 7):  # type: ignore[no-untyped-def]
    """`n` image rows without files: 90% sfw, 97% approved, 2-4 tags (one in ten has
    the tag `x`), one second apart."""
    from core.models import NewImage, Rating, Status, User

    rng = random.Random(seed)
    uploader = User("1", "bench")
    start = datetime(2024, 1, 1, tzinfo=UTC)
    ratings = [Rating.SFW] * 90 + [Rating.QUESTIONABLE] * 7 + [Rating.NSFW] * 3
    statuses = [Status.APPROVED] * 97 + [Status.PENDING] * 2 + [Status.REJECTED]
    for k in range(n):
        tags = set(rng.sample(TAGS[:-1], rng.randint(2, 4)))
        if rng.random() < 0.1:
            tags.add("x")
        yield NewImage(
            id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            sha256=f"{rng.getrandbits(256):064x}",
            md5=f"{rng.getrandbits(128):032x}",
            phash=rng.getrandbits(64),
            mimetype="image/jpeg",
            extension="jpg",
            size=rng.randrange(100_000, 5_000_000),
            width=1920,
            height=1080,
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
            artist=f"artist {rng.randrange(500)}" if rng.random() < 0.8 else None,
            characters=(f"character {rng.randrange(200)}",) if rng.random() < 0.5 else (),
            tags=tuple(sorted(tags)),
            album_id=None,
            uploader=uploader,
            approver=uploader,
            created_at=start + timedelta(seconds=k),
            expires_at=None,
            near_duplicate_of=None,
        )


# The metadata store's DATABASE_URL (unset: SQLite under DATA_DIR); set by main() in
# the environment, which the server children inherit.
DATABASE_URL = "GAZOU_BENCH_DATABASE_URL"


def _settings(data_dir: Path, port: int):  # type: ignore[no-untyped-def]
    from core.settings import ensure_signing_secret, load_settings

    return ensure_signing_secret(
        load_settings(
            {
                "DATA_DIR": str(data_dir),
                "RATE_LIMITS": "off",
                "PORT": str(port),
                "PUBLIC_URL": f"http://127.0.0.1:{port}",
                "LOG_LEVEL": "WARNING",
                "DATABASE_URL": os.environ.get(DATABASE_URL, ""),
            }
        )
    )


async def fill_store(data_dir: Path, rows: int) -> str:
    """Bulk-load `rows` rows and ingest a few real files; returns a real file's image id."""
    from PIL import Image as PILImage  # only to make the few real files

    from core.models import IngestMetadata, Rating, User
    from core.services import open_services

    async with open_services(_settings(data_dir, 0)) as services:
        await services.storage.repo.bulk_load(_rows(rows))
        owner = User("1", "bench")
        image_id = ""
        for seed in range(8):
            import io

            rng = random.Random(seed)
            img = PILImage.new("RGB", (640, 480))
            for y in range(0, 480, 40):
                for x in range(0, 640, 40):
                    img.paste(tuple(rng.randrange(256) for _ in range(3)), (x, y, x + 40, y + 40))
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=85)
            image = await services.images.ingest(
                buf.getvalue(), IngestMetadata(tags=("x",), rating=Rating.SFW), owner, trusted=True
            )
            image_id = image.id
        # As a server does in the background after a bulk import (bot.py serve): render
        # the image objects the store keeps for random draws, so that the measured draws
        # hand them out rather than render them on first use.
        from api.app import create_app

        create_app(services)  # adds the dialects' renderings
        await services.images.render_backlog()
    return image_id


# ---- the two servers (child processes) ---------------------------------------------


def serve_gazou(data_dir: Path, port: int, workers: int = 1) -> None:
    """Child: gazou over the filled store, started as `bot.py serve --workers N` starts it."""
    import dataclasses
    import logging

    import bot

    # The bulk-loaded rows have no files by design: the start-up check of files against
    # rows would look for each of the 100,000 missing files (two store round trips
    # each: 8.5 s of CPU in the serving process), which ran during the first endpoints'
    # measurements. A real store has its files, and the check then only compares
    # listings: leave it out here.
    async def no_check(services: object) -> None:
        return None

    bot.check_store = no_check  # type: ignore[assignment]
    logging.getLogger("core.images").setLevel(logging.CRITICAL)
    print("ready", flush=True)  # start_child then waits for the port to answer
    settings = dataclasses.replace(_settings(data_dir, port), web_workers=workers)
    asyncio.run(bot.serve(settings))


def serve_bare(port: int, shared: bool = False) -> None:
    """Child: the bare aiohttp baseline, one constant small JSON."""
    from aiohttp import web

    body = json.dumps({"url": "http://127.0.0.1/img/baseline.jpg"}).encode()

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, reuse_port=shared).start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_child(args: list[str], port: int) -> subprocess.Popen[str]:
    """A server child, once it answers on `port`."""
    proc = subprocess.Popen(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    deadline = time.monotonic() + 60
    while line.strip() == "ready" and proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return proc
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"server did not start: {line!r}")


def wait_for_processes(port: int, count: int) -> None:
    """Until `count` distinct gazou processes have answered /healthz (new connection
    each time), so that every worker is serving before the load starts."""
    import urllib.request

    seen: set[str] = set()
    deadline = time.monotonic() + 60
    while len(seen) < count and time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                seen.add(r.headers["X-Gazou-Worker"])
            continue
        time.sleep(0.1)
    if len(seen) < count:
        raise SystemExit(f"only {len(seen)} of {count} gazou processes answered")


def tree_cpu_seconds(roots: list[int]) -> float:
    """User + system CPU time of `roots` and all their descendants, from /proc."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        times[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    tree = set(roots)
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= children
        grew = bool(children)
    return sum(times.get(pid, 0.0) for pid in tree)


def stop_child(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ---- load generators ---------------------------------------------------------------


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int = 0
    cpu_us: float = 0.0  # server CPU per request (whole process tree)


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def run_wrk(
    url: str,
    seconds: float,
    connections: int,
    bodies: list[str] | None,
    threads: int,
    headers: dict[str, str] | None = None,
) -> Result:
    """wrk with latency percentiles; for a POST, a Lua script sending one of `bodies`
    (picked at random) each time; `headers` on every request."""
    cmd = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{seconds:g}s",
        "--latency",
        *(arg for name, value in (headers or {}).items() for arg in ("-H", f"{name}: {value}")),
        url,
    ]
    script = None
    if bodies is not None:
        script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        listed = ",\n".join(json.dumps(b) for b in bodies)
        script.write(
            'wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f"bodies = {{\n{listed}\n}}\n"
            "request = function()\n"
            "  return wrk.format(nil, nil, nil, bodies[math.random(#bodies)])\n"
            "end\n"
        )
        script.close()
        cmd[1:1] = ["-s", script.name]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    finally:
        if script is not None:
            os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors:.*", out)
    count = int(errors.group(1)) if errors else 0
    if socket_errors:
        count += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(0)))
    return Result(rps, p50, p99, count, requests)


def python_generator(
    url: str,
    seconds: float,
    connections: int,
    bodies: list[str] | None,
    headers: dict[str, str] | None = None,
) -> None:
    """Child: keep `connections` requests in flight for `seconds`; print JSON figures."""
    import aiohttp

    async def main() -> None:
        latencies: list[float] = []
        errors = 0
        deadline = time.perf_counter() + seconds
        encoded = [b.encode() for b in bodies] if bodies is not None else None

        async def worker(session: aiohttp.ClientSession) -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                data = random.choice(encoded) if encoded else None
                method = "POST" if data is not None else "GET"
                async with session.request(
                    method,
                    url,
                    data=data,
                    headers={
                        **(headers or {}),
                        **({"Content-Type": "application/json"} if data else {}),
                    },
                ) as response:
                    await response.read()
                    if response.status >= 400:
                        errors += 1
                latencies.append(time.perf_counter() - t0)

        connector = aiohttp.TCPConnector(limit=connections)
        async with aiohttp.ClientSession(connector=connector) as session:
            started = time.perf_counter()
            await asyncio.gather(*(worker(session) for _ in range(connections)))
            elapsed = time.perf_counter() - started
        latencies.sort()
        print(
            json.dumps(
                {
                    "rps": len(latencies) / elapsed,
                    "p50_ms": statistics.median(latencies) * 1000,
                    "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
                    "errors": errors,
                    "requests": len(latencies),
                }
            )
        )

    asyncio.run(main())


def run_python(
    url: str,
    seconds: float,
    connections: int,
    bodies: list[str] | None,
    headers: dict[str, str] | None = None,
) -> Result:
    args = ["--generate", url, "--seconds", str(seconds), "--connections", str(connections)]
    if headers:
        args += ["--headers", json.dumps(headers)]
    with tempfile.NamedTemporaryFile("w", suffix=".json") as listed:
        if bodies is not None:
            json.dump(bodies, listed)
            listed.flush()
            args += ["--bodies", listed.name]
        out = subprocess.run(
            [sys.executable, __file__, *args], capture_output=True, text=True, check=True, cwd=ROOT
        ).stdout
    return Result(**json.loads(out))


# ---- the run -----------------------------------------------------------------------


def _counts(raw: str) -> list[int]:
    try:
        counts = [int(part) for part in raw.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected counts like 1,2, got {raw!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected counts of at least 1, got {raw!r}")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--only", help="run only the endpoints whose label contains this")
    parser.add_argument(
        "--workers",
        type=_counts,
        default=[1],
        metavar="N[,N...]",
        help="process counts to measure, e.g. 1,2 (default 1)",
    )
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--database-url",
        help="postgres: a server to create the bench database on (default: a throwaway one)",
    )
    parser.add_argument(
        "--serve-gazou", nargs=3, metavar=("DATA_DIR", "PORT", "N"), help=argparse.SUPPRESS
    )
    parser.add_argument("--serve-bare", nargs=2, metavar=("PORT", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--generate", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--bodies", metavar="JSON_FILE", help=argparse.SUPPRESS)
    parser.add_argument("--headers", metavar="JSON", help=argparse.SUPPRESS)
    parser.add_argument(
        "--fill",
        metavar="DATA_DIR",
        help="only fill a store there and print a real file's id (for "
        "profiling a server started with --serve-gazou DATA_DIR PORT 1)",
    )
    args = parser.parse_args()

    if args.fill:
        print(asyncio.run(fill_store(Path(args.fill), args.rows)))
        return None

    if args.serve_gazou:
        data_dir, port, workers = args.serve_gazou
        return serve_gazou(Path(data_dir), int(port), int(workers))
    if args.serve_bare:
        return serve_bare(int(args.serve_bare[0]), shared=int(args.serve_bare[1]) > 1)
    if args.generate:
        return python_generator(
            args.generate,
            args.seconds,
            args.connections,
            json.loads(Path(args.bodies).read_text()) if args.bodies else None,
            json.loads(args.headers) if args.headers else None,
        )

    generator = args.generator
    if generator == "auto":
        generator = "wrk" if shutil.which("wrk") else "python"

    def load(
        url: str,
        bodies: list[str] | None,
        servers: list[int],
        headers: dict[str, str] | None = None,
    ) -> Result:
        """One measured run against `url`, with the CPU time of the `servers` trees."""
        cpu_before = tree_cpu_seconds(servers)
        if generator == "wrk":
            result = run_wrk(url, args.seconds, args.connections, bodies, args.threads, headers)
        else:
            result = run_python(url, args.seconds, args.connections, bodies, headers)
        spent = tree_cpu_seconds(servers) - cpu_before
        result.cpu_us = spent * 1e6 / max(result.requests, 1)
        return result

    with tempfile.TemporaryDirectory(prefix="gazou-bench-") as tmp, metadata_store(args):
        data_dir = Path(tmp) / "data"
        t0 = time.perf_counter()
        file_id = asyncio.run(fill_store(data_dir, args.rows))
        print(
            f"store: {args.backend}, {args.rows:,} rows + 8 files in "
            f"{time.perf_counter() - t0:.1f} s; "
            f"generator: {generator}, {args.connections} connections, "
            f"{args.seconds:g} s per endpoint, RATE_LIMITS=off, {os.cpu_count()} CPUs, "
            f"workers {','.join(map(str, args.workers))}"
        )

        endpoints = [
            # Context, not a target: gazou's routing and middlewares with no store access.
            ("GET /api/v1/ (no store access)", "/api/v1/", None, False),
            ("GET /api/v2/random", "/api/v2/random", None, True),
            ("GET /api/v1/random/image", "/api/v1/random/image", None, True),
            ("GET /api/image/random?categories=x", "/api/image/random?categories=x", None, True),
            # One popular query (answered from the page cache after the first), and
            # 4,000 distinct ones (tag x page), which mostly reach the store.
            (
                "POST /api/v1/images/search (one query)",
                "/api/v1/images/search",
                [json.dumps({"tags": ["tag01"], "limit": 20})],
                False,
            ),
            (
                "POST /api/v1/images/search (4,000 queries)",
                "/api/v1/images/search",
                [
                    json.dumps({"tags": [tag], "skip": skip, "limit": 20})
                    for tag in TAGS[:40]
                    for skip in range(0, 2000, 20)
                ],
                False,
            ),
            ("GET /image/{id}", f"/image/{file_id}", None, False),
            # The gallery: the whole home page (24 newest thumbnails' tiles), and the
            # fragment htmx swaps in for a tag search (two tags, one excluded, page 3).
            ("GET / (gallery home page)", "/", None, False),
            (
                "GET /?q=tag01,-x&page=3 (gallery htmx fragment)",
                "/?q=tag01,+-x&page=3",
                None,
                False,
                HTMX,
            ),
        ]
        if args.only:
            endpoints = [e for e in endpoints if args.only in e[0]]

        baselines: dict[int, Result] = {}
        results: dict[tuple[int, str], tuple[Result, bool]] = {}
        for workers in args.workers:
            bare_port, gazou_port = _free_port(), _free_port()
            bares = [
                start_child(["--serve-bare", str(bare_port), str(workers)], bare_port)
                for _ in range(workers)
            ]
            try:
                pids = [b.pid for b in bares]
                load(f"http://127.0.0.1:{bare_port}/", None, pids)  # warm-up
                baselines[workers] = load(f"http://127.0.0.1:{bare_port}/", None, pids)
            finally:
                for bare in bares:
                    stop_child(bare)

            gazou = start_child(
                ["--serve-gazou", str(data_dir), str(gazou_port), str(workers)], gazou_port
            )
            try:
                wait_for_processes(gazou_port, workers)
                for label, path, bodies, is_random, *extra in endpoints:
                    url = f"http://127.0.0.1:{gazou_port}{path}"
                    headers = extra[0] if extra else None
                    if args.seconds >= 5:
                        load(url, bodies, [gazou.pid], headers)  # warm the caches
                    result = load(url, bodies, [gazou.pid], headers)
                    results[workers, label] = (result, is_random)
            finally:
                stop_child(gazou)

    print()
    print(
        f"{'endpoint':44} {'w':>2} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'/bare':>6} "
        f"{'/1w':>5} {'CPU us':>7} {'errors':>6}  target"
    )
    for workers in args.workers:
        base = baselines[workers]
        print(
            f"{'bare aiohttp (constant JSON)':44} {workers:2d} {base.rps:8.0f} "
            f"{base.p50_ms:7.2f} {base.p99_ms:7.2f} {1:6.2f} "
            f"{_versus(base, baselines.get(1), workers)} {base.cpu_us:7.0f} {base.errors:6d}"
        )
    for label, *_ in endpoints:
        for workers in args.workers:
            result, is_random = results[workers, label]
            ratio = result.rps / baselines[workers].rps
            one = results.get((1, label), (None, False))[0]
            scaling = result.rps / one.rps if one is not None else None
            if workers == 1:
                needed = ratio >= RANDOM_TARGET
                target = f"ratio >= {RANDOM_TARGET}, " if is_random else ""
            else:
                needed = scaling is None or scaling >= SCALING_TARGET
                target = f"/1w >= {SCALING_TARGET}, " if is_random and one is not None else ""
            met = result.p99_ms < P99_TARGET_MS and (needed or not is_random)
            print(
                f"{label:44} {workers:2d} {result.rps:8.0f} {result.p50_ms:7.2f} "
                f"{result.p99_ms:7.2f} {ratio:6.2f} {_versus(result, one, workers)} "
                f"{result.cpu_us:7.0f} {result.errors:6d}  "
                f"{target}p99 < {P99_TARGET_MS:g} ms: {'met' if met else 'MISSED'}"
            )


@contextlib.contextmanager
def metadata_store(args: argparse.Namespace) -> Iterator[None]:
    """For `--backend postgres`: a new database (on `--database-url`'s server, else on a
    throwaway one), named in the environment for fill_store and the server children;
    dropped, or the server stopped, on exit."""
    if args.backend != "postgres":
        yield
        return
    from tests import pg_server

    server = None
    server_url = args.database_url
    if server_url is None:
        if not pg_server.available():
            sys.exit(f"PostgreSQL is not installed ({pg_server.INSTALL})")
        # Memory as a server holding this many images would be given.
        server = pg_server.start_server(shared_buffers="256MB", work_mem="16MB")
        server_url = server.url()
    database = f"gazou_bench_http_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(server_url, f"CREATE DATABASE {database}"))
    base, _, _ = server_url.rpartition("/")
    os.environ[DATABASE_URL] = f"{base}/{database}"
    try:
        yield
    finally:
        os.environ.pop(DATABASE_URL, None)
        if server is not None:
            pg_server.stop_server(server)
        else:
            asyncio.run(_admin(server_url, f"DROP DATABASE IF EXISTS {database}"))


async def _admin(server_url: str, sql: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(sql)
    finally:
        await admin.close()


def _versus(result: Result, one: Result | None, workers: int) -> str:
    """This run's requests/s against the one-worker run's, as a 5-wide column."""
    if workers == 1 or one is None:
        return f"{'':>5}"
    return f"{result.rps / one.rps:5.2f}"


if __name__ == "__main__":
    main()
