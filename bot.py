"""gazou's composition root and command line.

python bot.py [serve] [--role all|web|bot] [--workers N]
                                       run the HTTP API (and the Discord bot if configured)
python bot.py token issue --owner NAME [--scopes a,b] [--expires-days N] [--purpose TEXT]
python bot.py token list | token revoke ID
python bot.py import DIR [--tags a,b] [--artist NAME] [--rating sfw] [--sidecars] [--map FILE]
python bot.py migrate [--to-database URL] [--to-blobs URL] [--to-data-dir DIR] [--force]
                                       copy this collection into another store (resumable)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import dataclasses
import errno
import gc
import logging
import os
import pickle
import signal
import socket
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dotenv import load_dotenv

from core.errors import GazouError, SettingsError
from core.models import IngestMetadata, Rating, User
from core.services import Services, open_services
from core.settings import ROLES, Settings, ensure_signing_secret, load_settings

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger("gazou")

BOT_PY = Path(__file__).resolve()
# A dead web worker is started again after 0.5 s, then 1, 2... up to 30 s while it
# keeps dying; one that ran a minute counts as healthy and starts the series over.
RESTART_FIRST, RESTART_MAX, RESTART_RESET = 0.5, 30.0, 60.0
# How long stopping workers may take before they are killed (aiohttp's own shutdown
# waits up to 5 s for requests in flight).
STOP_GRACE = 8.0


def _workers(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {raw!r}") from None
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"must be between 1 and 64, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python bot.py",
        description="gazou: a self-hosted image collection (Discord bot + HTTP image API).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve_cmd = sub.add_parser("serve", help="run the service (the default)")
    serve_cmd.add_argument(
        "--role",
        choices=ROLES,
        help="all: HTTP API, Discord bot and the work done once (default, or ROLE); "
        "web: only the HTTP API; bot: only the Discord bot and the work done once",
    )
    serve_cmd.add_argument(
        "--workers",
        type=_workers,
        metavar="N",
        help="processes serving the HTTP port (default WEB_WORKERS, 1); "
        "this one supervises the N-1 others",
    )
    # A supervised web worker: its settings come on stdin from the supervisor (this pid).
    serve_cmd.add_argument("--worker-of", type=int, help=argparse.SUPPRESS)

    token = sub.add_parser("token", help="manage API tokens")
    token_sub = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    issue = token_sub.add_parser("issue", help="issue a token; prints only the secret")
    issue.add_argument("--owner", required=True, help="who the token is for")
    issue.add_argument("--scopes", help="comma-separated scopes (default: DEFAULT_TOKEN_SCOPES)")
    issue.add_argument("--expires-days", type=int, help="days until the token stops working")
    issue.add_argument("--purpose", default="", help="what the token is for")
    token_sub.add_parser("list", help="list tokens (never their secrets)")
    revoke = token_sub.add_parser("revoke", help="revoke a token")
    revoke.add_argument("id", help="the token id (or a unique prefix of it)")

    imp = sub.add_parser("import", help="import every image in a folder as approved")
    imp.add_argument("folder", type=Path)
    imp.add_argument("--tags", default="", help="comma-separated tags for every image")
    imp.add_argument("--artist", help="artist of every image")
    imp.add_argument(
        "--rating",
        default="sfw",
        choices=[r.value for r in Rating],
        help="rating of every image (with --sidecars: of those whose sidecars give none)",
    )
    imp.add_argument(
        "--sidecars",
        action="store_true",
        help="read each image's metadata from the files downloaders write next to it "
        "(gallery-dl's NAME.json or NAME.jpg.json, tag lists NAME.txt or NAME.jpg.txt)",
    )
    imp.add_argument(
        "--map",
        type=Path,
        metavar="FILE",
        help="rename tags, characters and artists: one `old = new` or `old,new` per line "
        "(an empty new drops the name; # starts a comment line)",
    )

    mig = sub.add_parser(
        "migrate",
        help="copy this collection (rows and bytes) into another store; resumable",
        description="Copy the collection of the running configuration (DATABASE_URL or "
        "SQLite, BLOB_URL or files under DATA_DIR) into another store, which may be "
        "PostgreSQL and/or S3 or SQLite and files; the source is only read and may keep "
        "serving. Run the same command again to continue an interrupted copy.",
    )
    mig.add_argument("--to-database", metavar="URL", help="postgresql://... (default: SQLite)")
    mig.add_argument("--to-blobs", metavar="URL", help="s3://bucket?endpoint=... (default: files)")
    mig.add_argument(
        "--to-data-dir",
        type=Path,
        metavar="DIR",
        help="the target's DATA_DIR: its SQLite file and/or files, and the signing secret",
    )
    mig.add_argument(
        "--force", action="store_true", help="empty a target that holds rows, then copy"
    )
    # Tests only: stop as if interrupted once N images' objects are copied.
    mig.add_argument("--stop-after", type=int, help=argparse.SUPPRESS)
    mig.add_argument("--batch-size", type=int, default=200, help=argparse.SUPPRESS)
    return parser


async def serve(settings: Settings, *, worker_of: int | None = None) -> int:
    """Run until SIGINT/SIGTERM what `settings.role` says: the HTTP API (roles all and
    web, on `web_workers` processes), the Discord bot and the work that must happen once
    (roles all and bot). `worker_of`: this is a web worker supervised by that pid."""

    from api.app import create_app
    from api.server import make_runner
    from core.lease import Lease, gateway_lease_key

    role = "web" if worker_of else settings.role
    http = role in ("all", "web")
    # The expiry sweeper and the file check; the bot's own upkeep comes with the bot.
    once = role in ("all", "bot")
    discord = once and bool(settings.discord_token)
    shared_port = worker_of is not None or (http and settings.web_workers > 1)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    # A worker never outlives its supervisor, even one killed with SIGKILL.
    watch = worker_of is not None and not die_with_parent(worker_of)

    failed: list[asyncio.Task[Any]] = []
    async with open_services(settings) as services:
        runner: web.AppRunner | None = None
        lease: Lease | None = None
        try:
            if http:
                runner = make_runner(create_app(services), settings)
                await runner.setup()
                # The port first: a second server pointed at it must stop here, before it
                # has touched anything under DATA_DIR.
                await listen(runner, settings, shared=shared_port, probe=worker_of is None)
            if discord:
                # One gateway per bot token, whichever processes share the store: a
                # second one stops here with one line.
                lease = Lease(
                    services.kv,
                    gateway_lease_key(settings.discord_token or ""),
                    what="the Discord bot of this DISCORD_TOKEN",
                )
                await lease.acquire()
        except BaseException:
            if runner is not None:
                await runner.cleanup()
            raise
        # What start-up built lives as long as the process: keep it out of the
        # collector's full passes, which otherwise walk it all every few seconds under
        # load (pauses of 15 ms measured with 100,000 images).
        gc.collect()
        gc.freeze()
        if http:
            log.info(
                "HTTP API listening on http://%s:%d (public URL %s)",
                settings.host,
                settings.port,
                settings.public_url,
            )
        # Tasks that run until cancelled (one ending stops the process), and the check.
        tasks: list[asyncio.Task[None]] = []
        checks: list[asyncio.Task[None]] = []
        if once:
            log.info(
                "role %s: doing the work that must happen once (expiry sweeps every %g s, "
                "the check of files against rows)",
                role,
                settings.expiry_sweep_seconds,
            )
            tasks.append(
                asyncio.create_task(
                    services.images.run_expiry_sweeper(settings.expiry_sweep_seconds)
                )
            )
            # In the background, while serving: it only removes files old enough that no
            # live writer (this process, `bot.py import`, another server) can still commit.
            checks.append(asyncio.create_task(check_store(services)))
            if settings.webhook_urls:
                # Under its own lease, so one process of those sharing the store posts.
                from api.webhooks import run_webhooks

                checks.append(asyncio.create_task(run_webhooks(services)))
        if http and worker_of is None:
            # Image objects never rendered (after an upgrade or a bulk import) are
            # rendered in the background rather than on their first draw. Workers leave
            # it to this process (each would do the same work).
            checks.append(asyncio.create_task(render_backlog(services)))
        if http and worker_of is None and settings.web_workers > 1:
            supervisor = Supervisor(settings, settings.web_workers - 1)
            tasks.append(asyncio.create_task(supervisor.run()))
        if watch:
            assert worker_of is not None
            checks.append(asyncio.create_task(watch_parent(worker_of, stop)))
        try:
            if discord:
                assert lease is not None
                tasks.append(asyncio.create_task(run_bot(services)))
                tasks.append(asyncio.create_task(lease.keep()))
            elif role == "web":
                if worker_of is None:
                    log.info("role web: HTTP API only (no Discord bot, no once-only work)")
            elif role == "bot":
                log.info("Discord bot is off: DISCORD_TOKEN is not set (only the once-only work)")
            else:
                log.info("Discord bot is off: DISCORD_TOKEN is not set (HTTP API only)")
            waiter = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
            failed = [t for t in done if t is not waiter and not t.cancelled() and t.exception()]
            for task in failed:
                log.error("stopping: %s", task.exception())
            log.info("shutting down")
        finally:
            for task in (*checks, *tasks):
                task.cancel()
            await asyncio.gather(*checks, *tasks, return_exceptions=True)
            if lease is not None:
                await lease.release()
            if runner is not None:
                await runner.cleanup()
    log.info("stopped")
    return 1 if failed else 0


async def listen(
    runner: web.AppRunner, settings: Settings, *, shared: bool = False, probe: bool = True
) -> None:
    """Bind the HTTP port; a port already taken is refused with one line, not a traceback.
    `shared`: other processes of this gazou bind it too (SO_REUSEPORT), and `probe`
    first checks that no one else holds it."""
    from aiohttp import web

    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    address = f"{host}:{settings.port}"
    try:
        if shared and probe:
            # SO_REUSEPORT would let a second gazou share the port instead of failing:
            # bind it once without, which fails while anyone listens there.
            _probe_port(settings.host, settings.port)
        # Without SO_REUSEPORT for one process: a second server must fail, not share.
        site = web.TCPSite(runner, settings.host, settings.port, reuse_port=shared)
        await site.start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise GazouError(f"{address} is already in use (is another gazou running?)") from None
        raise GazouError(f"cannot listen on {address}: {exc.strerror or exc}") from None


def _probe_port(host: str, port: int) -> None:
    """Bind (and let go of) every address of `host` at `port`; OSError if one is taken."""
    for family, kind, proto, _, address in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    ):
        with socket.socket(family, kind, proto) as probe:
            # Connections of a stopped server waiting in TIME_WAIT don't count (as for
            # aiohttp's own bind); a listening socket still does.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            probe.bind(address)


class Supervisor:
    """Keeps `count` web workers (`bot.py serve --worker-of <this pid>`) running: a dead
    one is started again with back-off; cancelling stops them all (SIGTERM, then SIGKILL
    after STOP_GRACE)."""

    def __init__(self, settings: Settings, count: int) -> None:
        # What a worker runs: the HTTP API only, whatever this process runs.
        self.settings = dataclasses.replace(settings, role="web", web_workers=1)
        self.count = count

    async def run(self) -> None:
        """Until cancelled."""
        keepers = [asyncio.create_task(self._keep(n)) for n in range(1, self.count + 1)]
        try:
            await asyncio.gather(*keepers)
        finally:
            for keeper in keepers:
                keeper.cancel()
            await asyncio.gather(*keepers, return_exceptions=True)

    async def _spawn(self) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(BOT_PY),
            "serve",
            "--worker-of",
            str(os.getpid()),
            stdin=asyncio.subprocess.PIPE,
            # Out of the terminal's process group: Ctrl-C reaches this process only, which
            # then stops the workers itself (instead of racing them to restart ones that
            # exited on the same Ctrl-C).
            process_group=0,
        )
        assert proc.stdin is not None
        try:
            proc.stdin.write(pickle.dumps(self.settings))
            await proc.stdin.drain()
            proc.stdin.close()
        except BaseException:  # cancelled (stopping) or the child died at once
            await _stop_process(proc)
            raise
        return proc

    async def _keep(self, n: int) -> None:
        delay = RESTART_FIRST
        while True:
            proc = await self._spawn()
            started = time.monotonic()
            try:
                code = await proc.wait()
            except asyncio.CancelledError:
                await _stop_process(proc)
                raise
            ran = time.monotonic() - started
            if ran >= RESTART_RESET:
                delay = RESTART_FIRST
            log.warning(
                "web worker %d (pid %d) %s after %.1f s; starting another in %g s",
                n,
                proc.pid,
                _exit_reason(code),
                ran,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESTART_MAX)


def _exit_reason(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


async def _stop_process(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL if it is still there after STOP_GRACE."""
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), STOP_GRACE)
    except TimeoutError:
        log.warning("web worker pid %d did not stop in %g s; killing it", proc.pid, STOP_GRACE)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent: int) -> bool:
    """Have the kernel SIGTERM this process when its parent dies, even by SIGKILL (Linux
    prctl PR_SET_PDEATHSIG); False where that is not available."""
    # The kernel signals when the *thread* that started this process ends: the
    # supervisor starts workers from its event loop, on its main thread, which lives as
    # long as the process does.
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
    return True


async def watch_parent(parent: int, stop: asyncio.Event) -> None:
    """Where the kernel cannot tell: stop once the parent is gone (checked every second)."""
    while True:
        await asyncio.sleep(1.0)
        if os.getppid() != parent:
            break
    log.warning("the supervisor (pid %d) is gone; stopping", parent)
    stop.set()


async def check_store(services: Services) -> None:
    """Check files against rows once, logging instead of raising."""
    try:
        await services.images.check_consistency()
    except Exception:
        log.exception("the check of files against rows failed; it runs again at the next start")


async def render_backlog(services: Services) -> None:
    """Render the image objects the store lacks once, logging instead of raising."""
    try:
        await services.images.render_backlog()
    except Exception:
        log.exception("rendering image objects ahead failed; they are rendered when drawn")


async def run_bot(services: Services) -> None:
    """Run the Discord bot until cancelled."""
    from cogs.client import GazouBot

    async with GazouBot(services) as bot:
        await bot.start(services.settings.discord_token or "")


async def token_command(settings: Settings, args: argparse.Namespace) -> int:
    async with open_services(settings) as services:
        tokens = services.tokens
        if args.token_command == "issue":
            from core.tokens import parse_scopes

            scopes = parse_scopes(args.scopes) if args.scopes else None
            expires = timedelta(days=args.expires_days) if args.expires_days else None
            issued = await tokens.issue(
                User(id=f"cli:{args.owner}", name=args.owner),
                scopes=scopes,
                expires_in=expires,
                purpose=args.purpose,
                issued_by="command line",
            )
            print(issued.secret)
            print(
                f"issued token {issued.token.id} for {args.owner} "
                f"(scopes: {' '.join(issued.token.scopes) or 'none'})",
                file=sys.stderr,
            )
        elif args.token_command == "list":
            rows = await tokens.list_tokens()
            if not rows:
                print("no tokens")
            for t in rows:
                state = (
                    "revoked"
                    if t.revoked_at
                    else ("expired" if not t.active(datetime.now(UTC)) else "active")
                )
                print(
                    f"{t.id}  {state:8}  {t.owner_name}  [{' '.join(t.scopes)}]  "
                    f"created {t.created_at:%Y-%m-%d}"
                    + (f"  expires {t.expires_at:%Y-%m-%d}" if t.expires_at else "")
                    + (f"  last used {t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "")
                    + (f"  - {t.purpose}" if t.purpose else "")
                )
        else:
            revoked = await tokens.revoke(args.id)
            print(f"revoked token {revoked.id} ({revoked.owner_name})")
    return 0


async def import_command(settings: Settings, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from core.importer import SidecarOptions, candidate_files, import_folder
    from core.sidecars import SidecarError, parse_tag_map

    folder: Path = args.folder
    meta = IngestMetadata(
        tags=tuple(t for t in args.tags.split(",") if t.strip()),
        artist=args.artist,
        rating=Rating(args.rating),
    )
    mapping: dict[str, str] = {}
    if args.map is not None:
        try:
            mapping = parse_tag_map(args.map.read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError, SidecarError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            print(f"gazou: --map {args.map}: {reason}", file=sys.stderr)
            return 2
    options = SidecarOptions(read=args.sidecars, mapping=mapping)
    total = sum(1 for _ in candidate_files(folder, sidecars=options.read))
    async with open_services(settings) as services:
        with tqdm(total=total, unit="file", desc="importing") as bar:

            def progress(path: Path, outcome: str) -> None:
                bar.update(1)
                bar.set_postfix_str(outcome)

            summary = await import_folder(
                services.images,
                folder,
                meta,
                concurrency=settings.image_workers,
                progress=progress,
                sidecars=options,
            )
    print(
        f"imported {summary.imported}, duplicates {summary.duplicates}, "
        f"refused {len(summary.refused)}, not images {summary.skipped}"
    )
    if options.read:
        print(f"  with metadata from sidecars: {summary.with_sidecars}")
        for path, note in summary.trimmed[:20]:
            print(f"    {path}: {note}")
    for reason, n in summary.reasons().most_common():
        print(f"  refused {n}: {reason}")
    for path, reason in summary.refused[:20]:
        print(f"    {path}: {reason}")
    return 0 if not summary.refused else 1


async def migrate_command(settings: Settings, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from storage.migrate import Interrupted, MigrationError, Place, TargetNotEmpty, run_migration

    if (not args.to_database or not args.to_blobs) and args.to_data_dir is None:
        print(
            "gazou: migrate: --to-data-dir DIR is needed for a target in SQLite or files",
            file=sys.stderr,
        )
        return 2
    try:
        # The target's URLs are checked as the settings check DATABASE_URL and BLOB_URL.
        checked = load_settings(
            {
                "DATA_DIR": str(args.to_data_dir or settings.data_dir),
                "DATABASE_URL": args.to_database or "",
                "BLOB_URL": args.to_blobs or "",
            }
        )
    except SettingsError as exc:
        print(f"gazou: migrate: the target: {exc}", file=sys.stderr)
        return 2
    keys = {
        "blob_access_key": settings.blob_access_key,
        "blob_secret_key": settings.blob_secret_key,
    }
    source = Place(settings.data_dir, settings.database_url, settings.blob_url, **keys)
    target = Place(checked.data_dir, checked.database_url, checked.blob_url, **keys)
    print(f"copying {source.name()}\n     to {target.name()}", file=sys.stderr)
    # The bar starts once the target was accepted and the images left are counted.
    bars: list[Any] = []

    def total(n: int) -> None:
        bars.append(tqdm(total=n, unit="image", desc="migrating"))

    try:
        report = await run_migration(
            source,
            target,
            force=args.force,
            progress=lambda n: bars[-1].update(n),
            total=total,
            stop_after=args.stop_after,
            batch=args.batch_size,
        )
    except TargetNotEmpty as exc:
        print(f"gazou: migrate: {exc.message}", file=sys.stderr)
        return 2
    except MigrationError as exc:
        print(f"gazou: migrate: {exc.message}", file=sys.stderr)
        return 1
    except Interrupted:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        for bar in bars:
            bar.close()
    print(
        f"{'resumed: ' if report.resumed else ''}copied {sum(report.rows.values())} row(s) "
        f"and {report.objects_copied} object(s) ({report.bytes_copied / 1e6:.1f} MB), "
        f"{report.objects_present} already there, in {report.seconds:.1f} s"
    )
    for table, (src, dst) in report.counts.items():
        print(f"  {table:<16} {src:>9} -> {dst:<9}{'' if src == dst else '  DIFFERS'}")
    if report.removed_from_target:
        print(f"  {report.removed_from_target} image(s) deleted from the source meanwhile: removed")
    for key in report.missing_in_source[:20]:
        print(f"  missing in the source (not copied): {key}")
    failed = False
    if report.mismatched():
        print(
            "gazou: migrate: the source changed while it was copied: run the same command "
            "again (stop its writers first for an exact copy)",
            file=sys.stderr,
        )
        failed = True
    for problem in report.serve_problems:
        print(f"gazou: migrate: the target does not serve: {problem}", file=sys.stderr)
        failed = True
    if not failed:
        print("the target serves random and search: point DATABASE_URL / BLOB_URL / DATA_DIR at it")
    return 1 if failed else 0


def worker_main(parent: int) -> int:
    """A supervised web worker: the supervisor's settings arrive pickled on stdin."""
    try:
        settings = pickle.load(sys.stdin.buffer)
    except (EOFError, pickle.UnpicklingError):
        print("gazou: --worker-of is for gazou's own web workers", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)-7s [web worker %(process)d] %(name)s: %(message)s",
    )
    try:
        return asyncio.run(serve(settings, worker_of=parent))
    except KeyboardInterrupt:
        return 130
    except GazouError as exc:
        print(f"gazou: web worker: {exc.message}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    load_dotenv(override=False)  # real environment variables win over .env
    args = build_parser().parse_args(argv)
    command = args.command or "serve"
    if command == "serve" and getattr(args, "worker_of", None):
        return worker_main(args.worker_of)
    try:
        settings = ensure_signing_secret(load_settings())
    except SettingsError as exc:
        print(f"gazou: {exc}", file=sys.stderr)
        return 2
    if command == "serve":
        role = getattr(args, "role", None) or settings.role
        workers = getattr(args, "workers", None)
        if role == "bot" and workers:
            print(
                "gazou: --workers is for roles all and web (the bot role serves no HTTP)",
                file=sys.stderr,
            )
            return 2
        settings = dataclasses.replace(
            settings, role=role, web_workers=workers or settings.web_workers
        )
        if settings.web_workers > 1 and role != "bot" and settings.port == 0:
            print("gazou: several web workers need a fixed PORT, not 0", file=sys.stderr)
            return 2
    several = command == "serve" and settings.web_workers > 1 and settings.role != "bot"
    logging.basicConfig(
        level=settings.log_level,
        # With several processes writing to one log, say which one wrote each line.
        format="%(asctime)s %(levelname)-7s "
        + ("[main %(process)d] " if several else "")
        + "%(name)s: %(message)s",
    )
    if command == "import" and not args.folder.is_dir():
        print(f"gazou: {args.folder} is not a folder", file=sys.stderr)
        return 2
    try:
        if command == "serve":
            return asyncio.run(serve(settings))
        runners = {"token": token_command, "import": import_command, "migrate": migrate_command}
        return asyncio.run(runners[command](settings, args))
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except GazouError as exc:
        print(f"gazou: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
