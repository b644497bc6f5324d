"""`bot.py migrate`, run as an operator would (a child process): a SQLite + files
collection of real images copied into a real PostgreSQL + S3 (Swift) and back, then
compared image by image (metadata, bytes, thumbnails), token by token, and asked for
random draws and searches; a non-empty target refused without --force; an interrupted
copy resumed; a corrupt object named."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.models import Filters, Image, IngestMetadata, Rating, SearchQuery, Status, User
from core.services import Services, open_services
from core.settings import Settings
from tests import pg_server
from tests.conftest import MEMBER, OWNER, make_image, make_settings
from tests.servers import Swift

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120
IMAGES = 10


@dataclass
class Collection:
    """What was stored, to compare a copy against."""

    images: dict[str, Image]
    secret: str
    token_id: str


def _env(settings_env: dict[str, str], data_dir: Path) -> dict[str, str]:
    """A child's environment: ours without a store, then the source's settings."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BLOB_URL")}
    return {**env, "DATA_DIR": str(data_dir), "DISCORD_TOKEN": "", **settings_env}


def migrate(
    source_env: dict[str, str], data_dir: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """`python bot.py migrate ARGS` with the source configured by `source_env`."""
    return subprocess.run(
        [sys.executable, "bot.py", "migrate", *args],
        cwd=ROOT,
        env=_env(source_env, data_dir),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


async def build(settings: Settings) -> Collection:
    """A small collection: approved images with tags, artists and characters, a pending
    one, a rejected one, likes, a token, a token request and a kv value."""
    async with open_services(settings) as services:
        stored = []
        for n in range(IMAGES):
            meta = IngestMetadata(
                tags=("cat", f"group{n % 3}"),
                artist=f"artist{n % 2}",
                characters=("miku",) if n % 4 == 0 else (),
                rating=Rating.NSFW if n % 3 == 0 else Rating.SFW,
                title=f"image {n}",
            )
            image = await services.images.ingest(
                make_image(seed=n, size=(48 + n, 40)), meta, OWNER, trusted=n != 4
            )
            stored.append(image)
        await services.images.reject(stored[7].id, OWNER)
        await services.images.set_like(stored[0].id, MEMBER)
        await services.images.set_like(stored[0].id, OWNER, kind="favorite")
        await services.images.random(Filters(), 2, seen_by=MEMBER.id)
        issued = await services.tokens.issue(
            MEMBER, scopes=("image:list",), issued_by=OWNER.id, purpose="tests"
        )
        await services.tokens.request(User("300", "asker"), "a bot")
        await services.kv.kv_set("discord:test", "kept")
        return Collection(await snapshot(services), issued.secret, issued.token.id)


async def snapshot(services: Services) -> dict[str, Image]:
    """Every image row (any status) by id."""
    page = await services.images.search(
        SearchQuery(statuses=frozenset(Status), limit=100), count_total=False
    )
    return {i.id: i for i in page.images}


async def check_copy(settings: Settings, original: Collection) -> None:
    """The store of `settings` holds exactly `original`: rows, bytes, tokens, and it
    answers random draws and searches."""
    async with open_services(settings) as services:
        copied = await snapshot(services)
        assert copied == original.images
        for image in copied.values():
            if image.status is Status.REJECTED:
                continue
            data = await services.images.read_bytes(image)
            thumb = await services.images.read_bytes(image, thumbnail=True)
            assert len(data) == image.size and len(thumb) == image.thumbnail_size
        token = await services.tokens.verify(original.secret)
        assert token.id == original.token_id
        assert [r.requester_id for r in await services.storage.repo.list_token_requests()] == [
            "300"
        ]
        assert await services.kv.kv_get("discord:test") == "kept"
        approved = [i for i in copied.values() if i.status is Status.APPROVED]
        drawn = await services.images.random(Filters(tags=("cat",)), 20)
        assert {i.id for i in drawn} == {i.id for i in approved}
        miku = await services.images.random(Filters(character="miku"), 20)
        assert {i.id for i in miku} == {i.id for i in approved if i.characters}
        page = await services.images.search(SearchQuery(tags=("group1",), limit=50))
        assert page.total == sum(1 for i in approved if any(t.name == "group1" for t in i.tags))
        # The uploaders' counts are rebuilt from the copied rows.
        ranked = await services.storage.repo.top_uploaders(None, 5)
        assert [(u.id, n) for u, n in ranked] == [(OWNER.id, len(approved))]


async def check_writable(settings: Settings, original: Collection) -> None:
    """New rows go in after the copied ones (PostgreSQL's sequences were set past them)."""
    async with open_services(settings) as services:
        fresh = await services.images.ingest(
            make_image(seed=99), IngestMetadata(tags=("cat", "new")), OWNER, trusted=True
        )
        await services.images.ingest(make_image(seed=98), IngestMetadata(), User("9", "x"))
        assert len(await snapshot(services)) == len(original.images) + 2
        assert (await services.images.tag("new")).images == 1
        assert fresh.id in {i.id for i in await services.images.random(Filters(tags=("new",)), 5)}


@pytest.fixture
def swift_env(swift: Swift) -> dict[str, str]:
    bucket = f"gazou-{uuid.uuid4().hex[:20]}"
    swift.create_bucket(bucket)
    return swift.blob_env(bucket)


async def test_sqlite_and_files_to_postgres_and_s3_and_back(
    tmp_path: Path, postgres: pg_server.PostgresServer, swift_env: dict[str, str]
) -> None:
    source = tmp_path / "source"
    original = await build(make_settings(source))
    database = await pg_server.create_database(postgres)
    credentials = {k: v for k, v in swift_env.items() if k != "BLOB_URL"}
    result = migrate(
        credentials,
        source,
        "--to-database",
        database,
        "--to-blobs",
        swift_env["BLOB_URL"],
    )
    assert result.returncode == 0, result.stderr
    assert "the target serves random and search" in result.stdout
    assert "DIFFERS" not in result.stdout
    cloud = {"DATABASE_URL": database, **swift_env}
    await check_copy(make_settings(tmp_path / "cloud", **cloud), original)

    # ... and back, from PostgreSQL + S3 into a new SQLite + files.
    back = migrate(cloud, tmp_path / "cloud", "--to-data-dir", str(tmp_path / "back"))
    assert back.returncode == 0, back.stderr
    await check_copy(make_settings(tmp_path / "back"), original)
    await check_writable(make_settings(tmp_path / "cloud", **cloud), original)
    await check_writable(make_settings(tmp_path / "back"), original)
    # The signing secret went along: signed links made by the source stay valid.
    assert (tmp_path / "back" / "signing_secret").read_bytes() == (
        tmp_path / "cloud" / "signing_secret"
    ).read_bytes()


async def test_a_target_holding_a_collection_is_refused_without_force(tmp_path: Path) -> None:
    source, other = tmp_path / "source", tmp_path / "other"
    original = await build(make_settings(source))
    async with open_services(make_settings(other)) as services:
        kept = await services.images.ingest(
            make_image(seed=50), IngestMetadata(), OWNER, trusted=True
        )

    refused = migrate({}, source, "--to-data-dir", str(other))
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1] == (
        "gazou: migrate: the target already holds a collection: refusing to write into it "
        "(--force empties the target's rows first)"
    )
    async with open_services(make_settings(other)) as services:
        assert list(await snapshot(services)) == [kept.id]

    forced = migrate({}, source, "--to-data-dir", str(other), "--force")
    assert forced.returncode == 0, forced.stderr
    await check_copy(make_settings(other), original)
    # The source was only read.
    async with open_services(make_settings(source)) as services:
        assert await snapshot(services) == original.images


async def test_an_interrupted_copy_resumes_where_it_stopped(tmp_path: Path) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    original = await build(make_settings(source))
    # Batches of 3: the first two commit, the third stops after one image's objects.
    stopped = migrate(
        {}, source, "--to-data-dir", str(target), "--batch-size", "3", "--stop-after", "7"
    )
    assert stopped.returncode == 130
    assert "run the same command again to resume" in stopped.stderr
    async with open_services(make_settings(target)) as services:
        assert len(await snapshot(services)) == 6

    resumed = migrate({}, source, "--to-data-dir", str(target), "--batch-size", "3")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.startswith("resumed: ")
    # The stopped batch's first image (both objects) was found in place and checked.
    assert ", 2 already there," in resumed.stdout
    await check_copy(make_settings(target), original)
    # Finished: the next run finds a collection there.
    again = migrate({}, source, "--to-data-dir", str(target))
    assert again.returncode == 2


async def test_a_corrupt_object_stops_the_copy_naming_its_image(tmp_path: Path) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    original = await build(make_settings(source))
    victim = next(i for i in original.images.values() if i.status is Status.APPROVED)
    async with open_services(make_settings(source)) as services:
        path = services.storage.blobs.local_path(services.images.blob_key(victim))
    assert path is not None
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes
    path.write_bytes(bytes(data))

    result = migrate({}, source, "--to-data-dir", str(target))
    assert result.returncode == 1
    assert f"image {victim.id}: the source's images/" in result.stderr
    assert "does not match its row (corrupt object)" in result.stderr
    async with open_services(make_settings(target)) as services:
        assert victim.id not in await snapshot(services)


async def test_every_table_is_copied_or_rebuilt(tmp_path: Path) -> None:
    """A table a later migration adds must be named in storage/migrate.py (copied, or
    rebuilt on the target), or `bot.py migrate` would silently leave its rows behind."""
    import contextlib
    import sqlite3

    from storage import migrate

    settings = make_settings(tmp_path / "data")
    async with open_services(settings):
        pass
    with contextlib.closing(sqlite3.connect(settings.data_dir / "gazou.sqlite3")) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"images", "reports", "pools"} <= tables
    named = {t.name for t in migrate.COUNTED} | set(migrate.REBUILT)
    assert tables - named == set()
