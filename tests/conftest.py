"""Shared fixtures: real stores in temporary folders (SQLite, and PostgreSQL when its
binaries are installed), real images made with Pillow, the production app factory
behind aiohttp's test client.

Backends: each is a whole stack, metadata and bytes: `sqlite` is SQLite + files under
DATA_DIR (the embedded default), `postgres` is PostgreSQL + an S3 bucket on a real
Swift (tests/pg_server.py, tests/servers.py). The `settings` fixture (and so `services`
and `client`) opens the stack of the test's `backend`. A test module that sets
`BACKENDS = ALL_BACKENDS` runs on every backend; the others run on the backends
GAZOU_TEST_BACKENDS names (comma-separated, default `sqlite`), so
`GAZOU_TEST_BACKENDS=sqlite,postgres` runs every suite on both.

On both by default: the store contracts, every dialect's round trip, the bytes over HTTP
(test_api_files), visibility and signed links across the dialects, the Miku and Discord
Images dialects, and the Discord images, moderation and gallery suites. A test on
PostgreSQL + S3 costs 0.3-0.5 s more (a bucket, an S3 client, a reset database), so the
dialects' parameter and error-shape details (Chevereto, NekosAPI, nekos.moe), the bot's
lifecycle and token dialogues, which reach the store only through paths those suites
already cover, run on `sqlite` alone unless asked for."""

from __future__ import annotations

import io
import os
import random
import signal
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image as PILImage

from api.app import create_app
from core.models import Image, ImageFile, User
from core.services import Services, open_services
from core.settings import Settings, ensure_signing_secret, load_settings
from tests import pg_server
from tests.servers import (
    INSTALL_SWIFT,
    SKIPPED_BACKENDS,
    Swift,
    missing_swift_binaries,
    running_swift,
)

ALL_BACKENDS = ("sqlite", "postgres")

OWNER = User(id="100", name="owner")
MEMBER = User(id="200", name="member")


def make_settings(data_dir: Path, **env: str) -> Settings:
    """Settings as the environment would give them, data under `data_dir`."""
    base = {"DATA_DIR": str(data_dir), "PUBLIC_URL": "http://gazou.test", "IMAGE_WORKERS": "2"}
    return ensure_signing_secret(load_settings({**base, **env}))


def make_image(
    fmt: str = "PNG",
    size: tuple[int, int] = (64, 48),
    seed: int = 0,
    mode: str = "RGB",
    **save: object,
) -> bytes:
    """A real, distinct image: a seeded pattern, so different seeds differ in content
    and in perceptual hash."""
    rng = random.Random(seed)
    w, h = size
    img = PILImage.new(mode, size)
    # Blocks of random colours: distinct seeds give clearly different pictures.
    block = max(1, min(w, h) // 8)
    for y in range(0, h, block):
        for x in range(0, w, block):
            colour = tuple(rng.randrange(256) for _ in range(len(mode)))
            img.paste(colour if len(colour) > 1 else colour[0], (x, y, x + block, y + block))
    buf = io.BytesIO()
    if fmt.upper() in ("JPEG", "JPG") and mode != "RGB":
        img = img.convert("RGB")
    img.save(buf, fmt, **save)
    return buf.getvalue()


@pytest.fixture
def image_factory() -> Callable[..., bytes]:
    return make_image


def _backends(module: object) -> tuple[str, ...]:
    chosen = getattr(module, "BACKENDS", None)
    if chosen is None:
        raw = os.environ.get("GAZOU_TEST_BACKENDS", "sqlite")
        chosen = tuple(b.strip() for b in raw.split(",") if b.strip())
    unknown = set(chosen) - set(ALL_BACKENDS)
    if unknown:
        raise pytest.UsageError(f"GAZOU_TEST_BACKENDS: unknown backend(s) {sorted(unknown)}")
    return tuple(chosen)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    # A run stopped with SIGTERM (`timeout`, a CI runner's cancel) ends like Ctrl-C, so
    # the fixtures' finalizers still stop the PostgreSQL, Swift and Redis servers they
    # started; SIGTERM's default action left them running with their folders.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    config.addinivalue_line(
        "markers",
        "backends(*names): run only on these backends (a test of one backend's "
        "own machinery, e.g. SQLite's pragmas)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Only tests that open a store depend on `backend`; with one backend the test ids
    # stay as they were.
    if "backend" in metafunc.fixturenames:
        backends = _backends(metafunc.module)
        marker = metafunc.definition.get_closest_marker("backends")
        if marker is not None:
            # None left (e.g. GAZOU_TEST_BACKENDS=postgres): an empty set, so skipped.
            backends = tuple(b for b in backends if b in marker.args)
        if backends != ("sqlite",):
            metafunc.parametrize("backend", backends, scope="function")


@pytest.fixture
def backend() -> str:
    """The stack a test's store uses (parametrised by pytest_generate_tests): `sqlite`
    (SQLite + files) or `postgres` (PostgreSQL + S3)."""
    return "sqlite"


@pytest.fixture(scope="session")
def postgres() -> Iterator[pg_server.PostgresServer]:
    """One throwaway PostgreSQL cluster for the whole run."""
    if not pg_server.available():
        SKIPPED_BACKENDS["PostgreSQL"] = f"missing its server: {pg_server.INSTALL}"
        pytest.skip(f"PostgreSQL is not installed ({pg_server.INSTALL})")
    server = pg_server.start_server()
    try:
        yield server
    finally:
        pg_server.stop_server(server)


@pytest.fixture
async def database_url(request: pytest.FixtureRequest, backend: str) -> str:
    """DATABASE_URL for this test's store: empty for SQLite; for PostgreSQL, the run's
    shared test database, emptied first."""
    if backend != "postgres":
        return ""
    server: pg_server.PostgresServer = request.getfixturevalue("postgres")
    await pg_server.reset_database(server)
    return server.url(pg_server.TEST_DATABASE)


@pytest.fixture
def backend_env(request: pytest.FixtureRequest, backend: str, database_url: str) -> dict[str, str]:
    """The settings that select this test's stack: none for `sqlite`; for `postgres`,
    DATABASE_URL (the shared test database, emptied) and BLOB_URL with its keys (a
    fresh bucket: 15 ms on Swift, where emptying one costs a listing and a DELETE per
    object). Without Swift, `postgres` keeps its bytes in files and the run's last
    line says the S3 suites did not run."""
    if backend != "postgres":
        return {}
    env = {"DATABASE_URL": database_url}
    server: Swift | None = request.getfixturevalue("swift_or_none")
    if server is not None:
        bucket = f"gazou-{uuid.uuid4().hex[:20]}"
        server.create_bucket(bucket)
        env.update(server.blob_env(bucket))
    return env


@pytest.fixture
def settings(tmp_path: Path, backend_env: dict[str, str]) -> Settings:
    return make_settings(tmp_path / "data", RATE_LIMITS="off", **backend_env)


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with open_services(settings) as opened:
        yield opened


@pytest.fixture
async def client(services: Services) -> AsyncIterator[TestClient]:
    """The production app over a real store, on a loopback port."""
    async with TestClient(TestServer(create_app(services), host="127.0.0.1")) as test_client:
        yield test_client


# ---- blob store backends ---------------------------------------------------------------


@pytest.fixture(scope="session")
def swift_or_none(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swift | None]:
    """A real OpenStack Swift with s3api for the whole run (tests/servers.py), or None
    when its packages are missing (then named once at the end of the run)."""
    missing = missing_swift_binaries()
    if missing:
        SKIPPED_BACKENDS["S3 (Swift)"] = f"missing {', '.join(missing)}: {INSTALL_SWIFT}"
        yield None
        return
    with running_swift(tmp_path_factory.mktemp("swift")) as server:
        yield server


@pytest.fixture
def swift(swift_or_none: Swift | None) -> Swift:
    """The run's Swift; the tests that need it skip when its packages are missing."""
    if swift_or_none is None:
        pytest.skip(f"S3 suites need Swift: {INSTALL_SWIFT}")
    return swift_or_none


@pytest.fixture(params=["files", "s3"])
def blob_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The settings of each blob store backend in turn: files under DATA_DIR (none),
    then a fresh bucket on the Swift of this run."""
    if request.param == "files":
        return {}
    server: Swift = request.getfixturevalue("swift")
    bucket = f"gazou-{uuid.uuid4().hex[:20]}"
    server.create_bucket(bucket)
    return server.blob_env(bucket)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line naming the backend suites that did not run, and how to get them."""
    if SKIPPED_BACKENDS:
        reasons = "; ".join(f"{name}, {why}" for name, why in SKIPPED_BACKENDS.items())
        terminalreporter.write_line(f"backend suites not run: {reasons}", yellow=True)


def blob_path(services: Services, key: str) -> Path:
    """The local file of `key` (for tests that reach under a files-backed store)."""
    path = services.storage.blobs.local_path(key)
    assert path is not None, "this test needs the files backend"
    return path


def stored_path(services: Services, image: Image | ImageFile, *, thumbnail: bool = False) -> Path:
    """The local file of an image's bytes, or of its thumbnail (files backend)."""
    return blob_path(services, services.images.blob_key(image, thumbnail=thumbnail))
